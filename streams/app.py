"""The Faust stream worker: one agent per stage.

    reports.raw.<channel> ──normalize──▶ reports.normalized ──enrich──▶ reports.enriched ──route──▶ unit.<unit_id>
            │                                   │
            └──▶ reports.dlq                    └──▶ reports.unrouted

Values stay JSON bytes (Faust has no pydantic codec) and are validated with pydantic at each stage. Every output is
a CloudEvent whose id is derived from the report, so a record processed twice (at-least-once delivery, a restart,
a rebalance) yields the same event ids and downstream consumers apply it once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import faust
from pydantic import ValidationError

from schemas.channels import Channel
from schemas.envelope import (
    BRIGADE_NUMERIQUE_SUBMISSION,
    CASE_OPENED,
    MONCOMMISSARIAT_SUBMISSION,
    REPORT_ENRICHED,
    REPORT_NORMALIZED,
    REPORT_UNROUTED,
    EnvelopeError,
    EventType,
    decode,
    encode,
    event_id_for,
)
from schemas.events import CaseOpened, CaseUpdated, UnroutedReport
from schemas.reasons import ReasonCode
from schemas.reports import CanonicalReport, EnrichedReport
from schemas.topics import Topics
from schemas.validation import describe_validation_error
from signalements.metrics import PipelineMetrics, Stage
from signalements.service_loop import CannotContinue, keep_running_async
from signalements.settings import Settings
from signalements.topic_admin import pipeline_topics
from streams.case_tables import CaseRouter, is_route_tick
from streams.dead_letter import build_dead_letter
from streams.deliveries import Deliveries, Outgoing, UnitQueues
from streams.jurisdiction import JurisdictionReference, Unrouted
from streams.normalize import NormalizationError, normalize_submission
from streams.offset_rewind import SignalementsApp
from streams.reference_table import ReferenceFollower

log = logging.getLogger(__name__)

SOURCE = "/signalements/worker"
# An internal error's dead letter says what went wrong, bounded: the traceback is in the worker's log.
INTERNAL_ERROR_DETAIL_CHARS = 200
SUBMISSION_TYPES: dict[Channel, EventType] = {
    Channel.MONCOMMISSARIAT: MONCOMMISSARIAT_SUBMISSION,
    Channel.BRIGADE_NUMERIQUE: BRIGADE_NUMERIQUE_SUBMISSION,
}


class StageFailure(Exception):
    """A record this stage cannot process: it goes to the dead-letter topic with ``code`` and ``detail``."""

    def __init__(self, code: ReasonCode, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


def create_app(settings: Settings, metrics: PipelineMetrics, reference: JurisdictionReference) -> faust.App:  # noqa: C901 (agents are closures; staged apart in the redesign)
    topics = Topics(settings.topic_namespace)
    app = SignalementsApp(
        settings.consumer_group(settings.worker_id),
        broker=[f"kafka://{server}" for server in settings.bootstrap_servers.split(",")],
        store="rocksdb://",
        datadir=str(settings.state_dir / "faust"),
        web_enabled=False,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication_factor,
        producer_acks=-1,
        broker_commit_interval=settings.worker_commit_interval_s,
        broker_session_timeout=settings.worker_session_timeout_s,
        consumer_auto_offset_reset="earliest",
        # Each raw topic has its own consumer offsets; nothing in the skeleton needs co-partitioned joins yet.
        topic_disable_leader=True,
        # Each worker keeps a standby copy of another's deduplication state: a takeover then reads no changelog.
        table_standby_replicas=1,
    )
    raw_topic = app.topic(*topics.raw_all, key_serializer="raw", value_serializer="raw")
    normalized_topic = app.topic(topics.normalized, key_serializer="raw", value_serializer="raw")
    enriched_topic = app.topic(topics.enriched, key_serializer="raw", value_serializer="raw")
    # What the stages write goes through deliveries (streams/deliveries.py), never through Faust's attached sends.
    # The fixed topics exist before the worker starts; a unit queue is made ready before its first record.
    deliveries = Deliveries(app, UnitQueues(settings, ready=set(pipeline_topics(settings))))
    app.deliveries = deliveries

    # The competence table, held by every worker: all of the compacted reference topic, then its live changes.
    follower = ReferenceFollower(
        settings.bootstrap_servers, topics.reference_competence, reference,
        on_outcome=lambda outcome: metrics.reference_updates.labels(outcome).inc(),
    )

    @app.task
    async def follow_reference() -> None:
        # Through a broker outage the follower starts again (reading the compacted topic again is harmless).
        try:
            await keep_running_async(follower.run, "following the reference topic")
        except CannotContinue as error:
            await app.crash(error)
            raise

    async def send_event(
        source: faust.EventT | None,
        topic: str,
        event_type: EventType,
        payload: Any,
        *,
        key: str,
        event_id: str,
        subject: str | None = None,
        on_delivered: Callable[[], None] | None = None,
    ) -> None:
        message = encode(event_type, payload, event_id=event_id, source=SOURCE, key=key, subject=subject)
        record = Outgoing(topic, key.encode(), message.value, list(message.headers.items()))
        await deliveries.send(source, record, on_delivered)

    async def send_dead_letter(stage: Stage, channel: str, event: faust.EventT, failure: StageFailure) -> None:
        message = event.message
        letter = build_dead_letter(
            stage=stage.value,
            reason_code=failure.code,
            reason=failure.detail,
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            key=message.key,
            value=message.value,
            headers=message.headers,
            source=SOURCE,
        )
        await deliveries.send(event, Outgoing(topics.dead_letter, letter.key, letter.value, list(letter.headers)))
        metrics.records_failed.labels(stage.value, channel, failure.code).inc()
        metrics.dead_letters.labels(stage.value, failure.code).inc()

    async def process(stage: Stage, channel: str, event: faust.EventT, step: Callable[[], Awaitable[str]]) -> None:
        """Run one stage on one record: count it, time it, and dead-letter it if it cannot be processed."""
        metrics.records_in.labels(stage.value, channel).inc()
        started = time.perf_counter()
        try:
            outcome = await step()
        except StageFailure as failure:
            await send_dead_letter(stage, channel, event, failure)
        except Exception as error:  # a bug must not lose the record: kept for replay after the fix
            message = event.message
            log.exception("%s: internal error on %s[%d]@%d; dead-lettered for a redrive once fixed",
                          stage.value, message.topic, message.partition, message.offset)
            detail = f"{type(error).__name__}: {error}"[:INTERNAL_ERROR_DETAIL_CHARS]
            await send_dead_letter(stage, channel, event, StageFailure(ReasonCode.INTERNAL_ERROR, detail))
        else:
            metrics.records_out.labels(stage.value, channel, outcome).inc()
        finally:
            metrics.stage_duration.labels(stage.value).observe(time.perf_counter() - started)

    def read(event: faust.EventT, expected: EventType) -> Any:
        message = event.message
        try:
            decoded = decode(message.headers, message.key, message.value)
        except EnvelopeError as error:
            raise StageFailure(ReasonCode.INVALID_ENVELOPE, str(error)) from error
        except ValidationError as error:
            raise StageFailure(ReasonCode.INVALID_PAYLOAD, describe_validation_error(error)) from error
        if decoded.event_type != expected:
            raise StageFailure(ReasonCode.UNEXPECTED_EVENT_TYPE, f"{decoded.event_type.ce_type} on {message.topic}")
        return decoded

    @app.agent(raw_topic, name="normalize")
    async def normalize(stream: faust.StreamT) -> None:
        channels = {topics.raw(channel): channel for channel in Channel}
        async for event in stream.events():
            channel = channels[event.message.topic]

            async def step(event: faust.EventT = event, channel: Channel = channel) -> str:
                decoded = read(event, SUBMISSION_TYPES[channel])
                try:
                    report = normalize_submission(decoded.payload, decoded.time)
                except NormalizationError as error:
                    raise StageFailure(ReasonCode.NORMALIZATION, str(error)) from error
                await send_event(
                    event, topics.normalized, REPORT_NORMALIZED, report,
                    key=report.report_id, event_id=event_id_for(report.report_id, REPORT_NORMALIZED),
                )
                return "normalized"

            await process(Stage.NORMALIZE, channel.value, event, step)

    @app.agent(normalized_topic, name="enrich")
    async def enrich(stream: faust.StreamT) -> None:
        async for event in stream.events():

            async def step(event: faust.EventT = event) -> str:
                report: CanonicalReport = read(event, REPORT_NORMALIZED).payload
                await follower.caught_up.wait()  # immediate once the reference topic has been read
                resolution = reference.resolve_jurisdiction(report.place)
                if isinstance(resolution, Unrouted):
                    unrouted = UnroutedReport(report=report, reason=resolution.reason, detail=resolution.detail)
                    await send_event(
                        event, topics.unrouted, REPORT_UNROUTED, unrouted,
                        key=report.report_id, event_id=event_id_for(report.report_id, REPORT_UNROUTED),
                    )
                    metrics.unrouted.labels(resolution.reason).inc()
                    return "unrouted"
                enriched = EnrichedReport(report=report, jurisdiction=resolution)
                # Keyed by unit: every report a unit may have to merge lands on one partition.
                await send_event(
                    event, topics.enriched, REPORT_ENRICHED, enriched,
                    key=resolution.unit_id, event_id=event_id_for(report.report_id, REPORT_ENRICHED),
                )
                return "enriched"

            await process(Stage.ENRICH, _channel_of(event), event, step)

    async def send_case_event(
        source: faust.EventT, event_type: EventType, case: CaseOpened | CaseUpdated, received_at: datetime | None,
    ) -> None:
        """A case event on its unit's queue, keyed by case id so a case's events stay in order; counted (cases
        opened or updated, routing latency) once Kafka has acknowledged it."""
        latest = case.report if isinstance(case, CaseOpened) else case.new_reports[-1]
        where = latest.jurisdiction
        counter = metrics.cases_opened if event_type is CASE_OPENED else metrics.cases_updated
        count = counter.labels(where.force.value, where.departement)
        latency = metrics.routing_latency.labels(latest.report.channel.value, where.force.value)

        def on_delivered() -> None:
            count.inc()
            if received_at is not None:
                latency.observe((datetime.now(UTC) - received_at).total_seconds())

        subject = case.case_id if event_type is CASE_OPENED else f"{case.case_id}:{case.case_version}"
        await send_event(
            source, topics.unit(case.unit_id), event_type, case,
            key=case.case_id, event_id=event_id_for(subject, event_type), subject=case.case_id,
            on_delivered=on_delivered,
        )
        # Every drug report also concerns the département's drug-intelligence cell (CROSS): it gets the same case,
        # under the same case id, addressed to itself (so its own consumer applies it), with event ids of its own.
        cross_unit_id = where.cross_unit_id
        if cross_unit_id and cross_unit_id != case.unit_id:
            copy = case.model_copy(update={"unit_id": cross_unit_id})
            await send_event(
                source, topics.unit(cross_unit_id), event_type, copy,
                key=case.case_id, event_id=event_id_for(f"{cross_unit_id}:{subject}", event_type),
                subject=case.case_id,
            )

    case_router = CaseRouter(app, settings, metrics, enriched_topic, send_case_event)

    @app.agent(enriched_topic, name="route")
    async def route(stream: faust.StreamT) -> None:
        # Deduplication (streams/deduplication.py, streams/case_tables.py): a report opens a case or updates one.
        async for event in stream.events():
            if is_route_tick(event.message.headers):
                await case_router.on_tick(event)
                continue

            async def step(event: faust.EventT = event) -> str:
                enriched: EnrichedReport = read(event, REPORT_ENRICHED).payload
                return await case_router.route_report(event, enriched)

            await process(Stage.ROUTE, _channel_of(event), event, step)

    return app


def _channel_of(event: faust.EventT) -> str:
    """The channel label of an internal record, read cheaply from its JSON without a full parse."""
    value = event.message.value or b""
    for channel in Channel:
        if f'"channel":"{channel.value}"'.encode() in value:
            return channel.value
    return "unknown"
