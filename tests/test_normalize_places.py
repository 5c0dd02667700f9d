"""Places as citizens write them: arrondissements of Paris, Lyon and Marseille, CEDEX mentions, whole-city codes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sample_submissions import conversation_delivery_network, portal_dealing_point

from schemas.submissions import BrigadeNumeriqueSubmission, MonCommissariatSubmission
from streams.arrondissements import arrondissement_code, without_cedex
from streams.normalize import normalize_submission

RECEIVED = datetime(2026, 3, 3, 9, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("commune", "postcode", "code"),
    [
        ("Paris", "75011", "75111"), ("PARIS", "75018", "75118"), ("paris", "75116", "75116"),
        ("Paris", "75016", "75116"),
        ("Paris 11e", None, "75111"), ("Paris 11ème arrondissement", "75011", "75111"), ("Paris 1er", None, "75101"),
        ("Marseille", "13003", "13203"), ("MARSEILLE 3E ARRONDISSEMENT", None, "13203"), ("Lyon", "69009", "69389"),
        ("Lyon 1er", None, "69381"),
        ("Lyon", "69100", None),        # Villeurbanne's postcode: not an arrondissement of Lyon
        ("Paris", None, None),          # which arrondissement is not said
        ("Paris", "75021", None), ("Marseille", "13017", None), ("Saint-Denis", "93200", None), (None, "75011", None),
    ],
)
def test_the_arrondissement_is_derived_from_the_name_and_postcode(commune: str | None, postcode: str | None,
                                                                   code: str | None) -> None:
    assert arrondissement_code(commune, postcode) == code


@pytest.mark.parametrize(
    ("written", "clean"),
    [("Paris Cedex 07", "Paris"), ("MARSEILLE CEDEX", "MARSEILLE"), ("Lyon cedex 3", "Lyon"), ("Cedex", "Cedex"),
     ("Saint-Denis", "Saint-Denis")],
)
def test_cedex_mentions_leave_the_commune_name(written: str, clean: str) -> None:
    assert without_cedex(written) == clean


def test_a_conversation_in_paris_gets_its_arrondissement_code() -> None:
    body = conversation_delivery_network(commune="PARIS CEDEX 11", postcode="75011")
    report = normalize_submission(BrigadeNumeriqueSubmission.model_validate(body), RECEIVED)
    assert (report.place.commune_code, report.place.commune_name, report.place.postcode) == ("75111", "PARIS", "75011")


def test_a_conversation_elsewhere_keeps_only_what_the_citizen_said() -> None:
    body = conversation_delivery_network(commune="St-Gervais-les-Bains", postcode="74170")
    report = normalize_submission(BrigadeNumeriqueSubmission.model_validate(body), RECEIVED)
    assert report.place.commune_code is None
    assert report.place.commune_name == "St-Gervais-les-Bains"


def test_a_portal_address_with_the_whole_city_code_is_refined_to_its_arrondissement() -> None:
    body = portal_dealing_point(citycode="13055", postcode="13003", city="Marseille")
    report = normalize_submission(MonCommissariatSubmission.model_validate(body), RECEIVED)
    assert report.place.commune_code == "13203"


def test_a_portal_address_with_an_arrondissement_code_is_kept() -> None:
    body = portal_dealing_point()
    report = normalize_submission(MonCommissariatSubmission.model_validate(body), RECEIVED)
    assert report.place.commune_code == "75111"
