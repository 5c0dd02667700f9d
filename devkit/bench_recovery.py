"""State recovery time of a worker with N distinct points in its deduplication state (part of ``bench-dedup``).

The state of N distinct dealing points (their case records, exactly as the route stage writes them, from
``decide_report``: the changelog holds nothing else, a restore derives their index entries) is produced straight to
the worker's ``dedup-state`` changelog topic on the real broker. Then a fresh worker
(empty state directory) is started and timed: from process start to ready, and the changelog reading itself (from
Faust's own log lines); with its resident memory and its RocksDB size on disk once recovered.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from kafka.admin import NewTopic
from kafka.partitioner import murmur2
from prometheus_client.parser import text_string_to_metric_families

from devkit.bench_costs import rss_mb
from devkit.bench_pipeline import bench_settings, delete_topics, free_port
from devkit.dedup_traffic import COMMUNES
from devkit.dev_pki import ensure_development_secrets
from devkit.local_broker import LocalCluster
from devkit.local_run import Services
from ops.access_control import SERVICE_ROLES, AccessControl
from schemas.channels import Channel, Force, ReportKind
from schemas.reports import CanonicalReport, EnrichedReport, Jurisdiction, Place, ResolutionMethod, report_id_for
from signalements.kafka_clients import new_admin, new_producer
from signalements.kafka_security import Role
from signalements.settings import Settings
from signalements.topic_admin import ensure_topics, pipeline_topics
from streams.case_tables import policy_from
from streams.deduplication import case_key, decide_report
from streams.worker_cipher import state_cipher

FAUST_TIME = re.compile(r"^\[(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d{3})\]")


def _say(message: str) -> None:
    print(f"[bench-dedup] {message}", file=sys.stderr, flush=True)


class EmptyState:
    def get(self, key: str) -> bytes | None:
        return None


def _templates() -> tuple[EnrichedReport, dict[str, Jurisdiction]]:
    now = datetime.now(UTC) - timedelta(days=1)
    canonical = CanonicalReport(
        report_id="template", channel=Channel.MONCOMMISSARIAT, submission_id="template", submitted_at=now,
        received_at=now, kind=ReportKind.DEALING_POINT, place=Place(street_address="1 rue de la republique"),
        description="Guetteurs devant le hall.",
    )
    jurisdictions = {
        commune.unit_id: Jurisdiction(
            commune_code=commune.code, commune_name=commune.name, departement=commune.code[:2],
            force=Force.POLICE if commune.unit_id.startswith("pn-") else Force.GENDARMERIE, unit_id=commune.unit_id,
            unit_name=commune.name, method=ResolutionMethod.CODE_INSEE, reference_version="bench",
        )
        for commune in COMMUNES
    }
    first = next(iter(jurisdictions.values()))
    return EnrichedReport(report=canonical, jurisdiction=first), jurisdictions


def point_state_entries(count: int, settings: Settings):  # noqa: ANN201 (a generator of state entries)
    """(unit id, key, value) of every state entry of ``count`` distinct points, spread on a lattice over France."""
    policy = policy_from(settings)
    seal = state_cipher(policy.identifier_secret)  # the worker's state is encrypted at rest: so is what it will read
    template, jurisdictions = _templates()
    units = list(jurisdictions)
    side = int(count**0.5) + 1
    for index in range(count):
        row, column = divmod(index, side)
        latitude, longitude = 42.0 + 8.5 * row / side, -4.0 + 11.5 * column / side
        unit_id = units[index % len(units)]
        report_id = report_id_for(Channel.MONCOMMISSARIAT, f"bench-{index}")
        place = template.report.place.model_copy(update={
            "latitude": latitude, "longitude": longitude, "street_address": f"{index % 300} rue {index}",
        })
        canonical = template.report.model_copy(update={"report_id": report_id, "submission_id": f"bench-{index}", "place": place})
        report = template.model_copy(update={"report": canonical, "jurisdiction": jurisdictions[unit_id]})
        effects = decide_report(EmptyState(), report, canonical.submitted_at, policy)
        # The changelog holds the case records only: restoring one derives its index entries.
        assert effects.case is not None
        yield unit_id, case_key(effects.case.case_id), seal.seal(effects.case.model_dump_json().encode())


def _faust_time(line: str) -> float | None:
    match = FAUST_TIME.match(line)
    if not match:
        return None
    return datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()


def _log_times(log: Path, needle: str) -> list[float]:
    if not log.exists():
        return []
    lines = log.read_text(errors="replace").splitlines()
    return [t for t in (_faust_time(line) for line in lines if needle in line) if t is not None]


def _standby_remaining(metrics_url: str) -> float | None:
    """The worker's own count of changelog records its standby copies have still to read (None: not exported yet)."""
    try:
        text = httpx.get(metrics_url, timeout=5).text
    except httpx.HTTPError:
        return None
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "signalements_worker_recovery_remaining_records" and (
                sample.labels.get("partition_role") == "standby"
            ):
                return sample.value
    return None


def _wait_for_standbys(services: Services, metrics_url: str, timeout_s: float = 3600) -> None:
    # The gauge is refreshed every second: a reading older than the standby start would say 0 too early.
    time.sleep(2.5)
    deadline = time.time() + timeout_s
    while _standby_remaining(metrics_url) != 0:
        services.check_alive()
        if time.time() > deadline:
            raise RuntimeError(f"the standby copies did not catch up within {timeout_s:.0f} s")
        time.sleep(0.5)


def _worker_pid(services: Services) -> int:
    """The worker's own process (the Popen is the CLI, which runs the worker in the same process)."""
    return services.processes["worker"].pid


@dataclass(frozen=True)
class WorkerStart:
    start_to_ready_s: float
    changelog_read_s: float | None  # from Faust's own log lines around its changelog reading


def _wait_ready(services: Services, log: Path, since: float) -> WorkerStart:
    """Until the worker logs "Worker ready" after ``since`` (a start or a rebalance), with its changelog reading."""
    deadline = since + 3600
    while not (readies := [t for t in _log_times(log, "Worker ready") if t >= since - 1]):
        services.check_alive()
        if time.time() > deadline:
            raise RuntimeError("the worker did not get ready within an hour")
        time.sleep(0.5)
    ready = min(readies)
    restore_from = [t for t in _log_times(log, "Restoring state from changelog topics") if since - 1 <= t <= ready]
    restore_to = [t for t in _log_times(log, "Done reading from changelog topics") if since - 1 <= t <= ready]
    read_s = round(restore_to[-1] - restore_from[-1], 1) if restore_from and restore_to else None
    return WorkerStart(start_to_ready_s=round(ready - since, 1), changelog_read_s=read_s)


def _run_until_ready(services: Services, log: Path) -> WorkerStart:
    start = time.time()
    services.start("worker", "worker")
    return _wait_ready(services, log, start)


def measure_recovery(settings: Settings, points: int) -> dict[str, object]:
    broker = LocalCluster.from_settings(settings) if settings.uses_local_broker else None
    if broker is not None:
        broker.start()
    stamp = f"{datetime.now(UTC):%Y%m%dt%H%M%S}p{os.getpid()}r"
    bench = bench_settings(settings, stamp)
    app_id = bench.consumer_group(bench.worker_id)
    changelog = f"{app_id}-dedup-state-changelog"
    ensure_topics(bench, Role.ADMIN, pipeline_topics(bench))
    AccessControl(bench).grant(SERVICE_ROLES)
    ensure_development_secrets(bench)
    admin = new_admin(bench, Role.ADMIN, "signalements-bench")
    try:
        admin.create_topics([NewTopic(changelog, bench.topic_partitions, bench.topic_replication_factor,
                                      topic_configs={"cleanup.policy": "compact"})])
    finally:
        admin.close()
    services = Services(bench.log_dir, bench.as_environment())
    try:
        _say(f"recovery: writing the state of {points} points to {changelog}")
        # the partition the route stage sees a unit's reports on: Kafka's default partitioner (murmur2) on the key
        partition_of = {
            commune.unit_id: (murmur2(commune.unit_id.encode()) & 0x7FFFFFFF) % bench.topic_partitions
            for commune in COMMUNES
        }
        producer = new_producer(bench, Role.ADMIN, "signalements-bench", acks=1, linger_ms=50,
                                batch_size=1 << 20, max_request_size=8 << 20)
        started, entries = time.perf_counter(), 0
        for unit_id, key, value in point_state_entries(points, bench):
            producer.send(changelog, key=key.encode(), value=value, partition=partition_of[unit_id])
            entries += 1
            if entries % 500_000 == 0:
                _say(f"recovery: {entries} entries written")
        producer.flush()
        producer.close()
        written_s = time.perf_counter() - started
        _say(f"recovery: {entries} entries in {written_s:.0f}s; starting a fresh worker")
        fresh = _run_until_ready(services, bench.log_dir / "worker.log")
        rss = rss_mb(_worker_pid(services))
        disk = sum(f.stat().st_size for f in (bench.state_dir / "faust").rglob("*") if f.is_file())
        # A second worker on another machine joins: Faust gives it standby copies of the first one's partitions
        # (table_standby_replicas=1), so when the first leaves it takes over without reading everything again.
        _say("recovery: a second worker joins; waiting until its standby copies have caught up")
        second_port = free_port()
        second = Services(bench.log_dir / "second", {
            **bench.as_environment(), "SIGNALEMENTS_STATE_DIR": str(bench.state_dir / "second"),
            "SIGNALEMENTS_WORKER_METRICS_PORT": str(second_port),
        })
        try:
            joined = _run_until_ready(second, bench.log_dir / "second" / "worker.log")
            _wait_for_standbys(second, f"http://{bench.metrics_host}:{second_port}/metrics")
            _say("recovery: the first worker leaves; the second takes its partitions over")
            left = time.time()
            services.stop()
            takeover = _wait_ready(second, bench.log_dir / "second" / "worker.log", left)
        finally:
            second.stop()
        # The usual restart (a deploy: a clean stop, its volume kept): RocksDB knows the offsets it holds, so only
        # the changelog written since then is read. (After a crash the worker rebuilds from the changelog instead.)
        _say("recovery: restarting the first worker on its kept state directory")
        services = Services(bench.log_dir / "restart", bench.as_environment())
        restart = _run_until_ready(services, bench.log_dir / "restart" / "worker.log")
        return {
            "points": points,
            "state_entries": entries,
            "worker_start_to_ready_s": fresh.start_to_ready_s,
            "changelog_read_s": fresh.changelog_read_s,
            "entries_per_s": round(entries / fresh.changelog_read_s, 0) if fresh.changelog_read_s else None,
            "worker_rss_mb_after_recovery": round(rss, 1),
            "rocksdb_disk_mb": round(disk / 1e6, 1),
            "second_worker_join_to_ready_s": joined.start_to_ready_s,
            "takeover_by_standby_to_ready_s": takeover.start_to_ready_s,
            "takeover_changelog_read_s": takeover.changelog_read_s,
            "restart_with_kept_state_to_ready_s": restart.start_to_ready_s,
            "restart_changelog_read_s": restart.changelog_read_s,
        }
    finally:
        services.stop()
        with contextlib.suppress(Exception):
            delete_topics(bench)
