"""`signalements bench` end to end on the real broker, small: its figures exist and hold together (the benchmark's
numbers themselves are measured by running it, never asserted here)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pipeline_probe import broker_access_environment

from signalements.kafka_clients import new_admin
from signalements.kafka_security import Role
from signalements.settings import PROJECT_ROOT, Settings

# Starts the pipeline's services, a broker or external tools as processes (see tests/conftest.py).
pytestmark = pytest.mark.processes

REPORTS = 60
STEADY_RATE, STEADY_S = 10, 3


def test_bench_measures_the_pipeline_the_relay_and_what_each_report_costs(kafka_bootstrap: str, tmp_path: Path) -> None:
    env = {"PATH": "", "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "SIGNALEMENTS_STATE_DIR": str(tmp_path),
           **broker_access_environment()}
    # Two workers in the group, as the scale-out figure is measured; then a short steady phase.
    command = ["bench", "--reports", str(REPORTS), "--workers", "2", "--steady-rate", str(STEADY_RATE),
               "--steady-seconds", str(STEADY_S)]
    result = subprocess.run([sys.executable, "-m", "cli.main", *command],
                            capture_output=True, text=True, env=env, timeout=600, cwd=PROJECT_ROOT)
    assert result.returncode == 0, result.stderr[-4000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])

    assert figures["reports"] == REPORTS and figures["workers"] == 2 and figures["pipeline_reports_per_s"] > 0 and figures["relay_records_per_s"] > 0
    assert figures["pipeline_to_relay_ratio"] == pytest.approx(
        figures["pipeline_reports_per_s"] / figures["relay_records_per_s"], abs=0.001)
    assert 0 < figures["latency_p50_s"] <= figures["latency_p95_s"] <= figures["latency_p99_s"]
    assert figures["worker_cpu_ms_per_report"] > 0
    # The steady phase: its own reports, offered at about the asked rate, their latency measured apart.
    assert figures["steady_rate"] == STEADY_RATE and 0 < figures["steady_offered_per_s"] <= STEADY_RATE * 1.1
    assert 0 < figures["steady_latency_p50_s"] <= figures["steady_latency_p95_s"] <= figures["steady_latency_p99_s"]
    # The worker alone finishes before the consumers have stored everything.
    assert figures["worker_reports_per_s"] >= figures["pipeline_reports_per_s"] > 0
    assert figures["worker_to_relay_ratio"] == pytest.approx(
        figures["worker_reports_per_s"] / figures["relay_records_per_s"], abs=0.001)
    # One changelog record per report at most (the case record; a duplicate writes none): issue 15's target.
    assert 0 < figures["records_per_report_changelogs"] <= 1.0
    # Each report makes its enriched record (normalized in the same agent: nothing on reports.normalized; a few route
    # ticks besides) and at least its case event on a unit queue.
    assert 1 <= figures["records_per_report_internal"] < 1.5 and figures["records_per_report_unit_queues"] >= 1
    parts = [value for name, value in figures.items() if name.startswith("records_per_report_")]
    assert figures["records_written_per_report"] == pytest.approx(sum(parts), abs=0.05)


def test_bench_units_creates_a_queue_and_an_actions_topic_per_unit_then_deletes_them(
    kafka_bootstrap: str, settings: Settings, tmp_path: Path,
) -> None:
    env = {"PATH": "", "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "SIGNALEMENTS_STATE_DIR": str(tmp_path),
           **broker_access_environment()}
    result = subprocess.run([sys.executable, "-m", "cli.main", "bench-units", "--units", "25", "--no-restart"],
                            capture_output=True, text=True, env=env, timeout=300, cwd=PROJECT_ROOT)
    assert result.returncode == 0, result.stderr[-4000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["units"] == 25 and figures["topics"] == 50
    assert figures["partitions"] == 50, "one partition per unit topic"
    assert figures["create_s"] > 0 and figures["delete_s"] >= 0
    assert figures["brokers_rss_mb_after"] is None, "another cluster's memory is not this machine's to read"
    admin = new_admin(settings, Role.ADMIN, "tests")
    try:
        deadline = time.monotonic() + 30
        while any(name.startswith(figures["namespace"]) for name in admin.list_topics()):
            assert time.monotonic() < deadline, "the benchmark's topics are deleted"
            time.sleep(0.5)
    finally:
        admin.close()
