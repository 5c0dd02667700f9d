"""The per-unit consumer: reads ``unit.<unit_id>`` into the unit's case store.

One consumer group per unit (``unit-consumer.<unit_id>``), one thread per unit, several units per process. Offsets
are committed only after the store has committed, so a crash between the two replays a batch that the store then
ignores (events are applied idempotently by event id): no loss, no duplicate. An event it cannot read is parked in
the store with the reason and counted: it never crashes the consumer and never blocks the queue.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime

from kafka import KafkaConsumer
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import KafkaError
from pydantic import ValidationError

from consumers.case_store import ApplyOutcome, CaseStore, CaseWriter, store_url_for
from schemas.envelope import (
    CASE_HANDLED,
    CASE_LINKED,
    CASE_OPENED,
    CASE_UPDATED,
    DecodedEvent,
    EnvelopeError,
    UnknownEventType,
    UnsupportedSchema,
    decode,
    read_attributes,
)
from schemas.events import CaseOpened, CaseUpdated
from schemas.reasons import ReasonCode
from schemas.reports import EnrichedReport
from schemas.topics import Topics
from schemas.validation import describe_validation_error
from signalements.commit_after_store import CommitAfterStore
from signalements.kafka_clients import new_consumer
from signalements.kafka_link import KafkaLink, KafkaProbe, readiness_of
from signalements.kafka_security import check_access, unit_role
from signalements.metrics import ConsumerMetrics, PipelineMetrics, Stage
from signalements.service_loop import CannotContinue
from signalements.settings import Settings
from signalements.topic_admin import ensure_topics, unit_topic_config

log = logging.getLogger(__name__)

UNIT_EVENT_TYPES = (CASE_OPENED, CASE_UPDATED, CASE_HANDLED, CASE_LINKED)
# Exit status of the fault-injection point, so a test can tell the injected crash from any other failure.


class Unreadable(Exception):
    def __init__(self, code: ReasonCode, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


def read_unit_event(record: ConsumerRecord, unit_id: str | None) -> DecodedEvent:
    """Decode a unit-queue record, or raise Unreadable with a bounded reason code and a precise detail."""
    try:
        decoded = decode(record.headers, record.key, record.value)
    except ValidationError as error:
        raise Unreadable(ReasonCode.INVALID_PAYLOAD, describe_validation_error(error)) from error
    except UnsupportedSchema as error:
        raise Unreadable(ReasonCode.UNSUPPORTED_SCHEMA, str(error)) from error
    except UnknownEventType as error:
        raise Unreadable(ReasonCode.UNEXPECTED_EVENT_TYPE, str(error)) from error
    except EnvelopeError as error:
        raise Unreadable(ReasonCode.INVALID_ENVELOPE, str(error)) from error
    except Exception as error:  # whatever else a hostile record triggers must not stop the queue
        raise Unreadable(ReasonCode.INVALID_PAYLOAD, f"{type(error).__name__}: {error}") from error
    if decoded.event_type not in UNIT_EVENT_TYPES:
        raise Unreadable(ReasonCode.UNEXPECTED_EVENT_TYPE, f"{decoded.event_type.ce_type} does not belong on a unit queue")
    payload_unit = getattr(decoded.payload, "unit_id", None)
    if unit_id is not None and payload_unit != unit_id:
        raise Unreadable(ReasonCode.WRONG_UNIT, f"event for unit {payload_unit!r} on the queue of {unit_id!r}")
    return decoded


class LagBoard:
    """Lag per partition summed over this process's units (see ConsumerMetrics)."""

    def __init__(self, metrics: ConsumerMetrics) -> None:
        self._metrics = metrics
        self._lock = threading.Lock()
        self._lags: dict[tuple[str, int], int] = {}

    def report(self, unit_id: str, lags: dict[int, int]) -> None:
        with self._lock:
            for partition, lag in lags.items():
                self._lags[(unit_id, partition)] = lag
            for partition in {p for _, p in self._lags}:
                total = sum(lag for (_, p), lag in self._lags.items() if p == partition)
                self._metrics.lag.labels(str(partition)).set(total)


class OpenCasesBoard:
    """Open cases by force and département, summed over this process's territorial units.

    A CROSS holds copies of its département's cases: counting them too would count each point twice.
    """

    def __init__(self, metrics: PipelineMetrics) -> None:
        self._metrics = metrics
        self._lock = threading.Lock()
        self._counts: dict[str, dict[tuple[str, str], int]] = {}

    def report(self, unit_id: str, counts: dict[tuple[str, str], int]) -> None:
        if unit_id.startswith("cross-"):
            return
        with self._lock:
            self._counts[unit_id] = counts
            places = {place for per_unit in self._counts.values() for place in per_unit}
            for force, departement in places:
                total = sum(per_unit.get((force, departement), 0) for per_unit in self._counts.values())
                self._metrics.open_cases.labels(force, departement).set(total)


class UnitConsumer:
    def __init__(
        self, settings: Settings, unit_id: str, metrics: PipelineMetrics, consumer_metrics: ConsumerMetrics,
        lag_board: LagBoard, open_cases_board: OpenCasesBoard | None = None, link: KafkaLink | None = None,
    ) -> None:
        self.unit_id = unit_id
        self.open_cases_board = open_cases_board
        self.topic = Topics(settings.topic_namespace).unit(unit_id)
        self.metrics = metrics
        self.consumer_metrics = consumer_metrics
        self.lag_board = lag_board
        self.store = CaseStore.open(
            store_url_for(settings.consumer_database_url, settings.unit_store_dir, unit_id), unit_id
        )
        self.settings = settings
        self.link = link or KafkaLink(None, f"unit consumer {unit_id}")

    def run(self, stop: threading.Event) -> None:
        """Consume until ``stop``; a failed session (broker gone, store error) is retried with new clients."""
        loop = CommitAfterStore(f"unit consumer {self.unit_id}", self._new_consumer, self.store_batch, self.link,
                                after_commit=self._report_open_cases, after_poll=self._report_lag)
        try:
            loop.run(stop)
        finally:
            self.store.close()

    def _new_consumer(self) -> KafkaConsumer:
        # Create the queue if the router has not yet: subscribing to a missing topic would wait for nothing.
        ensure_topics(self.settings, unit_role(self.unit_id), {self.topic: unit_topic_config(self.settings)})
        return new_consumer(
            self.settings, unit_role(self.unit_id), f"unit-consumer.{self.unit_id}", self.topic,
            group_id=self.settings.consumer_group(f"unit-consumer.{self.unit_id}"),
            auto_offset_reset="earliest",
            max_poll_records=500,
        )

    def _report_open_cases(self) -> None:
        if self.open_cases_board is not None:
            self.open_cases_board.report(self.unit_id, self.store.open_cases_by_place())

    def store_batch(self, records: list[ConsumerRecord]) -> None:
        """Apply a polled batch in one store transaction (committed on return, rolled back if it raises)."""
        started = time.perf_counter()
        applied: list[tuple[DecodedEvent, ApplyOutcome]] = []
        with self.store.transaction() as writer:
            for record in records:
                self.metrics.records_in.labels(Stage.CONSUME.value, "all").inc()
                result = self._apply(writer, record)
                if result is not None:
                    applied.append(result)
        self.consumer_metrics.store_duration.labels(self.store.backend).observe(time.perf_counter() - started)
        now = datetime.now(UTC)
        for decoded, outcome in applied:
            self._count(decoded, outcome, now)

    def _apply(self, writer: CaseWriter, record: ConsumerRecord) -> tuple[DecodedEvent, ApplyOutcome] | None:
        try:
            decoded = read_unit_event(record, self.unit_id)
        except Unreadable as unreadable:
            writer.park(
                topic=record.topic, partition=record.partition, offset=record.offset,
                reason_code=unreadable.code.value, reason=unreadable.detail,
                headers=read_attributes(record.headers), value=record.value,
            )
            log.warning("parked %s[%d]@%d: %s", record.topic, record.partition, record.offset, unreadable.code.value)
            self.metrics.records_failed.labels(Stage.CONSUME.value, "all", "parked").inc()
            self.consumer_metrics.parked.labels(unreadable.code.value).inc()
            ce_type = read_attributes(record.headers).get("ce_type", "")
            known = {t.ce_type: t.name for t in UNIT_EVENT_TYPES}
            self.consumer_metrics.events.labels(known.get(ce_type, "other"), "parked").inc()
            return None
        return decoded, writer.apply(decoded)

    def _count(self, decoded: DecodedEvent, outcome: ApplyOutcome, now: datetime) -> None:
        self.consumer_metrics.events.labels(decoded.event_type.name, outcome.value).inc()
        payload = decoded.payload
        reports: list[EnrichedReport] = []
        if isinstance(payload, CaseOpened):
            reports = [payload.report]
        elif isinstance(payload, CaseUpdated):
            reports = list(payload.new_reports)
        for enriched in reports:
            channel = enriched.report.channel.value
            if outcome in (ApplyOutcome.STORED, ApplyOutcome.UPDATED):
                self.metrics.records_out.labels(Stage.CONSUME.value, channel, "stored").inc()
                self.metrics.end_to_end_latency.labels(channel, enriched.jurisdiction.force.value).observe(
                    (now - enriched.report.received_at).total_seconds()
                )
            else:
                self.metrics.records_out.labels(Stage.CONSUME.value, channel, outcome.value).inc()

    def _report_lag(self, consumer: KafkaConsumer) -> None:
        lags: dict[int, int] = {}
        try:
            for tp in consumer.assignment():
                highwater = consumer.highwater(tp)
                if highwater is None:
                    continue
                lags[tp.partition] = max(0, highwater - consumer.position(tp))
        except KafkaError as error:
            # position() asks the broker when it does not know: while the broker is away the lag waits, the queue
            # does not (the lag exporter reads every group's lag from the broker anyway).
            log.debug("unit consumer %s: lag not read: %s", self.unit_id, type(error).__name__)
            return
        self.lag_board.report(self.unit_id, lags)


def run_unit_consumers(settings: Settings, unit_ids: list[str], stop: threading.Event | None = None) -> None:
    """Run one consumer per unit in this process until ``stop`` is set (or SIGINT).

    A unit whose consumer fails (the broker or its store gone) is retried with backoff on its own thread; the other
    units go on. Only a failure that retrying cannot mend (``CannotContinue``) stops every unit and is raised, so
    the process exits non-zero and says why.
    """
    from signalements import __version__

    stop = stop or threading.Event()
    for unit_id in unit_ids:  # a refused credential is a configuration error: said at once, never retried
        check_access(settings, unit_role(unit_id))
    metrics = PipelineMetrics()
    metrics.set_build_info(__version__)
    consumer_metrics = ConsumerMetrics(metrics.registry)
    lag_board = LagBoard(consumer_metrics)
    open_cases_board = OpenCasesBoard(metrics)
    link = KafkaLink(metrics.kafka_connected, "unit consumers")
    KafkaProbe(settings, unit_role(unit_ids[0]), link).start(stop)
    metrics.serve(settings.metrics_host, settings.consumer_metrics_port, readiness_of(link))
    consumers = [
        UnitConsumer(settings, unit_id, metrics, consumer_metrics, lag_board, open_cases_board, link)
        for unit_id in unit_ids
    ]
    failures: list[BaseException] = []

    def run_one(consumer: UnitConsumer) -> None:
        try:
            consumer.run(stop)
        except CannotContinue as error:
            log.error("unit consumer %s cannot go on: %s", consumer.unit_id, error)
            failures.append(error)
            stop.set()
        except BaseException as error:  # keep_running retries everything else: this is a bug, said loudly
            log.exception("unit consumer %s failed", consumer.unit_id)
            failures.append(error)
            stop.set()

    threads = [threading.Thread(target=run_one, args=(c,), name=f"unit-{c.unit_id}") for c in consumers]
    for thread in threads:
        thread.start()
    log.info("consuming %s (%s store)", ", ".join(unit_ids), consumers[0].store.backend if consumers else "-")
    try:
        while any(thread.is_alive() for thread in threads):
            for thread in threads:
                thread.join(timeout=0.5)
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    if failures:
        raise RuntimeError(f"{len(failures)} unit consumer(s) failed") from failures[0]
