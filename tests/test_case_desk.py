"""The operator's commands on the real broker: list and show cases, mark them handled, transfer one to another unit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from consumer_probe import STORE_BACKENDS, consuming, open_store, produce, relaying_actions, with_store_backend
from pipeline_probe import metric, read_topic, scrape, wait_for

from devkit.synthetic_cases import PARIS_11, SAINT_DENIS, case_opened, case_updated
from schemas.envelope import decode
from schemas.events import CaseHandled
from schemas.topics import Topics
from signalements.settings import Settings

# Starts the pipeline's services, a broker or external tools as processes (see tests/conftest.py).
pytestmark = pytest.mark.processes

T0 = datetime(2026, 10, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(params=STORE_BACKENDS)
def settings(request: pytest.FixtureRequest, settings: Settings) -> Settings:
    """Every test here runs on both store backends (SQLite files, and PostgreSQL with the same schema)."""
    return with_store_backend(request, settings)


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args], capture_output=True, text=True, timeout=120,
        env={**os.environ, **settings.as_environment()},
    )


def listed(settings: Settings, *args: str) -> list[dict[str, object]]:
    result = cli(settings, "cases", "list", "--unit", PARIS_11.unit_id, "--json", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_operator_lists_shows_handles_and_transfers_cases(settings: Settings) -> None:
    busy, recent, middle = (case_opened(PARIS_11, key, T0) for key in ("busy", "recent", "middle"))
    recent = case_opened(PARIS_11, "recent", T0 + timedelta(days=3))
    produce(settings, PARIS_11.unit_id, [
        busy, case_updated(PARIS_11, "busy", 2, T0 + timedelta(hours=1)),
        case_updated(PARIS_11, "busy", 3, T0 + timedelta(hours=2)),
        middle, case_updated(PARIS_11, "middle", 2, T0 + timedelta(days=1)), recent,
    ])
    paris, saint_denis = open_store(settings, PARIS_11.unit_id), open_store(settings, SAINT_DENIS.unit_id)

    with consuming(settings, [PARIS_11.unit_id, SAINT_DENIS.unit_id]), relaying_actions(settings):
        wait_for(lambda: paris.count("case_reports") == 6, what="the six reports stored")

        by_reports = [(c["case_id"], c["report_count"]) for c in listed(settings, "--sort", "reports")]
        assert by_reports == [(busy.key, 3), (middle.key, 2), (recent.key, 1)]
        assert [c["case_id"] for c in listed(settings, "--sort", "last-seen")] == [recent.key, middle.key, busy.key]
        table = cli(settings, "cases", "list", "--unit", PARIS_11.unit_id)
        assert busy.key[:8] in table.stdout and "3 case(s)" in table.stdout  # the short reference
        assert max(len(line) for line in table.stdout.splitlines()) <= 80, "fits an 80-column terminal"

        shown = cli(settings, "cases", "show", busy.key, "--unit", PARIS_11.unit_id, "--json")
        assert shown.returncode == 0, shown.stderr
        assert len(json.loads(shown.stdout)["reports"]) == 3

        dismantled = cli(settings, "cases", "handle", middle.key, "--unit", PARIS_11.unit_id, "--outcome", "dismantled")
        assert dismantled.returncode == 0, dismantled.stderr
        assert [c["case_id"] for c in listed(settings)] == [recent.key, busy.key]
        assert listed(settings, "--status", "dismantled")[0]["case_id"] == middle.key

        transferred = cli(
            settings, "cases", "handle", busy.key, "--unit", PARIS_11.unit_id, "--outcome", "transferred",
            "--to", SAINT_DENIS.unit_id, "--json",
        )
        assert transferred.returncode == 0, transferred.stderr
        assert json.loads(transferred.stdout)["transferred_to"] == SAINT_DENIS.unit_id
        received = wait_for(
            lambda: (c := saint_denis.get_case(busy.key)) and c.report_count == 3 and len(c.reports) == 3 and c,
            what="the whole case in the other unit's store",
        )
        assert received.status == "open" and received.unit_id == SAINT_DENIS.unit_id
        # The unit's consumer reads the handlings back from the queue; whichever of it and the command applies one
        # first, the other finds it applied.
        wait_for(
            lambda: metric(
                scrape(f"http://127.0.0.1:{settings.consumer_metrics_port}/metrics"),
                "signalements_consumer_events_total", event_type="case.handled",
            ) == 2,
            what="both handlings read back by the consumer",
        )
        assert paris.count("applied_events") == 6 + 2

    assert paris.get_case(busy.key).status == "transferred"  # type: ignore[union-attr]
    again = cli(settings, "cases", "handle", busy.key, "--unit", PARIS_11.unit_id, "--outcome", "dismantled")
    assert again.returncode == 2 and "already transferred" in again.stderr
    missing = cli(settings, "cases", "show", "no-such-case", "--unit", PARIS_11.unit_id)
    assert missing.returncode == 1

    queue = read_topic(settings, Topics(settings.topic_namespace).unit(PARIS_11.unit_id))
    handlings = [decode(r.headers, r.key, r.value).payload for r in queue if r.key in (busy.key.encode(), middle.key.encode())]
    outcomes = {h.case_id: (h.outcome.value, h.departement) for h in handlings if isinstance(h, CaseHandled)}
    assert outcomes == {middle.key: ("dismantled", "75"), busy.key: ("transferred", "75")}
