"""`GET /{symbol}/orderbook` over the keyspace the API tests share (see conftest: ten real BTCUSDT books
went through `orderbook` and `order_books_live`)."""

from __future__ import annotations

import json

import httpx2 as httpx
import pandas as pd
import pytest
from starlette.testclient import TestClient

from pricepipe_assets_tests.api.conftest import SYMBOL, Filled


def _iso(ms: int) -> str:
    return pd.Timestamp(ms, unit="ms", tz="UTC").strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def test_the_newest_book_with_spread_mid_and_time(api_client: TestClient, filled: Filled) -> None:
    newest = filled.books[-1]
    response = api_client.get(f"/{SYMBOL.lower()}/orderbook")
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["symbol"], body["exchange"], body["sequence"]) == (SYMBOL, "binance", newest.sequence)
    assert body["time"] == _iso(newest.ts)
    assert [(level["price"], level["size"]) for level in body["bids"]] == list(newest.bids)
    assert [(level["price"], level["size"]) for level in body["asks"]] == list(newest.asks)
    assert body["spread"] == pytest.approx(newest.spread) and body["mid"] == pytest.approx(newest.mid)


def test_depth_cuts_each_side(api_client: TestClient, filled: Filled) -> None:
    body = api_client.get(f"/{SYMBOL}/orderbook?depth=3").json()
    assert len(body["bids"]) == len(body["asks"]) == 3
    assert body["bids"][0]["price"] == filled.books[-1].bids[0][0]


@pytest.mark.parametrize("depth", ["0", "101", "ten", "-1", "2.5"])
def test_a_bad_depth_is_422(api_client: TestClient, depth: str) -> None:
    response = api_client.get(f"/{SYMBOL}/orderbook?depth={depth}")
    assert response.status_code == 422 and "depth" in response.text


def test_an_unknown_symbol_is_404_and_a_known_one_without_a_book_is_empty(api_client: TestClient) -> None:
    assert api_client.get("/NOSUCHSYMBOL/orderbook").status_code == 404
    body = api_client.get("/ETHUSDT/orderbook").json()
    assert (body["bids"], body["asks"], body["spread"], body["time"]) == ([], [], None, None)


def test_the_live_stream_carries_the_best_levels(api_base_url: str, filled: Filled) -> None:
    with httpx.stream("GET", f"{api_base_url}/stream/{SYMBOL}", timeout=30) as response:
        lines = response.iter_lines()
        assert next(line for line in lines if line.startswith("event:")) == "event: update"
        payload = json.loads(next(lines).removeprefix("data: "))
    book = payload["book"]
    assert len(book["bids"]) == len(book["asks"]) == 5
    assert (book["bids"][0]["price"], book["asks"][0]["price"]) == (filled.books[-1].bids[0][0],
                                                                    filled.books[-1].asks[0][0])
