"""The worker's three stages, each one small unit that takes one input record and says what to write:

    reports.raw.<channel> ──Normalize──▶ (in process) ──Enrich──▶ reports.enriched ──Route──▶ unit.<unit_id>
            │                       reports.normalized ──┘ │
            └──▶ reports.dlq        (redriven reports)     └──▶ reports.unrouted

Normalize hands its canonical report to Enrich in the same agent (streams/stage_runner.py, ``Handoff``): one Faust
hop fewer per report; ``reports.normalized`` is read by Enrich for the unrouted reports a redrive sends back.

A stage knows nothing of Faust: it reads an ``InputRecord`` (bytes, headers, position) and returns a
``StageOutput`` (an outcome label and the records to write), or raises ``StageFailure`` for a record it cannot
process. The stage runner (streams/stage_runner.py) counts, times, writes and dead-letters; the Faust wiring
(streams/app.py) feeds it. Every output is a CloudEvent whose id is derived from the report, so a record processed
twice (at-least-once delivery, a restart, a rebalance) yields the same event ids and consumers apply it once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from faust.types import TP  # a named tuple (topic, partition): the key of the consumer's commits
from pydantic import ValidationError

from schemas.channels import Channel
from schemas.envelope import (
    REPORT_ENRICHED,
    REPORT_NORMALIZED,
    REPORT_UNROUTED,
    DecodedEvent,
    EnvelopeError,
    EventType,
    decode,
    encode,
    event_id_for,
)
from schemas.events import CaseLinked, CaseOpened, CaseUpdated, UnroutedReport
from schemas.reasons import ReasonCode
from schemas.reports import CanonicalReport, EnrichedReport
from schemas.submission_channels import channel_of_raw_topic
from schemas.submissions import BrigadeNumeriqueSubmission, MonCommissariatSubmission
from schemas.topics import Topics
from schemas.validation import describe_validation_error
from signalements.metrics import Stage
from streams.dedup_area import dedup_area
from streams.deliveries import Outgoing
from streams.jurisdiction import JurisdictionReference, Unrouted
from streams.normalize import NormalizationError, ProtectContact, normalize_submission
from streams.worker_cipher import DeliverySeal, UnreadableDelivery

SOURCE = "/signalements/worker"


@dataclass(frozen=True)
class InputRecord:
    """One record a stage reads, as Kafka gave it; ``tp`` is the consumer's own partition handle."""

    topic: str
    partition: int
    offset: int
    timestamp: float  # seconds since the epoch (the record's Kafka timestamp)
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    tp: TP


@dataclass
class StageOutput:
    outcome: str
    records: list[Outgoing] = field(default_factory=list)


class StageFailure(Exception):
    """A record this stage cannot process: it goes to the dead-letter topic with ``code`` and ``detail``."""

    def __init__(self, code: ReasonCode, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


class StageStep(Protocol):
    stage: Stage

    def channel_of(self, record: InputRecord) -> str: ...

    async def __call__(self, record: InputRecord) -> StageOutput: ...


def read_event(record: InputRecord, expected: EventType) -> DecodedEvent:
    """The record's event, or the StageFailure that says why it cannot be read as ``expected``."""
    try:
        decoded = decode(record.headers, record.key, record.value)
    except EnvelopeError as error:
        raise StageFailure(ReasonCode.INVALID_ENVELOPE, str(error)) from error
    except ValidationError as error:
        raise StageFailure(ReasonCode.INVALID_PAYLOAD, describe_validation_error(error)) from error
    if decoded.event_type != expected:
        raise StageFailure(ReasonCode.UNEXPECTED_EVENT_TYPE, f"{decoded.event_type.ce_type} on {record.topic}")
    return decoded


def event_record(topic: str, event_type: EventType, payload: Any, *, key: str, event_id: str,
                 subject: str | None = None) -> Outgoing:
    message = encode(event_type, payload, event_id=event_id, source=SOURCE, key=key, subject=subject)
    return Outgoing(topic, key.encode(), message.value, list(message.headers.items()))


def channel_label(record: InputRecord) -> str:
    """The channel label of an internal record, read cheaply from its JSON without a full parse."""
    value = record.value or b""
    for channel in Channel:
        if f'"channel":"{channel.value}"'.encode() in value:
            return channel.value
    return "unknown"


class Normalize:
    """A channel's submission → the canonical report, on ``reports.normalized`` keyed by report id; a consenting
    reporter's contact is sealed for the forces here (``protect``), so no topic past the raw ones holds it, and a
    delivery network's identifiers for the worker's own route stage (``delivery_seal``)."""

    stage = Stage.NORMALIZE

    def __init__(self, topics: Topics, protect: ProtectContact, delivery_seal: DeliverySeal) -> None:
        self.topics = topics
        self.protect = protect
        self.delivery_seal = delivery_seal
        self.channels = channel_of_raw_topic(topics)

    def channel_of(self, record: InputRecord) -> str:
        return self.channels[record.topic].channel.value

    async def __call__(self, record: InputRecord) -> StageOutput:
        decoded = read_event(record, self.channels[record.topic].event_type)
        submission = cast(MonCommissariatSubmission | BrigadeNumeriqueSubmission, decoded.payload)
        try:
            report = normalize_submission(submission, decoded.time, self.protect)
        except NormalizationError as error:
            raise StageFailure(ReasonCode.NORMALIZATION, str(error)) from error
        report = self.delivery_seal.seal(report)
        return StageOutput("normalized", [event_record(
            self.topics.normalized, REPORT_NORMALIZED, report,
            key=report.report_id, event_id=event_id_for(report.report_id, REPORT_NORMALIZED),
        )])


class Enrich:
    """A canonical report → its jurisdiction, on ``reports.enriched`` keyed by its deduplication area (every report
    it may have to merge with, whatever their units, lands on one partition: streams/dedup_area.py), or on
    ``reports.unrouted`` with the reason when no unit is competent."""

    stage = Stage.ENRICH

    def __init__(self, topics: Topics, reference: JurisdictionReference,
                 reference_ready: Callable[[], Awaitable[Any]], on_unrouted: Callable[[str], None],
                 on_position_outside: Callable[[str], None] = lambda channel: None) -> None:
        self.topics = topics
        self.reference = reference
        self.reference_ready = reference_ready
        self.on_unrouted = on_unrouted
        self.on_position_outside = on_position_outside

    channel_of = staticmethod(channel_label)

    async def __call__(self, record: InputRecord) -> StageOutput:
        report = cast(CanonicalReport, read_event(record, REPORT_NORMALIZED).payload)
        await self.reference_ready()  # immediate once the reference topic has been read
        resolution = self.reference.resolve_jurisdiction(report.place)
        if isinstance(resolution, Unrouted):
            self.on_unrouted(resolution.reason)
            unrouted = UnroutedReport(report=report, reason=resolution.reason, detail=resolution.detail)
            return StageOutput("unrouted", [event_record(
                self.topics.unrouted, REPORT_UNROUTED, unrouted,
                key=report.report_id, event_id=event_id_for(report.report_id, REPORT_UNROUTED),
            )])
        if resolution.position_outside_commune_m is not None:
            self.on_position_outside(report.channel.value)
        enriched = EnrichedReport(report=report, jurisdiction=resolution)
        return StageOutput("enriched", [event_record(
            self.topics.enriched, REPORT_ENRICHED, enriched,
            key=dedup_area(report, resolution, self.reference.commune_position),
            event_id=event_id_for(report.report_id, REPORT_ENRICHED),
        )])


class CaseRouting(Protocol):
    async def route_report(self, record: InputRecord, report: EnrichedReport) -> str: ...


class Route:
    """An enriched report → its delivery identifiers opened → deduplicated into a case (streams/case_tables.py,
    which writes the case events)."""

    stage = Stage.ROUTE

    def __init__(self, router: CaseRouting, delivery_seal: DeliverySeal) -> None:
        self.router = router
        self.delivery_seal = delivery_seal

    channel_of = staticmethod(channel_label)

    async def __call__(self, record: InputRecord) -> StageOutput:
        enriched = cast(EnrichedReport, read_event(record, REPORT_ENRICHED).payload)
        try:
            enriched = self.delivery_seal.open(enriched)
        except UnreadableDelivery as error:
            raise StageFailure(ReasonCode.INVALID_PAYLOAD, str(error)) from error
        return StageOutput(await self.router.route_report(record, enriched))


def latest_report(case: CaseOpened | CaseUpdated | CaseLinked) -> EnrichedReport:
    return case.new_reports[-1] if isinstance(case, CaseUpdated) else case.report


def case_event_records(topics: Topics, event_type: EventType, case: CaseOpened | CaseUpdated | CaseLinked,
                       copies_to: tuple[str, ...] | None = None) -> list[Outgoing]:
    """A case event for its unit's queue, keyed by case id so a case's events stay in order, then the same event for
    each of ``copies_to`` (the département's drug-intelligence cell, CROSS, which every drug report also concerns):
    under the same case id, addressed to itself (so its own consumer applies it), with event ids of its own.

    ``copies_to`` is the route stage's decision (the case's CROSS); without it (a journal written before it was
    recorded) the latest report's CROSS."""
    if isinstance(case, CaseOpened):
        subject = case.case_id
    elif isinstance(case, CaseUpdated):
        subject = f"{case.case_id}:{case.case_version}"
    else:
        subject = f"{case.case_id}:{case.unit_id}:{case.report.report.report_id}"
    records = [event_record(
        topics.unit(case.unit_id), event_type, case,
        key=case.case_id, event_id=event_id_for(subject, event_type), subject=case.case_id,
    )]
    if copies_to is None:
        cross_unit_id = latest_report(case).jurisdiction.cross_unit_id
        copies_to = (cross_unit_id,) if cross_unit_id else ()
    for copy_unit_id in copies_to:
        if copy_unit_id == case.unit_id:
            continue
        copy = case.model_copy(update={"unit_id": copy_unit_id})
        records.append(event_record(
            topics.unit(copy_unit_id), event_type, copy,
            key=case.case_id, event_id=event_id_for(f"{copy_unit_id}:{subject}", event_type), subject=case.case_id,
        ))
    return records
