"""Property tests: every valid submission of each channel normalizes, and round-trips through serialization unchanged.

Submissions are drawn from what real input holds: accented and abbreviated commune names in any case, French phone
numbers in every common writing, handles with or without "@", positions anywhere in metropolitan France or overseas,
local date-times including the nights of the clock changes.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import phonenumbers
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.envelope import BRIGADE_NUMERIQUE_SUBMISSION, MONCOMMISSARIAT_SUBMISSION, decode, encode, kafka_headers
from schemas.reports import CanonicalReport
from schemas.submissions import ActivityKind, BrigadeNumeriqueSubmission, MessagingPlatform, MonCommissariatSubmission
from streams.normalize import FRANCE_BOXES, normalize_handle, normalize_submission

RECEIVED = datetime(2026, 3, 3, 9, 30, tzinfo=UTC)
COMMUNES = [
    "Saint-Étienne", "St-Étienne", "SAINT ETIENNE", "Châlons-en-Champagne", "L'Haÿ-les-Roses",
    "Évry-Courcouronnes",
    "Paris", "Marseille 3e Arrondissement", "Chamonix-Mont-Blanc", "Mamoudzou", "Sainte-Anne", "Ste Anne",
]
text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=60)
short_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Z")), min_size=1, max_size=40)
postcodes = st.from_regex(r"\A[0-9]{5}\Z")
codes_insee = st.from_regex(r"\A([0-9]{5}|2[AB][0-9]{3})\Z")
ids = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._:-]{0,40}\Z")


@st.composite
def french_position(draw: st.DrawFn) -> tuple[float, float]:
    south, north, west, east = draw(st.sampled_from(FRANCE_BOXES))
    latitude = round(draw(st.floats(south, north)), 6)
    longitude = round(draw(st.floats(west, east)), 6)
    return min(max(latitude, south), north), min(max(longitude, west), east)


@st.composite
def french_mobile(draw: st.DrawFn) -> str:
    """A valid French mobile number in one of the writings citizens use."""
    first = draw(st.sampled_from("67"))
    number = draw(st.integers(0, 99_999_999).map(lambda n: f"{first}{n:08d}").filter(
        lambda digits: phonenumbers.is_valid_number(phonenumbers.parse("+33" + digits))
    ))
    pairs = " ".join(number[i:i + 2] for i in range(1, 9, 2))
    return draw(st.sampled_from([
        f"0{number[0]} {pairs}", f"0{number}", f"0{number[0]}.{pairs.replace(' ', '.')}", f"+33 {number[0]} {pairs}",
        f"+33{number}", f"0033 {number[0]} {pairs}", f"0033{number}", f"+33 (0){number[0]} {pairs}",
    ]))


handles = st.from_regex(r"\A@?[A-Za-z0-9_.]{1,30}\Z")
# Digits of other scripts look like digits to \d but are no French postcode: refused at the door.
NON_ASCII_DIGITS = st.text(st.characters(categories=("Nd",)).filter(lambda c: not c.isascii()), min_size=5, max_size=5)


@st.composite
def delivery_contact(draw: st.DrawFn) -> dict:
    contact: dict = {}
    if draw(st.booleans()):
        contact["phone"] = draw(french_mobile())
    if not contact or draw(st.booleans()):
        contact["handle"] = draw(handles)
    if draw(st.booleans()):
        contact["platform"] = draw(st.sampled_from([p.value for p in MessagingPlatform]))
    return contact


@st.composite
def reporter(draw: st.DrawFn) -> dict | None:
    if draw(st.booleans()):
        return None
    contact: dict = {"consent_to_recontact": draw(st.booleans())}
    if draw(st.booleans()):
        contact["email"] = draw(st.from_regex(r"\A[a-zA-Z0-9.]{1,20}@[a-z]{1,10}\.(fr|org|com)\Z"))
    if draw(st.booleans()):
        contact["phone"] = draw(french_mobile())
    return contact


@st.composite
def portal_address(draw: st.DrawFn) -> dict:
    address = {
        "label": draw(short_text), "postcode": draw(postcodes), "citycode": draw(codes_insee),
        "city": draw(st.sampled_from(COMMUNES)),
    }
    if draw(st.booleans()):
        address["housenumber"] = draw(st.from_regex(r"\A[0-9]{1,4}( ?(bis|ter|[A-D]))?\Z"))
    if draw(st.booleans()):
        address["street"] = draw(short_text)
    if draw(st.booleans()):
        address["latitude"], address["longitude"] = draw(french_position())
    return address


@st.composite
def moncommissariat_submissions(draw: st.DrawFn) -> dict:
    common = {
        "days_seen": draw(st.lists(st.sampled_from(["lundi", "mardi", "samedi", "dimanche"]), max_size=4)),
        "description": draw(text),
    }
    if draw(st.booleans()):
        common["hours_seen"] = draw(st.text(max_size=30))
    if draw(st.booleans()):
        report = {"kind": "dealing_point", "place": draw(portal_address()),
                  "activity": draw(st.sampled_from([a.value for a in ActivityKind])), **common}
    else:
        report = {"kind": "delivery_network", "contact": draw(delivery_contact()),
                  "area_served": draw(portal_address()), **common}
    offset = timezone(timedelta(minutes=draw(st.integers(-12 * 60, 14 * 60))))
    submitted = draw(st.datetimes(datetime(2021, 3, 3), datetime(2030, 1, 1))).replace(tzinfo=offset)
    body = {"submission_id": draw(ids), "submitted_at": submitted.isoformat(), "report": report}
    contact = draw(reporter())
    if contact is not None:
        body["reporter"] = contact
    return body


@st.composite
def conversation_place(draw: st.DrawFn) -> dict:
    place: dict = {"description": draw(text)}
    if draw(st.booleans()):
        name = draw(st.sampled_from(COMMUNES))
        place["commune"] = draw(st.sampled_from([name, name.upper(), name.lower()]))
    if draw(st.booleans()):
        place["postcode"] = draw(postcodes)
    if "commune" not in place and "postcode" not in place or draw(st.booleans()):
        latitude, longitude = draw(french_position())
        place["gps"] = draw(
            # The app writes fixed decimals; repr() would write 6.1e-05 near the meridian.
            st.sampled_from(
                [f"{latitude:.6f},{longitude:.6f}", f"{latitude:.6f}, {longitude:.6f}", f" {latitude:.6f} ,{longitude:.6f}"]
            )
        )
    return place


@st.composite
def brigade_numerique_submissions(draw: st.DrawFn) -> dict:
    # Includes the clock-change nights (last Sundays of March and October) and the dates around them.
    moment = draw(st.datetimes(datetime(2021, 3, 3), datetime(2030, 1, 1)))
    local = moment.strftime("%d/%m/%Y %H:%M")
    if draw(st.booleans()):
        report = {"kind": "dealing_point", "place": draw(conversation_place())}
        if draw(st.booleans()):
            report["when_seen"] = draw(st.text(max_size=50))
    else:
        report = {"kind": "delivery_network", "contact": draw(delivery_contact()),
                  "area_served": draw(conversation_place())}
    body = {"conversation_id": draw(ids), "started_at": local, "reported_at": local, "report": report,
            "transcript_excerpt": draw(text)}
    contact = draw(reporter())
    if contact is not None:
        body["reporter"] = contact
    return body


@settings(max_examples=300, deadline=None)
@given(moncommissariat_submissions())
def test_every_valid_portal_submission_normalizes_and_round_trips(body: dict) -> None:
    submission = MonCommissariatSubmission.model_validate(body)
    assert MonCommissariatSubmission.model_validate_json(submission.model_dump_json()) == submission

    message = encode(
        MONCOMMISSARIAT_SUBMISSION, submission, event_id="id-1", source="/test", key=submission.submission_id
    )
    assert decode(kafka_headers(message), message.key, message.value).payload == submission

    report = normalize_submission(submission, RECEIVED)
    assert CanonicalReport.model_validate_json(report.model_dump_json()) == report
    assert report.submitted_at == submission.submitted_at
    _check_delivery(report, body)


@settings(max_examples=300, deadline=None)
@given(brigade_numerique_submissions())
def test_every_valid_conversation_submission_normalizes_and_round_trips(body: dict) -> None:
    submission = BrigadeNumeriqueSubmission.model_validate(body)
    assert BrigadeNumeriqueSubmission.model_validate_json(submission.model_dump_json()) == submission

    message = encode(
        BRIGADE_NUMERIQUE_SUBMISSION, submission, event_id="id-1", source="/test", key=submission.conversation_id
    )
    assert decode(kafka_headers(message), message.key, message.value).payload == submission

    report = normalize_submission(submission, RECEIVED)
    assert CanonicalReport.model_validate_json(report.model_dump_json()) == report
    assert report.submitted_at.tzinfo is not None and report.submitted_at.utcoffset() == timedelta(0)
    _check_delivery(report, body)


def _check_delivery(report: CanonicalReport, body: dict) -> None:
    contact = body["report"].get("contact")
    if contact is None:
        assert report.delivery is None
        return
    assert report.delivery is not None
    if "phone" in contact:
        assert report.delivery.phone_e164 is not None and report.delivery.phone_e164.startswith("+33")
        assert len(report.delivery.phone_e164) == 12
    if "handle" in contact:
        assert report.delivery.handle == normalize_handle(contact["handle"])
        assert not report.delivery.handle.startswith("@") and report.delivery.handle == report.delivery.handle.lower()


@settings(max_examples=50, deadline=None)
@given(moncommissariat_submissions(), NON_ASCII_DIGITS)
def test_postcodes_in_other_scripts_digits_are_refused(body: dict, postcode: str) -> None:
    from pydantic import ValidationError

    place_key = "place" if body["report"]["kind"] == "dealing_point" else "area_served"
    body["report"][place_key]["postcode"] = postcode
    try:
        MonCommissariatSubmission.model_validate(body)
    except ValidationError as error:
        assert any(item["loc"][-1] == "postcode" for item in error.errors())
    else:
        raise AssertionError(f"{postcode!r} accepted as a postcode")
