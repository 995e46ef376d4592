"""Every endpoint of design §6 against real Cassandra, filled by the project's write path with real
data (see conftest), compared with an independent pandas computation over the source files."""

from __future__ import annotations

import json
from importlib.metadata import version

import httpx2 as httpx
import pandas as pd
import pytest
from starlette.testclient import TestClient

from api.routes import ENDPOINTS
from pricepipe_assets.contract.forecasts import INTERVAL_METHODS
from pricepipe_assets_tests.api.conftest import CANDLE_CHUNKS, SYMBOL, TRADES_SYMBOL, Filled

HOUR_MS, MINUTE_MS, DAY_MS = 3_600_000, 60_000, 86_400_000


def _iso(ms: int) -> str:
    return pd.Timestamp(ms, unit="ms", tz="UTC").strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _get(client: TestClient, path: str) -> dict:
    response = client.get(path)
    assert response.status_code == 200, response.text
    return response.json()


def _rollup(candles: pd.DataFrame, step_ms: int) -> pd.DataFrame:
    frame = candles.sort_values("open_time").assign(start=candles["open_time"] - candles["open_time"] % step_ms)
    return frame.groupby("start").agg(open=("open", "first"), high=("high", "max"), low=("low", "min"),
                                      close=("close", "last"), volume=("volume", "sum")).reset_index()


def _trades_by_hour(filled: Filled) -> pd.Series:
    trades = filled.trades
    return trades.groupby(trades["transact_time"] - trades["transact_time"] % HOUR_MS)


def _trades_clock(filled: Filled) -> int:
    return int(filled.trades["transact_time"].max())


def test_symbols_lists_configured_and_seen_symbols_with_their_clocks(api_client: TestClient, filled: Filled) -> None:
    body = _get(api_client, "/symbols")
    by_name = {s["symbol"]: s for s in body["symbols"]}
    assert by_name[SYMBOL] == {"symbol": SYMBOL, "exchange": "binance", "configured": True,
                               "latest_event_time": _iso(int(filled.live_candles["close_time"].max()))}
    assert by_name[TRADES_SYMBOL]["latest_event_time"] == _iso(_trades_clock(filled))
    assert by_name[TRADES_SYMBOL]["configured"] is False
    assert by_name["ETHUSDT"]["latest_event_time"] is None
    assert body["now"] == _iso(_trades_clock(filled))


def test_candles_of_a_custom_day_equal_the_source_file_row_for_row(api_client: TestClient, filled: Filled) -> None:
    body = _get(api_client, f"/candles/{SYMBOL}?start=2024-01-31&end=2024-01-31")
    got = pd.DataFrame(body["candles"])
    source = filled.live_candles
    assert (body["start"], body["end"]) == ("2024-01-31T00:00:00.000Z", "2024-02-01T00:00:00.000Z")
    assert len(got) == 1440
    assert got["open_time"].tolist() == [_iso(ms) for ms in source["open_time"]]
    for column in ("open", "high", "low", "close", "volume", "quote_volume", "trades"):
        assert got[column].tolist() == source[column].tolist(), column


def test_period_day_ends_with_the_candle_at_the_symbols_clock(api_client: TestClient, filled: Filled) -> None:
    body = _get(api_client, f"/candles/{SYMBOL}?period=day")
    assert body["end"] == "2024-02-01T00:00:00.000Z"
    assert [c["open_time"] for c in body["candles"]][-1] == _iso(int(filled.live_candles["open_time"].max()))
    assert len(body["candles"]) == 1440


@pytest.mark.parametrize(("interval", "query", "step_ms", "rows"), [
    ("1d", "start=2024-01-01&end=2024-01-30", DAY_MS, 30),
    ("1h", "start=2024-01-02&end=2024-01-02", HOUR_MS, 24),
])
def test_hourly_and_daily_candles_equal_a_pandas_rollup_of_the_minutes(
        api_client: TestClient, filled: Filled, interval: str, query: str, step_ms: int, rows: int) -> None:
    got = pd.DataFrame(_get(api_client, f"/candles/{SYMBOL}?interval={interval}&{query}")["candles"])
    expected = _rollup(filled.lake_candles, step_ms)
    expected = expected[expected["start"].map(_iso).isin(got["open_time"])]
    assert len(got) == rows == len(expected)
    for column in ("open", "high", "low", "close"):
        assert got[column].tolist() == expected[column].tolist(), column
    assert got["volume"].tolist() == pytest.approx(expected["volume"].tolist(), rel=1e-12)


def test_moving_average_is_trailing_over_daily_closes(api_client: TestClient, filled: Filled) -> None:
    body = _get(api_client, f"/moving-average/{SYMBOL}?window=7&start=2024-01-01&end=2024-01-30")
    closes = _rollup(filled.lake_candles, DAY_MS).set_index("start")["close"]
    expected = closes.rolling(7).mean().dropna()
    assert [p["day"] for p in body["points"]] == [pd.Timestamp(ms, unit="ms").date().isoformat() for ms in expected.index]
    assert [p["sma"] for p in body["points"]] == pytest.approx(expected.tolist(), rel=1e-12)


def test_forecast_has_15_daily_rows_with_ordered_bounds_after_the_last_day(api_client: TestClient,
                                                                          filled: Filled) -> None:
    body = _get(api_client, f"/forecast/{SYMBOL}")
    last_day = int(filled.lake_candles["open_time"].max()) // DAY_MS * DAY_MS
    assert [row["target_time"] for row in body["forecast"]] == [_iso(last_day + d * DAY_MS) for d in range(1, 16)]
    assert all(row["lower"] <= row["predicted"] <= row["upper"] for row in body["forecast"])
    assert body["model"] == "naive" and body["level"] == 0.9
    assert body["interval_method"] == INTERVAL_METHODS["naive"]
    assert body["reason"].startswith("no daily model yet: ") and " closed days of history" in body["reason"]
    assert body["made_at"] == _iso(last_day + DAY_MS)
    assert len(_get(api_client, f"/forecast/{SYMBOL}?days=3")["forecast"]) == 3


def test_predictions_come_newest_first_with_the_actual_close_once_known(api_client: TestClient,
                                                                        filled: Filled) -> None:
    body = _get(api_client, f"/predictions/{SYMBOL}")
    predictions = body["predictions"]
    assert len(predictions) == CANDLE_CHUNKS
    closes = dict(zip(filled.live_candles["open_time"].map(_iso), filled.live_candles["close"], strict=True))
    targets = [p["target_time"] for p in predictions]
    assert targets == sorted(targets, reverse=True)
    assert targets[0] == "2024-02-01T00:00:00.000Z" and predictions[0]["actual"] is None
    for prediction in predictions[1:]:
        assert prediction["actual"] == closes[prediction["target_time"]]
        assert prediction["lower"] <= prediction["predicted"] <= prediction["upper"]
    assert len(_get(api_client, f"/predictions/{SYMBOL}?limit=2")["predictions"]) == 2


def test_predictions_answer_for_the_model_asked_for_and_by_default_for_the_best_that_passed(
        api_client: TestClient) -> None:
    default = _get(api_client, f"/predictions/{SYMBOL}")
    # the fill trains one minute model: it answers, or the baseline does where it lost to it
    assert default["model"] in {"sgd_minute", "naive"}
    assert {p["model"] for p in default["predictions"]} == {default["model"]}
    assert _get(api_client, f"/predictions/{SYMBOL}?model={default['model']}") == default
    untrained = _get(api_client, f"/predictions/{SYMBOL}?model=lstm_minute")
    assert untrained["model"] == "lstm_minute" and untrained["predictions"] == []


def test_transactions_count_each_of_the_last_6_complete_hours(api_client: TestClient, filled: Filled) -> None:
    body = _get(api_client, "/transactions/6-hours")
    counts = _trades_by_hour(filled).size()
    end = _trades_clock(filled) // HOUR_MS * HOUR_MS
    hours = [end - (6 - i) * HOUR_MS for i in range(6)]
    assert body["symbols"] == [{"symbol": TRADES_SYMBOL, "start": _iso(hours[0]), "end": _iso(end),
                                "hours": [{"hour": _iso(h), "trades": int(counts[h])} for h in hours]}]


def test_volume_sums_the_last_6_complete_hours(api_client: TestClient, filled: Filled) -> None:
    (row,) = _get(api_client, "/volume/6-hours")["symbols"]
    end = _trades_clock(filled) // HOUR_MS * HOUR_MS
    window = filled.trades[(filled.trades["transact_time"] >= end - 6 * HOUR_MS) & (filled.trades["transact_time"] < end)]
    assert row["symbol"] == TRADES_SYMBOL and row["trades"] == len(window)
    assert row["volume"] == pytest.approx(window["quantity"].sum(), rel=1e-12)
    assert row["quote_volume"] == pytest.approx((window["quantity"] * window["price"]).sum(), rel=1e-12)


def test_total_12_hours_adds_all_symbols_per_hour_by_the_platform_clock(api_client: TestClient,
                                                                        filled: Filled) -> None:
    body = _get(api_client, "/total/12-hours")
    end = _trades_clock(filled) // HOUR_MS * HOUR_MS
    grouped = _trades_by_hour(filled)
    counts, volumes = grouped.size(), grouped["quantity"].sum()
    hours = [end - (12 - i) * HOUR_MS for i in range(12)]
    assert [h["hour"] for h in body["hours"]] == [_iso(h) for h in hours]
    assert [h["trades"] for h in body["hours"]] == [int(counts[h]) for h in hours]
    assert [h["volume"] for h in body["hours"]] == pytest.approx([volumes[h] for h in hours], rel=1e-12)


def test_symbol_trades_of_the_last_n_complete_minutes(api_client: TestClient, filled: Filled) -> None:
    body = _get(api_client, f"/{TRADES_SYMBOL}/trades/5")
    end = _trades_clock(filled) // MINUTE_MS * MINUTE_MS
    window = filled.trades[(filled.trades["transact_time"] >= end - 5 * MINUTE_MS) & (filled.trades["transact_time"] < end)]
    assert body["count"] == len(window) == len(body["trades"])
    assert sorted(t["trade_id"] for t in body["trades"]) == sorted(window["agg_trade_id"].astype(str))
    assert {t["side"] for t in body["trades"]} <= {"buy", "sell"}


def test_top_symbols_by_volume_in_the_last_hour(api_client: TestClient, filled: Filled) -> None:
    body = _get(api_client, "/trades/hour/3")
    end = _trades_clock(filled) // HOUR_MS * HOUR_MS
    window = filled.trades[(filled.trades["transact_time"] >= end - HOUR_MS) & (filled.trades["transact_time"] < end)]
    assert [(s["rank"], s["symbol"], s["trades"]) for s in body["symbols"]] == [(1, TRADES_SYMBOL, len(window))]
    assert body["start"] == _iso(end - HOUR_MS)


def test_price_is_the_last_trade_or_else_the_last_candle_close_with_the_books_buy_and_sell(api_client: TestClient, filled: Filled) -> None:
    trades = filled.trades.sort_values(["transact_time", "agg_trade_id"])
    traded = _get(api_client, f"/{TRADES_SYMBOL}/price")
    assert (traded["last"], traded["last_time"], traded["last_source"]) == (
        trades["price"].iloc[-1], _iso(int(trades["transact_time"].iloc[-1])), "trade")
    candled = _get(api_client, f"/{SYMBOL.lower()}/price")
    assert (candled["symbol"], candled["last"], candled["last_source"]) == (
        SYMBOL, filled.live_candles["close"].iloc[-1], "candle")
    # Binance sends no quotes: buy and sell are the best levels of the newest order book
    assert (candled["buy"], candled["sell"]) == (filled.books[-1].asks[0][0], filled.books[-1].bids[0][0])


def test_hot_answers_are_cached_and_say_so(api_client: TestClient) -> None:
    first = api_client.get("/ETHUSDT/price")
    second = api_client.get("/ETHUSDT/price")
    assert (first.headers["x-cache"], second.headers["x-cache"]) == ("MISS", "HIT")
    assert second.headers["cache-control"] == "max-age=2"
    assert second.json() == first.json()
    assert api_client.get(f"/candles/{SYMBOL}").headers["cache-control"] == "no-store"


def test_the_live_stream_sends_the_newest_candle_and_price(api_base_url: str, filled: Filled) -> None:
    with httpx.stream("GET", f"{api_base_url}/stream/{SYMBOL}", timeout=30) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.iter_lines()
        assert next(line for line in lines if line.startswith("event:")) == "event: update"
        payload = json.loads(next(lines).removeprefix("data: "))
    assert payload["candle"]["open_time"] == _iso(int(filled.live_candles["open_time"].max()))
    assert payload["price"]["last"] == filled.live_candles["close"].iloc[-1]


def test_openapi_documents_every_endpoint_and_docs_page_loads(api_client: TestClient) -> None:
    document = _get(api_client, "/openapi.json")
    assert {e.path for e in ENDPOINTS} | {"/stream/{symbol}"} <= set(document["paths"])
    candles = document["paths"]["/candles/{symbol}"]["get"]
    assert {p["name"] for p in candles["parameters"]} == {"symbol", "interval", "period", "start", "end"}
    assert set(candles["responses"]) == {"200", "401", "403", "404", "422", "429", "503"}
    page = api_client.get("/docs")
    assert page.status_code == 200 and "swagger-ui-bundle.js" in page.text
    assert api_client.get("/docs/assets/swagger-ui-bundle.js").status_code == 200


def test_the_document_lists_every_status_each_endpoint_answers_and_no_other(api_client: TestClient) -> None:
    """Each endpoint's documented errors come from its declaration; here they are checked against
    what it answers: 422 for an undeclared parameter everywhere, 404 for an unknown symbol where a
    symbol is taken."""
    document = _get(api_client, "/openapi.json")
    assert document["info"]["version"] == version("pricepipe")
    for endpoint in ENDPOINTS:
        documented = set(document["paths"][endpoint.path]["get"]["responses"])
        takes_symbol = "{symbol}" in endpoint.path
        keyed = {"401", "403", "429"}  # answered only when the API requires keys (test_auth.py)
        assert documented == {"200", "422", "503"} | keyed | ({"404"} if takes_symbol else set()), endpoint.path
        path = endpoint.path.replace("{symbol}", SYMBOL).replace("{n}", "1")
        assert api_client.get(f"{path}?no_such_parameter=1").status_code == 422, path
        if takes_symbol:
            assert api_client.get(endpoint.path.replace("{symbol}", "NOSUCHSYMBOL").replace("{n}", "1")).status_code == 404
