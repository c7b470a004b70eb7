"""The pages people read, opened in a real browser: Debian's chromium driven by
Playwright (`make browser` installs it; Playwright's own browsers are never
downloaded).

- `/docs`: Swagger UI executes a `/v1/forecast` and shows the answer.
- The analytics report (`reports/index.html`, built from the session's
  warehouse and the API's champions) and a drift report: every chart loads,
  every in-page link has its target, nothing is logged as an error.
- The dbt docs site (`dbt docs generate`, served by a static server):
  `fct_sales` opens with its columns and its lineage.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import unquote

import pandas as pd
import pytest

from tests.api_server import call
from tests.helpers import free_port

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 120_000


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """A chromium context with a fresh profile."""
    from playwright.sync_api import sync_playwright

    assert CHROMIUM.exists(), "chromium is missing: run `make browser`"
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=str(CHROMIUM), args=FLAGS, headless=True,
        )
        context.set_default_timeout(TIMEOUT_MS)
        yield context
        context.close()


# dbt docs 1.7's own page requests two image URLs before Angular fills them
# in (`{{ getIcon(...) }}`) and a favicon path its bundler left unresolved
# (`${require(...)}`): 404s of dbt's site, not of this project's docs.
DBT_DOCS_OWN_404 = ("getIcon(", "require('./assets/favicons")


@pytest.fixture
def page(browser):
    """A new tab that records console errors (with their URL) and uncaught
    exceptions."""
    tab = browser.new_page()
    tab.errors = []

    def console(message):
        url = unquote(message.location.get("url", ""))
        if message.type == "error" and not any(bug in url for bug in DBT_DOCS_OWN_404):
            tab.errors.append(f"{message.text} ({url})")

    tab.on("console", console)
    tab.on("pageerror", lambda error: tab.errors.append(str(error)))
    yield tab
    tab.close()


# -- /docs ---------------------------------------------------------------------


def test_docs_try_it_out_runs_a_forecast(server, page):
    page.goto(f"http://127.0.0.1:{server.port}/docs")
    operation = page.locator("#operations-forecast-post_v1_forecast")
    operation.locator(".opblock-summary").click()  # "Try it out" is on (tryItOutEnabled)
    request = {"platform": "Wii", "genre": "Sports", "publisher": "Nintendo", "year": 2008}
    operation.locator("textarea.body-param__text").fill(json.dumps(request))
    operation.locator("button.execute").click()
    answered = operation.locator(".live-responses-table tr.response").first
    answered.wait_for()
    assert answered.locator(".response-col_status").inner_text().strip() == "200"
    shown = answered.locator(".response-col_description pre").first
    answer = json.loads(shown.inner_text())
    expected = call(server.port, "POST", "/v1/forecast", request).json()
    assert answer["global_sales"] == expected["global_sales"]
    assert answer["features"] == expected["features"]
    assert page.errors == []


# -- reports -------------------------------------------------------------------


def check_report_page(page, url: str) -> tuple[int, int]:
    """Open `url`; every image loaded, every `#` link has its target, no
    console error. Returns the numbers of images and of `#` links."""
    page.goto(url)
    page.wait_for_load_state("load")
    images = page.eval_on_selector_all(
        "img", "els => els.map(e => [e.alt || e.src.slice(0, 40), e.complete && e.naturalWidth])")
    broken = [alt for alt, width in images if not width]
    assert not broken, broken
    targets = page.eval_on_selector_all(
        "a[href^='#']", "els => els.map(e => [e.getAttribute('href'),"
        " !!document.getElementById(decodeURIComponent(e.getAttribute('href').slice(1)))])")
    assert [href for href, found in targets if not found] == []
    assert page.errors == []
    return len(images), len(targets)


def test_analytics_report_charts_and_contents(server, marts_settings, page, tmp_path):
    from ml.reporting.analytics_report import build_report

    settings = dataclasses.replace(
        marts_settings, mlflow_tracking_uri=server.settings.mlflow_tracking_uri,
        mlflow_artifact_root=server.settings.mlflow_artifact_root,
    )
    report = build_report(settings, tmp_path / "reports", progress=lambda line: None)
    images, links = check_report_page(page, report.as_uri())
    assert images >= 10 and links >= 5  # the charts and the table of contents


def test_drift_report_charts_and_links(page, tmp_path):
    """A drift report as the drift check writes it (`drift_report.write`),
    from a check of two features on two sources, one of them drifted."""
    from ml.monitoring.drift import RETRAIN, DriftCheck, DriftTest
    from ml.reporting.drift_report import Action, write

    common = dict(model_name="prerelease", model_version=1, reference_rows=900, window_days=7,
                  psi_warn_threshold=0.1, psi_error_threshold=0.25, is_evaluated=True)
    drift = pd.DataFrame([
        dict(common, drift_source="predictions", feature="year", feature_kind="number",
             current_rows=600, unseen_rows=0, unseen_rate=None, psi=0.4, drift_status="error"),
        dict(common, drift_source="batch", feature="platform", feature_kind="category",
             current_rows=900, unseen_rows=0, unseen_rate=0.0, psi=0.0, drift_status="ok"),
    ])
    bins = pd.DataFrame([
        dict(drift_source=source, model_name="prerelease", model_version=1, feature=feature,
             bin_label=label, bin_order=order, reference_share=ref, current_share=now)
        for source, feature in (("predictions", "year"), ("batch", "platform"))
        for order, (label, ref, now) in enumerate([("low", 0.5, 0.1), ("high", 0.5, 0.9)])
    ])
    performance = pd.DataFrame([dict(model_name="prerelease", model_version=1, period_label="all",
                                     release_year=None, matched_predictions=40, matched_pairs=44,
                                     mae=0.3, rmse=0.5, r2=0.2)])
    check = DriftCheck(tests=[DriftTest("psi_error", "error", "fail", 1)], drift=drift,
                       bins=bins, performance=performance)
    page_path = write(check, Action(RETRAIN, check.reason(), ""), tmp_path / "drift")
    images, _ = check_report_page(page, page_path.as_uri())
    assert images == 2  # one chart per feature


# -- dbt docs ------------------------------------------------------------------


@pytest.fixture(scope="module")
def dbt_docs(warehouse_docs):
    """`dbt docs generate` over the session's warehouse (tests/conftest.py
    `warehouse_docs`), served over HTTP."""
    target = warehouse_docs
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
         "--directory", str(target)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                call(port, "GET", "/index.html")
                break
            except OSError:
                assert time.monotonic() < deadline, "static server did not start"
                time.sleep(0.2)
        yield port, json.loads((target / "manifest.json").read_text())
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_dbt_docs_show_fct_sales_columns_and_lineage(dbt_docs, page):
    port, manifest = dbt_docs
    node = manifest["nodes"]["model.vgsales.fct_sales"]
    page.goto(f"http://127.0.0.1:{port}/#!/model/model.vgsales.fct_sales")
    columns = list(node["columns"])
    parents = [manifest["nodes"][n]["name"] for n in node["depends_on"]["nodes"]
               if n in manifest["nodes"]]
    assert columns and parents
    # The page renders asynchronously: wait until every name is on screen.
    page.wait_for_function(
        "names => names.every(n => document.body.innerText.includes(n))",
        arg=["fct_sales", "Columns", "Depends On", *columns, *parents],
    )
    # The lineage graph opens and draws.
    page.locator("a[title='View Lineage Graph']").first.click()
    window = page.locator(".launcher-window")
    window.wait_for()
    page.wait_for_function(
        "() => [...document.querySelectorAll('.launcher-window canvas')]"
        ".some(c => c.width > 0 && c.height > 0)")
    assert page.errors == []
