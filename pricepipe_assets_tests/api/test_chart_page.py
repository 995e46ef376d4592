"""The chart page in a real browser (Debian's Chromium driven by Playwright) against the running API.

Only a browser shows that the page's JavaScript, the plotly.min.js served from the pip package and
the JSON/SSE endpoints fit together: the candles drawn are the candles the API answered, the
forecast band is there, and the stream turns the status line to "live". The screenshot is kept
for a human to look at.
"""

from __future__ import annotations

import dataclasses
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Response, expect, sync_playwright

from api.app import create_app
from pricepipe_assets_tests.api.conftest import SYMBOL, TRADES_SYMBOL, Filled, served

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "build" / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LIVE_WITHIN_MS = 15_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless; Playwright's own browser downloads are not available here."""
    assert CHROMIUM.is_file(), (
        f"the chart page test needs Chromium at {CHROMIUM}: install the Debian package 'chromium' "
        "(infra/local/system-deps.sh does, as root)"
    )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    page = browser.new_page(viewport={"width": 1400, "height": 860})
    yield page
    page.close()


def chart_traces(page: Page) -> list[dict[str, Any]]:
    """Plotly keeps the drawn traces on the chart element; read their names and point counts."""
    return page.evaluate(
        """() => document.getElementById("chart").data.map(
            (trace) => ({ type: trace.type, name: trace.name, points: trace.x.length, xaxis: trace.xaxis || "x" }))"""
    )


def save_screenshot(page: Page, tmp_path: Path, name: str) -> None:
    """Into the test's tmp_path, and into build/test-artifacts/ where it outlives the run."""
    shot = tmp_path / name
    page.screenshot(path=str(shot), full_page=True)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, ARTIFACTS / name)


def wait_for_draw(page: Page, interval: str, candles: list[dict[str, Any]]) -> None:
    """Until the chart's bars of this interval begin with the candles the API answered, ending at
    the last of them; the live stream may already have added the forming bar after it, so the
    count alone would race the stream (a draw replaces all traces at once)."""
    page.wait_for_function(
        """([interval, count, last]) => {
            const chart = document.getElementById("chart");
            const trace = chart.data && chart.data[0];
            return trace && trace.name === `${interval} candles` && trace.x.length >= count
                && trace.x[count - 1] === last;
        }""",
        arg=[interval, len(candles), candles[-1]["open_time"].removesuffix("Z")],
    )


def test_chart_page_draws_the_api_candles_and_forecast_and_goes_live(api_base_url: str, page: Page, tmp_path: Path) -> None:
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    with page.expect_response(lambda r: f"/candles/{SYMBOL}" in r.url) as candles_info:
        with page.expect_response(lambda r: f"/forecast/{SYMBOL}" in r.url) as forecast_info:
            page.goto(f"{api_base_url}/?symbol={SYMBOL}")
    assert candles_info.value.ok and forecast_info.value.ok
    candles = candles_info.value.json()["candles"]
    forecast = forecast_info.value.json()["forecast"]
    assert candles, "the API fixture should serve a day of candles for the default (day, 1m) view"
    assert forecast, "the API fixture should serve a forecast"

    wait_for_draw(page, "1m", candles)
    traces = chart_traces(page)
    assert traces[0]["type"] == "candlestick" and traces[0]["points"] in (len(candles), len(candles) + 1)
    assert page.locator("#chart g.trace.boxes path").count() > 0, "no candlestick drawn"
    forecast_traces = [trace for trace in traces if trace["xaxis"] == "x2"]
    assert [trace["points"] for trace in forecast_traces] == [len(forecast)] * 3, "band edges and predicted line"
    assert page.locator("#chart .scatterlayer path.js-fill").count() > 0, "no forecast band drawn"
    assert page.locator("#messages li.error").all_inner_texts() == []
    reason = forecast_info.value.json()["reason"]
    assert reason, "the API fixture's history is too short for the daily model, so the naive fallback says why"
    expect(page.locator("#messages")).to_contain_text(f"forecast by naive: {reason}")
    assert page.locator("#symbol").input_value() == SYMBOL

    expect(page.locator("#stream-state")).to_have_text("live", timeout=LIVE_WITHIN_MS)
    expect(page.locator("#last-update")).to_contain_text("last update", timeout=LIVE_WITHIN_MS)
    expect(page.locator("#price")).to_contain_text(SYMBOL)
    # the newest order book's best levels and spread, as the live stream sends them
    expect(page.locator("#book")).to_contain_text("spread", timeout=LIVE_WITHIN_MS)
    expect(page.locator("#book")).to_contain_text("bids ")
    save_screenshot(page, tmp_path, "chart-page.png")
    assert errors == []


def test_a_month_of_daily_candles_carries_the_moving_average(api_base_url: str, page: Page, tmp_path: Path) -> None:
    averages: list[Response] = []
    page.on("response", lambda r: "/moving-average/" in r.url and averages.append(r))
    page.goto(f"{api_base_url}/?symbol={SYMBOL}")
    page.wait_for_function('() => document.getElementById("chart").data !== undefined')
    page.select_option("#interval", "1d")
    with page.expect_response(lambda r: "/candles/" in r.url and "period=month" in r.url) as candles_info:
        page.click("[data-period=month]")
    candles = candles_info.value.json()["candles"]
    assert candles, "the API fixture should serve a month of daily candles"

    wait_for_draw(page, "1d", candles)
    average_trace = chart_traces(page)[1]
    average = averages[-1].json()
    assert average["window"] == 7
    assert average_trace["points"] == len(average["points"]) > 0
    assert page.locator("#chart .scatterlayer .trace .lines path").count() > 0, "no moving average drawn"
    assert page.locator("#messages li.error").all_inner_texts() == []
    save_screenshot(page, tmp_path, "chart-page-month.png")


def test_a_symbol_that_only_trades_is_charted_from_the_candles_of_its_trades(api_base_url: str, page: Page,
                                                                             tmp_path: Path) -> None:
    with page.expect_response(lambda r: f"/candles/{TRADES_SYMBOL}" in r.url) as candles_info:
        page.goto(f"{api_base_url}/?symbol={TRADES_SYMBOL}")
    candles = candles_info.value.json()["candles"]
    assert len(candles) > 1000, "the day of BTCUSD_PERP aggTrades should chart as its 1m candles"

    wait_for_draw(page, "1m", candles)
    assert page.locator("#chart g.trace.boxes path").count() > 0, "no candlestick drawn"
    assert [trace["xaxis"] for trace in chart_traces(page)] == ["x", "x"], "no forecast, so no forecast panel"
    grid = page.locator("#chart .subplot.xy .ygrid").first.bounding_box()
    axis = page.locator("#chart .xaxislayer-above").first.bounding_box()
    assert grid is not None and axis is not None and grid["width"] >= 0.95 * axis["width"], "the grid spans the candles' axis"
    assert page.locator("#messages li.error").all_inner_texts() == []
    save_screenshot(page, tmp_path, "chart-page-btcusd-perp.png")


def test_with_a_key_required_the_page_logs_in_once_and_goes_live_on_the_cookie(filled: Filled,
                                                                               browser: Browser) -> None:
    """The key is typed into /login and sent once, in a header; no URL the browser asks for holds it."""
    secret = f"pp_{uuid.uuid4().hex}"
    context = browser.new_context(viewport={"width": 1400, "height": 860})
    page = context.new_page()
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url))
    with served(create_app(dataclasses.replace(filled.settings, api_key=secret))) as base_url:
        page.goto(f"{base_url}/?symbol={SYMBOL}")
        page.wait_for_url(f"{base_url}/login")
        page.fill("#key", secret)
        page.click("button[type=submit]")
        page.wait_for_url(f"{base_url}/")
        expect(page.locator("#stream-state")).to_have_text("live", timeout=LIVE_WITHIN_MS)
        expect(page.locator("#price")).to_contain_text(SYMBOL)
        cookies = context.cookies()
    context.close()
    assert [(cookie["httpOnly"], cookie["sameSite"]) for cookie in cookies] == [(True, "Strict")]
    assert cookies[0]["value"] != secret
    assert any("/stream/" in url for url in asked) and all(secret not in url for url in asked)
