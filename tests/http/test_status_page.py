"""The live status page in a real headless browser (Debian's ``chromium``, driven by
Selenium through ``chromedriver``) against a real server: what it shows is checked
against the server's own state, it updates without a reload, and a screenshot is saved
(in the test's tmp path; with ``TRIGEAR_UPDATE_SCREENSHOT=1`` also as
``docs/_static/status-page.png``, the one the docs show)."""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

import trigear

from ..cli.cli_helpers import running
from ..peers import require_binary
from .http_helpers import HttpServer, http_server, sample, wait_until

if TYPE_CHECKING:
    from collections.abc import Iterator

DOCS_SCREENSHOT = Path(__file__).parents[2] / "docs" / "_static" / "status-page.png"


@pytest.fixture
def browser() -> Iterator[Any]:
    chromium = require_binary("chromium")
    driver_path = require_binary("chromedriver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,1100",
        "--hide-scrollbars",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _worker(address: str, release: threading.Event) -> trigear.Worker:
    worker = trigear.Worker(address, client_id="page-worker")

    @worker.function("resize")
    def resize(job: trigear.Job) -> bytes:
        time.sleep(0.01)
        return job.data

    @worker.function("thumbnail")
    def thumbnail(job: trigear.Job) -> bytes:
        raise trigear.JobFailed()

    @worker.function("report")
    def report(job: trigear.Job) -> bytes:
        release.wait(60)
        return b"done"

    return worker


def _text(driver: Any, css: str) -> str:
    """The text of the first element ``css`` selects, "" if none.  Read in one script
    call: the page replaces its rows on every update, so an element found in one call
    may be gone by the next."""
    text = driver.execute_script(
        "const e = document.querySelector(arguments[0]); return e ? e.textContent : ''", css
    )
    return str(text)


def _points(driver: Any, series: str) -> int:
    """How many points the throughput chart's line for ``series`` has."""
    n = driver.execute_script(
        "const e = document.querySelector(arguments[0]);"
        "return e ? e.getAttribute('points').split(' ').filter(Boolean).length : 0",
        f'#chart-rate polyline[data-series="{series}"]',
    )
    return int(n)


def _wait(driver: Any, predicate: Any, what: str, timeout: float = 30) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: predicate(d), what)


@pytest.mark.timeout(180)
def test_the_status_page_shows_the_servers_state(browser: Any, tmp_path: Path) -> None:
    release = threading.Event()
    with http_server() as server, running(_worker(server.address, release), concurrency=4):
        stop = threading.Event()
        traffic = threading.Thread(target=_traffic, args=(server, stop), daemon=True)
        with trigear.BlockingClient(server.address) as client:
            for i in range(3):
                client.submit_background("send-email", f"mail {i}", timeout=30)
            with pytest.raises(trigear.JobFailed):
                client.submit("thumbnail", "cat.png", timeout=30)
            client.submit_background("report", "monthly", timeout=30)
            wait_until(lambda: (server.function("report") or {}).get("running") == 1)
            traffic.start()
            try:
                _check_page(browser, server, client, tmp_path)
            finally:
                stop.set()
                release.set()
                traffic.join(30)


def _traffic(server: HttpServer, stop: threading.Event) -> None:
    """Jobs flowing, so the throughput chart has something to draw."""
    with trigear.BlockingClient(server.address) as client:
        i = 0
        while not stop.is_set():
            client.submit("resize", f"img {i}", timeout=30)
            i += 1
            time.sleep(0.02)


def _check_page(browser: Any, server: HttpServer, client: Any, tmp_path: Path) -> None:
    browser.get(server.url + "/")
    assert browser.title == "trigear status"
    _wait(browser, lambda d: _text(d, '#functions tr[data-name="send-email"] td.queued'), "rows")
    # What the page shows is the server's state.
    status = server.status()
    row = server.function("send-email")
    assert row is not None
    assert _text(browser, '#functions tr[data-name="send-email"] td.queued') == "3"
    assert row["queued"] == 3
    m = server.metrics()
    assert sample(m, "trigear_jobs_queued", function="send-email", priority="normal") == 3
    assert _text(browser, '#functions tr[data-name="report"] td.running') == "1"
    assert _text(browser, '#functions tr[data-name="resize"] td.workers') == "1"
    assert "page-worker" in _text(browser, "#workers tbody")
    running_rows = _text(browser, "#running tbody")
    assert "report" in running_rows
    # (a resize job may be running too: the traffic thread keeps them coming)
    assert "report" in [r["function"] for r in status["running"]]
    failures = _text(browser, "#failures tbody")
    assert "thumbnail" in failures
    assert "fail" in failures
    assert status["failures"][0]["function"] == "thumbnail"
    assert "version " + trigear.__version__ in _text(browser, "header")
    # It updates by itself: two more jobs show up without a reload.
    client.submit_background("send-email", "mail 3", timeout=30)
    client.submit_background("send-email", "mail 4", timeout=30)
    _wait(
        browser,
        lambda d: _text(d, '#functions tr[data-name="send-email"] td.queued') == "5",
        "the page to show 5 queued",
    )
    # The charts draw the sampled history once there are a few samples.
    _wait(
        browser,
        lambda d: _points(d, "completed") >= 4,
        "four samples in the throughput chart",
        timeout=60,
    )
    completed = _text(browser, "#total-completed")
    assert int(completed) > 0
    # The page loaded nothing from anywhere but this server.
    entries = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    assert all(str(e).startswith(server.url) for e in entries), entries
    shot = tmp_path / "status-page.png"
    assert browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
    if os.environ.get("TRIGEAR_UPDATE_SCREENSHOT") == "1":
        DOCS_SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(shot, DOCS_SCREENSHOT)
