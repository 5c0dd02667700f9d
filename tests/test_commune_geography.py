"""The commune boundaries and positions shipped in reference/france (built by `signalements reference build` from
IGN ADMIN EXPRESS polygons and the DILA's town halls): they cover the commune reference, every polygon resolves to
its own commune, a point in no polygon falls back on the nearest town hall, and the synthetic traffic is placed
inside its communes."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from datetime import UTC, datetime

import pytest
import shapely

from devkit.commune_places import CommunePlaces
from devkit.traffic_generator import TrafficGenerator, TrafficMix
from ops.boundary_reference import PLM_CITIES
from schemas.channels import Channel, ReportKind
from schemas.reports import CanonicalReport, DeliveryNetwork, Jurisdiction, Place, ResolutionMethod
from signalements.settings import PROJECT_ROOT, Settings
from streams.commune_boundaries import CommuneBoundaries
from streams.dedup_area import NETWORKS_AREA, area_of_position, dedup_area
from streams.jurisdiction import JurisdictionReference, Unrouted

MANIFEST = PROJECT_ROOT / "reference" / "france" / "boundaries.json"


@pytest.fixture(scope="module")
def reference() -> JurisdictionReference:
    return JurisdictionReference.from_settings(Settings())


def test_the_boundaries_are_loaded_by_default(reference: JurisdictionReference) -> None:
    assert Settings().boundaries_file == PROJECT_ROOT / "reference" / "france" / "boundaries.npz"
    assert reference.boundaries is not None
    assert reference.boundaries.positions is not None


def test_every_commune_of_the_reference_has_a_polygon_or_a_position_but_the_few_the_build_lists(
    reference: JurisdictionReference,
) -> None:
    boundaries = reference.boundaries
    assert boundaries is not None and boundaries.positions is not None
    covered = set(boundaries.codes) | set(boundaries.positions.codes)
    routable = set(reference.commune_reference.communes) - set(PLM_CITIES)
    listed = set(json.loads(MANIFEST.read_text(encoding="utf-8"))["without_polygon_or_position"])
    assert routable - covered == listed  # every gap is named by the build, and every name is a real gap
    assert len(listed) < 20, listed
    # Paris, Lyon and Marseille are drawn as their arrondissements
    arrondissements = {code for code, c in reference.commune_reference.communes.items() if c.city_code in PLM_CITIES}
    assert len(arrondissements) == 45 and arrondissements <= set(boundaries.codes)


def test_every_communes_position_lies_in_its_own_polygon_or_within_a_kilometre_of_it(
    reference: JurisdictionReference,
) -> None:
    """Over the whole reference: a town hall far outside its commune (a wrong record of the directory: a longitude
    without its sign, the latitude written twice) is refused by the build, which takes a point of the polygon."""
    boundaries = reference.boundaries
    assert boundaries is not None and boundaries.positions is not None
    far = {}
    for code in boundaries.codes:
        position = boundaries.positions.of(code)
        if position is not None and (outside := boundaries.distance_outside_m(code, *position)) > 1_050:
            far[code] = round(outside)
    assert far == {}
    refused = json.loads(MANIFEST.read_text(encoding="utf-8"))["town_halls_refused_far_outside_their_polygon"]
    # The directory's known wrong records (Sainte-Rose with a longitude of +61.7, Coudun's latitude as longitude).
    assert {"97129", "60166"} <= set(refused) and len(refused) < 2_000
    assert boundaries.commune_at(*boundaries.positions.of("97129")) == "97129"  # type: ignore[misc]


def test_a_point_inside_each_polygon_resolves_to_that_commune_by_coordinates(reference: JurisdictionReference) -> None:
    """Over the whole reference, not a sample: a point of each polygon's surface gives its own commune back."""
    boundaries = reference.boundaries
    assert boundaries is not None
    inner = shapely.point_on_surface(boundaries.geometries)
    wrong = []
    for code, point in zip(boundaries.codes, inner, strict=True):
        result = reference.resolve_jurisdiction(Place(latitude=point.y, longitude=point.x))
        if not isinstance(result, Jurisdiction) or result.commune_code != code or \
                result.method is not ResolutionMethod.COORDINATES:
            wrong.append((code, getattr(result, "commune_code", result)))
    assert wrong == []


def test_a_point_in_no_polygon_falls_back_on_the_nearest_town_hall_as_its_own_method(
    reference: JurisdictionReference,
) -> None:
    # In the water of Marseille's Vieux-Port, in no commune's polygon: the town hall of the 2nd arrondissement is near.
    result = reference.resolve_jurisdiction(Place(latitude=43.295, longitude=5.36))
    assert isinstance(result, Jurisdiction)
    assert (result.commune_code, result.method) == ("13202", ResolutionMethod.POSITION)
    # Off the Breton coast, far from any commune: unrouted, and the reason says what was tried.
    offshore = reference.resolve_jurisdiction(Place(latitude=46.0, longitude=-3.0))
    assert isinstance(offshore, Unrouted)
    assert offshore.reason == "unknown_commune" and "town hall within 3 km" in offshore.detail


def test_resolve_by_coordinates_works_out_of_the_box() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "cli.main", "resolve", "--lat", "45.9237", "--lon", "6.8694"],
        capture_output=True, text=True, cwd=PROJECT_ROOT, check=False, timeout=60,
        env={"PATH": "/usr/bin:/bin", "HOME": str(PROJECT_ROOT)},
    )
    assert completed.returncode == 0, completed.stderr
    resolved = json.loads(completed.stdout)
    assert (resolved["commune_code"], resolved["method"]) == ("74056", "coordinates")


def test_the_traffic_generator_places_every_point_inside_its_commune(reference: JurisdictionReference) -> None:
    assert reference.boundaries is not None
    places = CommunePlaces(reference.boundaries)
    communes = [c for c in reference.communes if places.has(c.code)][::500]
    generator = TrafficGenerator(communes, TrafficMix(invalid_share=0.0), seed=3, places=places)
    list(generator.reports(300))
    assert len(generator.points) > 100
    for point in generator.points:
        assert reference.boundaries.commune_at(point.latitude, point.longitude) == point.commune.code, point


def test_random_points_cover_the_commune_not_one_spot(reference: JurisdictionReference) -> None:
    assert reference.boundaries is not None
    places = CommunePlaces(reference.boundaries)
    rng = random.Random(5)
    drawn = {places.random_point("74056", rng) for _ in range(50)}
    assert len(drawn) == 50
    assert places.random_point("99999", rng) is None


def test_a_position_kilometres_outside_the_commune_its_code_gives_is_flagged_not_rejected(
    reference: JurisdictionReference,
) -> None:
    inside = reference.resolve_jurisdiction(Place(commune_code="74056", latitude=45.9237, longitude=6.8694))
    assert isinstance(inside, Jurisdiction) and inside.position_outside_commune_m is None
    # Chamonix's code with a pin dropped in Paris: still routed to Chamonix's brigade, with the distance recorded.
    far = reference.resolve_jurisdiction(Place(commune_code="74056", latitude=48.85, longitude=2.35))
    assert isinstance(far, Jurisdiction) and far.unit_id == inside.unit_id
    assert far.position_outside_commune_m is not None and 450_000 < far.position_outside_commune_m < 480_000
    # Just across the border of the commune (within the check's few kilometres): not flagged.
    assert reference.boundaries is not None
    near = reference.resolve_jurisdiction(Place(commune_code="74056", latitude=45.9237, longitude=6.8694 + 0.12))
    distance = reference.boundaries.distance_outside_m("74056", 45.9237, 6.8694 + 0.12)
    assert isinstance(near, Jurisdiction) and distance is not None
    assert (near.position_outside_commune_m is None) == (distance <= 3_000)
    # Paris's own code is checked against its arrondissements.
    paris = reference.resolve_jurisdiction(Place(commune_code="75056", latitude=48.86, longitude=2.35))
    assert isinstance(paris, Jurisdiction) and paris.position_outside_commune_m is None


def test_every_report_that_may_be_a_duplicate_of_another_has_its_deduplication_area(
    reference: JurisdictionReference,
) -> None:
    """The key of reports.enriched: the coarse cell of the position, else of the commune's position; networks one."""
    moment = datetime(2026, 3, 1, tzinfo=UTC)

    def area(place: Place, kind: ReportKind = ReportKind.DEALING_POINT) -> str:
        canonical = CanonicalReport(
            report_id="r", channel=Channel.MONCOMMISSARIAT, submission_id="s", submitted_at=moment,
            received_at=moment, kind=kind, place=place,
            delivery=DeliveryNetwork(phone_e164="+33612345678") if kind is ReportKind.DELIVERY_NETWORK else None,
        )
        jurisdiction = reference.resolve_jurisdiction(place)
        assert isinstance(jurisdiction, Jurisdiction)
        return dedup_area(canonical, jurisdiction, reference.commune_position)

    located = area(Place(commune_code="74056", latitude=45.9237, longitude=6.8694))
    assert located == area_of_position(45.9237, 6.8694) == area(Place(latitude=45.9237, longitude=6.8694))
    # Without a position, the commune's: Chamonix's town hall is in the same coarse cell as its centre.
    town_hall = reference.commune_position("74056")
    assert town_hall is not None and area(Place(commune_code="74056", street_address="place de l'Église")) == located
    # Boundaries without positions (a GeoJSON file of one's own) still give each commune a point inside its polygon.
    assert reference.boundaries is not None
    own = CommuneBoundaries(reference.boundaries.codes[:3], reference.boundaries.geometries[:3])
    for code in own.codes:
        inside = own.position_of(code)
        assert inside is not None and own.commune_at(*inside) == code
    assert own.position_of("99999") is None
    # Two points 100 m apart across the boundary between two communes (two units) share their area.
    assert area_of_position(48.9000, 2.4500) == area_of_position(48.9009, 2.4500)
    assert area(Place(commune_code="74056"), ReportKind.DELIVERY_NETWORK) == NETWORKS_AREA
    assert area(Place(commune_code="75111", latitude=48.8649, longitude=2.37), ReportKind.DELIVERY_NETWORK) == (
        NETWORKS_AREA)
