"""Refusals: 404 for an unknown symbol, 422 naming the bad parameter, 503 while Cassandra is
unreachable, 401 without the configured API key (test_auth.py: keys in detail); always JSON, never a 500 or
a traceback."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from api.app import create_app
from pricepipe_assets.settings import Settings
from pricepipe_assets_tests.api.conftest import CLOSED_DAY, SYMBOL, Filled


def _refusal(client: TestClient, path: str, status: int, **kwargs: object) -> str:
    response = client.get(path, **kwargs)
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status"] == status and "Traceback" not in response.text
    return body["error"]


@pytest.mark.parametrize("path", ["/candles/NOSUCH", "/NOSUCH/price", "/forecast/NOSUCH", "/predictions/NOSUCH",
                                  "/moving-average/NOSUCH", "/NOSUCH/trades/5", "/stream/NOSUCH"])
def test_unknown_symbol_is_404(api_client: TestClient, path: str) -> None:
    assert "unknown symbol 'NOSUCH'" in _refusal(api_client, path, 404)


@pytest.mark.parametrize(("path", "parameter"), [
    (f"/candles/{SYMBOL}?start=2024-13-01", "start"),
    (f"/candles/{SYMBOL}?end=yesterday", "end"),
    (f"/candles/{SYMBOL}?start=2024-02-01&end=2024-01-01", "start"),
    (f"/candles/{SYMBOL}?start=2023-01-01&end=2024-01-01", "start"),
    (f"/candles/{SYMBOL}?interval=5m", "interval"),
    (f"/candles/{SYMBOL}?period=decade", "period"),
    (f"/candles/{SYMBOL}?period=week&start=2024-01-01", "period"),
    (f"/candles/{SYMBOL}?limit=5", "limit"),
    (f"/moving-average/{SYMBOL}?window=9", "window"),
    (f"/forecast/{SYMBOL}?days=0", "days"),
    (f"/forecast/{SYMBOL}?days=16", "days"),
    (f"/predictions/{SYMBOL}?limit=100000", "limit"),
    (f"/predictions/{SYMBOL}?horizon=1w", "horizon"),
    (f"/predictions/{SYMBOL}?model=arima", "model"),
    (f"/{SYMBOL}/trades/0", "n"),
    (f"/{SYMBOL}/trades/61", "n"),
    (f"/{SYMBOL}/trades/five", "n"),
    ("/trades/hour/101", "n"),
    ("/candles/BTC-USDT", "symbol"),
])
def test_invalid_parameters_are_422_naming_the_parameter(api_client: TestClient, path: str, parameter: str) -> None:
    assert _refusal(api_client, path, 422).startswith(f"parameter '{parameter}'")


def test_unreachable_cassandra_is_503_and_health_says_so() -> None:
    settings = Settings.from_env({"PRICEPIPE_CASSANDRA_PORT": "1", "PRICEPIPE_KAFKA_BOOTSTRAP": "127.0.0.1:1"})
    with TestClient(create_app(settings)) as client:
        for path in ("/symbols", f"/candles/{SYMBOL}", "/transactions/6-hours", f"/{SYMBOL}/price"):
            assert "unavailable" in _refusal(client, path, 503)
        health = client.get("/health")
        assert health.status_code == 200 and health.json()["cassandra"] is False


def test_api_key_guards_every_endpoint_when_set(filled: Filled) -> None:
    settings = Settings.from_env({"PRICEPIPE_KEYSPACE": filled.settings.keyspace, "PRICEPIPE_API_KEY": "s3cret"})
    with TestClient(create_app(settings)) as client:
        for path in ("/health", "/symbols", f"/candles/{SYMBOL}", "/openapi.json", "/docs", f"/stream/{SYMBOL}"):
            assert "API key" in _refusal(client, path, 401)
        assert "API key" in _refusal(client, "/symbols", 401, headers={"X-API-Key": "wrong"})
        assert client.get("/symbols", headers={"X-API-Key": "s3cret"}).status_code == 200
        assert "X-API-Key header" in _refusal(client, f"/candles/{SYMBOL}?api_key=s3cret", 400)
        for public in ("/docs/assets/swagger-ui-bundle.js", "/", "/static/chart/plotly.min.js", "/livez"):
            assert client.get(public).status_code == 200


def test_a_kept_answer_is_never_sent_without_the_api_key(filled: Filled) -> None:
    settings = Settings.from_env({"PRICEPIPE_KEYSPACE": filled.settings.keyspace, "PRICEPIPE_API_KEY": "s3cret"})
    with TestClient(create_app(settings)) as client:
        for path in (f"/{SYMBOL}/price", "/transactions/6-hours"):
            assert client.get(path, headers={"X-API-Key": "s3cret"}).headers["x-cache"] == "MISS"
            assert client.get(path, headers={"X-API-Key": "s3cret"}).headers["x-cache"] == "HIT"
            assert "API key" in _refusal(client, path, 401)


def test_kept_answers_given_to_a_key_are_private(filled: Filled) -> None:
    settings = Settings.from_env({"PRICEPIPE_KEYSPACE": filled.settings.keyspace, "PRICEPIPE_API_KEY": "s3cret"})
    closed_day = f"/candles/{SYMBOL}?start={CLOSED_DAY}&end={CLOSED_DAY}"
    with TestClient(create_app(settings), headers={"X-API-Key": "s3cret"}) as client:
        for path, cache_control in ((f"/{SYMBOL}/price", "private, max-age=2"),
                                    (closed_day, "private, max-age=31536000, immutable")):
            for _ in range(2):  # computed, then kept
                response = client.get(path)
                assert response.headers["cache-control"] == cache_control
                assert response.headers["vary"] == "X-API-Key, Cookie"
        not_modified = client.get(closed_day, headers={"If-None-Match": response.headers["etag"]})
        assert not_modified.status_code == 304 and not_modified.headers["cache-control"].startswith("private")
