"""Debian's chromium, headless, driven by Selenium through Debian's chromedriver: the browser of the page tests
(tests/test_desk_browser.py, tests/test_national_browser.py), and where they save their screenshots."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver

# Ignored by git: for whoever reviews the pages.
SCREENSHOTS = Path(__file__).parent / "screenshots"


@contextmanager
def chromium(window: str = "1366,768") -> Iterator[WebDriver]:
    """A headless chromium in French with a window of that size, quit on leaving."""
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", f"--window-size={window}",
                     "--lang=fr-FR"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
    try:
        yield driver
    finally:
        driver.quit()


def screenshot(browser: WebDriver, name: str) -> Path:
    SCREENSHOTS.mkdir(exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    browser.save_screenshot(str(path))
    return path
