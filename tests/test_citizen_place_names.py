"""The names and places citizens write, over the whole commune reference (not a sample): every commune from each of
its postcodes with its name (with or without its article), every commune déléguée or associée by its own name,
arrondissements with their ordinal, a postcode alone, a name alone, and the candidates named when several remain."""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Callable

import pytest

from schemas.reports import Jurisdiction, Place, ResolutionMethod
from signalements.settings import Settings
from streams.jurisdiction import JurisdictionReference, Unrouted, folded_name
from streams.place_names import arrondissement_name

ARTICLES = ("Le ", "La ", "Les ", "L'")


@pytest.fixture(scope="module")
def reference() -> JurisdictionReference:
    return JurisdictionReference.from_settings(Settings().model_copy(update={"boundaries_file": None}))


def resolved_code(reference: JurisdictionReference, **place: str) -> str | None:
    result = reference.resolve_jurisdiction(Place(**place))
    return result.commune_code if isinstance(result, Jurisdiction) else None


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
    rows = csv.DictReader((Settings().commune_reference_dir / "communes.csv").open(encoding="utf-8"), delimiter=";")
    checked, wrong = 0, []
    for row in rows:
        if row["kind"] not in ("deleguee", "associee") or not row["name"]:
            continue
        nouvelle = communes.communes[row["routable_code"]]
        for postcode in nouvelle.postcodes:
            checked += 1
            found = communes.by_postcode_name(postcode, row["name"])
            if found is None or found.code != nouvelle.code:
                wrong.append((row["code"], row["name"], postcode, found.code if found else None))
    assert checked > 2_500 and wrong == []


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
