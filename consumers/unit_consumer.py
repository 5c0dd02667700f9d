"""The per-unit consumer: reads ``unit.<unit_id>`` into the unit's case store.

One consumer group per unit (``unit-consumer.<unit_id>``). Offsets are committed only after the store has committed,
so a crash between the two replays a batch that the store then ignores (events are applied idempotently): no loss,
no duplicate. An event it cannot read is parked in the store with the reason, never blocks the queue.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime

from kafka import KafkaConsumer
from kafka.consumer.fetcher import ConsumerRecord
from pydantic import ValidationError

from consumers.case_store import CaseStore
from schemas.envelope import CASE_OPENED, EnvelopeError, decode, read_attributes
from schemas.events import CaseOpened
from schemas.topics import Topics
from schemas.validation import describe_validation_error
from signalements.metrics import PipelineMetrics, Stage
from signalements.settings import Settings
from signalements.topic_admin import ensure_topics, unit_topic_config

log = logging.getLogger(__name__)


class UnitConsumer:
    def __init__(self, settings: Settings, unit_id: str, metrics: PipelineMetrics) -> None:
        self.unit_id = unit_id
        self.topic = Topics(settings.topic_namespace).unit(unit_id)
        self.metrics = metrics
        self.store = CaseStore(settings.unit_store_dir / f"{unit_id}.sqlite3")
        ensure_topics(settings, {self.topic: unit_topic_config(settings)})
        self._consumer = KafkaConsumer(
            self.topic,
            bootstrap_servers=settings.bootstrap_servers.split(","),
            group_id=settings.consumer_group(f"unit-consumer.{unit_id}"),
            client_id=f"unit-consumer.{unit_id}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=500,
        )

    def run(self, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                batches = self._consumer.poll(timeout_ms=500)
                records = [record for batch in batches.values() for record in batch]
                if records:
                    self._store_batch(records)
                    self._consumer.commit()  # only after the store's commit
        finally:
            self._consumer.close(autocommit=False)
            self.store.close()

    def _store_batch(self, records: list[ConsumerRecord]) -> None:
        stored: list[CaseOpened] = []
        try:
            for record in records:
                case = self._apply(record)
                if case is not None:
                    stored.append(case)
            self.store.commit()
        except Exception:
            self.store.rollback()
            raise
        now = datetime.now(UTC)
        for case in stored:
            report = case.report.report
            self.metrics.end_to_end_latency.labels(
                report.channel.value, case.report.jurisdiction.force.value
            ).observe((now - report.received_at).total_seconds())

    def _apply(self, record: ConsumerRecord) -> CaseOpened | None:
        self.metrics.records_in.labels(Stage.CONSUME.value, "all").inc()
        try:
            decoded = decode(record.headers, record.key, record.value)
            if decoded.event_type != CASE_OPENED:
                raise EnvelopeError(f"unsupported event type {decoded.event_type.ce_type}")
        except (EnvelopeError, ValidationError) as error:
            reason = describe_validation_error(error) if isinstance(error, ValidationError) else str(error)
            self.store.park(
                record.topic, record.partition, record.offset, reason, read_attributes(record.headers), record.value
            )
            self.metrics.records_failed.labels(Stage.CONSUME.value, "all", "parked").inc()
            return None
        case: CaseOpened = decoded.payload  # type: ignore[assignment]
        channel = case.report.report.channel.value
        if self.store.apply_case_opened(decoded.event_id, case):
            self.metrics.records_out.labels(Stage.CONSUME.value, channel, "stored").inc()
            return case
        self.metrics.records_out.labels(Stage.CONSUME.value, channel, "duplicate").inc()
        return None


def run_unit_consumers(settings: Settings, unit_ids: list[str], stop: threading.Event | None = None) -> None:
    """Run one consumer per unit in this process until ``stop`` is set (or SIGINT)."""
    from signalements import __version__

    stop = stop or threading.Event()
    metrics = PipelineMetrics()
    metrics.set_build_info(__version__)
    metrics.serve(settings.metrics_host, settings.consumer_metrics_port)
    consumers = [UnitConsumer(settings, unit_id, metrics) for unit_id in unit_ids]
    threads = [threading.Thread(target=c.run, args=(stop,), name=f"unit-{c.unit_id}") for c in consumers]
    for thread in threads:
        thread.start()
    log.info("consuming %s; stores in %s", ", ".join(unit_ids), settings.unit_store_dir)
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
