"""`signalements status` for real: against a running pipeline (its /metrics endpoints, and a real Prometheus'
/federate), as JSON with --once, and as the live view in a real terminal (Debian's tmux, read with capture-pane)."""

from __future__ import annotations

import io
import json
import os
import select
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from pipeline_probe import RunningPipeline, wait_for
from prometheus_server import PrometheusServer, observed_pipeline
from sample_submissions import conversation_delivery_network, distinct_point, portal_dealing_point

from ops.status import LatencyPercentiles, StatusSnapshot, quantile_from_buckets, render
from signalements.settings import PROJECT_ROOT

# Starts the pipeline's services, a broker or external tools as processes (see tests/conftest.py).
pytestmark = pytest.mark.processes

# Every report also goes to its département's CROSS queue: those run too, or their queues would lag forever.
UNITS = ["pn-75-pp", "gn-74-chamonix-mont-blanc"]
CROSS_UNITS = ["cross-75", "cross-74"]
MONCOMMISSARIAT, BRIGADE = "moncommissariat", "brigade-numerique"


@pytest.fixture(scope="module")
def observed(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningPipeline, PrometheusServer]]:
    with observed_pipeline(kafka_bootstrap, tmp_path_factory.mktemp("status"), UNITS, CROSS_UNITS) as observed:
        yield observed


def status_command(pipeline: RunningPipeline, *args: str) -> list[str]:
    return [sys.executable, "-m", "cli.main", "status", *args]


def status_env(pipeline: RunningPipeline) -> dict[str, str]:
    return {**os.environ, **pipeline.settings.as_environment()}


def status_json(pipeline: RunningPipeline, *args: str) -> dict[str, Any]:
    result = subprocess.run(
        status_command(pipeline, "--once", "--json", *args), env=status_env(pipeline),
        check=False, capture_output=True, text=True, timeout=120, cwd=PROJECT_ROOT,
    )
    assert result.returncode == 0, result.stderr
    snapshot: dict[str, Any] = json.loads(result.stdout)
    return snapshot


def test_quantiles_match_prometheus_histogram_quantile() -> None:
    # The same buckets as the recording-rule test of deploy/prometheus/tests/, where Prometheus computes these.
    buckets = {0.5: 50.0, 1.0: 98.0, 3.0: 100.0, float("inf"): 100.0}
    assert quantile_from_buckets(0.5, buckets) == 0.5
    assert quantile_from_buckets(0.95, buckets) == 0.96875
    assert quantile_from_buckets(0.99, buckets) == 2.0
    assert quantile_from_buckets(0.99, {1.0: 0.0, float("inf"): 4.0}) == 1.0  # beyond the last finite bucket
    assert quantile_from_buckets(0.5, {1.0: 0.0, float("inf"): 0.0}) is None


def test_the_view_shows_a_recovering_worker_only_while_it_recovers() -> None:
    from rich.console import Console

    def screen(recovery: dict[str, int]) -> str:
        snapshot = StatusSnapshot(
            window_s=5, sources_up={"worker": True}, reports_per_s={}, reports_accepted={}, intake_rejected={},
            stage_in_per_s={}, cases_opened=0, cases_updated=0, cases_per_s=0.0, dedup_ratio=None, lag_by_kind={},
            lag_by_stage={}, max_unit_lag=None, lag_by_departement={},
            end_to_end_latency=LatencyPercentiles(p50=None, p95=None, p99=None, observations=0, over="window"),
            failed_by_stage={}, dead_letters=0, unrouted=0, worker_recovery=recovery,
        )
        console = Console(width=120, file=io.StringIO())
        console.print(render(snapshot))
        return console.file.getvalue()  # type: ignore[attr-defined]

    assert "recovering" in screen({"active": 35120, "standby": 7}) and "35120 (+7 standby)" in screen(
        {"active": 35120, "standby": 7}
    )
    assert "recovering" not in screen({"active": 0, "standby": 0})


def test_status_once_json_shows_the_pipeline(observed: tuple[RunningPipeline, PrometheusServer]) -> None:
    pipeline, prometheus = observed
    for _ in range(3):
        assert pipeline.post_report(MONCOMMISSARIAT, distinct_point(portal_dealing_point())) == 202
    for _ in range(2):
        assert pipeline.post_report(BRIGADE, distinct_point(conversation_delivery_network())) == 202
    invalid = portal_dealing_point()
    invalid["report"]["place"]["citycode"] = "7511"
    assert pipeline.post_report(MONCOMMISSARIAT, invalid) == 422

    # Faust commits its offsets every few seconds: the worker's lag reaches 0 a little after the reports are stored.
    snapshot = wait_for(
        lambda: (s := status_json(pipeline, "--window", "0.5"))["end_to_end_latency"]["observations"] == 5
        and s["lag_by_kind"] == {"worker": 0, "unit-consumer": 0} and s,
        timeout_s=120, what="status to show the five stored reports and no lag",
    )
    assert snapshot["sources_up"] and all(snapshot["sources_up"].values())
    assert snapshot["reports_accepted"] == {MONCOMMISSARIAT: 3, BRIGADE: 2}
    assert snapshot["intake_rejected"] == {"invalid": 1}
    assert snapshot["cases_opened"] == 5
    assert snapshot["max_unit_lag"] == 0
    assert snapshot["lag_by_stage"] == {"normalize": 0, "enrich": 0, "route": 0, "consume": 0}
    assert set(snapshot["lag_by_departement"]) == {"75", "74"}
    latency = snapshot["end_to_end_latency"]
    assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"] < 300
    assert snapshot["dead_letters"] == snapshot["unrouted"] == 0
    assert snapshot["worker_recovery"] == {"active": 0, "standby": 0}  # one worker, recovered long ago

    # The same figures through Prometheus' federation endpoint.
    wait_for(
        lambda: prometheus.scalar('sum(signalements_stage_records_out_total{stage="consume"})') == 5,
        timeout_s=60, what="prometheus to scrape the stored reports",
    )
    # Prometheus holds the lag exporter's last scrape, which may predate the worker's offset commit: let it converge.
    fields = ("reports_accepted", "intake_rejected", "cases_opened", "lag_by_kind")
    last: dict[str, Any] = {}

    def federated_matches() -> bool:
        last.update(status_json(pipeline, "--window", "0.5", "--prometheus", prometheus.url))
        return all(last[field] == snapshot[field] for field in fields)

    try:
        wait_for(federated_matches, timeout_s=60, what="the federated figures to match the direct ones")
    except AssertionError:
        assert {f: last.get(f) for f in fields} == {f: snapshot[f] for f in fields}
        raise
    assert len(last["sources_up"]) == 1 and all(last["sources_up"].values())


def test_status_rates_count_the_reports_of_the_window(observed: tuple[RunningPipeline, PrometheusServer]) -> None:
    pipeline, _ = observed
    before = status_json(pipeline, "--window", "0.2")["reports_accepted"]
    process = subprocess.Popen(
        status_command(pipeline, "--once", "--json", "--window", "6"), env=status_env(pipeline),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=PROJECT_ROOT,
    )
    assert process.stderr is not None
    # The reports go out between the command's two readings: after it says it took the first one.
    deadline = time.monotonic() + 60
    said = ""
    while "first reading taken" not in said:
        ready, _, _ = select.select([process.stderr], [], [], max(0.0, deadline - time.monotonic()))
        assert ready and process.poll() is None, f"status never took its first reading: {said}"
        said += process.stderr.readline()
    for _ in range(4):
        assert pipeline.post_report(BRIGADE, distinct_point(conversation_delivery_network())) == 202
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    snapshot = json.loads(out)
    assert snapshot["reports_accepted"][BRIGADE] == before.get(BRIGADE, 0) + 4
    assert round(snapshot["reports_per_s"][BRIGADE] * snapshot["window_s"]) == 4
    assert snapshot["reports_per_s"].get(MONCOMMISSARIAT, 0) == 0


def test_status_live_view_in_a_terminal(observed: tuple[RunningPipeline, PrometheusServer]) -> None:
    pipeline, _ = observed
    tmux = shutil.which("tmux")
    if tmux is None:
        pytest.fail("tmux is not installed: install it with `bash scripts/install-test-tools.sh`", pytrace=False)
    session = f"status-{uuid.uuid4().hex[:8]}"
    environment = [arg for key, value in pipeline.settings.as_environment().items() for arg in ("-e", f"{key}={value}")]
    subprocess.run(
        [tmux, "new-session", "-d", "-s", session, "-x", "120", "-y", "50", *environment,
         " ".join(status_command(pipeline, "--window", "3"))],
        check=True, cwd=PROJECT_ROOT, timeout=30,
    )
    try:

        def screen() -> str:
            return subprocess.run(
                [tmux, "capture-pane", "-p", "-t", session], capture_output=True, text=True, check=True, timeout=30,
            ).stdout

        def accepted_on_screen() -> int | None:
            for line in screen().splitlines():
                if MONCOMMISSARIAT in line:
                    return int(line.split("│")[3].strip())
            return None

        first = wait_for(accepted_on_screen, timeout_s=60, what="the live view to show the moncommissariat channel")
        text = screen()
        for heading in ("Reports", "reports/s", "waiting", "Cases and lag", "dedup", "Latency and errors", "e2e p99", "5/5"):
            assert heading in text, f"{heading!r} not on screen:\n{text}"
        # The view refreshes: two more reports appear without restarting it.
        for _ in range(2):
            assert pipeline.post_report(MONCOMMISSARIAT, distinct_point(portal_dealing_point())) == 202
        wait_for(lambda: accepted_on_screen() == first + 2, timeout_s=30, what=f"the screen to show {first + 2} accepted")
    finally:
        subprocess.run([tmux, "kill-session", "-t", session], check=False, timeout=30)
