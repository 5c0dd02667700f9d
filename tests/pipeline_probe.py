"""What tests use to drive a running pipeline and look at its topics and stores."""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
from kafka import TopicPartition
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import KafkaError
from prometheus_client.parser import text_string_to_metric_families

from devkit.dev_pki import ensure_development_secrets
from devkit.intake_key import development_headers, development_key
from devkit.local_run import Services, wait_for_http
from ops.access_control import SERVICE_ROLES, AccessControl, unit_roles
from signalements.kafka_clients import new_consumer
from signalements.kafka_security import Role
from signalements.settings import Settings
from signalements.topic_admin import ensure_topics, pipeline_topics

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_settings(kafka_bootstrap: str, state_dir: Path, grant: bool = True, **overrides: object) -> Settings:
    """Settings of an isolated pipeline: its own topic namespace, state directory and ports, and its service
    principals granted unless told not to (a unit's are granted with ``grant_units``)."""
    values: dict[str, object] = {
        "kafka_bootstrap_servers": kafka_bootstrap,
        "topic_namespace": f"t{uuid.uuid4().hex[:10]}.",
        "state_dir": state_dir,
        "intake_port": free_port(),
        "worker_metrics_port": free_port(),
        "consumer_metrics_port": free_port(),
        "worker_id": "test-worker",
    }
    values.update(overrides)
    settings = Settings(**values).pinned_to_cluster()  # a second worker on another state directory shares its keys
    if grant and settings.kafka_security_protocol != "PLAINTEXT":
        AccessControl(settings).grant(SERVICE_ROLES)
    development_key(settings)  # the tests post as the development kit's intake client
    ensure_development_secrets(settings)
    return settings


def broker_access_environment() -> dict[str, str]:
    """Where the session's broker CA and credentials are (tests/conftest.py), for a command run in a bare
    environment."""
    names = ("SIGNALEMENTS_KAFKA_SSL_CAFILE", "SIGNALEMENTS_KAFKA_CREDENTIALS_DIR")
    return {name: os.environ[name] for name in names if name in os.environ}


def grant_units(settings: Settings, unit_ids: Iterable[str]) -> None:
    """Each unit's principal and ACLs (and its queue and actions topic), as `signalements access grant` makes them."""
    if settings.kafka_security_protocol != "PLAINTEXT":
        AccessControl(settings).grant(unit_roles(unit_ids))


def services_environment(settings: Settings) -> dict[str, str]:
    """The environment of the services a test starts: its settings, with a credentials directory holding only the
    pipeline's own principals. The administrator's password is not there: a service that reached for it would
    fail here as it would in production."""
    environment = settings.as_environment()
    if settings.kafka_security_protocol == "PLAINTEXT":
        return environment
    own = settings.state_dir / "service-credentials"
    own.mkdir(parents=True, exist_ok=True, mode=0o700)
    for path in settings.credentials_dir.glob(f"{settings.topic_namespace}*"):
        if path.is_file():
            shutil.copyfile(path, own / path.name)
    environment["SIGNALEMENTS_KAFKA_CREDENTIALS_DIR"] = str(own)
    return environment


def wait_for(probe: Callable[[], T | None], timeout_s: float = 60, what: str = "condition",
             explain: Callable[[], str] | None = None) -> T:
    """Poll ``probe`` until it returns something true; on timeout, fail with ``explain()`` (where things stand)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = probe()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}" + (f"\n{explain()}" if explain else ""))


def flow_positions(settings: Settings) -> str:
    """Where the records of the namespace stand: each topic's end offsets, and each group's committed offsets on it
    (a stage that stopped reading shows as a group behind its topic's end). For the message of a failed wait."""
    from kafka import KafkaAdminClient

    from signalements.kafka_clients import new_admin

    lines: list[str] = []
    try:
        admin: KafkaAdminClient = new_admin(settings, Role.ADMIN, "tests-flow-positions")
        consumer = new_consumer(settings, Role.ADMIN, "tests-flow-positions")
        try:
            names = sorted(n for n in admin.list_topics() if n.startswith(settings.topic_namespace))
            partitions = [TopicPartition(n, p) for n in names for p in consumer.partitions_for_topic(n) or ()]
            ends = consumer.end_offsets(partitions)
            lines += [f"end {tp.topic}[{tp.partition}] = {end}" for tp, end in sorted(ends.items())]
            groups = [g[0] for g in admin.list_consumer_groups() if str(g[0]).startswith(settings.topic_namespace)]
            for group in sorted(groups):
                offsets = admin.list_consumer_group_offsets(group)
                lines += [f"group {group} at {tp.topic}[{tp.partition}] = {meta.offset}"
                          for tp, meta in sorted(offsets.items())]
        finally:
            consumer.close()
            admin.close()
    except (KafkaError, OSError) as error:  # a diagnosis must never hide the failure it explains
        lines.append(f"(positions not read: {error!r})")
    return "\n".join(lines)


def read_topic(settings: Settings, topic: str, timeout_s: float = 5) -> list[ConsumerRecord]:
    """Every record currently on ``topic``, read from the beginning without a consumer group."""
    consumer = new_consumer(settings, Role.ADMIN, "tests-read-topic")
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        assigned = [TopicPartition(topic, p) for p in partitions]
        if not assigned:
            return []
        consumer.assign(assigned)
        consumer.seek_to_beginning(*assigned)
        end = consumer.end_offsets(assigned)
        records: list[ConsumerRecord] = []
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < end[tp] for tp in assigned) and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


def query_store(settings: Settings, unit_id: str, sql: str, *args: object) -> list[tuple[object, ...]]:
    path = settings.unit_store_dir / f"{unit_id}.sqlite3"
    if not path.exists():
        return []
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        try:
            return db.execute(sql, args).fetchall()
        except sqlite3.OperationalError:  # schema not created yet
            return []


Sample = tuple[str, dict[str, str], float]


def parse_metrics(text: str) -> list[Sample]:
    """A Prometheus exposition page as (sample name, labels, value), read by the client library's own parser."""
    return [
        (sample.name, dict(sample.labels), sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


def scrape(url: str) -> list[Sample]:
    return parse_metrics(httpx.get(url, timeout=5).text)


def metric(samples: list[Sample], name: str, **labels: str) -> float:
    """Sum of the samples called ``name`` whose labels include ``labels``."""
    return sum(
        value
        for sample_name, sample_labels, value in samples
        if sample_name == name and all(sample_labels.get(k) == v for k, v in labels.items())
    )


@dataclass
class RunningPipeline:
    settings: Settings
    services: Services

    @property
    def intake_url(self) -> str:
        return f"http://{self.settings.intake_host}:{self.settings.intake_port}"

    @property
    def worker_metrics_url(self) -> str:
        return f"http://{self.settings.metrics_host}:{self.settings.worker_metrics_port}/metrics"

    @property
    def consumer_metrics_url(self) -> str:
        return f"http://{self.settings.metrics_host}:{self.settings.consumer_metrics_port}/metrics"

    @property
    def intake_headers(self) -> dict[str, str]:
        """The credential of the tests' intake client (an API key allowed on both channels)."""
        return development_headers(self.settings)

    def post_report(self, channel: str, body: dict[str, Any]) -> int:
        """Submit one report to the intake; the HTTP status."""
        return httpx.post(f"{self.intake_url}/v1/reports/{channel}", json=body, timeout=15,
                          headers=self.intake_headers).status_code


# The factories of tests/conftest.py: new settings of an isolated pipeline; a running pipeline for some units.
SettingsFactory = Callable[..., Settings]
PipelineFactory = Callable[..., RunningPipeline]


@contextmanager
def running_pipeline(
    settings: Settings, unit_ids: list[str], log_dir: Path | None = None, cross_unit_ids: Sequence[str] = ()
) -> Iterator[RunningPipeline]:
    """Intake, a Faust worker and the given units' consumer, as real processes on the real broker.

    ``cross_unit_ids`` run in a consumer process of their own, on a metrics port nobody scrapes: their queues are
    read (so nothing lags) without their copies of each report adding to the territorial units' counts.
    """
    ensure_topics(settings, Role.ADMIN, pipeline_topics(settings))
    grant_units(settings, [*unit_ids, *cross_unit_ids])
    services = Services(log_dir or settings.log_dir, services_environment(settings))
    try:
        services.start("intake", "intake")
        services.start("worker", "worker")
        services.start("consumers", "consume", *[arg for unit in unit_ids for arg in ("--unit", unit)])
        if cross_unit_ids:
            services.start(
                "cross-consumers", "consume", *[arg for unit in cross_unit_ids for arg in ("--unit", unit)],
                env={"SIGNALEMENTS_CONSUMER_METRICS_PORT": str(free_port())},
            )
        pipeline = RunningPipeline(settings, services)
        wait_for_http(f"{pipeline.intake_url}/healthz", services)
        yield pipeline
    finally:
        services.stop()
