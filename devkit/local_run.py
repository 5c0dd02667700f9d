"""The local run: broker, intake, a Faust worker and the demo units' consumers, fed with demo traffic."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from rich.console import Console

from devkit.commune_places import places_of
from devkit.dev_pki import ensure_development_secrets
from devkit.intake_key import development_headers
from devkit.local_broker import LocalCluster
from devkit.traffic_generator import DEMO_MIX, TrafficGenerator
from ops.access_control import SERVICE_ROLES, AccessControl, unit_roles
from ops.desk_officers import add_officer
from ops.reference_topic import publish_reference_if_empty
from signalements.kafka_security import Role
from signalements.settings import Settings
from signalements.topic_admin import ensure_topics, pipeline_topics
from streams.jurisdiction import JurisdictionReference

console = Console()


@dataclass
class Services:
    """The pipeline's processes, each logging to its own file, stopped in reverse order."""

    log_dir: Path
    env: dict[str, str]
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str, *args: str, env: dict[str, str] | None = None) -> None:
        """Start ``signalements <args>`` as ``name``; ``env`` overrides settings for this one process."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with (self.log_dir / f"{name}.log").open("ab") as log:
            self.processes[name] = subprocess.Popen(
                [sys.executable, "-m", "cli.main", *args],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                env={**os.environ, **self.env, **(env or {})},
            )

    def check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with code {process.returncode}; see {self.log_dir / name}.log")

    def stop(self) -> None:
        for process in reversed(self.processes.values()):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for name, process in reversed(self.processes.items()):
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                Console(stderr=True).print(f"[yellow]{name} did not stop in time: killed")
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def wait_for_http(url: str, services: Services, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        services.check_alive()
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer within {timeout_s:.0f}s")


def count_stored_cases(store_dir: Path) -> tuple[int, int]:
    """Cases in the territorial units' stores and the reports they hold (each CROSS holds copies of its
    département's cases): more reports than cases means reports of a known point merged into its case."""
    cases = reports = 0
    for path in (p for p in store_dir.glob("*.sqlite3") if not p.name.startswith("cross-")):
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            try:
                case_count, report_count = db.execute("SELECT COUNT(*), COALESCE(SUM(report_count), 0) FROM cases").fetchone()
            except sqlite3.OperationalError:  # the consumer has not created its schema yet
                continue
            cases, reports = cases + case_count, reports + report_count
    return cases, reports


# The demo's cases updated within seconds of a new report of their point, not the production's 15 minutes, so that
# a newcomer sees reports merge while watching (unless SIGNALEMENTS_DEDUP_UPDATE_THROTTLE_S says otherwise).
DEMO_UPDATE_THROTTLE_S = 10.0
DEMO_OFFICER = "demo"


def demo_settings(settings: Settings) -> Settings:
    if "dedup_update_throttle_s" in settings.model_fields_set:
        return settings
    return settings.model_copy(update={"dedup_update_throttle_s": DEMO_UPDATE_THROTTLE_S})


# What the services keep of one cluster: read back against a new one (the local broker formatted again), the
# worker's RocksDB offsets would be past the new changelogs' end and Faust refuses to start.
CLUSTER_STATE = ("faust", "intake", "units", "stats")


def forget_state_of_another_cluster(settings: Settings, broker: LocalCluster) -> None:
    """Clear the services' state if it was made against another local cluster than the one now running."""
    stamp, cluster = settings.state_dir / "cluster-id", broker.cluster_id()
    made_with = stamp.read_text().strip() if stamp.exists() else None
    stale = [settings.state_dir / name for name in CLUSTER_STATE if (settings.state_dir / name).exists()]
    if cluster is not None and made_with != cluster and stale:
        console.print(f"a new local broker (cluster {cluster}): clearing the services' state of the previous one")
        for path in stale:
            shutil.rmtree(path)
    if cluster is not None:
        stamp.write_text(cluster + "\n")


def run_local_pipeline(settings: Settings, rate: float, duration_s: float) -> None:
    settings = demo_settings(settings)
    broker = LocalCluster.from_settings(settings) if settings.uses_local_broker else None
    started_broker = broker is not None and broker.running_pid() is None
    if broker is not None:
        console.print("starting Kafka (first run fetches it from Maven Central)…")
        broker.start()
        forget_state_of_another_cluster(settings, broker)
    ensure_topics(settings, Role.ADMIN, pipeline_topics(settings))
    reference = JurisdictionReference.from_settings(settings)
    ensure_development_secrets(settings)  # the HMAC key of phones and handles, the forces' sealing keys
    # Each service connects as its own principal with exactly its ACLs, each demo unit as its own (docs/security.md).
    if settings.kafka_security_protocol == "SASL_SSL":
        AccessControl(settings).grant([*SERVICE_ROLES, *unit_roles(reference.demo_unit_ids)])
    publish_reference_if_empty(settings, reference.competence.rows.values())
    services = Services(settings.log_dir, settings.as_environment())
    try:
        services.start("intake", "intake")
        services.start("worker", "worker")
        # The whole country has thousands of units: the local run serves the demo units only (reference/demo).
        unit_args = [arg for unit_id in reference.demo_unit_ids for arg in ("--unit", unit_id)]
        services.start("consumers", "consume", *unit_args)
        # The demo units' desk, on the consumers' stores (loopback only).
        services.start("desk", "desk", *unit_args)
        services.start("lag-exporter", "lag-exporter")
        # The ministry's systems read the national figures while the pipeline runs, as in docker-compose.yml.
        services.start("national-stats", "stats", "serve")
        intake_url = f"http://{settings.intake_host}:{settings.intake_port}"
        wait_for_http(f"{intake_url}/healthz", services)
        # One officer's account for every demo unit's desk, its password drawn now and printed below.
        desk_password = add_officer(settings.desk_officers_path, DEMO_OFFICER, reference.demo_unit_ids)
        _print_banner(settings, intake_url, reference, broker.log_file if broker else None, desk_password)
        _feed_demo_traffic(settings, services, intake_url, reference, rate, duration_s)
    except KeyboardInterrupt:
        console.print("\nstopping…")
    finally:
        services.stop()
        if broker is not None and started_broker:
            broker.stop()
        console.print("stopped")


def _print_banner(settings: Settings, intake_url: str, reference: JurisdictionReference, broker_log: Path | None,
                  desk_password: str) -> None:
    host = settings.metrics_host
    console.print(f"[bold]Kafka[/]          {settings.bootstrap_servers}" + (f"  (log {broker_log})" if broker_log else ""))
    console.print(f"[bold]Intake[/]         {intake_url}/v1/reports/{{moncommissariat,brigade-numerique}}  docs {intake_url}/docs")
    console.print(f"[bold]Metrics[/]        intake {intake_url}/metrics  worker http://{host}:{settings.worker_metrics_port}/metrics"
                  f"  consumers http://{host}:{settings.consumer_metrics_port}/metrics"
                  f"  lag http://{host}:{settings.lag_exporter_port}/metrics"
                  f"  stats http://{host}:{settings.stats_port}/metrics")
    stats_url = f"http://{host}:{settings.stats_port}"
    console.print(f"[bold]Statistics[/]     {stats_url}/  (the national page)  JSON {stats_url}/v1/stats/departements"
                  f"  {stats_url}/v1/stats/monthly")
    console.print("[bold]Status[/]         .venv/bin/signalements status   (live view of throughput, lag, latency)")
    desk_url = f"http://{settings.desk_host}:{settings.desk_port}"
    console.print(f"[bold]Desk[/]           {desk_url}/  login {DEMO_OFFICER}, password {desk_password}; one page per unit:")
    for unit_id in reference.demo_unit_ids:
        console.print(f"                 {desk_url}/unites/{unit_id}")
    console.print(f"[bold]Unit stores[/]    {settings.unit_store_dir}/<unit_id>.sqlite3 for {', '.join(reference.demo_unit_ids)}")
    console.print(f"[bold]Service logs[/]   {settings.log_dir}")
    console.print("Ctrl-C stops everything.\n")


def _feed_demo_traffic(
    settings: Settings, services: Services, intake_url: str, reference: JurisdictionReference,
    rate: float, duration_s: float,
) -> None:
    units = set(reference.demo_unit_ids)
    communes = [commune for commune in reference.communes if commune.unit_id in units]
    stamp = int(time.time())
    generator = TrafficGenerator(communes, DEMO_MIX, seed=stamp, run_tag=f"demo{stamp}", live=True,
                                 places=places_of(reference.boundaries))
    submissions = generator.reports()
    sent = accepted = rejected = 0
    started = time.monotonic()
    next_summary = started + 2
    with httpx.Client(base_url=intake_url, timeout=15, headers=development_headers(settings)) as client:
        while duration_s <= 0 or time.monotonic() - started < duration_s:
            submission = next(submissions)
            response = client.post(submission.path, json=submission.submission)
            sent += 1
            accepted += response.status_code == 202
            rejected += response.status_code != 202
            if time.monotonic() >= next_summary:
                services.check_alive()
                cases, reports = count_stored_cases(settings.unit_store_dir)
                merged = f"{(reports - cases) / reports:.0%}" if reports else "-"
                console.print(
                    f"[{time.monotonic() - started:6.0f}s] sent {sent}  accepted {accepted}  "
                    f"rejected {rejected}  units' cases {cases}, reports {reports} ({merged} merged)"
                )
                next_summary += 2
            time.sleep(max(0.0, started + sent / rate - time.monotonic()))
