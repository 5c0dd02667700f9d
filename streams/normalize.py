"""Normalize a channel's submission into the canonical report.

Pure functions: the intake runs them to refuse bad input at the door, the stream runs them to build the canonical
report. A ``NormalizationError`` names the field and the reason.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import phonenumbers

from schemas.channels import Channel, ReportKind
from schemas.reports import CanonicalReport, DeliveryNetwork, Place, Reporter, ReporterContact, report_id_for
from schemas.submissions import (
    BrigadeNumeriqueSubmission,
    ConversationDeliveryNetwork,
    ConversationPlace,
    DeliveryContact,
    MonCommissariatSubmission,
    PortalAddress,
    PortalDeliveryNetwork,
)
from schemas.submissions import (
    ReporterContact as SubmittedContact,
)
from streams.arrondissements import arrondissement_code, refine_city_code, without_cedex

# Seals a consenting reporter's contact for the forces (signalements/reporter_sealing.py: ContactSealer.protect).
ProtectContact = Callable[[ReporterContact], Reporter]

PARIS = ZoneInfo("Europe/Paris")

# Rough boxes around metropolitan France (with Corsica) and the five overseas départements: enough to refuse
# coordinates that are swapped, zeroed or plainly abroad; the commune boundaries decide the rest.
FRANCE_BOXES: tuple[tuple[float, float, float, float], ...] = (
    (41.3, 51.2, -5.3, 9.7),  # metropolitan France and Corsica
    (15.8, 16.6, -61.9, -60.9),  # Guadeloupe
    (14.3, 14.9, -61.3, -60.8),  # Martinique
    (2.1, 5.8, -54.7, -51.6),  # Guyane
    (-21.4, -20.8, 55.2, 55.9),  # La Réunion
    (-13.1, -12.6, 44.9, 45.4),  # Mayotte
)


class NormalizationError(ValueError):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def normalize_phone(number: str, field: str) -> str:
    """Any common French writing (06 12 34 56 78, +33 6…, 0033 6…) to E.164."""
    try:
        parsed = phonenumbers.parse(number, "FR")
    except phonenumbers.NumberParseException as error:
        raise NormalizationError(field, f"not a phone number ({error})") from error
    if not phonenumbers.is_valid_number(parsed):
        raise NormalizationError(field, "not a valid phone number")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def normalize_handle(handle: str) -> str:
    return handle.strip().lstrip("@").lower()


def check_in_france(latitude: float, longitude: float, field: str) -> None:
    if not any(s <= latitude <= n and w <= longitude <= e for s, n, w, e in FRANCE_BOXES):
        raise NormalizationError(field, f"coordinates {latitude},{longitude} are outside France")


def _street_address(address: PortalAddress) -> str | None:
    parts = [address.housenumber or "", address.street or ""]
    text = " ".join(part.strip() for part in parts if part and part.strip())
    return re.sub(r"\s+", " ", text).lower() or None


def _portal_place(address: PortalAddress, field: str) -> Place:
    if address.latitude is not None and address.longitude is not None:
        check_in_france(address.latitude, address.longitude, field)
    return Place(
        street_address=_street_address(address),
        postcode=address.postcode,
        commune_code=refine_city_code(address.citycode, address.postcode),
        commune_name=without_cedex(address.city),
        latitude=address.latitude,
        longitude=address.longitude,
    )


def _conversation_place(place: ConversationPlace, field: str) -> Place:
    latitude = longitude = None
    if place.gps:
        latitude, longitude = (float(part) for part in place.gps.split(","))
        check_in_france(latitude, longitude, f"{field}.gps")
    return Place(
        description=place.description or None,
        postcode=place.postcode,
        commune_code=arrondissement_code(place.commune, place.postcode),
        commune_name=without_cedex(place.commune) if place.commune else None,
        latitude=latitude,
        longitude=longitude,
    )


def _delivery(contact: DeliveryContact, field: str) -> DeliveryNetwork:
    return DeliveryNetwork(
        phone_e164=normalize_phone(contact.phone, f"{field}.phone") if contact.phone else None,
        handle=normalize_handle(contact.handle) if contact.handle else None,
        platform=contact.platform,
    )


def _reporter(contact: SubmittedContact | None, protect: ProtectContact | None) -> Reporter | None:
    # A reporter's details travel only with their consent (otherwise the report is anonymous downstream), and only
    # sealed for the forces: ``protect`` (the worker's ContactSealer) seals them; without it (the intake, which only
    # validates) they are checked and dropped.
    if contact is None or not contact.consent_to_recontact:
        return None
    phone = normalize_phone(contact.phone, "reporter.phone") if contact.phone else None
    clear = ReporterContact(email=contact.email.lower() if contact.email else None, phone_e164=phone)
    return protect(clear) if protect is not None else None


def paris_local_time(text: str) -> datetime:
    return datetime.strptime(text, "%d/%m/%Y %H:%M").replace(tzinfo=PARIS).astimezone(UTC)


def normalize_moncommissariat(submission: MonCommissariatSubmission, received_at: datetime,
                              protect: ProtectContact | None = None) -> CanonicalReport:
    report = submission.report
    common: dict[str, Any] = {
        "report_id": report_id_for(Channel.MONCOMMISSARIAT, submission.submission_id),
        "channel": Channel.MONCOMMISSARIAT,
        "submission_id": submission.submission_id,
        "submitted_at": submission.submitted_at.astimezone(UTC),
        "received_at": received_at.astimezone(UTC),
        "when_seen": " ".join([*report.days_seen, report.hours_seen or ""]).strip() or None,
        "description": report.description,
        "reporter": _reporter(submission.reporter, protect),
    }
    if isinstance(report, PortalDeliveryNetwork):
        return CanonicalReport(
            **common,
            kind=ReportKind.DELIVERY_NETWORK,
            place=_portal_place(report.area_served, "report.area_served"),
            delivery=_delivery(report.contact, "report.contact"),
        )
    return CanonicalReport(
        **common,
        kind=ReportKind.DEALING_POINT,
        activity=report.activity,
        place=_portal_place(report.place, "report.place"),
    )


def normalize_brigade_numerique(submission: BrigadeNumeriqueSubmission, received_at: datetime,
                                protect: ProtectContact | None = None) -> CanonicalReport:
    report = submission.report
    common: dict[str, Any] = {
        "report_id": report_id_for(Channel.BRIGADE_NUMERIQUE, submission.conversation_id),
        "channel": Channel.BRIGADE_NUMERIQUE,
        "submission_id": submission.conversation_id,
        "submitted_at": paris_local_time(submission.reported_at),
        "received_at": received_at.astimezone(UTC),
        "when_seen": report.when_seen,
        "description": submission.transcript_excerpt,
        "reporter": _reporter(submission.reporter, protect),
    }
    if isinstance(report, ConversationDeliveryNetwork):
        return CanonicalReport(
            **common,
            kind=ReportKind.DELIVERY_NETWORK,
            place=_conversation_place(report.area_served, "report.area_served"),
            delivery=_delivery(report.contact, "report.contact"),
        )
    return CanonicalReport(
        **common,
        kind=ReportKind.DEALING_POINT,
        activity=report.activity,
        place=_conversation_place(report.place, "report.place"),
    )


def normalize_submission(
    submission: MonCommissariatSubmission | BrigadeNumeriqueSubmission, received_at: datetime,
    protect: ProtectContact | None = None,
) -> CanonicalReport:
    """The canonical report; a consenting reporter's contact sealed by ``protect``, or dropped without it."""
    if isinstance(submission, MonCommissariatSubmission):
        return normalize_moncommissariat(submission, received_at, protect)
    return normalize_brigade_numerique(submission, received_at, protect)
