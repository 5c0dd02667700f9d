"""The way back into the pipeline for what the worker set aside: dead letters and unrouted reports.

Once the cause is fixed (a bug in a stage, a commune missing from the competence table), an operator lists what is
held and sends it again:

- a dead letter (``reports.dlq``) goes back to the topic it was read from, with its original key, value and headers,
  so the stage that refused it reads it again;
- an unrouted report (``reports.unrouted``) goes back to ``reports.normalized`` as the canonical report it was,
  under the event id of its first pass, so the enrich stage resolves it against the current competence table.

Sending a record again is safe: every event the worker derives from a report has an id derived from the report, the
route stage drops a report it has already decided, and unit consumers apply each event id once. What fails again is
held again, and never twice over: a redriven record carries a ``signalements-redriven-from`` header naming the dead
letter it came from, which its next dead letter keeps (as ``original-signalements-redriven-from``); a letter that a
newer one names is superseded and not sent again. Of an unrouted report only its latest record counts.

A run reads each topic up to its end as it was when the run began, so it ends even though it makes new records.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from cloudevents.core.bindings.kafka import KafkaMessage
from kafka import TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import KafkaError
from pydantic import BaseModel, ConfigDict, ValidationError

from producers.report_publisher import PublishError, ReportPublisher
from schemas.envelope import (
    DEAD_LETTER_TYPE,
    REDRIVEN_FROM_HEADER,
    REPORT_NORMALIZED,
    REPORT_UNROUTED,
    EnvelopeError,
    decode,
    encode,
    event_id_for,
    read_attributes,
)
from schemas.events import UnroutedReport
from schemas.topics import Topics
from signalements.kafka_clients import new_consumer
from signalements.kafka_security import Role
from signalements.settings import Settings
from streams.dead_letter import ORIGINAL_PREFIX

SOURCE = "/signalements/redrive"


class HeldKind(StrEnum):
    DEAD_LETTER = "dead-letter"
    UNROUTED = "unrouted"


class RedriveError(RuntimeError):
    """Kafka could not be read or did not acknowledge what was sent: nothing is lost, run it again."""


class HeldRecord(BaseModel):
    """A record the worker set aside, as an operator sees it."""

    model_config = ConfigDict(frozen=True)

    position: str  # "<topic>:<partition>:<offset>" on the holding topic
    held_at: datetime | None
    stage: str | None  # dead letters: the stage that refused the record
    reason_code: str
    reason: str
    origin: str  # dead letters: the refused record's "<topic>:<partition>:<offset>"; unrouted: the report id
    send_to: str | None  # where a redrive sends it; None when it cannot be sent back (see reason)
    superseded: bool = False  # a newer record holds the same thing: only that one is sent


@dataclass(frozen=True)
class Outgoing:
    topic: str
    message: KafkaMessage


@dataclass
class RedriveSummary:
    kind: HeldKind
    dry_run: bool
    held: int = 0
    matched: int = 0
    superseded: int = 0
    not_redrivable: int = 0
    redriven: int = 0
    by_reason: Counter[str] = field(default_factory=Counter)
    by_destination: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value, "dry_run": self.dry_run, "held": self.held, "matched": self.matched,
            "superseded": self.superseded, "not_redrivable": self.not_redrivable,
            ("would_redrive" if self.dry_run else "redriven"): self.redriven,
            "by_reason": dict(self.by_reason), "by_destination": dict(self.by_destination),
        }


def position_of(record: ConsumerRecord) -> str:
    return f"{record.topic}:{record.partition}:{record.offset}"


def read_to_current_end(settings: Settings, topic: str, timeout_s: float = 120.0) -> Iterator[ConsumerRecord]:
    """Every record of ``topic`` from its beginning to its end as it is now, in order per partition, no group."""
    try:
        consumer = new_consumer(
            settings, Role.ADMIN, "signalements-redrive", request_timeout_ms=int(settings.intake_produce_timeout_s * 1000) + 5000,
        )
    except KafkaError as error:
        raise RedriveError(f"Kafka is unreachable: {error}") from error
    try:
        assigned = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not assigned:
            return
        consumer.assign(assigned)
        consumer.seek_to_beginning(*assigned)
        ends = consumer.end_offsets(assigned)
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < ends[tp] for tp in assigned):
            if time.monotonic() > deadline:
                raise RedriveError(f"reading {topic} to its end took more than {timeout_s:.0f} s")
            for tp, records in consumer.poll(timeout_ms=500, max_records=5000).items():
                yield from (record for record in records if record.offset < ends[tp])
    except KafkaError as error:
        raise RedriveError(f"reading {topic} failed: {error}") from error
    finally:
        consumer.close(autocommit=False)


def _time(attributes: dict[str, str]) -> datetime | None:
    try:
        return datetime.fromisoformat(attributes["ce_time"])
    except (KeyError, ValueError):
        return None


def from_dead_letter(record: ConsumerRecord, inputs: set[str]) -> tuple[HeldRecord, Outgoing | None]:
    """``inputs``: the worker's input topics, the only places a letter is sent back to."""
    attributes = read_attributes(record.headers)
    if attributes.get("ce_type") != DEAD_LETTER_TYPE:
        held = HeldRecord(
            position=position_of(record), held_at=None, stage=None, reason_code="not_a_dead_letter",
            reason=f"ce_type {attributes.get('ce_type')!r}", origin="", send_to=None,
        )
        return held, None
    origin_topic = attributes.get("ce_dlqtopic", "")
    send_to = origin_topic if origin_topic in inputs else None
    held = HeldRecord(
        position=position_of(record),
        held_at=_time(attributes),
        stage=attributes.get("ce_dlqstage"),
        reason_code=attributes.get("ce_dlqreasoncode", ""),
        reason=attributes.get("ce_dlqreason", ""),
        origin=f"{origin_topic}:{attributes.get('ce_dlqpartition', '?')}:{attributes.get('ce_dlqoffset', '?')}",
        send_to=send_to,
    )
    if send_to is None:
        return held, None
    headers = [
        (name[len(ORIGINAL_PREFIX):], bytes(value))
        for name, value in record.headers
        if name.startswith(ORIGINAL_PREFIX) and name != ORIGINAL_PREFIX + REDRIVEN_FROM_HEADER
    ]
    headers.append((REDRIVEN_FROM_HEADER, position_of(record).encode()))
    return held, Outgoing(send_to, KafkaMessage(headers=dict(headers), key=record.key, value=record.value or b""))


def superseded_dead_letters(records: list[ConsumerRecord]) -> set[str]:
    """Positions of the letters whose redriven record failed again (and so has a newer letter)."""
    return {
        bytes(value).decode()
        for record in records
        for name, value in record.headers
        if name == ORIGINAL_PREFIX + REDRIVEN_FROM_HEADER
    }


def from_unrouted(record: ConsumerRecord, topics: Topics) -> tuple[HeldRecord, Outgoing | None]:
    attributes = read_attributes(record.headers)
    try:
        decoded = decode(record.headers, record.key, record.value)
        if decoded.event_type != REPORT_UNROUTED:
            raise EnvelopeError(f"{decoded.event_type.ce_type} on {record.topic}")
    except (EnvelopeError, ValidationError) as error:
        held = HeldRecord(
            position=position_of(record), held_at=_time(attributes), stage="enrich", reason_code="unreadable",
            reason=str(error)[:300], origin=(record.key or b"").decode("utf-8", "replace"), send_to=None,
        )
        return held, None
    unrouted: UnroutedReport = decoded.payload  # type: ignore[assignment]
    report = unrouted.report
    held = HeldRecord(
        position=position_of(record), held_at=decoded.time, stage="enrich", reason_code=unrouted.reason,
        reason=unrouted.detail, origin=report.report_id, send_to=topics.normalized,
    )
    message = encode(
        REPORT_NORMALIZED, report, event_id=event_id_for(report.report_id, REPORT_NORMALIZED), source=SOURCE,
        key=report.report_id,
    )
    return held, Outgoing(topics.normalized, message)


def read_held(settings: Settings, kind: HeldKind) -> list[tuple[HeldRecord, Outgoing | None]]:
    """What is held now, oldest first per partition, each marked superseded when a newer record holds the same."""
    topics = Topics(settings.topic_namespace)
    if kind is HeldKind.DEAD_LETTER:
        records = list(read_to_current_end(settings, topics.dead_letter))
        superseded = superseded_dead_letters(records)
        inputs = {*topics.raw_all, topics.normalized, topics.enriched}
        held = [from_dead_letter(record, inputs) for record in records]
        return [(h.model_copy(update={"superseded": h.position in superseded}), out) for h, out in held]
    held = [from_unrouted(record, topics) for record in read_to_current_end(settings, topics.unrouted)]
    latest = {h.origin: h.position for h, _ in held}  # one report's records share a partition: the last is the latest
    return [(h.model_copy(update={"superseded": latest[h.origin] != h.position}), out) for h, out in held]


def matches(held: HeldRecord, reasons: Collection[str], stages: Collection[str]) -> bool:
    return (not reasons or held.reason_code in reasons) and (not stages or held.stage in stages)


def redrive(
    settings: Settings, kind: HeldKind, *, reasons: Collection[str] = (), stages: Collection[str] = (),
    dry_run: bool = False,
) -> RedriveSummary:
    """Send the held records that match back into the pipeline; raise RedriveError unless Kafka took them all."""
    summary = RedriveSummary(kind=kind, dry_run=dry_run)
    sending: list[Outgoing] = []
    for held, outgoing in read_held(settings, kind):
        summary.held += 1
        if not matches(held, reasons, stages):
            continue
        summary.matched += 1
        if held.superseded:
            summary.superseded += 1
        elif outgoing is None:
            summary.not_redrivable += 1
        else:
            sending.append(outgoing)
            summary.by_reason[held.reason_code] += 1
            summary.by_destination[outgoing.topic] += 1
    if not dry_run:
        _send_all(settings, sending)
    summary.redriven = len(sending)  # only once Kafka has acknowledged them all (or would, in a dry run)
    return summary


def _send_all(settings: Settings, sending: list[Outgoing]) -> None:
    publisher = ReportPublisher(
        settings, Role.ADMIN, settings.intake_produce_timeout_s, client_id="signalements-redrive"
    )
    acknowledged = 0
    try:
        futures = [publisher.publish_pipelined(outgoing.topic, outgoing.message) for outgoing in sending]
        for future in futures:
            future.get(timeout=settings.intake_produce_timeout_s + 5)
            acknowledged += 1
    except (PublishError, KafkaError) as error:
        raise RedriveError(
            f"Kafka acknowledged {acknowledged} of {len(sending)} records ({error}); running the redrive again is safe"
        ) from error
    finally:
        publisher.close()
