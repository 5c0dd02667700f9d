"""The one place that runs a stage on a record: counted in and out, timed, its records written (and the input offset
held until Kafka acknowledged them: streams/deliveries.py), or the record dead-lettered with the reason.

A record that makes a stage fail (``StageFailure``) goes to ``reports.dlq`` with its original bytes and the reason
code. Any other exception is a bug: it must not lose the record either, so the record is dead-lettered as an
internal error, its message (bounded) as the reason and its traceback in the worker's log, for a redrive once fixed.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from schemas.envelope import CASE_LINKED, CASE_OPENED, EventType
from schemas.events import CaseLinked, CaseOpened, CaseUpdated
from schemas.reasons import ReasonCode
from schemas.topics import Topics
from signalements.metrics import PipelineMetrics
from streams.dead_letter import build_dead_letter
from streams.deliveries import Deliveries, Outgoing
from streams.stages import (
    SOURCE,
    InputRecord,
    StageFailure,
    StageOutput,
    StageStep,
    case_event_records,
    latest_report,
)

log = logging.getLogger(__name__)

# An internal error's dead letter says what went wrong, bounded: the traceback is in the worker's log.
INTERNAL_ERROR_DETAIL_CHARS = 200


@dataclass(frozen=True)
class Handoff:
    """A stage's records for ``topic`` go straight to ``step`` in this process instead of through Kafka: the hop
    costs no produce, no consume and no commit (Faust's per-record cost is most of the worker's)."""

    topic: str
    step: StageStep


def handed_over(source: InputRecord, outgoing: Outgoing) -> InputRecord:
    """``outgoing`` as the next stage's input: at the source record's position, so its offset waits for what the
    next stage writes, and a dead letter of the next stage keeps the bytes a redrive sends to ``outgoing.topic``."""
    return InputRecord(topic=outgoing.topic, partition=source.partition, offset=source.offset,
                       timestamp=source.timestamp, key=outgoing.key, value=outgoing.value,
                       headers=outgoing.headers, tp=source.tp)


class StageRunner:
    def __init__(self, topics: Topics, metrics: PipelineMetrics, deliveries: Deliveries) -> None:
        self.topics = topics
        self.metrics = metrics
        self.deliveries = deliveries

    async def run(self, step: StageStep, record: InputRecord, handoff: Handoff | None = None) -> None:
        stage, channel = step.stage.value, step.channel_of(record)
        output = await self._process(step, record, channel)
        if output is None:
            return
        for outgoing in output.records:
            if handoff is not None and outgoing.topic == handoff.topic:
                await self.run(handoff.step, handed_over(record, outgoing))
            else:
                await self.deliveries.send(record, outgoing)
        self.metrics.records_out.labels(stage, channel, output.outcome).inc()

    async def _process(self, step: StageStep, record: InputRecord, channel: str) -> StageOutput | None:
        """The stage's output, or None once the record is dead-lettered."""
        stage = step.stage.value
        self.metrics.records_in.labels(stage, channel).inc()
        started = time.perf_counter()
        try:
            return await step(record)
        except StageFailure as failure:
            await self.dead_letter(step, record, channel, failure)
        except Exception as error:  # noqa: BLE001 (a bug must not lose the record: kept for replay after the fix)
            log.exception("%s: internal error on %s[%d]@%d; dead-lettered for a redrive once fixed",
                          stage, record.topic, record.partition, record.offset)
            detail = f"{type(error).__name__}: {error}"[:INTERNAL_ERROR_DETAIL_CHARS]
            await self.dead_letter(step, record, channel, StageFailure(ReasonCode.INTERNAL_ERROR, detail))
        finally:
            self.metrics.stage_duration.labels(stage).observe(time.perf_counter() - started)
        return None

    async def dead_letter(self, step: StageStep, record: InputRecord, channel: str, failure: StageFailure) -> None:
        letter = build_dead_letter(
            stage=step.stage.value, reason_code=failure.code, reason=failure.detail,
            topic=record.topic, partition=record.partition, offset=record.offset,
            key=record.key, value=record.value, headers=record.headers, source=SOURCE,
        )
        await self.deliveries.send(record, Outgoing(self.topics.dead_letter, letter.key, letter.value, letter.headers))
        self.metrics.records_failed.labels(step.stage.value, channel, failure.code).inc()
        self.metrics.dead_letters.labels(step.stage.value, failure.code).inc()


class CaseEventWriter:
    """The route stage's case events: on the unit's queue and its copies' (the CROSS), counted (cases opened,
    updated or linked, routing latency) once Kafka has acknowledged the unit's copy."""

    def __init__(self, topics: Topics, metrics: PipelineMetrics, deliveries: Deliveries) -> None:
        self.topics = topics
        self.metrics = metrics
        self.deliveries = deliveries

    async def __call__(self, source: InputRecord, event_type: EventType, case: CaseOpened | CaseUpdated | CaseLinked,
                       received_at: datetime | None, copies_to: tuple[str, ...] | None = None) -> None:
        latest = latest_report(case)
        where = latest.jurisdiction
        counters = {CASE_OPENED.name: self.metrics.cases_opened, CASE_LINKED.name: self.metrics.cases_linked}
        count = counters.get(event_type.name, self.metrics.cases_updated).labels(where.force.value, where.departement)
        latency = self.metrics.routing_latency.labels(latest.report.channel.value, where.force.value)

        def on_delivered() -> None:
            count.inc()
            if received_at is not None and event_type is not CASE_LINKED:
                latency.observe((datetime.now(UTC) - received_at).total_seconds())

        unit_copy, *copies = case_event_records(self.topics, event_type, case, copies_to)
        await self.deliveries.send(source, unit_copy, on_delivered)
        for record in copies:
            await self.deliveries.send(source, record)
