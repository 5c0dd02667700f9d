"""The names and places citizens write, over the whole commune reference (not a sample): every commune from each of
its postcodes with its name (with or without its article), every commune déléguée or associée by its own name,
every former commune by the name it bore when it merged, arrondissements with their ordinal, a postcode alone, a name
alone, and the candidates named when several remain."""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Callable

import pytest

from ops.commune_reference import CodeKind, CommuneCode, build_postcode_index
from schemas.reports import Jurisdiction, Place, ResolutionMethod
from signalements.settings import Settings
from streams.jurisdiction import JurisdictionReference, NameEvidence, Unrouted, folded_name
from streams.place_names import arrondissement_name

ARTICLES = ("Le ", "La ", "Les ", "L'")


@pytest.fixture(scope="module")
def reference() -> JurisdictionReference:
    return JurisdictionReference.from_settings(Settings().model_copy(update={"boundaries_file": None}))


def resolved_code(reference: JurisdictionReference, **place: str) -> str | None:
    result = reference.resolve_jurisdiction(Place(**place))
    return result.commune_code if isinstance(result, Jurisdiction) else None


def reference_rows(file_name: str) -> list[dict[str, str]]:
    with (Settings().commune_reference_dir / file_name).open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle, delimiter=";"))


def test_every_commune_resolves_from_each_of_its_postcodes_with_its_name(reference: JurisdictionReference) -> None:
    communes = reference.commune_reference
    wrong = []
    for code, commune in communes.communes.items():
        for postcode in commune.postcodes:
            found = communes.by_postcode_name(postcode, commune.name)
            # "Paris" with 75011 is the 11th arrondissement: a city's name with its arrondissement's postcode
            if found is None or (found.code != code and found.city_code != code):
                wrong.append((code, commune.name, postcode, found.code if found else None))
    assert wrong == []


def test_every_commune_deleguee_or_associee_resolves_by_its_own_name(reference: JurisdictionReference) -> None:
    communes = reference.commune_reference
    checked, wrong = 0, []
    for row in reference_rows("communes.csv"):
        if row["kind"] not in ("deleguee", "associee") or not row["name"]:
            continue
        nouvelle = communes.communes[row["routable_code"]]
        for postcode in nouvelle.postcodes:
            checked += 1
            found = communes.by_postcode_name(postcode, row["name"])
            if found is None or found.code != nouvelle.code:
                wrong.append((row["code"], row["name"], postcode, found.code if found else None))
    assert checked > 2_500 and wrong == []


def test_every_former_commune_resolves_by_its_name_with_a_postcode_of_its_commune(
    reference: JurisdictionReference,
) -> None:
    """The name a former code bore when it merged (the COG's history), with each postcode of the commune it merged
    into: that commune, wherever no stronger name of another commune holds the pair."""
    communes = reference.commune_reference
    evidence = {(row["postcode"], row["folded_name"]): int(row["evidence"]) for row in reference_rows("postcodes.csv")}
    formers = [row for row in reference_rows("communes.csv") if row["kind"] == "former"]
    assert all(row["name"] for row in formers)
    checked, wrong = 0, []
    for row in formers:
        for postcode in communes.communes[row["routable_code"]].postcodes:
            if evidence.get((postcode, folded_name(row["name"]))) != NameEvidence.FORMER:
                continue  # the same spelling from the COG or La Poste, or a stronger name of another commune
            checked += 1
            found = communes.by_postcode_name(postcode, row["name"])
            if found is None or found.code != row["routable_code"]:
                wrong.append((row["code"], row["name"], postcode, found.code if found else None))
    assert checked > 1_500 and wrong == []


@pytest.mark.parametrize(
    ("code", "name"),
    [
        ("04060", "Saint-Michel-Peyresq"),  # Colle-Saint-Michel until its fusion with Peyresq in 1964, merged in 1974
        ("14624", "Saint-Martin-de-Fresnay"),  # not L'Oudon, the group it was the chef-lieu of from 1973 to 1990
        ("49065", "Champigné"),  # in 2019 both the commune déléguée Champigné and a part of Les Hauts-d'Anjou
    ],
)
def test_a_former_code_bears_the_name_it_had_when_it_merged(code: str, name: str) -> None:
    names = {row["code"]: row["name"] for row in reference_rows("communes.csv") if row["kind"] == "former"}
    assert names[code] == name


@pytest.mark.parametrize(
    ("name", "postcode", "commune_code"),
    [
        ("Metz-Tessy", "74370", "74112"),  # merged into Epagny Metz-Tessy in 2016, no commune déléguée
        ("Hargicourt", "80500", "80625"),  # déléguée of Trois-Rivières from 2019 until the délégués were removed
        ("Essonnes", "91100", "91174"),  # merged with Corbeil in 1951
        ("Saint Marc", "29200", "29019"),  # merged into Brest in 1945
        ("Levens", "04270", "04107"),  # merged into Majastres in 1951; also the name of a town of the 06
    ],
)
def test_a_former_commune_written_with_its_postcode_resolves_to_the_commune_it_merged_into(
    reference: JurisdictionReference, name: str, postcode: str, commune_code: str,
) -> None:
    result = reference.resolve_jurisdiction(Place(postcode=postcode, commune_name=name))
    assert isinstance(result, Jurisdiction) and result.method is ResolutionMethod.POSTCODE_NAME, result
    assert result.commune_code == commune_code


def test_a_former_name_shared_by_two_communes_is_not_routed_alone_and_each_postcode_tells(
    reference: JurisdictionReference,
) -> None:
    """Two villages called Dreslincourt merged, one into Ribécourt-Dreslincourt (Oise), one into Curchy (Somme)."""
    alone = reference.resolve_jurisdiction(Place(commune_name="Dreslincourt"))
    assert isinstance(alone, Unrouted) and alone.reason == "ambiguous_place"
    assert "60537" in alone.detail and "80230" in alone.detail
    assert resolved_code(reference, postcode="60170", commune_name="Dreslincourt") == "60537"
    assert resolved_code(reference, postcode="80190", commune_name="Dreslincourt") == "80230"


def test_a_former_name_never_shadows_a_current_or_a_delegated_name(reference: JurisdictionReference) -> None:
    # Alone, "Levens" is the town of the Alpes-Maritimes, not also the village merged into Majastres (04).
    alone = reference.resolve_jurisdiction(Place(commune_name="Levens"))
    assert isinstance(alone, Jurisdiction) and alone.method is ResolutionMethod.COMMUNE_NAME
    assert alone.commune_code == "06075"
    assert resolved_code(reference, postcode="06670", commune_name="Levens") == "06075"
    # A former name alone, where no current name matches, names its commune.
    assert resolved_code(reference, commune_name="Metz-Tessy") == "74112"
    # Code 55273 is both Lamarche-en-Woëvre, associée of Nonsard-Lamarche, and a former code of Heudicourt-sous-les-
    # Côtes (same postcode): the associée is the stronger, for its name as for its code.
    assert resolved_code(reference, postcode="55210", commune_name="Lamarche-en-Woëvre") == "55386"
    assert resolved_code(reference, commune_code="55273") == "55386"


def test_the_index_keeps_the_stronger_name_and_drops_two_former_names_alike() -> None:
    """A constructed case: a former commune named like a current one of the same postcode, and two former communes
    of one name merged into two communes of one postcode."""

    def commune(code: str, name: str) -> CommuneCode:
        return CommuneCode(code, CodeKind.COMMUNE, name, code, "01", "84", postcodes=("01100",))

    def former(code: str, name: str, merged_into: str) -> CommuneCode:
        return CommuneCode(code, CodeKind.FORMER, name, merged_into, "01", "84")

    codes = [
        commune("01001", "Arbent"), commune("01002", "Belmont"), former("01901", "Arbent", "01002"),
        former("01902", "Chavannes", "01001"), former("01903", "Chavannes", "01002"), former("01904", "Dortan", "01001"),
    ]
    rows = {(postcode, name): (code, strength) for postcode, name, code, strength in build_postcode_index(codes, []).rows()}
    assert rows[("01100", "arbent")] == ("01001", NameEvidence.COMMUNE)
    assert rows[("01100", "dortan")] == ("01001", NameEvidence.FORMER)
    assert ("01100", "chavannes") not in rows


def test_a_name_resolves_with_or_without_its_article(reference: JurisdictionReference) -> None:
    communes = reference.commune_reference
    checked, wrong = 0, []
    for code, commune in communes.communes.items():
        article = next((a for a in ARTICLES if commune.name.startswith(a)), None)
        if article is None or not commune.postcodes:
            continue
        bare = commune.name[len(article):]
        for postcode in commune.postcodes:
            checked += 1
            found = communes.by_postcode_name(postcode, bare)
            if found is None or found.code != code:
                wrong.append((code, commune.name, postcode, found.code if found else None))
    assert checked > 1_000 and wrong == []


WRITINGS: dict[str, Callable[[str, int, str], str]] = {
    "ordinal": lambda city, n, suffix: f"{city} {n}{suffix}",
    "ordinal arrondissement": lambda city, n, suffix: f"{city} {n}{suffix} arrondissement",
    "eme": lambda city, n, suffix: f"{city} {n}eme",
    "accented eme": lambda city, n, suffix: f"{city} {n}ème",
    "number first": lambda city, n, suffix: f"{n}{suffix} arrondissement de {city}",
    "capitals, bare number": lambda city, n, suffix: f"{city.upper()} {n}",
}


@pytest.mark.parametrize("writing", WRITINGS.values(), ids=WRITINGS.keys())
def test_every_arrondissement_resolves_written_with_its_ordinal(
    reference: JurisdictionReference, writing: Callable[[str, int, str], str],
) -> None:
    arrondissements = [c for c in reference.commune_reference.communes.values() if c.city_code]
    assert len(arrondissements) == 45
    wrong = []
    for commune in arrondissements:
        city, ordinal = commune.name.split()[:2]  # "Paris 1er Arrondissement", "Marseille 13e Arrondissement"
        number = int(ordinal.rstrip("er"))
        name = writing(city, number, "er" if number == 1 else "e")
        for postcode in commune.postcodes:
            if resolved_code(reference, postcode=postcode, commune_name=name) != commune.code:
                wrong.append((commune.code, name, postcode))
    assert wrong == []
    assert arrondissement_name(folded_name("Marseille 13ème")) == "marseille 13e arrondissement"


def test_a_postcode_alone_resolves_when_it_covers_one_commune_and_names_the_candidates_otherwise(
    reference: JurisdictionReference,
) -> None:
    covered = reference.commune_reference.postcode_communes
    single = {postcode: next(iter(codes)) for postcode, codes in covered.items() if len(codes) == 1}
    assert len(single) > 1_500
    wrong = [postcode for postcode, code in single.items() if resolved_code(reference, postcode=postcode) != code]
    assert wrong == []
    result = reference.resolve_jurisdiction(Place(postcode="74400"))
    assert isinstance(result, Jurisdiction) and result.method is ResolutionMethod.POSTCODE
    several = next(postcode for postcode, codes in covered.items() if len(codes) > 3)
    ambiguous = reference.resolve_jurisdiction(Place(postcode=several))
    assert isinstance(ambiguous, Unrouted) and ambiguous.reason == "ambiguous_place"
    assert sorted(covered[several])[0] in ambiguous.detail


def test_a_name_alone_resolves_when_it_names_one_commune_of_france(reference: JurisdictionReference) -> None:
    communes = reference.commune_reference
    by_name: dict[str, set[str]] = defaultdict(set)
    for code, commune in communes.communes.items():
        by_name[folded_name(commune.name)].add(code)
    unique = {name: next(iter(codes)) for name, codes in communes.name_communes.items()
              if len(codes) == 1 and name in by_name}
    assert len(unique) > 25_000
    wrong = [(name, code) for name, code in unique.items()
             if resolved_code(reference, commune_name=communes.communes[code].name) != code]
    assert wrong == []
    result = reference.resolve_jurisdiction(Place(commune_name="Chamonix-Mont-Blanc"))
    assert isinstance(result, Jurisdiction) and result.method is ResolutionMethod.COMMUNE_NAME


def test_homonyms_are_kept_apart_by_the_postcode_or_unrouted_with_the_candidates(
    reference: JurisdictionReference,
) -> None:
    assert resolved_code(reference, postcode="93200", commune_name="Saint Denis") == "93066"
    assert resolved_code(reference, postcode="97400", commune_name="Saint-Denis") == "97411"
    # A postcode that does not go with the name still says the département.
    assert resolved_code(reference, postcode="93999", commune_name="Saint-Denis") == "93066"
    alone = reference.resolve_jurisdiction(Place(commune_name="Saint-Denis"))
    assert isinstance(alone, Unrouted) and alone.reason == "ambiguous_place"
    for code in ("93066", "97411", "11339", "30247"):
        assert code in alone.detail
