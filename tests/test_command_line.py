"""The `signalements` entry point: every service and tool is a sub-command with its own --help."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

# Starts the pipeline's services, a broker or external tools as processes (see tests/conftest.py).
pytestmark = pytest.mark.processes

SUBCOMMANDS = [
    ["broker", "start"], ["broker", "stop"], ["broker", "status"], ["topics"], ["intake"], ["worker"], ["consume"],
    ["demo"], ["bench"], ["bench-dedup"],
    ["cases", "list"], ["cases", "show"], ["cases", "parked"], ["cases", "handle"], ["stats", "serve"], ["stats", "export"],
    ["bench-consumer"], ["bench-intake"], ["bench-jurisdiction"], ["generate"], ["replay"], ["status"], ["contract"],
    ["lag-exporter"], ["desk"], ["bench-desk"], ["bench-units"], ["resolve"], ["reference"], ["dead-letters"], ["unrouted"],
    ["access", "grant"], ["access", "revoke"], ["access", "show"], ["intake-clients", "add"], ["compose-secrets"],
    ["desk-officers", "add"], ["desk-officers", "revoke"], ["desk-officers", "list"],
]
PANELS = {
    "Services": ["topics", "intake", "worker", "consume", "desk", "lag-exporter", "stats"],
    "Operator tools": ["status", "contract", "replay", "resolve", "cases", "reference", "dead-letters", "unrouted",
                       "access", "intake-clients", "desk-officers"],
    "Development and benchmarks": ["demo", "generate", "bench", "bench-intake", "bench-consumer", "bench-jurisdiction",
                                   "bench-dedup", "bench-desk", "bench-units", "compose-secrets", "broker"],
}


def top_level_help(*python_code: str) -> str:
    """``signalements --help``, wide enough to hold every line, after running ``python_code`` in the process."""
    code = "; ".join([*python_code, "from cli.main import app", "app(['--help'], prog_name='signalements')"])
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "COLUMNS": "200", "TERMINAL_WIDTH": "200"})
    assert result.returncode == 0, result.stderr
    return result.stdout


def panel_commands(help_text: str) -> dict[str, list[str]]:
    panels: dict[str, list[str]] = {}
    current = None
    for line in help_text.splitlines():
        if match := re.match(r"^╭─ (.+?) ─", line):
            current = match.group(1)
            panels[current] = []
        elif current and (match := re.match(r"^│ ([a-z][a-z-]*) ", line)):
            panels[current].append(match.group(1))
    return panels


def test_help_groups_services_operator_tools_and_development_commands() -> None:
    panels = panel_commands(top_level_help())
    assert {name: sorted(commands) for name, commands in panels.items() if name != "Options"} == {
        name: sorted(commands) for name, commands in PANELS.items()}


def test_without_the_development_kit_the_command_line_offers_no_development_command() -> None:
    """As in the runtime image, which does not hold devkit/."""
    panels = panel_commands(top_level_help("import sys", "sys.modules['devkit'] = None"))
    assert "Development and benchmarks" not in panels
    assert sorted(panels["Services"]) == sorted(PANELS["Services"])


@pytest.mark.parametrize("subcommand", SUBCOMMANDS, ids=" ".join)
def test_every_subcommand_has_help(subcommand: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", *subcommand, "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "Usage:" in result.stdout


def test_desk_officers_are_given_a_password_once_for_known_units_and_revoked(tmp_path) -> None:  # noqa: ANN001
    from consumers.desk_officers import DeskOfficers

    env = {**os.environ, "SIGNALEMENTS_STATE_DIR": str(tmp_path), "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9"}

    def officers(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "cli.main", "desk-officers", *args], capture_output=True,
                              text=True, env=env, timeout=60)

    unknown = officers("add", "--login", "brigadier.martin", "--unit", "gn-99-nulle-part")
    assert unknown.returncode == 1 and "unknown unit(s): gn-99-nulle-part" in unknown.stderr
    added = officers("add", "--login", "brigadier.martin", "--unit", "gn-74-chamonix-mont-blanc", "--unit", "cross-74")
    assert added.returncode == 0, added.stderr
    password = added.stdout.strip()
    accounts = DeskOfficers(tmp_path / "secrets" / "desk-officers.json")
    assert accounts.authenticate("brigadier.martin", password) is not None
    assert accounts.authenticate("brigadier.martin", password + "x") is None
    assert password not in (tmp_path / "secrets" / "desk-officers.json").read_text(encoding="utf-8")
    assert officers("list").stdout == "brigadier.martin\tgn-74-chamonix-mont-blanc,cross-74\n"
    assert officers("revoke", "--login", "brigadier.martin").returncode == 0
    assert accounts.current("brigadier.martin") is None
    assert officers("revoke", "--login", "brigadier.martin").returncode == 1


def test_broker_start_uses_the_given_cluster_and_starts_nothing(tmp_path) -> None:  # noqa: ANN001
    env = {"KAFKA_BOOTSTRAP_SERVERS": "kafka.example:9092", "SIGNALEMENTS_STATE_DIR": str(tmp_path), "PATH": ""}
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", "broker", "start"], capture_output=True, text=True, env=env, timeout=60
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
            [sys.executable, "-m", "cli.main", *args], capture_output=True, text=True, env=env, timeout=120
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
