"""The intake's tools on the command line: replay, generate, contract, bench-intake."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pipeline_probe import broker_access_environment, free_port, services_environment

from signalements.kafka_security import Role
from signalements.settings import PROJECT_ROOT, Settings

# Starts the pipeline's services, a broker or external tools as processes (see tests/conftest.py).
pytestmark = pytest.mark.processes


@pytest.mark.parametrize("subcommand", ["replay", "generate", "contract", "bench-intake"])
def test_each_tool_has_help(subcommand: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", subcommand, "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "Usage:" in result.stdout


def test_bench_intake_prints_its_figures_as_json(kafka_bootstrap: str, tmp_path: Path) -> None:
    env = {
        "PATH": "", "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "SIGNALEMENTS_STATE_DIR": str(tmp_path),
        **broker_access_environment(),
        "SIGNALEMENTS_INTAKE_PORT": str(free_port()),
    }
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", "bench-intake", "--reports", "60", "--warmup", "10",
         "--concurrency", "4"],
        capture_output=True, text=True, env=env, timeout=240, cwd=PROJECT_ROOT,
    )
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["benchmark"] == "intake"
    assert figures["accepted"] == 60 and figures["statuses"] == {"202": 60}
    assert figures["accepted_per_s"] > 0 and figures["latency_ms"]["p50"] > 0


def test_generate_sends_to_a_running_intake_and_the_answers_match_the_truth(
    settings: Settings, tmp_path: Path
) -> None:
    from devkit.local_run import Services, wait_for_http
    from signalements.topic_admin import ensure_topics, pipeline_topics

    ensure_topics(settings, Role.ADMIN, pipeline_topics(settings))
    services = Services(tmp_path / "log", services_environment(settings))
    url = f"http://{settings.intake_host}:{settings.intake_port}"
    truth = tmp_path / "truth.jsonl"
    try:
        services.start("intake", "intake")
        wait_for_http(f"{url}/healthz", services)
        result = subprocess.run(
            [sys.executable, "-m", "cli.main", "generate", "--send-to", url, "--count", "120",
             "--truth", str(truth), "--duplicate-share", "0.1", "--invalid-share", "0.1", "--seed", "11"],
            capture_output=True, text=True, timeout=240, cwd=PROJECT_ROOT, env={**os.environ, **settings.as_environment()},
        )
    finally:
        services.stop()
    assert result.returncode == 0, result.stderr
    statuses = json.loads(result.stdout.strip().splitlines()[-1])["statuses"]
    facts = [json.loads(line) for line in truth.read_text().splitlines()]
    assert len(facts) == 120
    assert statuses.get("202", 0) == sum(f["valid"] and not f["exact_duplicate"] for f in facts)
    assert statuses.get("200", 0) == sum(f["exact_duplicate"] for f in facts)
    assert statuses.get("422", 0) == sum(not f["valid"] for f in facts)
