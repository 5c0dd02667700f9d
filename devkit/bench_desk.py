"""The units' desk with a big store: how long the server takes to render a unit's page, and how long the real
browser (Debian's chromium, headless, through Selenium) takes to its first contentful paint. One JSON line."""

from __future__ import annotations

import json
import random
import socket
import statistics
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import uvicorn

from consumers.case_store import CaseStore, store_url_for
from consumers.desk import SESSION_COOKIE, create_desk_app
from consumers.desk_officers import DeskSessions, load_session_key
from devkit.synthetic_cases import PARIS_11, case_opened
from ops.desk_officers import add_officer
from schemas.envelope import decode, encode
from signalements.settings import Settings


def fill_store(settings: Settings, cases: int, seed: int = 1) -> None:
    """``cases`` open cases of one unit, spread over Paris, opened over the last 60 days."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    store = CaseStore.open(store_url_for(None, settings.unit_store_dir, PARIS_11.unit_id), PARIS_11.unit_id)
    try:
        with store.transaction() as writer:
            for number in range(cases):
                event = case_opened(PARIS_11, f"bench-{number}", now - timedelta(minutes=rng.randint(0, 86_400)),
                                    f"{rng.randint(1, 200)} rue de la bench {number % 97}",
                                    (48.84 + rng.random() * 0.05, 2.33 + rng.random() * 0.08))
                message = encode(event.event_type, event.payload, event_id=event.event_id, source="/bench",
                                 key=event.key)
                writer.apply(decode(list(message.headers.items()), event.key.encode(), message.value))
    finally:
        store.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def first_paint_ms(url: str, session: str) -> dict[str, float]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1366,768"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
    try:
        # The session cookie first (set on the desk's own origin), then the measured page with it.
        driver.get(url.split("/unites/", 1)[0] + "/connexion")
        driver.add_cookie({"name": SESSION_COOKIE, "value": session, "path": "/"})
        driver.get(url)
        paint = None
        for _ in range(50):  # the paint entry may come a little after the load event
            paint = driver.execute_script(
                "const e = performance.getEntriesByName('first-contentful-paint')[0]; return e ? e.startTime : null;")
            if paint is not None:
                break
            time.sleep(0.1)
        navigation = driver.execute_script(
            "const n = performance.getEntriesByType('navigation')[0];"
            " return {response: n.responseEnd, loaded: n.domContentLoadedEventEnd};")
        return {"first_contentful_paint_ms": round(float(paint or -1), 1),
                "response_end_ms": round(float(navigation["response"]), 1),
                "dom_content_loaded_ms": round(float(navigation["loaded"]), 1)}
    finally:
        driver.quit()


def run_desk_bench(cases: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as state:
        settings = Settings(state_dir=Path(state), kafka_bootstrap_servers="127.0.0.1:9", desk_port=_free_port())
        started = time.perf_counter()
        fill_store(settings, cases)
        filled_s = time.perf_counter() - started
        app = create_desk_app(settings, [PARIS_11.unit_id], {PARIS_11.unit_id: "Préfecture de police"})
        # An officer's session, as the login would give it (the login's scrypt is not what is measured).
        add_officer(settings.desk_officers_path, "bench", [PARIS_11.unit_id])
        session = DeskSessions(load_session_key(settings.desk_session_key_path), 3600).issue("bench")
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=settings.desk_port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        url = f"http://127.0.0.1:{settings.desk_port}/unites/{PARIS_11.unit_id}"
        try:
            while not server.started:
                time.sleep(0.05)
            renders = []
            for _ in range(5):
                began = time.perf_counter()
                httpx.get(url, timeout=60, cookies={SESSION_COOKIE: session}).raise_for_status()
                renders.append(time.perf_counter() - began)
            browser = first_paint_ms(url, session)
        finally:
            server.should_exit = True
            thread.join(timeout=10)
    return {"cases": cases, "store_filled_s": round(filled_s, 1),
            "page_render_median_ms": round(statistics.median(renders) * 1000, 1), **browser}


def print_desk_bench(cases: int) -> None:
    print(json.dumps(run_desk_bench(cases)))
