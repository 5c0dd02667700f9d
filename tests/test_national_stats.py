"""The national statistics against a known traffic set, on the real broker, as real processes."""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from consumer_probe import STORE_BACKENDS, produce
from pipeline_probe import free_port, metric, scrape, wait_for

from devkit.synthetic_cases import (
    CHAMONIX,
    PARIS_11,
    SAINT_DENIS,
    CaseEvent,
    SyntheticUnit,
    case_handled_event,
    case_opened,
    case_updated,
)
from devkit.throwaway_postgres import create_database
from schemas.events import CaseHandled, CaseOutcome
from signalements.settings import Settings

# Starts the pipeline's services, a broker or external tools as processes (see tests/conftest.py).
pytestmark = pytest.mark.processes

SEPT, OCT = datetime(2026, 9, 10, tzinfo=UTC), datetime(2026, 10, 12, tzinfo=UTC)


@pytest.fixture(params=STORE_BACKENDS)
def settings(request: pytest.FixtureRequest, settings: Settings) -> Settings:
    """The statistics store on SQLite (the default) and on PostgreSQL."""
    if request.param == "sqlite":
        return settings
    return settings.model_copy(update={"stats_database_url": create_database(request.getfixturevalue("postgres_server"))})


def handled(unit: SyntheticUnit, opened: CaseEvent, outcome: CaseOutcome, at: datetime, to: str | None = None
            ) -> CaseEvent:
    return case_handled_event(CaseHandled(
        case_id=opened.key, unit_id=unit.unit_id, outcome=outcome, handled_at=at,
        opened_at=opened.payload.opened_at, departement=unit.departement, force=unit.force,  # type: ignore[attr-defined]
        report_count=1, transferred_to=to,
    ))


def transferred_copy(opened: CaseEvent, to: SyntheticUnit) -> CaseEvent:
    """The opening a transfer puts on the other unit's queue: same case id, the other unit."""
    payload = opened.payload.model_copy(update={"unit_id": to.unit_id})
    return CaseEvent(opened.event_type, payload, f"transfer-{opened.event_id}")


def test_ranking_and_monthly_series_from_a_known_traffic_set(settings: Settings, tmp_path: Path) -> None:
    settings = settings.model_copy(update={"stats_port": free_port()})
    a, b, c = (case_opened(SAINT_DENIS, key, SEPT) for key in "abc")
    d = case_opened(SAINT_DENIS, "d", OCT)
    e, f = case_opened(PARIS_11, "e", OCT), case_opened(PARIS_11, "f", OCT)
    produce(settings, SAINT_DENIS.unit_id, [
        a, b, c, d, case_updated(SAINT_DENIS, "a", 2, OCT), a,  # an update and a replay change no figure
        handled(SAINT_DENIS, a, CaseOutcome.DISMANTLED, OCT), handled(SAINT_DENIS, b, CaseOutcome.UNFOUNDED, OCT),
        transferred_copy(e, SAINT_DENIS),  # a transfer from Paris: read before Paris's own events, same point
    ])
    produce(settings, PARIS_11.unit_id, [
        e, f, f, handled(PARIS_11, e, CaseOutcome.TRANSFERRED, OCT, SAINT_DENIS.unit_id),
    ])

    env = {**os.environ, **settings.as_environment()}
    log = (tmp_path / "stats.log").open("ab")
    server = subprocess.Popen([sys.executable, "-m", "cli.main", "stats", "serve"], stdout=log,
                              stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{settings.stats_port}"
    try:
        def ranking() -> list[dict[str, object]] | None:
            try:
                return httpx.get(f"{base}/v1/stats/departements", timeout=5).json()
            except httpx.HTTPError:
                assert server.poll() is None, (tmp_path / "stats.log").read_text()
                return None

        wait_for(lambda: (r := ranking()) and sum(int(x["total_points"]) for x in r) == 6, timeout_s=120,
                 what="the six points of 75 and 93 counted")
        # A unit queue created after the statistics started is found by the pattern subscription.
        g = case_opened(CHAMONIX, "g", SEPT)
        produce(settings, CHAMONIX.unit_id, [g, handled(CHAMONIX, g, CaseOutcome.DISMANTLED, SEPT)])
        final = wait_for(lambda: (r := ranking()) and len(r) == 3 and r, timeout_s=120, what="the new unit's point")
        monthly = httpx.get(f"{base}/v1/stats/monthly", timeout=5).json()
        samples = scrape(f"{base}/metrics")
        # The figures are served from the start; the map joins the page once drawn (in the background).
        def page_with_its_map() -> str | None:
            text = httpx.get(f"{base}/", timeout=10).text
            return text if 'id="carte-france"' in text else None

        page = wait_for(page_with_its_map, timeout_s=120, what="the page's map drawn")
        served_csv = httpx.get(f"{base}/departements.csv", timeout=10).text
    finally:
        server.terminate()
        server.wait(timeout=60)

    expected_ranking = [
        {"rank": 1, "departement": "75", "open_points": 2, "dismantled": 0, "unfounded": 0, "total_points": 2,
         "reports": 2},
        {"rank": 2, "departement": "93", "open_points": 2, "dismantled": 1, "unfounded": 1, "total_points": 4,
         "reports": 5},  # a's update brought it to 2 reports
        {"rank": 3, "departement": "74", "open_points": 0, "dismantled": 1, "unfounded": 0, "total_points": 1,
         "reports": 1},
    ]
    expected_monthly = [
        {"month": "2026-09", "force": "GN", "opened": 1, "dismantled": 1, "unfounded": 0},
        {"month": "2026-09", "force": "PN", "opened": 3, "dismantled": 0, "unfounded": 0},
        {"month": "2026-10", "force": "PN", "opened": 3, "dismantled": 1, "unfounded": 1},
    ]
    assert final == expected_ranking
    assert monthly == expected_monthly
    assert metric(samples, "signalements_consumer_events_total", event_type="case.opened", outcome="duplicate") == 3
    # The national page of the same service: its ranking rows, its map (every département drawn), its CSV.
    assert re.findall(r'<tr data-departement="([^"]+)">', page) == ["75", "93", "74"]
    assert len(re.findall(r'<path d="M[^"]+" class="classe-\d" data-departement=', page)) == 101 + 4
    assert "Seine-Saint-Denis (93) : 2 points ouverts, 1 démantelé, 1 infondé ; 5 signalements" in page

    out = tmp_path / "export"
    exported = subprocess.run([sys.executable, "-m", "cli.main", "stats", "export", "--out", str(out)],
                              capture_output=True, text=True, env=env, timeout=120)
    assert exported.returncode == 0, exported.stderr
    with (out / "departements.csv").open(newline="") as handle:
        assert [{k: (v if k == "departement" else int(v)) for k, v in row.items()} for row in csv.DictReader(handle)
                ] == expected_ranking
        handle.seek(0)
        assert handle.read() == served_csv, "the page's CSV is the export's"
    with (out / "monthly.csv").open() as handle:
        rows = [{k: (int(v) if k not in ("month", "force") else v) for k, v in row.items()}
                for row in csv.DictReader(handle)]
        assert rows == expected_monthly
    for chart in ("departements.png", "monthly.png"):
        data = (out / chart).read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 5000
