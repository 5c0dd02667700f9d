"""The national page of `stats serve` (consumers/national_page.py, consumers/france_map.py) over a real statistics
store fed the events a unit queue carries: the ranking by open points and by reports, the same numbers as the JSON
API and the CSV files, the map of France with one outline per département coloured by its open points, the monthly
series by force in Europe/Paris months; and the store's report count per point. The page in the real browser is
in tests/test_national_browser.py."""

from __future__ import annotations

import csv
import io
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from consumers import france_map as france_map_module
from consumers.case_events import CaseEvent
from consumers.france_map import FranceMap, shapes_cache_file
from consumers.national_stats import (
    STATS_MIGRATIONS,
    DepartementRank,
    MonthlyFigures,
    NationalStatsStore,
    points,
    stats_schema_migrations,
)
from consumers.paris_time import paris_time
from consumers.stats_publication import create_stats_app, draw_map_for, export_statistics
from consumers.store_schema import migrate
from devkit.synthetic_cases import (
    CHAMONIX,
    PARIS_11,
    SAINT_DENIS,
    SyntheticUnit,
    case_handled_event,
    case_linked,
    case_opened,
    case_updated,
)
from schemas.envelope import DecodedEvent, decode, encode
from schemas.events import CaseHandled, CaseOutcome
from signalements.metrics import PipelineMetrics
from signalements.settings import PROJECT_ROOT, Settings
from streams.jurisdiction import CommuneReference

SEPT, NOV = datetime(2026, 9, 10, tzinfo=UTC), datetime(2026, 11, 12, tzinfo=UTC)
WITHOUT_OUTLINE = {"975", "977", "978"}  # no polygon in the shipped boundaries

EXPECTED_RANKING = [
    {"rank": 1, "departement": "75", "open_points": 2, "dismantled": 0, "unfounded": 0, "total_points": 2,
     "reports": 3},
    {"rank": 2, "departement": "93", "open_points": 2, "dismantled": 1, "unfounded": 1, "total_points": 4,
     "reports": 8},
    {"rank": 3, "departement": "74", "open_points": 0, "dismantled": 1, "unfounded": 0, "total_points": 1,
     "reports": 1},
]
EXPECTED_MONTHLY = [
    {"month": "2026-09", "force": "GN", "opened": 1, "dismantled": 1, "unfounded": 0},
    {"month": "2026-09", "force": "PN", "opened": 3, "dismantled": 0, "unfounded": 0},
    {"month": "2026-11", "force": "PN", "opened": 3, "dismantled": 1, "unfounded": 1},
]


def decoded(event: CaseEvent) -> DecodedEvent:
    """A synthetic event as the statistics consumer decodes it from a unit queue."""
    message = encode(event.event_type, event.payload, event_id=event.event_id, source="/tests", key=event.key)
    return decode(list(message.headers.items()), event.key.encode(), message.value)


def handled(unit: SyntheticUnit, opened: CaseEvent, outcome: CaseOutcome, at: datetime, reports: int = 1) -> CaseEvent:
    return case_handled_event(CaseHandled(
        case_id=opened.key, unit_id=unit.unit_id, outcome=outcome, handled_at=at,
        opened_at=opened.payload.opened_at, departement=unit.departement, force=unit.force,  # type: ignore[attr-defined]
        report_count=reports,
    ))


def feed(store: NationalStatsStore, events: list[CaseEvent]) -> list[bool]:
    with store.engine.begin() as connection:
        return [store.apply(connection, decoded(event)) for event in events]


def known_traffic() -> list[CaseEvent]:
    """93: four points (one with 5 reports), one dismantled, one unfounded; 75: two open points, one with a report
    linked from a neighbouring unit; 74: one gendarmerie point, dismantled. October has no event."""
    a, b, c = (case_opened(SAINT_DENIS, key, SEPT) for key in "abc")
    d, e, f = case_opened(SAINT_DENIS, "d", NOV), case_opened(PARIS_11, "e", NOV), case_opened(PARIS_11, "f", NOV)
    g = case_opened(CHAMONIX, "g", SEPT)
    return [
        a, b, c, d, e, f, g,
        case_updated(SAINT_DENIS, "a", 5, NOV), a,  # the replayed opening does not lower the count
        case_linked(SAINT_DENIS, PARIS_11, "e", NOV),  # a report of 93's territory joining 75's point e
        handled(SAINT_DENIS, b, CaseOutcome.DISMANTLED, NOV), handled(SAINT_DENIS, c, CaseOutcome.UNFOUNDED, NOV),
        handled(CHAMONIX, g, CaseOutcome.DISMANTLED, SEPT),
    ]


@pytest.fixture(scope="module")
def map_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(state_dir=tmp_path_factory.mktemp("national-map"), kafka_bootstrap_servers="127.0.0.1:9")


@pytest.fixture(scope="module")
def france(map_settings: Settings) -> FranceMap:
    """The map from the shipped reference, dissolved once for the module (into its cache file)."""
    return FranceMap.from_settings(map_settings)


@pytest.fixture
def store(tmp_path: Path) -> NationalStatsStore:
    opened = NationalStatsStore.open(f"sqlite:///{tmp_path / 'national.sqlite3'}")
    feed(opened, known_traffic())
    return opened


@pytest.fixture
def client(store: NationalStatsStore, france: FranceMap) -> TestClient:
    return TestClient(create_stats_app(store, PipelineMetrics(), None, france))


def ranking_rows(page: str) -> list[tuple[str, list[int]]]:
    table = page[page.index('<table id="classement">'):page.index("</table>", page.index('<table id="classement">'))]
    return [(code, [int(n) for n in re.findall(r'<td class="nombre">(\d+)</td>', row)])
            for code, row in re.findall(r'<tr data-departement="([^"]+)">(.*?)</tr>', table, re.DOTALL)]


def map_panels(page: str) -> dict[str, list[tuple[str, int, str, str]]]:
    """Each panel's outlines: (département, colour class, tooltip, path)."""
    svg = page[page.index('<svg id="carte-france"'):page.index("</svg>", page.index('<svg id="carte-france"'))]
    panels = {}
    for chunk in svg.split('<g class="panneau')[1:]:
        key = re.search(r'data-panneau="([^"]+)"', chunk).group(1)  # type: ignore[union-attr]
        panels[key] = [(code, int(colour), title, path) for path, colour, code, title in re.findall(
            r'<path d="([^"]*)" class="classe-(\d)" data-departement="([^"]+)"><title>([^<]+)</title>', chunk)]
    return panels


def test_the_page_ranks_the_departements_by_open_points_or_reports_with_the_json_numbers(client: TestClient) -> None:
    api = client.get("/v1/stats/departements").json()
    assert api == EXPECTED_RANKING

    page = client.get("/")
    assert page.status_code == 200 and 'lang="fr"' in page.text
    assert ranking_rows(page.text) == [
        (row["departement"], [row["rank"], row["open_points"], row["dismantled"], row["unfounded"],
                              row["total_points"], row["reports"]]) for row in api]
    assert re.search(r'<tr data-departement="93">\s*<td class="nombre">2</td>\s*<td>Seine-Saint-Denis', page.text)
    assert re.search(r'id="total-ouverts">4<', page.text) and re.search(r'id="total-signalements">12<', page.text)
    assert re.search(r'id="total-departements">2<', page.text)
    assert f"Mis à jour le <span id=\"mis-a-jour\">{paris_time(datetime.now(UTC))[:10]}" in page.text

    by_reports = client.get("/", params={"tri": "signalements"}).text
    assert [code for code, _ in ranking_rows(by_reports)] == ["93", "75", "74"]
    assert re.search(r'aria-sort="descending"><a id="tri-signalements"', by_reports)
    assert [code for code, _ in ranking_rows(client.get("/", params={"tri": "departement"}).text)] == ["74", "75", "93"]
    assert [code for code, _ in ranking_rows(client.get("/", params={"tri": "n'importe"}).text)] == ["75", "93", "74"]


def test_the_csv_files_are_the_json_numbers_in_the_columns_of_the_export(
    client: TestClient, store: NationalStatsStore, tmp_path: Path,
) -> None:
    exported = {path.name: path for path in export_statistics(store, tmp_path / "export")}
    for name, route, model in (("departements.csv", "/v1/stats/departements", DepartementRank),
                               ("monthly.csv", "/v1/stats/monthly", MonthlyFigures)):
        download = client.get(f"/{name}")
        assert download.status_code == 200 and download.headers["content-type"].startswith("text/csv")
        assert f'filename="{name}"' in download.headers["content-disposition"]
        rows = list(csv.DictReader(io.StringIO(download.text)))
        assert list(rows[0]) == list(model.model_fields)
        numbers = [{k: (v if k in ("departement", "month", "force") else int(v)) for k, v in row.items()} for row in rows]
        assert numbers == client.get(route).json()
        assert download.content == exported[name].read_bytes(), "one CSV code path for the page and the export"
    assert client.get("/v1/stats/monthly").json() == EXPECTED_MONTHLY
    page = client.get("/").text
    assert 'href="/departements.csv"' in page and 'href="/monthly.csv"' in page


def test_the_map_draws_each_departement_once_coloured_by_its_open_points(client: TestClient) -> None:
    panels = map_panels(client.get("/").text)
    everywhere = [outline for key, outlines in panels.items() if key != "petite-couronne" for outline in outlines]
    codes = [code for code, _, _, _ in everywhere]
    named = set(CommuneReference.load(PROJECT_ROOT / "reference" / "france").departement_names)
    assert len(codes) == len(set(codes)) == 101 and set(codes) == named - WITHOUT_OUTLINE
    assert [code for code, _, _, _ in panels["petite-couronne"]] == ["75", "92", "93", "94"]
    assert {key: len(outlines) for key, outlines in panels.items() if key not in ("metropole", "petite-couronne")} == {
        "971": 1, "972": 1, "973": 1, "974": 1, "976": 1}

    by_code = {code: (colour, title) for code, colour, title, _ in everywhere}
    assert by_code["93"] == (by_code["93"][0], "Seine-Saint-Denis (93) : 2 points ouverts, 1 démantelé, 1 infondé ; "
                                               "8 signalements")
    assert by_code["93"][0] > 0 and by_code["75"][0] == by_code["93"][0]  # the same open points, the same colour
    assert by_code["74"] == (0, "Haute-Savoie (74) : 0 point ouvert, 1 démantelé, 0 infondé ; 1 signalement")
    assert by_code["29"] == (0, "Finistère (29) : aucun point signalé")
    assert sum(colour > 0 for colour, _ in by_code.values()) == 2

    for key, outlines in panels.items():
        width, height = (600, 600) if key == "metropole" else (112, 96)
        for code, _, _, path in outlines:
            xs, ys = (numbers := [float(n) for n in re.findall(r"-?\d+(?:\.\d+)?", path)])[0::2], numbers[1::2]
            assert len(xs) >= 4 and path.startswith("M"), (key, code)
            assert 0 <= min(xs) and max(xs) <= width and 0 <= min(ys) and max(ys) <= height, (key, code)


def test_the_departement_outlines_are_read_from_their_cache_after_the_first_dissolve(
    france: FranceMap, map_settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    cached = list((map_settings.state_dir / "cache").glob("departement-shapes-*.npz"))
    assert cached == [shapes_cache_file(map_settings, map_settings.boundaries_file)]  # type: ignore[arg-type]

    def no_dissolve(*_: object) -> None:
        raise AssertionError("dissolved again instead of reading the cache")

    monkeypatch.setattr(france_map_module, "dissolve_by_departement", no_dissolve)
    again = FranceMap.from_settings(map_settings)
    assert [(d.panel.key, d.outlines) for d in again.panels] == [(d.panel.key, d.outlines) for d in france.panels]

    # Another commune reference is another cache file (made from it, not the one above).
    communes = tmp_path / "france"
    shutil.copytree(map_settings.commune_reference_dir, communes)
    with (communes / "communes.csv").open("a", encoding="utf-8") as handle:
        handle.write("99999;former;Essai;01001;01;84;;;0\n")
    other = map_settings.model_copy(update={"commune_reference_dir": communes})
    assert shapes_cache_file(other, map_settings.boundaries_file) != cached[0]  # type: ignore[arg-type]


def test_the_monthly_series_is_a_table_and_a_chart_per_force_on_months_without_gaps(client: TestClient) -> None:
    page = client.get("/").text
    assert re.findall(r'<tr data-mois="([^"]+)" data-force="([^"]+)">', page) == [
        (row["month"], row["force"]) for row in EXPECTED_MONTHLY]
    assert re.search(r'data-force="PN">\s*<td>novembre 2026</td>\s*<td>Police nationale</td>\s*'
                     r'<td class="nombre">3</td>\s*<td class="nombre">1</td>\s*<td class="nombre">1</td>', page)
    for force, opened in (("PN", [3, 0, 3]), ("GN", [1, 0, 0])):
        chart = page[page.index(f'id="graphique-{force}"'):]
        chart = chart[:chart.index("</svg>")]
        lines = dict(re.findall(r'data-serie="(\w+)">\s*<polyline points="([^"]+)"', chart))
        assert sorted(lines) == ["dismantled", "opened", "unfounded"]
        assert all(len(points.split()) == 3 for points in lines.values()), "September, October (empty), November"
        tooltips = re.findall(r"<title>([^<]+) ouverts</title>", chart)
        name = "Police nationale" if force == "PN" else "Gendarmerie nationale"
        assert tooltips == [f"{name}, {month} : {n}" for month, n in
                            zip(("septembre 2026", "octobre 2026", "novembre 2026"), opened, strict=True)]
        heights = [float(point.split(",")[1]) for point in lines["opened"].split()]
        assert (heights[0] < heights[1]) == (opened[0] > 0) and heights[1] == max(heights)  # 0 is the lowest line


def test_a_points_reports_rise_with_its_cases_events_and_its_months_are_paris_months(tmp_path: Path) -> None:
    store = NationalStatsStore.open(f"sqlite:///{tmp_path / 'national.sqlite3'}")
    late = datetime(2026, 9, 30, 22, 30, tzinfo=UTC)  # already 1 October in Paris
    opened = case_opened(SAINT_DENIS, "tard", late)
    assert feed(store, [opened]) == [True]
    assert feed(store, [case_updated(SAINT_DENIS, "tard", 3, late)]) == [True]
    assert feed(store, [opened, case_linked(PARIS_11, SAINT_DENIS, "tard", late)]) == [False, False]  # 1 and 2 < 3
    assert feed(store, [case_linked(PARIS_11, SAINT_DENIS, "inconnu", late)]) == [False]  # no point from a link alone
    assert feed(store, [handled(SAINT_DENIS, opened, CaseOutcome.DISMANTLED, late, reports=4)]) == [True]
    assert [(r.departement, r.reports, r.dismantled, r.total_points) for r in store.departement_ranking()] == [
        ("93", 4, 1, 1)]
    assert [(m.month, m.opened, m.dismantled) for m in store.monthly_series()] == [("2026-10", 1, 1)]
    assert store.last_change() is not None and paris_time(store.last_change())


def test_a_store_made_before_the_report_count_counts_its_points_with_one_report(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'national.sqlite3'}"
    before = NationalStatsStore.open(url)
    with before.engine.begin() as connection:  # back to version 1: the column dropped, its migration forgotten
        connection.exec_driver_sql("DROP TABLE points")
        connection.execute(stats_schema_migrations.delete())
        assert migrate(connection, STATS_MIGRATIONS[:1], stats_schema_migrations) == [1]
        connection.exec_driver_sql(
            "INSERT INTO points (case_id, departement, force, opened_month, status, handled_month, updated_at) "
            "VALUES ('ancien', '13', 'PN', '2026-01', 'open', NULL, '2026-01-05T10:00:00+00:00')")
    before.close()
    store = NationalStatsStore.open(url)
    with store.engine.connect() as connection:
        assert connection.execute(select(points.c.case_id, points.c.reports)).all() == [("ancien", 1)]
    assert [(r.departement, r.open_points, r.reports) for r in store.departement_ranking()] == [("13", 1, 1)]


def test_without_commune_boundaries_the_page_gives_the_figures_without_a_map(store: NationalStatsStore) -> None:
    page = TestClient(create_stats_app(store, PipelineMetrics())).get("/").text
    assert "Carte indisponible" in page and 'id="carte-france"' not in page
    assert [code for code, _ in ranking_rows(page)] == ["75", "93", "74"]


def test_the_map_joins_the_page_once_drawn_in_the_background(
    store: NationalStatsStore, map_settings: Settings, france: FranceMap,
) -> None:
    app = create_stats_app(store, PipelineMetrics(), france_map=FranceMap({"75": "Paris"}, {}))
    app.state.national_page.map_pending = True
    client = TestClient(app)
    waiting = client.get("/").text
    assert 'id="carte-en-preparation"' in waiting and 'id="carte-france"' not in waiting
    assert [code for code, _ in ranking_rows(waiting)] == ["75", "93", "74"], "the figures do not wait for the map"
    draw_map_for(app.state.national_page, map_settings)  # from the module's cache (the fixture ``france`` made it)
    drawn = client.get("/").text
    assert 'id="carte-france"' in drawn and 'id="carte-en-preparation"' not in drawn
