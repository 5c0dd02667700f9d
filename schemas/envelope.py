"""CloudEvents 1.0 envelope, Kafka binary content mode.

Every record on every topic carries its CloudEvents attributes as ``ce_*`` headers (``ce_specversion``, ``ce_id``,
``ce_source``, ``ce_type``, ``ce_time``, ``ce_dataschema``, ``ce_subject``) and ``content-type: application/json``;
the record value is the payload alone, as JSON. Binary mode keeps values readable by any JSON consumer and lets the
dead-letter topic carry a rejected record's original bytes untouched.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from cloudevents.core.bindings.kafka import KafkaMessage, from_binary, to_binary
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from pydantic import BaseModel

from schemas.events import CaseHandled, CaseLinked, CaseOpened, CaseUpdated, UnroutedReport
from schemas.identifiers import EVENT_ID_NAMESPACE, stable_id
from schemas.reference import CompetenceRow
from schemas.reports import CanonicalReport, EnrichedReport
from schemas.submissions import BrigadeNumeriqueSubmission, MonCommissariatSubmission

SCHEMA_VERSION: Final = 1
TYPE_PREFIX: Final = "fr.interieur.signalements"
JSON: Final = "application/json"


@dataclass(frozen=True)
class EventType:
    """One kind of event: its CloudEvents ``type``, its payload model and its versioned ``dataschema``."""

    name: str
    model: type[BaseModel]
    version: int = SCHEMA_VERSION
    # Earlier versions whose payloads the current model still reads (a version that only widened an enum), so that
    # records written before an upgrade are read after it.
    also_reads: tuple[int, ...] = ()

    @property
    def ce_type(self) -> str:
        return f"{TYPE_PREFIX}.{self.name}"

    @property
    def dataschema(self) -> str:
        return self.dataschema_of(self.version)

    def dataschema_of(self, version: int) -> str:
        return f"urn:signalements:schema:{self.name}:{version}"

    def reads(self, dataschema: str) -> bool:
        return dataschema in {self.dataschema_of(version) for version in (self.version, *self.also_reads)}


MONCOMMISSARIAT_SUBMISSION = EventType("submission.moncommissariat", MonCommissariatSubmission)
BRIGADE_NUMERIQUE_SUBMISSION = EventType("submission.brigade-numerique", BrigadeNumeriqueSubmission)
# Version 2: the reporter's contact is sealed for each force (``Reporter``), no longer in clear. Version 3 of the
# worker's internal events: a delivery network's phone number and handle are sealed for the worker too.
# Version 4 of report.enriched and version 3 of the case events: the jurisdiction's method may be ``position`` (a
# point in no commune's polygon, routed by the nearest town hall); the previous versions are still read.
REPORT_NORMALIZED = EventType("report.normalized", CanonicalReport, version=3)
REPORT_ENRICHED = EventType("report.enriched", EnrichedReport, version=4, also_reads=(3,))
REPORT_UNROUTED = EventType("report.unrouted", UnroutedReport, version=3)
CASE_OPENED = EventType("case.opened", CaseOpened, version=3, also_reads=(2,))
CASE_UPDATED = EventType("case.updated", CaseUpdated, version=3, also_reads=(2,))
REFERENCE_COMPETENCE = EventType("reference.competence", CompetenceRow)
CASE_HANDLED = EventType("case.handled", CaseHandled)
CASE_LINKED = EventType("case.linked", CaseLinked)

EVENT_TYPES: Final = {
    event_type.ce_type: event_type
    for event_type in (
        MONCOMMISSARIAT_SUBMISSION,
        BRIGADE_NUMERIQUE_SUBMISSION,
        REPORT_NORMALIZED,
        REPORT_ENRICHED,
        REPORT_UNROUTED,
        CASE_OPENED,
        CASE_UPDATED,
        REFERENCE_COMPETENCE,
        CASE_HANDLED,
        CASE_LINKED,
    )
}

DEAD_LETTER_TYPE: Final = f"{TYPE_PREFIX}.deadletter"
DEAD_LETTER_SCHEMA: Final = "urn:signalements:schema:deadletter:1"
# On a record an operator sent back from the dead-letter topic: "<topic>:<partition>:<offset>" of its dead letter.
REDRIVEN_FROM_HEADER: Final = "signalements-redriven-from"
# The records a redrive may write again: the worker's inputs.
REDRIVABLE_TYPES: Final = (MONCOMMISSARIAT_SUBMISSION, BRIGADE_NUMERIQUE_SUBMISSION, REPORT_NORMALIZED, REPORT_ENRICHED)

_FORMAT = JSONFormat()


def event_id_for(subject: str, event_type: EventType) -> str:
    """The id of the ``event_type`` event about ``subject``: the same on every pass, so consumers apply it once."""
    return stable_id(EVENT_ID_NAMESPACE, event_type.ce_type, subject)


class EnvelopeError(ValueError):
    """A record whose envelope is missing, malformed or of a schema this version does not read."""


class UnknownEventType(EnvelopeError):
    """A ``ce_type`` this version does not know."""


class UnsupportedSchema(EnvelopeError):
    """A ``ce_dataschema`` version this version does not read."""


def encode(
    event_type: EventType,
    payload: BaseModel,
    *,
    event_id: str,
    source: str,
    key: str | None,
    subject: str | None = None,
    time: datetime | None = None,
) -> KafkaMessage:
    attributes = {
        "id": event_id,
        "source": source,
        "type": event_type.ce_type,
        "dataschema": event_type.dataschema,
        "datacontenttype": JSON,
        "time": time or datetime.now(UTC),
    }
    if subject is not None:
        attributes["subject"] = subject
    if key is not None:
        attributes["partitionkey"] = key
    event = CloudEvent(attributes=attributes, data=payload.model_dump_json().encode())
    return to_binary(event, _FORMAT)


@dataclass(frozen=True)
class DecodedEvent:
    event_id: str
    event_type: EventType
    time: datetime
    payload: BaseModel


def read_attributes(headers: Sequence[tuple[str, bytes]] | Mapping[str, bytes] | None) -> dict[str, str]:
    items = headers.items() if isinstance(headers, Mapping) else (headers or [])
    return {name.lower(): bytes(value).decode("utf-8", "replace") for name, value in items if value is not None}


REQUIRED_ATTRIBUTES: Final = ("ce_specversion", "ce_id", "ce_source", "ce_type")
SPEC_VERSION: Final = "1.0"


def check_required_attributes(attributes: dict[str, str]) -> None:
    """Every CloudEvents 1.0 required attribute is present and well formed, or EnvelopeError says which is not."""
    missing = [name for name in REQUIRED_ATTRIBUTES if not attributes.get(name, "").strip()]
    if missing:
        raise EnvelopeError(f"missing or empty {', '.join(missing)} header"
                            " (records must be CloudEvents 1.0 in Kafka binary mode)")
    if attributes["ce_specversion"] != SPEC_VERSION:
        raise EnvelopeError(f"ce_specversion {attributes['ce_specversion']!r} is not {SPEC_VERSION!r}")
    if attributes["ce_type"] != attributes["ce_type"].strip() or attributes["ce_id"] != attributes["ce_id"].strip():
        raise EnvelopeError("ce_type and ce_id must not have leading or trailing spaces")
    if "ce_time" in attributes:
        try:
            datetime.fromisoformat(attributes["ce_time"].replace("Z", "+00:00"))
        except ValueError:
            raise EnvelopeError(f"ce_time {attributes['ce_time'][:40]!r} is not an RFC 3339 timestamp") from None


def decode(headers: Sequence[tuple[str, bytes]] | Mapping[str, bytes] | None, key: bytes | None, value: bytes | None) -> DecodedEvent:
    """Read a record into its typed payload; raise EnvelopeError saying exactly what is wrong."""
    if value is None:
        raise EnvelopeError("empty record value")
    attributes = read_attributes(headers)
    check_required_attributes(attributes)
    ce_type = attributes["ce_type"]
    event_type = EVENT_TYPES.get(ce_type)
    if event_type is None:
        raise UnknownEventType(f"unknown event type {ce_type!r}")
    dataschema = attributes.get("ce_dataschema", event_type.dataschema)
    if not event_type.reads(dataschema):
        raise UnsupportedSchema(f"unsupported schema {dataschema!r} for {ce_type!r} (this version reads {event_type.dataschema!r})")
    try:
        event = from_binary(
            KafkaMessage(headers={k: v.encode() for k, v in attributes.items()}, key=key, value=b""), _FORMAT
        )
    except Exception as error:  # the SDK raises several types for invalid attributes
        raise EnvelopeError(f"invalid CloudEvents attributes: {error}") from error
    payload = event_type.model.model_validate_json(value)  # pydantic.ValidationError says which field and why
    time = event.get_time() or datetime.now(UTC)
    return DecodedEvent(event_id=event.get_id(), event_type=event_type, time=time, payload=payload)


def kafka_headers(message: KafkaMessage) -> list[tuple[str, bytes]]:
    return list(message.headers.items())
