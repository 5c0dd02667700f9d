"""The national page in the real browser (Debian's chromium, headless, through Selenium and its chromedriver),
served by uvicorn on 127.0.0.1 from a real statistics store fed directly (no broker needed): in French, the map
coloured and named, the ranking sorted by reports from the keyboard, the CSV behind its link equal to the JSON,
every request to the page's own server, the text contrasted, and the page held on a 1366x768 screen and on a phone.

Screenshots are saved under tests/screenshots/ (ignored by git): national.png, national-phone.png.
"""

from __future__ import annotations

import csv
import io
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import uvicorn
from chromium_browser import chromium, screenshot
from pipeline_probe import free_port, wait_for
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from consumers.case_events import CaseEvent
from consumers.france_map import FranceMap
from consumers.national_stats import NationalStatsStore
from consumers.stats_publication import create_stats_app
from devkit.synthetic_cases import SyntheticUnit, case_handled_event, case_opened, case_updated
from schemas.channels import Force
from schemas.envelope import decode, encode
from schemas.events import CaseHandled, CaseOutcome
from signalements.metrics import PipelineMetrics
from signalements.settings import Settings

# Starts an external tool (chromium) as a process (see tests/conftest.py).
pytestmark = pytest.mark.processes

# (unit, open points, reports of each point): Seine-Saint-Denis first by open points, Paris first by reports.
TRAFFIC = [
    (SyntheticUnit("pn-93-pp", "93066", "Saint-Denis", "93", Force.POLICE), 9, 1),
    (SyntheticUnit("pn-75-pp", "75111", "Paris 11e Arrondissement", "75", Force.POLICE), 6, 4),
    (SyntheticUnit("pn-13-marseille", "13203", "Marseille 3e Arrondissement", "13", Force.POLICE), 5, 1),
    (SyntheticUnit("pn-69-lyon", "69387", "Lyon 7e Arrondissement", "69", Force.POLICE), 3, 1),
    (SyntheticUnit("gn-38-vif", "38545", "Vif", "38", Force.GENDARMERIE), 2, 1),
    (SyntheticUnit("pn-976-mamoudzou", "97611", "Mamoudzou", "976", Force.POLICE), 2, 2),
    (SyntheticUnit("gn-74-chamonix-mont-blanc", "74056", "Chamonix-Mont-Blanc", "74", Force.GENDARMERIE), 1, 1),
    (SyntheticUnit("gn-977-saint-barthelemy", "97701", "Saint-Barthélemy", "977", Force.GENDARMERIE), 1, 1),
]
CONTRASTED = ["h1", ".maj", ".compteurs p", "#classement td", "#classement th a", ".bandeau a", ".legende li", ".note",
              "#mensuel td", "figcaption"]
CONTRAST_SCRIPT = """
function luminance(colour) {
  const [r, g, b] = colour.match(/[\\d.]+/g).slice(0, 3).map(Number).map(v => v / 255)
    .map(v => v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4));
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
}
function background(element) {
  for (let e = element; e; e = e.parentElement) {
    const colour = getComputedStyle(e).backgroundColor;
    if (colour !== "rgba(0, 0, 0, 0)" && colour !== "transparent") return colour;
  }
  return "rgb(255, 255, 255)";
}
const element = document.querySelector(arguments[0]);
const [a, b] = [luminance(getComputedStyle(element).color), luminance(background(element))];
return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
"""


def decoded_events(events: list[CaseEvent]) -> Iterator[object]:
    for event in events:
        message = encode(event.event_type, event.payload, event_id=event.event_id, source="/tests", key=event.key)
        yield decode(list(message.headers.items()), event.key.encode(), message.value)


def national_traffic() -> list[CaseEvent]:
    """Each unit's open points over three months, with their reports, and one point handled per unit."""
    events: list[CaseEvent] = []
    for unit, count, reports in TRAFFIC:
        for number in range(count + 1):  # the last one handled
            opened = case_opened(unit, f"{unit.departement}-{number}", datetime(2026, 9 + number % 3, 8, tzinfo=UTC))
            events.append(opened)
            if reports > 1:
                events.append(case_updated(unit, f"{unit.departement}-{number}", reports, opened.payload.opened_at))  # type: ignore[attr-defined]
        events.append(case_handled_event(CaseHandled(
            case_id=opened.key, unit_id=unit.unit_id, outcome=CaseOutcome.DISMANTLED if count % 2 else
            CaseOutcome.UNFOUNDED, handled_at=datetime(2026, 11, 20, tzinfo=UTC), opened_at=opened.payload.opened_at,  # type: ignore[attr-defined]
            departement=unit.departement, force=unit.force, report_count=reports)))
    return events


@pytest.fixture(scope="module")
def national_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    state = tmp_path_factory.mktemp("national")
    settings = Settings(state_dir=state, kafka_bootstrap_servers="127.0.0.1:9")
    store = NationalStatsStore.open(f"sqlite:///{Path(state) / 'national.sqlite3'}")
    with store.engine.begin() as connection:
        for event in decoded_events(national_traffic()):
            store.apply(connection, event)  # type: ignore[arg-type]
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_stats_app(store, PipelineMetrics(), None, FranceMap.from_settings(settings)),
                                           host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(answers, timeout_s=30, what="the statistics app answering")
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        store.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    with chromium() as driver:
        yield driver


def first_rows(browser: WebDriver, count: int = 3) -> list[str]:
    rows = browser.find_elements(By.CSS_SELECTOR, "#classement tbody tr")
    return [str(row.get_attribute("data-departement")) for row in rows[:count]]


def fits_the_window(browser: WebDriver) -> bool:
    return bool(browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth;"))


def test_the_ministry_reads_the_national_page_and_sorts_the_ranking_from_the_keyboard(
    national_url: str, browser: WebDriver,
) -> None:
    browser.get(f"{national_url}/")
    WebDriverWait(browser, 30).until(expected_conditions.presence_of_element_located((By.ID, "classement")))
    assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "fr"
    assert first_rows(browser) == ["93", "75", "13"]
    assert fits_the_window(browser), "no horizontal scroll at 1366x768"

    paths = browser.find_elements(By.CSS_SELECTOR, "#carte-france path")
    assert len(paths) == 101 + 4  # every département once, Paris and its inner ring again in their inset
    title = browser.execute_script(
        "return document.querySelector('[data-panneau=metropole] path[data-departement=\"93\"] title').textContent;")
    assert title == "Seine-Saint-Denis (93) : 9 points ouverts, 1 démantelé, 0 infondé ; 10 signalements"
    fills = browser.execute_script(
        "return ['93', '75', '29'].map(c => getComputedStyle(document.querySelector("
        "`[data-panneau=metropole] path[data-departement=\"${c}\"]`)).fill);")
    assert fills[0] != fills[2] and fills[1] != fills[2], "coloured by open points, Finistère has none"
    carte = browser.find_element(By.ID, "carte-france").rect
    assert carte["width"] > 500 and carte["x"] + carte["width"] <= browser.execute_script("return window.innerWidth;")
    assert "Saint-Barthélemy (977) : 1 ouvert(s)" in browser.find_element(By.ID, "hors-carte").text  # no outline
    assert "mis à jour le" in browser.find_element(By.CSS_SELECTOR, ".maj").text.lower()

    resources = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name);")
    assert resources and all(name.startswith(national_url) for name in resources), resources
    for selector in CONTRASTED:
        assert browser.execute_script(CONTRAST_SCRIPT, selector) >= 4.5, selector
    paint = browser.execute_script(
        "return performance.getEntriesByName('first-contentful-paint').map(e => e.startTime)[0];")
    print(f"national page: first contentful paint {paint:.0f} ms")
    screenshot(browser, "national")

    # The ranking by reports, from the keyboard: Tab to the column's header link, then Enter.
    body = browser.find_element(By.TAG_NAME, "body")
    body.send_keys(Keys.TAB)
    for _ in range(60):
        if browser.switch_to.active_element.get_attribute("id") == "tri-signalements":
            break
        browser.switch_to.active_element.send_keys(Keys.TAB)
    assert browser.switch_to.active_element.get_attribute("id") == "tri-signalements"
    browser.switch_to.active_element.send_keys(Keys.ENTER)
    WebDriverWait(browser, 30).until(expected_conditions.url_contains("tri=signalements"))
    assert first_rows(browser) == ["75", "93", "13"]

    link = browser.find_element(By.LINK_TEXT, "Télécharger le classement (CSV)").get_attribute("href")
    rows = list(csv.DictReader(io.StringIO(httpx.get(str(link), timeout=10).text)))
    api = httpx.get(f"{national_url}/v1/stats/departements", timeout=10).json()
    assert [{k: v if k == "departement" else int(v) for k, v in row.items()} for row in rows] == api


def test_on_a_phone_the_page_holds_in_the_screen_width(national_url: str, browser: WebDriver) -> None:
    browser.set_window_size(390, 844)
    try:
        browser.get(f"{national_url}/")
        WebDriverWait(browser, 30).until(expected_conditions.presence_of_element_located((By.ID, "classement")))
        width = browser.execute_script("return window.innerWidth;")
        assert fits_the_window(browser), "no horizontal scroll on a phone"
        carte = browser.find_element(By.ID, "carte-france").rect
        assert carte["x"] >= 0 and carte["x"] + carte["width"] <= width
        ranking = browser.find_element(By.ID, "titre-classement").rect
        assert ranking["y"] > carte["y"] + carte["height"], "the ranking under the map, not beside it"
        screenshot(browser, "national-phone")
    finally:
        browser.set_window_size(1366, 768)
