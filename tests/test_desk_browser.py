"""The units' desk in the real browser (Debian's chromium, headless, driven by Selenium through its chromedriver),
against the whole pipeline on the real broker: a report posted to the intake appears on its unit's desk and on
its map, a new one appears without a reload, the case is marked handled from its page (after a confirmation) and
the handling lands on the unit's queue, and another unit is not reachable from this desk.

Screenshots of each page are saved under tests/screenshots/ (ignored by git) for whoever reviews the pages.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from chromium_browser import chromium, screenshot
from pipeline_probe import PipelineFactory, RunningPipeline, free_port, query_store, read_topic, wait_for
from sample_submissions import portal_dealing_point
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from ops.desk_officers import add_officer
from schemas.channels import Channel
from schemas.envelope import decode
from schemas.events import CaseHandled
from schemas.reports import report_id_for
from schemas.topics import Topics

pytestmark = pytest.mark.processes

UNIT = "pn-75-pp"
OTHER_UNIT = "gn-74-chamonix-mont-blanc"
OFFICER = "gardien.dupont"


@pytest.fixture(scope="module")
def pipeline(pipeline_factory: PipelineFactory) -> RunningPipeline:
    return pipeline_factory([UNIT], desk_port=free_port())


@pytest.fixture(scope="module")
def officer_password(pipeline: RunningPipeline) -> str:
    return add_officer(pipeline.settings.desk_officers_path, OFFICER, [UNIT])


@pytest.fixture(scope="module")
def desk_url(pipeline: RunningPipeline, officer_password: str) -> Iterator[str]:
    pipeline.services.start("desk", "desk", "--unit", UNIT)
    url = f"http://{pipeline.settings.desk_host}:{pipeline.settings.desk_port}"

    def answers() -> bool:
        pipeline.services.check_alive()
        try:
            return httpx.get(f"{url}/connexion", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(answers, timeout_s=60, what="the desk answering")
    yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    with chromium() as driver:
        yield driver


def post_point(pipeline: RunningPipeline, housenumber: int, latitude: float) -> str:
    body = portal_dealing_point()
    place = body["report"]["place"]
    place.update(housenumber=str(housenumber), label=f"{housenumber} Rue Oberkampf 75011 Paris", latitude=latitude)
    assert pipeline.post_report("moncommissariat", body) == 202
    report_id = report_id_for(Channel.MONCOMMISSARIAT, body["submission_id"])
    [(case_id,)] = wait_for(
        lambda: query_store(pipeline.settings, UNIT, "SELECT case_id FROM case_reports WHERE report_id = ?", report_id),
        timeout_s=120, what="the case in the unit's store")
    return str(case_id)


def test_an_officer_logs_in_sees_a_new_case_on_the_desk_and_its_map_then_handles_it(
    pipeline: RunningPipeline, desk_url: str, browser: WebDriver, officer_password: str,
) -> None:
    first = post_point(pipeline, 12, 48.8649)
    wait = WebDriverWait(browser, 30)
    # The desk asks who is there first, then opens the page asked for.
    browser.get(f"{desk_url}/unites/{UNIT}")
    wait.until(expected_conditions.presence_of_element_located((By.ID, "identifiant")))
    browser.find_element(By.ID, "identifiant").send_keys(OFFICER)
    browser.find_element(By.ID, "mot_de_passe").send_keys("pas le bon")
    browser.find_element(By.ID, "se-connecter").click()
    wait.until(expected_conditions.presence_of_element_located((By.ID, "erreur-connexion")))
    screenshot(browser, "connexion")
    browser.find_element(By.ID, "identifiant").clear()
    browser.find_element(By.ID, "identifiant").send_keys(OFFICER)
    browser.find_element(By.ID, "mot_de_passe").send_keys(officer_password)
    browser.find_element(By.ID, "se-connecter").click()
    wait.until(expected_conditions.presence_of_element_located((By.CSS_SELECTOR, f'tr[data-cas="{first}"]')))
    assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "fr"
    assert browser.find_elements(By.CSS_SELECTOR, f'#carte a.point-cas[data-cas="{first}"]'), "the case on the map"
    screenshot(browser, "desk")

    # A new case appears without a reload: the page polls its list.
    browser.execute_script("window.sansRechargement = true;")
    second = post_point(pipeline, 140, 48.8700)
    WebDriverWait(browser, 60).until(
        expected_conditions.presence_of_element_located((By.CSS_SELECTOR, f'tr[data-cas="{second}"]')))
    assert browser.execute_script("return window.sansRechargement === true;"), "the page was reloaded"

    browser.find_element(By.CSS_SELECTOR, f'tr[data-cas="{first}"] a').click()
    wait.until(expected_conditions.presence_of_element_located((By.CSS_SELECTOR, "form.traitement")))
    assert "Oberkampf" in browser.find_element(By.TAG_NAME, "h1").text or "oberkampf" in browser.page_source
    screenshot(browser, "case")
    assert "Activité : vente de rue" in browser.page_source, "what the citizen saw, in French"
    browser.find_element(By.CSS_SELECTOR, 'input[name="issue"][value="dismantled"]').click()
    browser.find_element(By.CSS_SELECTOR, "form.traitement button").click()
    wait.until(expected_conditions.presence_of_element_located((By.ID, "confirmer")))
    screenshot(browser, "confirmation")
    browser.find_element(By.ID, "confirmer").click()
    wait.until(expected_conditions.text_to_be_present_in_element((By.ID, "statut"), "démantelé"))
    assert "Traitement publié" in browser.page_source

    topic = Topics(pipeline.settings.topic_namespace).unit(UNIT)
    handled = wait_for(lambda: [event.payload for event in (decode(r.headers, r.key, r.value)
                                                            for r in read_topic(pipeline.settings, topic))
                                if isinstance(event.payload, CaseHandled) and event.payload.case_id == first],
                       timeout_s=30, what="the handling on the unit's queue")
    assert [h.outcome.value for h in handled] == ["dismantled"]


def test_another_unit_is_not_reachable_from_this_desk(desk_url: str, browser: WebDriver) -> None:
    # Logged in (the test before) as an officer of UNIT only: another unit's desk is refused.
    browser.get(f"{desk_url}/unites/{OTHER_UNIT}")
    assert "Accès refusé" in browser.page_source and OFFICER in browser.page_source
    # Without a session, nothing but the login page.
    anonymous = httpx.get(f"{desk_url}/unites/{UNIT}", timeout=5)
    assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/connexion")
    started = time.monotonic()
    browser.get(f"{desk_url}/")
    assert browser.find_elements(By.CSS_SELECTOR, f'a[href="/unites/{UNIT}"]')
    assert time.monotonic() - started < 10
