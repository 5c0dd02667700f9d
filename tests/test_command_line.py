"""The `signalements` entry point: every service and tool is a sub-command with its own --help."""

from __future__ import annotations

import subprocess
import sys

import pytest

SUBCOMMANDS = [
    ["broker", "start"], ["broker", "stop"], ["broker", "status"], ["topics"], ["intake"], ["worker"], ["consume"],
    ["demo"], ["bench"], ["bench-dedup"],
    ["cases", "list"], ["cases", "show"], ["cases", "parked"], ["cases", "handle"], ["stats", "serve"], ["stats", "export"],
    ["bench-consumer"],
]


@pytest.mark.parametrize("subcommand", SUBCOMMANDS, ids=" ".join)
def test_every_subcommand_has_help(subcommand: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "signalements.cli", *subcommand, "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "Usage:" in result.stdout


def test_broker_start_uses_the_given_cluster_and_starts_nothing(tmp_path) -> None:  # noqa: ANN001
    env = {"KAFKA_BOOTSTRAP_SERVERS": "kafka.example:9092", "SIGNALEMENTS_STATE_DIR": str(tmp_path), "PATH": ""}
    result = subprocess.run(
        [sys.executable, "-m", "signalements.cli", "broker", "start"], capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "starting nothing" in result.stdout
    assert not (tmp_path / "kafka").exists()


def test_broker_start_status_stop_with_logs_in_the_state_directory(tmp_path) -> None:  # noqa: ANN001
    from pipeline_probe import free_port

    env = {
        **{k: v for k, v in __import__("os").environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"},
        "SIGNALEMENTS_STATE_DIR": str(tmp_path),
        "SIGNALEMENTS_LOCAL_BROKER_PORT": str(free_port()),
        "SIGNALEMENTS_LOCAL_CONTROLLER_PORT": str(free_port()),
    }

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "signalements.cli", *args], capture_output=True, text=True, env=env, timeout=120
        )

    try:
        started = cli("broker", "start")
        assert started.returncode == 0, started.stderr
        assert cli("broker", "status").returncode == 0
        log = tmp_path / "kafka" / "broker.log"
        assert "Kafka Server started" in log.read_text()
    finally:
        stopped = cli("broker", "stop")
    assert stopped.returncode == 0
    assert cli("broker", "status").returncode == 1
