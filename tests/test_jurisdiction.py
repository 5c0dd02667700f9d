"""The skeleton's jurisdiction lookup on the demonstration table: by code INSEE, then postcode and name."""

from __future__ import annotations

import pytest

from schemas.channels import Force
from schemas.reports import Jurisdiction, Place, ResolutionMethod
from signalements.settings import Settings
from streams.jurisdiction import JurisdictionReference, Unrouted
from streams.place_names import fold_commune_name


@pytest.fixture(scope="module")
def reference() -> JurisdictionReference:
    return JurisdictionReference.load(Settings().reference_dir)


def test_resolves_by_code_insee(reference: JurisdictionReference) -> None:
    result = reference.resolve_jurisdiction(Place(commune_code="2A272"))
    assert isinstance(result, Jurisdiction)
    assert (result.unit_id, result.force, result.departement) == ("gn-2a-sartene", Force.GENDARMERIE, "2A")
    assert result.method is ResolutionMethod.CODE_INSEE


@pytest.mark.parametrize(
    ("postcode", "name", "unit_id"),
    [
        ("74400", "CHAMONIX MONT BLANC", "gn-74-chamonix"),
        ("13680", "lancon provence", "gn-13-lancon"),
        ("93210", "St-Denis", "pn-93-pp"),
        ("97605", "Mamoudzou", "pn-976-mamoudzou"),
        ("13003", "Marseille 3e Arrondissement", "pn-13-marseille"),
    ],
)
def test_resolves_by_postcode_and_name_whatever_the_writing(
    reference: JurisdictionReference, postcode: str, name: str, unit_id: str
) -> None:
    result = reference.resolve_jurisdiction(Place(postcode=postcode, commune_name=name))
    assert isinstance(result, Jurisdiction)
    assert result.unit_id == unit_id
    assert result.method is ResolutionMethod.POSTCODE_NAME


def test_departement_of_overseas_commune_has_three_digits(reference: JurisdictionReference) -> None:
    result = reference.resolve_jurisdiction(Place(commune_code="97611"))
    assert isinstance(result, Jurisdiction) and result.departement == "976"


def test_unknown_place_is_unrouted_with_a_reason(reference: JurisdictionReference) -> None:
    result = reference.resolve_jurisdiction(Place(postcode="01400", commune_name="L'Abergement-Clémenciat"))
    assert isinstance(result, Unrouted) and result.reason == "unknown_commune"


@pytest.mark.parametrize(
    ("written", "folded"),
    [("Saint-Étienne", "saint etienne"), ("ST ETIENNE", "saint etienne"), ("L'Haÿ-les-Roses", "l hay les roses"),
     ("Lyon CEDEX 03", "lyon")],
)
def test_commune_names_fold_accents_case_hyphens_and_saint(written: str, folded: str) -> None:
    assert fold_commune_name(written) == folded
