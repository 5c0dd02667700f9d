"""The benchmark: synthetic reports through the real pipeline, then through a do-nothing Faust relay for comparison.

Not a test: it measures. Everything runs in a namespace and a state directory of its own (``bench<stamp>.`` and
``<state_dir>/bench/<stamp>``), so it never mixes with the demo's topics or stores, and can run next to a demo.

1. Pipeline: the Faust worker and every unit's consumer run as subprocesses; N raw submission events are produced
   straight to the raw topics (as the intake would write them, ce_time = produce time = the reports' received_at)
   and the bench waits until the unit stores hold them all. Throughput is N over first produce → last ``stored_at``;
   latency is ``stored_at - received_at`` per report, read back from the stores.
2. Relay ceiling: a Faust app with no logic copies one topic to another; the same N records go through it. Its
   figures bound what one Faust stage can move with this library, broker and machine (the worker chains three).

stdout gets one JSON line of figures; progress goes to stderr. ``python -m devkit.bench_pipeline relay ...`` is the relay
subprocess itself.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from kafka import KafkaProducer, TopicPartition
from pydantic import BaseModel

from devkit.bench_costs import cpu_seconds, last_unit_write_ms, records_per_report, records_written
from devkit.commune_places import places_of
from devkit.dev_pki import ensure_development_secrets
from devkit.local_broker import LocalCluster
from devkit.local_run import Services
from devkit.traffic_generator import DEMO_MIX, TrafficGenerator
from ops.access_control import SERVICE_ROLES, AccessControl, unit_roles
from schemas.channels import Channel
from schemas.envelope import encode, kafka_headers
from schemas.reports import report_id_for
from schemas.submission_channels import SUBMISSION_CHANNELS
from schemas.topics import Topics
from signalements.kafka_clients import bootstrap_list, new_admin, new_consumer, new_producer
from signalements.kafka_security import Role
from signalements.settings import Settings
from signalements.topic_admin import ensure_topics, pipeline_topics, unit_topic_config
from streams.jurisdiction import JurisdictionReference, Unrouted
from streams.normalize import NormalizationError, normalize_submission

# Marks the records as synthetic should one ever be found outside its bench namespace; the pipeline ignores source.
SOURCE = "/signalements/bench"
WARMUP_MIN = 20
READY_TIMEOUT_S = 180.0
# A run is abandoned when nothing new arrived for this long (a stuck stage), whatever the overall timeout.
STALL_TIMEOUT_S = 60.0
POLL_S = 0.2


def _say(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ---------------------------------------------------------------------------------------------------------------
# Synthetic submissions
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Submission:
    """A valid submission, already validated, ready to encode at produce time."""

    channel: Channel
    model: BaseModel
    submission_id: str
    unit_id: str

    @property
    def report_id(self) -> str:
        return report_id_for(self.channel, self.submission_id)


@dataclass(frozen=True)
class Record:
    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


def _validated(
    bodies: Iterable[tuple[Channel, dict[str, object]]], reference: JurisdictionReference
) -> Iterable[Submission]:
    """Only what the intake would accept and the worker would route: a report lost to the DLQ would stall the count."""
    for channel, body in bodies:
        model = SUBMISSION_CHANNELS[channel].model.model_validate(body)
        submission_id = SUBMISSION_CHANNELS[channel].submission_id(model)
        try:
            report = normalize_submission(model, datetime.now(UTC))  # type: ignore[arg-type]
        except NormalizationError:
            continue
        jurisdiction = reference.resolve_jurisdiction(report.place)
        if not isinstance(jurisdiction, Unrouted):
            yield Submission(channel, model, submission_id, jurisdiction.unit_id)


def prepare_submissions(reference: JurisdictionReference, seed: int, warmup_min: int, count: int) -> tuple[
    list[Submission], list[Submission]
]:
    """Warm-up submissions reaching every unit (so every unit topic and consumer is live), then ``count`` more."""
    units = set(reference.demo_unit_ids)
    communes = [commune for commune in reference.communes if commune.unit_id in units]
    generator = TrafficGenerator(communes, DEMO_MIX, seed=seed, run_tag=f"bench{seed}", live=True,
                                 places=places_of(reference.boundaries))
    demo = ((report.channel, report.submission) for report in generator.reports())
    submissions = iter(_validated(demo, reference))
    warmup: list[Submission] = []
    missing = {unit_id for unit_id in reference.demo_unit_ids if not unit_id.startswith("cross-")}
    while len(warmup) < warmup_min or missing:
        submission = next(submissions)
        warmup.append(submission)
        missing.discard(submission.unit_id)
    return warmup, [next(submissions) for _ in range(count)]


# ---------------------------------------------------------------------------------------------------------------
# Producing
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Produced:
    first_ms: int
    duration_s: float
    sent_ms: dict[bytes, int]  # key → the record's timestamp (CreateTime), for the relay's latency
    records: list[Record]


def bench_producer(settings: Settings) -> KafkaProducer:
    # acks=all like the intake; a short linger lets "as fast as possible" batch instead of one request per record.
    return new_producer(settings, Role.ADMIN, "signalements-bench", linger_ms=5, batch_size=256 * 1024)


def produce(producer: KafkaProducer, records: Iterable[Callable[[datetime], Record]], rate: float = 0.0) -> Produced:
    """Send every record (at ``rate`` per second, or as fast as the producer takes them), then wait for every ack."""
    futures = []
    sent_ms: dict[bytes, int] = {}
    kept: list[Record] = []
    started = time.monotonic()
    first_ms = 0
    for index, build in enumerate(records):
        if rate > 0:
            time.sleep(max(0.0, started + index / rate - time.monotonic()))
        now = datetime.now(UTC)
        timestamp_ms = int(now.timestamp() * 1000)
        first_ms = first_ms or timestamp_ms
        record = build(now)  # encoded at send time: ce_time, hence received_at, is the produce time
        futures.append(producer.send(
            record.topic, key=record.key, value=record.value, headers=record.headers, timestamp_ms=timestamp_ms
        ))
        sent_ms[record.key] = timestamp_ms
        kept.append(record)
    producer.flush()
    for future in futures:
        future.get(timeout=30)  # raises if the broker refused any record
    return Produced(first_ms, time.monotonic() - started, sent_ms, kept)


def submission_records(topics: Topics, submissions: list[Submission]) -> list[Callable[[datetime], Record]]:
    """Each submission encoded exactly as the intake encodes it, with the produce time as the event time."""

    def builder(submission: Submission) -> Callable[[datetime], Record]:
        def build(now: datetime) -> Record:
            message = encode(
                SUBMISSION_CHANNELS[submission.channel].event_type, submission.model,
                event_id=submission.report_id, source=SOURCE, key=submission.submission_id, time=now,
            )
            return Record(
                topics.raw(submission.channel), submission.submission_id.encode(), message.value,
                kafka_headers(message),
            )

        return build

    return [builder(submission) for submission in submissions]


def retargeted(records: list[Record], topic: str) -> list[Callable[[datetime], Record]]:
    """The same records, bytes unchanged, sent to another topic."""

    def builder(record: Record) -> Callable[[datetime], Record]:
        def build(_now: datetime) -> Record:
            return Record(topic, record.key, record.value, record.headers)

        return build

    return [builder(record) for record in records]


# ---------------------------------------------------------------------------------------------------------------
# Reading the unit stores
# ---------------------------------------------------------------------------------------------------------------


def _read_stores(store_dir: Path, query: str) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    # Territorial units only: each report is also copied to its département's CROSS, and counting both would
    # reach N when half the reports are in.
    for path in sorted(p for p in store_dir.glob("*.sqlite3") if not p.name.startswith("cross-")):
        # Read-only: the consumers own these files; a reader must never take a write lock on them.
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as db:
            try:
                rows.extend(db.execute(query).fetchall())
            except sqlite3.OperationalError:  # the consumer has not created its schema yet
                pass
    return rows


def count_stored(store_dir: Path) -> int:
    return sum(int(row[0]) for row in _read_stores(store_dir, "SELECT COUNT(*) FROM case_reports"))


def stored_times(store_dir: Path) -> dict[str, tuple[datetime, datetime]]:
    """report id → (received_at, stored_at)."""
    rows = _read_stores(store_dir, "SELECT report_id, received_at, stored_at FROM case_reports")
    return {r[0]: (datetime.fromisoformat(r[1]), datetime.fromisoformat(r[2])) for r in rows}


def wait_until(
    what: str, progress: Callable[[], int], expected: int, timeout_s: float, check: Callable[[], None]
) -> None:
    """Poll ``progress`` until it reaches ``expected``; fail on timeout, on a stall, or when ``check`` raises."""
    deadline = time.monotonic() + timeout_s
    last_value, last_change, last_report = -1, time.monotonic(), 0.0
    while True:
        check()
        value = progress()
        now = time.monotonic()
        if value >= expected:
            return
        if value != last_value:
            last_value, last_change = value, now
        if now - last_report >= 5:
            _say(f"{what}: {value}/{expected}")
            last_report = now
        if now > deadline or now - last_change > STALL_TIMEOUT_S:
            raise RuntimeError(f"{what}: {value}/{expected} after {timeout_s:.0f}s (stalled or too slow)")
        time.sleep(POLL_S)


# ---------------------------------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------------------------------


def percentiles(values: list[float], wanted: tuple[int, ...]) -> dict[int, float]:
    if len(values) < 2:
        return {p: values[0] if values else float("nan") for p in wanted}
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {p: cuts[p - 1] for p in wanted}


def pipeline_figures(store_dir: Path, report_ids: list[str], first_ms: int) -> dict[str, float]:
    times = stored_times(store_dir)
    measured = [times[report_id] for report_id in report_ids]
    last_stored = max(stored for _, stored in measured)
    elapsed = last_stored.timestamp() - first_ms / 1000
    latencies = [(stored - received).total_seconds() for received, stored in measured]
    p = percentiles(latencies, (50, 95, 99))
    return {
        "pipeline_reports_per_s": round(len(report_ids) / elapsed, 1),
        "pipeline_elapsed_s": round(elapsed, 3),
        "latency_p50_s": round(p[50], 4),
        "latency_p95_s": round(p[95], 4),
        "latency_p99_s": round(p[99], 4),
        "latency_max_s": round(max(latencies), 4),
    }


# ---------------------------------------------------------------------------------------------------------------
# The relay: a Faust app without logic, as the ceiling of what the library can move
# ---------------------------------------------------------------------------------------------------------------


def run_relay(bootstrap: str, app_id: str, source: str, sink: str, datadir: str, partitions: int) -> None:
    """Copy every record of ``source`` to ``sink`` unchanged; the worker's own app settings, without its stages."""
    import faust

    from streams.app import faust_credentials

    app = faust.App(
        app_id,
        broker=[f"kafka://{server}" for server in bootstrap_list(bootstrap)],
        broker_credentials=faust_credentials(Settings(), Role.ADMIN),  # the environment the bench gave it
        store="memory://",
        datadir=datadir,
        web_enabled=False,
        topic_partitions=partitions,
        producer_acks=-1,
        consumer_auto_offset_reset="earliest",
        topic_disable_leader=True,
    )
    source_topic = app.topic(source, key_serializer="raw", value_serializer="raw")
    sink_topic = app.topic(sink, key_serializer="raw", value_serializer="raw")

    @app.agent(source_topic, name="relay")
    async def relay(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            message = event.message
            await sink_topic.send(key=message.key, value=message.value, headers=message.headers)

    faust.Worker(app, loglevel="info").execute_from_commandline()


def start_relay(settings: Settings, source: str, sink: str) -> subprocess.Popen[bytes]:
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "devkit.bench_pipeline", "relay", "--bootstrap", settings.bootstrap_servers,
        "--app-id", settings.consumer_group("relay"), "--source", source, "--sink", sink,
        "--datadir", str(settings.state_dir / "relay"), "--partitions", str(settings.topic_partitions),
    ]
    with (settings.log_dir / "relay.log").open("ab") as log:
        return subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            env={**os.environ, **settings.as_environment()},
        )


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


class SinkReader:
    """Reads the relay's output from its beginning, keeping each record's timestamp (when the relay produced it)."""

    def __init__(self, settings: Settings, topic: str, partitions: int) -> None:
        self.seen_ms: dict[bytes, int] = {}
        self._consumer = new_consumer(settings, Role.ADMIN, "signalements-bench-sink", group_id=None,
                                      auto_offset_reset="earliest")
        self._consumer.assign([TopicPartition(topic, p) for p in range(partitions)])

    def poll(self) -> int:
        for batch in self._consumer.poll(timeout_ms=int(POLL_S * 1000), max_records=10_000).values():
            for record in batch:
                self.seen_ms[record.key] = record.timestamp
        return len(self.seen_ms)

    def close(self) -> None:
        self._consumer.close()


def relay_figures(produced: Produced, seen_ms: dict[bytes, int]) -> dict[str, float]:
    keys = list(produced.sent_ms)
    elapsed = (max(seen_ms[key] for key in keys) - produced.first_ms) / 1000
    latencies = [(seen_ms[key] - produced.sent_ms[key]) / 1000 for key in keys]
    p = percentiles(latencies, (50, 99))
    return {
        "relay_records_per_s": round(len(keys) / elapsed, 1),
        "relay_elapsed_s": round(elapsed, 3),
        "relay_latency_p50_s": round(p[50], 4),
        "relay_latency_p99_s": round(p[99], 4),
    }


# ---------------------------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------------------------


def bench_settings(settings: Settings, stamp: str) -> Settings:
    """The given settings in a namespace, state directory and metrics ports of their own (a demo may be running)."""
    return settings.pinned_to_cluster().model_copy(update={  # children use this broker, never start one
        "topic_namespace": f"{settings.topic_namespace}bench{stamp}.",
        "state_dir": settings.state_dir / "bench" / stamp,
        "worker_metrics_port": free_port(),
        "consumer_metrics_port": free_port(),
        "intake_port": free_port(),
        "worker_id": "bench-worker",
        # Demo traffic reports some points twice: with the production throttle (15 min) their merged reports would
        # wait for the next update. Unthrottled, every report's delivery to its unit is measured.
        "dedup_update_throttle_s": 0.0,
    })


def relay_topics(settings: Settings) -> tuple[str, str]:
    return f"{settings.topic_namespace}relay.in", f"{settings.topic_namespace}relay.out"


def create_topics(settings: Settings, unit_ids: list[str]) -> None:
    # Unit topics up front too: the worker would create them on first use, but not while we measure.
    topics = Topics(settings.topic_namespace)
    configs = pipeline_topics(settings)
    configs.update({topics.unit(unit_id): unit_topic_config(settings) for unit_id in unit_ids})
    configs.update({name: {} for name in relay_topics(settings)})
    ensure_topics(settings, Role.ADMIN, configs)
    AccessControl(settings).grant([*SERVICE_ROLES, *unit_roles(unit_ids)])
    ensure_development_secrets(settings)


def delete_topics(settings: Settings) -> None:
    """Drop the run's topics (the figures and the stores stay): each run would otherwise leave ~20 on the broker."""
    admin = new_admin(settings, Role.ADMIN, "signalements-bench")
    try:
        names = [name for name in admin.list_topics() if name.startswith(settings.topic_namespace)]
        if names:
            admin.delete_topics(names)
    finally:
        admin.close()


def worker_names(workers: int) -> list[str]:
    return [f"worker-{number}" for number in range(1, workers + 1)]


def start_workers(settings: Settings, services: Services, workers: int) -> None:
    """``workers`` worker processes in one consumer group, each another machine: its own state directory (Faust's
    RocksDB) and metrics port; then wait until each has its partitions (a later join would rebalance mid-run)."""
    for number, name in enumerate(worker_names(workers), start=1):
        state_dir = settings.state_dir / name
        state_dir.mkdir(parents=True, exist_ok=True)
        services.start(name, "worker", env={"SIGNALEMENTS_STATE_DIR": str(state_dir),
                                            "SIGNALEMENTS_WORKER_METRICS_PORT": str(free_port() if number > 1 else
                                                                                   settings.worker_metrics_port)})
    logs = [settings.log_dir / f"{name}.log" for name in worker_names(workers)]

    def ready() -> int:
        return sum(1 for log in logs if log.exists() and "Worker ready" in log.read_text(errors="replace"))

    wait_until("workers ready", ready, workers, READY_TIMEOUT_S, services.check_alive)


def workers_cpu_seconds(services: Services, workers: int) -> float:
    # the CLI runs each worker in its own process
    return sum(cpu_seconds(services.processes[name].pid) for name in worker_names(workers))


def measure_pipeline(
    settings: Settings, services: Services, producer: KafkaProducer, warmup: list[Submission],
    submissions: list[Submission], rate: float, workers: int = 1,
) -> tuple[dict[str, float], Produced, Produced]:
    """Figures of the pipeline, and what was produced (warm-up, measured) to feed the relay the same records."""
    topics = Topics(settings.topic_namespace)
    store_dir = settings.unit_store_dir
    _say(f"pipeline warm-up: {len(warmup)} reports over every unit, waiting for the worker and consumers")
    warmed = produce(producer, submission_records(topics, warmup))
    wait_until("warm-up stored", lambda: count_stored(store_dir), len(warmup), READY_TIMEOUT_S, services.check_alive)
    _say(f"pipeline: producing {len(submissions)} reports")
    cpu_before = workers_cpu_seconds(services, workers)
    produced = produce(producer, submission_records(topics, submissions), rate)
    _say(f"produced in {produced.duration_s:.2f}s ({len(submissions) / produced.duration_s:.0f}/s)")
    expected = len(warmup) + len(submissions)
    wait_until(
        "pipeline stored", lambda: count_stored(store_dir), expected, 120 + len(submissions) * 0.05,
        services.check_alive,
    )
    worker_cpu_s = workers_cpu_seconds(services, workers) - cpu_before
    figures = pipeline_figures(store_dir, [s.report_id for s in submissions], produced.first_ms)
    # The worker alone: from the first measured raw record to its last write on a unit queue (consumers left out).
    last_write_ms = last_unit_write_ms(settings)
    if last_write_ms is not None and last_write_ms > produced.first_ms:
        figures["worker_reports_per_s"] = round(len(submissions) * 1000 / (last_write_ms - produced.first_ms), 1)
    figures["produce_reports_per_s"] = round(len(submissions) / produced.duration_s, 1)
    figures["worker_cpu_ms_per_report"] = round(worker_cpu_s * 1000 / len(submissions), 3)
    figures.update(records_per_report(records_written(settings), expected))
    return figures, warmed, produced


def measure_steady(
    settings: Settings, services: Services, producer: KafkaProducer, submissions: list[Submission], rate: float,
    already_stored: int,
) -> dict[str, float]:
    """Latency of reports offered at a steady ``rate`` once the backlog is gone: what a report waits when the
    pipeline keeps up (or, above its throughput, how fast the queue grows)."""
    topics = Topics(settings.topic_namespace)
    store_dir = settings.unit_store_dir
    _say(f"steady: {len(submissions)} reports at {rate:.0f}/s")
    produced = produce(producer, submission_records(topics, submissions), rate)
    wait_until("steady stored", lambda: count_stored(store_dir), already_stored + len(submissions),
               120 + len(submissions) * 0.05, services.check_alive)
    figures = pipeline_figures(store_dir, [s.report_id for s in submissions], produced.first_ms)
    return {
        "steady_rate": rate,
        "steady_offered_per_s": round(len(submissions) / produced.duration_s, 1),
        **{f"steady_{name}": value for name, value in figures.items() if name.startswith("latency_")},
    }


def measure_relay(
    settings: Settings, producer: KafkaProducer, warmup: list[Record], records: list[Record], rate: float
) -> dict[str, float]:
    source, sink = relay_topics(settings)
    relay = start_relay(settings, source, sink)
    reader = SinkReader(settings, sink, settings.topic_partitions)

    def alive() -> None:
        if relay.poll() is not None:
            raise RuntimeError(f"the relay exited with code {relay.returncode}; see {settings.log_dir / 'relay.log'}")

    try:
        _say(f"relay warm-up: {len(warmup)} records")
        produce(producer, retargeted(warmup, source))
        wait_until("relay warm-up", reader.poll, len(warmup), READY_TIMEOUT_S, alive)
        _say(f"relay: producing {len(records)} records")
        produced = produce(producer, retargeted(records, source), rate)
        wait_until("relay output", reader.poll, len(warmup) + len(records), 120 + len(records) * 0.02, alive)
        # The relay can only be as fast as it is fed: compare with this to tell a relay ceiling from a producer one.
        return {**relay_figures(produced, reader.seen_ms), "relay_produce_records_per_s": round(
            len(records) / produced.duration_s, 1
        )}
    finally:
        reader.close()
        stop_process(relay)


@dataclass(frozen=True)
class BenchPlan:
    """What one run measures."""

    reports: int  # the measured reports, flat out (or paced by ``rate``)
    rate: float = 0.0  # > 0 paces the measured reports (reports/s)
    workers: int = 1  # worker processes in the group
    steady_rate: float = 0.0  # > 0: then reports at this steady rate, their latency measured apart
    steady_s: float = 20.0  # for this long

    @property
    def steady_reports(self) -> int:
        return round(self.steady_rate * self.steady_s) if self.steady_rate > 0 else 0


def run_bench(settings: Settings, plan: BenchPlan) -> None:
    """Measure the pipeline and the relay with ``plan.reports`` records, then the steady phase if asked.

    As fast as possible (the default), the latencies are mostly queueing behind the backlog, so they grow with
    ``reports``; the steady phase (or a paced run) below the throughput measures the latency of a pipeline that
    keeps up.
    """
    if plan.reports < 1 or plan.workers < 1:
        raise ValueError("reports and workers must be at least 1")
    # Only the final JSON line may reach stdout: anything printed meanwhile (Services' console) goes to stderr.
    with contextlib.redirect_stdout(sys.stderr):
        result = _run(settings, plan)
    print(json.dumps(result), flush=True)


def _run(settings: Settings, plan: BenchPlan) -> dict[str, object]:
    broker = LocalCluster.from_settings(settings) if settings.uses_local_broker else None
    started_broker = broker is not None and broker.running_pid() is None
    if broker is not None:
        _say("starting the local broker" if started_broker else "using the running local broker")
        broker.start()
    stamp = f"{datetime.now(UTC):%Y%m%dt%H%M%S}p{os.getpid()}"  # the pid: two runs may start in the same second
    bench = bench_settings(settings, stamp)
    reference = JurisdictionReference.from_settings(bench)
    _say(f"namespace {bench.topic_namespace} on {bench.bootstrap_servers}; state and logs in {bench.state_dir}")
    warmup, submissions = prepare_submissions(reference, seed=int(time.time()), warmup_min=WARMUP_MIN,
                                              count=plan.reports + plan.steady_reports)
    submissions, steady = submissions[:plan.reports], submissions[plan.reports:]
    steady_figures: dict[str, float] = {}
    services = Services(bench.log_dir, bench.as_environment())
    producer: KafkaProducer | None = None
    try:
        create_topics(bench, reference.demo_unit_ids)
        producer = bench_producer(bench)
        start_workers(bench, services, plan.workers)
        unit_args = [arg for unit_id in reference.demo_unit_ids for arg in ("--unit", unit_id)]
        services.start("consumers", "consume", *unit_args)
        pipeline, warmed, produced = measure_pipeline(bench, services, producer, warmup, submissions, plan.rate,
                                                      plan.workers)
        _say(f"pipeline: {pipeline}")
        if steady:
            steady_figures = measure_steady(bench, services, producer, steady, plan.steady_rate,
                                            len(warmup) + len(submissions))
            _say(f"steady: {steady_figures}")
        services.stop()  # an idle worker and consumers would still take CPU from the relay
        relay = measure_relay(bench, producer, warmed.records, produced.records, plan.rate)
        _say(f"relay: {relay}")
    finally:
        if producer is not None:
            producer.close(timeout=5)
        services.stop()
        with contextlib.suppress(Exception):  # best effort: a leftover topic is no reason to lose the figures
            delete_topics(bench)
        if broker is not None and started_broker:
            broker.stop()
    return {
        "reports": plan.reports,
        "rate": plan.rate or None,
        "workers": plan.workers,
        **pipeline,
        **steady_figures,
        **relay,
        # issue 15's yardstick: the pipeline against the same run's no-logic Faust relay of the same records
        "pipeline_to_relay_ratio": round(pipeline["pipeline_reports_per_s"] / relay["relay_records_per_s"], 3),
        **({"worker_to_relay_ratio": round(pipeline["worker_reports_per_s"] / relay["relay_records_per_s"], 3)}
           if "worker_reports_per_s" in pipeline else {}),
        "kafka": bench.bootstrap_servers,
        "partitions": bench.topic_partitions,
        "namespace": bench.topic_namespace,
        "state_dir": str(bench.state_dir),
    }


def _main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m devkit.bench_pipeline")
    commands = parser.add_subparsers(dest="command", required=True)
    relay = commands.add_parser("relay", help="copy one topic to another with Faust, unchanged (bench subprocess)")
    relay.add_argument("--bootstrap", required=True)
    relay.add_argument("--app-id", required=True)
    relay.add_argument("--source", required=True)
    relay.add_argument("--sink", required=True)
    relay.add_argument("--datadir", required=True)
    relay.add_argument("--partitions", type=int, required=True)
    args = parser.parse_args(argv)
    run_relay(args.bootstrap, args.app_id, args.source, args.sink, args.datadir, args.partitions)


if __name__ == "__main__":
    _main(sys.argv[1:])
