"""``signalements bench-consumer``: how many cases one unit consumer process stores per second, per store backend.

The unit queue is filled first (synthetic case openings, each with one update, in the real envelope), then one
consumer (the service's own code: UnitConsumer) reads it from the start into a fresh store; the figure is events
applied per second from the first event committed to the last (joining the consumer group is left out). One JSON line per backend.
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from prometheus_client import CollectorRegistry
from pydantic import BaseModel

from consumers.case_events import publish
from consumers.unit_consumer import LagBoard, UnitConsumer
from devkit.local_broker import LocalCluster
from devkit.synthetic_cases import PARIS_11, case_opened, case_updated
from devkit.throwaway_postgres import create_database, throwaway_postgres
from ops.access_control import AccessControl, unit_roles
from schemas.topics import Topics
from signalements.kafka_clients import new_producer
from signalements.kafka_security import Role
from signalements.metrics import ConsumerMetrics, PipelineMetrics
from signalements.settings import Settings
from signalements.topic_admin import ensure_topics, unit_topic_config


class ConsumerLagResult(BaseModel):
    """Under a steady offered load: from an event's report time (set when it is produced) to its store commit."""

    backend: str
    mode: str = "lag_under_load"
    offered_events_per_second: float
    events_offered: int
    latency_samples: int
    latency_mean_seconds: float
    latency_p50_seconds_at_most: float
    latency_p99_seconds_at_most: float


class ConsumerBenchResult(BaseModel):
    backend: str
    cases: int
    events: int
    seconds: float
    events_per_second: float
    cases_per_second: float


@contextmanager
def _broker(settings: Settings) -> Iterator[None]:
    """The configured cluster, or the local broker (started for the run if it is not running)."""
    if not settings.uses_local_broker:
        yield
        return
    broker = LocalCluster.from_settings(settings)
    started_here = broker.running_pid() is None
    broker.start()
    try:
        yield
    finally:
        if started_here:
            broker.stop()


def _fill_queue(settings: Settings, cases: int) -> int:
    topic = Topics(settings.topic_namespace).unit(PARIS_11.unit_id)
    ensure_topics(settings, Role.ADMIN, {topic: unit_topic_config(settings)})
    AccessControl(settings).grant(unit_roles([PARIS_11.unit_id]))
    events = []
    for i in range(cases):
        events += [case_opened(PARIS_11, f"bench-{i}"), case_updated(PARIS_11, f"bench-{i}", 2)]
    producer = new_producer(settings, Role.ADMIN, "signalements-bench", linger_ms=20, batch_size=256 * 1024)
    try:
        publish(producer, topic, events)
    finally:
        producer.close()
    return len(events)


def bench_backend(settings: Settings, backend: str, cases: int, database_url: str | None) -> ConsumerBenchResult:
    run = settings.pinned_to_cluster().model_copy(update={
        "topic_namespace": f"bench{uuid.uuid4().hex[:8]}.",
        "consumer_database_url": database_url,
    })
    events = _fill_queue(run, cases)
    metrics = PipelineMetrics(CollectorRegistry())
    consumer_metrics = ConsumerMetrics(metrics.registry)
    consumer = UnitConsumer(run, PARIS_11.unit_id, metrics, consumer_metrics, LagBoard(consumer_metrics))
    store = consumer.store
    stop = threading.Event()
    thread = threading.Thread(target=consumer.run, args=(stop,), daemon=True)
    thread.start()
    started: float | None = None  # from the first stored event: joining the group is not storing speed
    try:
        while (stored := store.count("applied_events")) < events:
            if not thread.is_alive():
                raise RuntimeError("the consumer stopped before storing every event")
            if started is None and stored > 0:
                started = time.perf_counter()
            time.sleep(0.02)
        seconds = time.perf_counter() - (started or time.perf_counter())
    finally:
        stop.set()
        thread.join(timeout=60)
    return ConsumerBenchResult(
        backend=backend, cases=cases, events=events, seconds=round(seconds, 3),
        events_per_second=round(events / seconds, 1), cases_per_second=round(cases / seconds, 1),
    )


def _bucket_quantile(buckets: list[tuple[float, float]], quantile: float) -> float:
    """The upper bound of the histogram bucket holding ``quantile`` (cumulative counts, as Prometheus keeps them)."""
    total = buckets[-1][1]
    for upper, cumulative in buckets:
        if cumulative >= quantile * total:
            return upper
    return float("inf")


def bench_lag(settings: Settings, backend: str, rate: float, duration_s: float, database_url: str | None
              ) -> ConsumerLagResult:
    """Offer ``rate`` case events per second for ``duration_s`` to a running consumer; measure report → stored."""
    run = settings.pinned_to_cluster().model_copy(update={
        "topic_namespace": f"bench{uuid.uuid4().hex[:8]}.", "consumer_database_url": database_url,
    })
    topic = Topics(run.topic_namespace).unit(PARIS_11.unit_id)
    ensure_topics(run, Role.ADMIN, {topic: unit_topic_config(run)})
    AccessControl(run).grant(unit_roles([PARIS_11.unit_id]))
    metrics = PipelineMetrics(CollectorRegistry())
    consumer_metrics = ConsumerMetrics(metrics.registry)
    consumer = UnitConsumer(run, PARIS_11.unit_id, metrics, consumer_metrics, LagBoard(consumer_metrics))
    stop = threading.Event()
    thread = threading.Thread(target=consumer.run, args=(stop,), daemon=True)
    thread.start()
    producer = new_producer(run, Role.ADMIN, "signalements-bench", linger_ms=5)
    sent = 0
    try:
        started = time.perf_counter()
        while (elapsed := time.perf_counter() - started) < duration_s:
            due = int(elapsed * rate) + 1
            # Events are made when due, so their report time is their offered time.
            publish(producer, topic, [case_opened(PARIS_11, f"lag-{i}") for i in range(sent, due)])
            sent = due
            time.sleep(max(0.0, sent / rate - (time.perf_counter() - started)))
        while consumer.store.count("applied_events") < sent:
            if not thread.is_alive():
                raise RuntimeError("the consumer stopped before storing every event")
            time.sleep(0.05)
    finally:
        producer.close()
        stop.set()
        thread.join(timeout=60)
    samples = {
        (sample.name, sample.labels.get("le")): sample.value
        for family in metrics.registry.collect() if family.name == "signalements_end_to_end_latency_seconds"
        for sample in family.samples
    }
    buckets = sorted(
        ((float(le), value) for (name, le), value in samples.items() if name.endswith("_bucket") and le is not None),
        key=lambda pair: pair[0],
    )
    count = samples[("signalements_end_to_end_latency_seconds_count", None)]
    return ConsumerLagResult(
        backend=backend, offered_events_per_second=rate, events_offered=sent, latency_samples=int(count),
        latency_mean_seconds=round(samples[("signalements_end_to_end_latency_seconds_sum", None)] / count, 4),
        latency_p50_seconds_at_most=_bucket_quantile(buckets, 0.5),
        latency_p99_seconds_at_most=_bucket_quantile(buckets, 0.99),
    )


def run_consumer_bench(
    settings: Settings, cases: int, backends: list[str], database_url: str | None,
    rate: float | None = None, duration_s: float = 20.0,
) -> None:
    with _broker(settings), ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="signalements-bench-")))
        local = settings.model_copy(update={"state_dir": workdir})
        for backend in backends:
            url = None
            if backend == "postgresql":
                url = database_url or create_database(stack.enter_context(throwaway_postgres()))
            result = bench_backend(local, backend, cases, url)
            print(json.dumps(result.model_dump()), flush=True)
            if rate:
                if backend == "postgresql" and database_url is None:
                    url = create_database(url.rsplit("/", 1)[0] + "/postgres")  # type: ignore[union-attr]
                lag = bench_lag(local, backend, rate, duration_s, url)
                print(json.dumps(lag.model_dump()), flush=True)
