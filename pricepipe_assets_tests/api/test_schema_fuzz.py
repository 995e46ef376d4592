"""The API under generated and hostile requests, over the filled keyspace.

A property run of schemathesis over ``/openapi.json`` sends every operation (but the endless
server-sent ``/stream/{symbol}``, which would never return) valid and invalid
parameters (boundary values, strings breaking the declared patterns, undeclared query
parameters) to the real uvicorn server: a 5xx there is a request the API did not foresee. The
hand-written cases then send what an attacker would try first (SQL/CQL fragments, NUL bytes,
path traversal, markup, huge and non-ASCII strings), each of which must be refused as the
client's fault, in the API's JSON error shape, with the keyspace intact afterwards.
"""

from __future__ import annotations

import http.client
import json
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.schemas import BaseSchema
from starlette.testclient import TestClient

from api.app import create_app
from pricepipe_assets.settings import Settings
from pricepipe_assets_tests.api.conftest import Filled

STREAM_PATH = "/stream/{symbol}"
ONE_DAY = "/candles/BTCUSDT?start=2024-01-31&end=2024-01-31"
MINUTES_IN_A_DAY = 1440

HOSTILE = {
    "sql-or": "' OR 1=1 --",
    "drop-table": "; DROP TABLE candles",
    "cql-batch": "BTCUSDT'; TRUNCATE candles; --",
    "percent-00": "%00",
    "nul-byte": "BTC\x00USDT",
    "traversal": "../../etc/passwd",
    "script": "<script>alert(1)</script>",
    "long": "A" * 10_000,
    "long-unicode": "é" * 10_000,  # 60,000 characters once encoded: under the 64 KiB URL limit of httpx
    "unicode": "ビットコイン",
    "bidi": "BTC\u202eTDSU",
    "emoji": "BTC🚀USDT",
    "quote": "BTCUSDT'",
    "json": '{"$gt": ""}',
    "crlf": "BTCUSDT\r\nX-Injected: 1",
}

# Where each hostile value goes: a path parameter or a query parameter of a real endpoint.
TARGETS = {
    "candles-symbol": "/candles/{}",
    "price-symbol": "/{}/price",
    "trades-symbol": "/{}/trades/5",
    "trades-n": "/BTCUSD_PERP/trades/{}",
    "top-n": "/trades/hour/{}",
    "forecast-symbol": "/forecast/{}",
    "start": "/candles/BTCUSDT?start={}",
    "end": "/candles/BTCUSDT?end={}",
    "interval": "/candles/BTCUSDT?interval={}",
    "period": "/candles/BTCUSDT?period={}",
    "limit": "/predictions/BTCUSDT?limit={}",
    "undeclared-name": "/candles/BTCUSDT?{}=1",
}

TRACEBACK_MARKERS = ("Traceback (most recent call last)", 'File "/', "cassandra.", "Exception:")


def assert_refused(response: Any, request: str) -> None:
    """A client error in the API's own shape: 4xx, JSON ``{"error", "status"}``, no internals leaked."""
    assert 400 <= response.status_code < 500, f"{request}: {response.status_code} {response.text[:500]}"
    assert response.headers["content-type"].startswith("application/json"), f"{request}: {response.text[:500]}"
    body = response.json()
    assert set(body) == {"error", "status"} and body["status"] == response.status_code, f"{request}: {body}"
    assert isinstance(body["error"], str) and len(body["error"]) < 500, f"{request}: {body}"
    assert not any(marker in response.text for marker in TRACEBACK_MARKERS), f"{request}: {response.text[:500]}"


def error_shape(ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case) -> None:
    """Every refusal the fuzz provokes is the documented JSON error, not a framework's plain text."""
    if 400 <= response.status_code < 500:
        body = json.loads(response.content)
        assert set(body) == {"error", "status"} and body["status"] == response.status_code, body


def served_schema() -> BaseSchema:
    """The document ``/openapi.json`` serves, read in process (no lifespan, so no store) at collection.

    Loading it at import rather than from a fixture (``schemathesis.pytest.from_fixture``) is
    deliberate: schemathesis 4.32 renames test nodes through ``Node._nodeid``, which pytest 9.2 no
    longer has. The requests themselves go to the real server over the filled keyspace.
    """
    document = TestClient(create_app(Settings.from_env({}))).get("/openapi.json").json()
    return schemathesis.openapi.from_dict(document)


fuzzed = served_schema().exclude(path=STREAM_PATH)


@fuzzed.parametrize()
@settings(max_examples=50, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large])
def test_no_generated_request_gets_a_server_error(case: schemathesis.Case, api_base_url: str) -> None:
    """Only the server's own failures are asserted: a 4xx is the right answer to most generated input."""
    case.call_and_validate(base_url=api_base_url, checks=[not_a_server_error, error_shape])


@pytest.mark.parametrize("value", HOSTILE.values(), ids=HOSTILE.keys())
@pytest.mark.parametrize("target", TARGETS.values(), ids=TARGETS.keys())
def test_hostile_parameter_is_refused_as_a_client_error(api_client: TestClient, target: str, value: str) -> None:
    url = target.format(quote(value, safe=""))
    assert_refused(api_client.get(url), f"GET {url[:200]}")


@pytest.mark.parametrize("raw_path", [
    "/candles/../../etc/passwd",
    "/candles/BTCUSDT%00",
    "/candles/%27%20OR%201%3D1%20--",
    "/docs/assets/..%2F..%2F..%2F..%2Fetc%2Fpasswd",
    "/static/chart/..%2F..%2F..%2F..%2Fetc%2Fpasswd",
    "/candles/BTCUSDT?start=2024-01-31%27%3B%20DROP%20TABLE%20candles%3B%20--",
    "/candles/BTCUSDT?start=2024-01-31&start=%00",
], ids=["dot-segments", "nul", "sql", "docs-traversal", "chart-traversal", "cql-in-date", "repeated"])
def test_raw_hostile_path_on_the_real_server(api_base_url: str, raw_path: str) -> None:
    """Sent byte for byte (no client-side normalisation of ``..``) to uvicorn, as a scanner would."""
    address = urlsplit(api_base_url)
    connection = http.client.HTTPConnection(address.hostname or "127.0.0.1", address.port, timeout=30)
    try:
        connection.putrequest("GET", raw_path, skip_accept_encoding=True)
        connection.endheaders()
        response = connection.getresponse()
        body = response.read().decode("utf-8", "replace")
    finally:
        connection.close()
    assert 400 <= response.status < 500, f"GET {raw_path}: {response.status} {body[:500]}"
    assert "root:" not in body, f"GET {raw_path} served a system file"
    assert response.getheader("content-type", "").startswith("application/json"), f"GET {raw_path}: {body[:500]}"
    assert set(json.loads(body)) == {"error", "status"}, f"GET {raw_path}: {body[:500]}"


def test_keyspace_still_answers_after_the_hostile_requests(api_client: TestClient, filled: Filled) -> None:
    """Runs after the cases above (pytest keeps file order): nothing they sent reached Cassandra as a statement."""
    for value in HOSTILE.values():
        api_client.get(f"/candles/{quote(value, safe='')}")
    response = api_client.get(ONE_DAY)
    assert response.status_code == 200, response.text
    candles = response.json()["candles"]
    assert len(candles) == MINUTES_IN_A_DAY == len(filled.live_candles)
    tables = filled.cassandra.session().execute(
        "SELECT table_name FROM system_schema.tables WHERE keyspace_name = %s", (filled.settings.keyspace,))
    assert "candles" in {row.table_name for row in tables}
