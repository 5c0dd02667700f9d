"""Normalization of both channels into the canonical report: what real input holds."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError
from sample_submissions import conversation_delivery_network, portal_dealing_point

from schemas.channels import Channel, ReportKind
from schemas.reports import report_id_for
from schemas.submissions import BrigadeNumeriqueSubmission, MonCommissariatSubmission
from streams.normalize import NormalizationError, normalize_handle, normalize_phone, normalize_submission

RECEIVED = datetime(2026, 3, 3, 9, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    "written", ["06 12 34 56 78", "0612345678", "06.12.34.56.78", "+33 6 12 34 56 78", "0033 6 12 34 56 78", "+33612345678"]
)
def test_french_phone_numbers_in_any_common_writing_become_e164(written: str) -> None:
    assert normalize_phone(written, "phone") == "+33612345678"


def test_an_impossible_phone_number_names_its_field() -> None:
    with pytest.raises(NormalizationError) as raised:
        normalize_phone("06 12", "report.contact.phone")
    assert raised.value.field == "report.contact.phone"


@pytest.mark.parametrize("handle", ["@LivreurDuSoir", "livreurdusoir", "  @livreurDuSoir "])
def test_handles_with_or_without_at_sign_are_the_same(handle: str) -> None:
    assert normalize_handle(handle) == "livreurdusoir"


def test_portal_dealing_point_normalizes_into_the_canonical_report() -> None:
    body = portal_dealing_point()
    report = normalize_submission(MonCommissariatSubmission.model_validate(body), RECEIVED)

    assert report.report_id == report_id_for(Channel.MONCOMMISSARIAT, body["submission_id"])
    assert report.kind is ReportKind.DEALING_POINT
    assert report.place.commune_code == "75111"
    assert report.place.street_address == "12 rue oberkampf"
    assert report.received_at == RECEIVED
    assert report.when_seen == "lundi vendredi de 18h à 23h"


def test_reporter_contact_is_dropped_without_consent() -> None:
    body = portal_dealing_point()
    body["reporter"] = {"email": "someone@example.org", "consent_to_recontact": False}
    report = normalize_submission(MonCommissariatSubmission.model_validate(body), RECEIVED)
    assert report.reporter is None


def test_conversation_local_time_is_read_as_europe_paris() -> None:
    body = conversation_delivery_network()
    body["reported_at"] = "03/03/2021 10:30"  # winter time: UTC+1
    report = normalize_submission(BrigadeNumeriqueSubmission.model_validate(body), RECEIVED)
    assert report.submitted_at == datetime(2021, 3, 3, 9, 30, tzinfo=UTC)
    assert report.delivery is not None and report.delivery.phone_e164 == "+33612345678"


def test_coordinates_outside_france_are_refused() -> None:
    body = conversation_delivery_network()
    body["report"]["area_served"]["gps"] = "40.4168,-3.7038"  # Madrid
    with pytest.raises(NormalizationError, match="outside France"):
        normalize_submission(BrigadeNumeriqueSubmission.model_validate(body), RECEIVED)


def test_overseas_coordinates_are_accepted() -> None:
    body = conversation_delivery_network(commune="Mamoudzou", postcode="97600")
    body["report"]["area_served"]["gps"] = "-12.7806, 45.2278"
    report = normalize_submission(BrigadeNumeriqueSubmission.model_validate(body), RECEIVED)
    assert (report.place.latitude, report.place.longitude) == (-12.7806, 45.2278)


def test_an_impossible_local_date_is_refused_at_validation() -> None:
    body = conversation_delivery_network()
    body["reported_at"] = "31/02/2026 10:00"
    with pytest.raises(ValidationError, match="reported_at"):
        BrigadeNumeriqueSubmission.model_validate(body)


def test_a_delivery_network_needs_a_phone_or_a_handle() -> None:
    body = conversation_delivery_network()
    body["report"]["contact"] = {"platform": "telegram"}
    with pytest.raises(ValidationError, match="phone number or a handle"):
        BrigadeNumeriqueSubmission.model_validate(body)
