"""API keys at the API: 401 without one, 403 without the route's scope, 429 over its rate, revocation
within seconds, the login cookie of browsers, private answers, and no key or token in any URL or log.

The keys live in a keyspace of this module's own (the real Cassandra), made by the storage module
as ``pricepipe api-key`` makes them.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest
from starlette.testclient import TestClient

from api import keys as key_ring
from api.app import create_app
from api.auth import redact_query
from api.ratelimit import RateLimits
from api.server import UVICORN_HTTP
from pricepipe_assets.settings import Settings
from pricepipe_assets.storage import api_keys
from pricepipe_assets.storage.api_keys import ApiKey, Rate
from pricepipe_assets.storage.cassandra import CassandraCluster
from pricepipe_assets_tests.api.conftest import SYMBOL, _free_port, served
from pricepipe_assets_tests.api.test_hostile_requests import next_update, wait_until

COOKIE = key_ring.COOKIE
GENEROUS = Rate(1000, 1)


@pytest.fixture(autouse=True)
def new_keys_work_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A key made a moment ago is read again at once (in service, after at most a second)."""
    monkeypatch.setattr(key_ring, "MISS_REFRESH_S", 0.0)


@pytest.fixture(scope="module")
def keys_db(cassandra_server: None) -> Iterator[CassandraCluster]:
    cluster = CassandraCluster(keyspace=f"test_auth_{uuid.uuid4().hex[:10]}")
    cluster.session()
    yield cluster
    cluster.session().execute(f"DROP KEYSPACE IF EXISTS {cluster.keyspace}")
    cluster.close()


@pytest.fixture(scope="module")
def auth_settings(keys_db: CassandraCluster) -> Settings:
    return Settings.from_env({"PRICEPIPE_KEYSPACE": keys_db.keyspace, "PRICEPIPE_API_AUTH": "true"})


@pytest.fixture(scope="module")
def client(auth_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(auth_settings)) as client:
        yield client


def new_key(keys_db: CassandraCluster, scopes: list[str], rate: Rate = GENEROUS) -> str:
    return api_keys.create(keys_db, f"k{uuid.uuid4().hex[:8]}", scopes, rate)


def test_no_key_or_an_unknown_key_is_401(client: TestClient) -> None:
    for headers in ({}, {"X-API-Key": "pp_unknown"}, {"Cookie": f"{COOKIE}=not-a-session"}):
        response = client.get("/symbols", headers=headers)
        assert response.status_code == 401 and "X-API-Key" in response.json()["error"]
        assert response.headers["www-authenticate"] == "X-API-Key"


def test_each_route_wants_its_scope(client: TestClient, keys_db: CassandraCluster) -> None:
    reader = {"X-API-Key": new_key(keys_db, ["read"])}
    assert client.get("/symbols", headers=reader).status_code == 200
    assert client.get(f"/candles/{SYMBOL}", headers=reader).status_code == 200
    for path, scope in ((f"/forecast/{SYMBOL}", "forecasts"), (f"/predictions/{SYMBOL}", "forecasts"),
                        (f"/stream/{SYMBOL}", "stream")):
        refused = client.get(path, headers=reader)
        assert refused.status_code == 403 and f"scope '{scope}'" in refused.json()["error"]
    forecaster = {"X-API-Key": new_key(keys_db, ["forecasts"])}
    assert client.get(f"/forecast/{SYMBOL}", headers=forecaster).status_code == 200
    assert client.get("/symbols", headers=forecaster).status_code == 403
    assert client.get("/health", headers=forecaster).status_code == 200  # any key


def test_a_key_over_its_rate_gets_429_with_retry_after(client: TestClient, keys_db: CassandraCluster) -> None:
    headers = {"X-API-Key": new_key(keys_db, ["read"], Rate(3, 60))}
    assert [client.get("/symbols", headers=headers).status_code for _ in range(3)] == [200] * 3
    refused = client.get("/symbols", headers=headers)
    assert refused.status_code == 429 and "3/m" in refused.json()["error"]
    assert 1 <= int(refused.headers["retry-after"]) <= 20


def test_rate_limits_allow_a_burst_then_refill_at_the_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr("api.ratelimit.time.monotonic", lambda: clock[0])
    key, limits = ApiKey("k", b"h", frozenset(), Rate(2, 1)), RateLimits()
    assert [limits.take(key) for _ in range(3)] == [0, 0, 1]
    clock[0] += 0.5
    assert [limits.take(key) for _ in range(2)] == [0, 1]
    assert limits.take(ApiKey("all", b"a", frozenset(), None)) == 0


def test_a_revoked_key_and_its_sessions_stop_working_within_seconds(auth_settings: Settings,
                                                                    keys_db: CassandraCluster) -> None:
    name = f"gone{uuid.uuid4().hex[:6]}"
    headers = {"X-API-Key": api_keys.create(keys_db, name, ["read"], Rate(1000, 1))}
    with TestClient(create_app(auth_settings)) as client:
        assert client.post("/login", headers=headers).status_code == 204
        assert client.get("/symbols", headers=headers).status_code == 200
        assert client.get("/symbols").status_code == 200  # the session cookie
        assert api_keys.revoke(keys_db, name)
        wait_until(lambda: client.get("/symbols", headers=headers).status_code == 401,
                   key_ring.KEYS_TTL_S + 3)
        assert client.get("/symbols").status_code == 401


def test_login_sets_an_httponly_samesite_strict_session_cookie_that_is_not_the_key(
        auth_settings: Settings, keys_db: CassandraCluster) -> None:
    secret = new_key(keys_db, ["read"])
    with TestClient(create_app(auth_settings)) as client:
        assert client.post("/login", headers={"X-API-Key": "pp_wrong"}).status_code == 401
        response = client.post("/login", headers={"X-API-Key": secret})
        assert response.status_code == 204
        cookie = response.headers["set-cookie"]
        assert cookie.startswith(f"{COOKIE}=") and secret not in cookie
        assert {"HttpOnly", "SameSite=strict", "Path=/"} <= {part.strip() for part in cookie.split(";")}
        assert "Secure" not in cookie
        stored = list(keys_db.session().execute("SELECT token_hash FROM api_sessions"))
        token = cookie.split(";")[0].split("=", 1)[1]
        assert api_keys.digest(token) in {bytes(row.token_hash) for row in stored}
        assert client.post("/logout").status_code == 204
        assert client.get("/symbols").status_code == 401
    with TestClient(create_app(auth_settings), base_url="https://testserver") as client:
        assert "Secure" in client.post("/login", headers={"X-API-Key": secret}).headers["set-cookie"]


def test_the_chart_page_and_its_stream_work_with_the_cookie_alone(auth_settings: Settings,
                                                                  keys_db: CassandraCluster) -> None:
    secret = new_key(keys_db, ["read", "stream"])
    with served(create_app(auth_settings)) as base_url, httpx.Client(base_url=base_url, timeout=30) as browser:
        page = browser.get("/")
        assert page.status_code == 200 and "api_key" not in page.text
        chart_js = browser.get("/static/chart/chart.js").text
        assert "api_key" not in chart_js and "X-API-Key" not in chart_js
        assert browser.get(f"/stream/{SYMBOL}").status_code == 401
        assert browser.post("/login", headers={"X-API-Key": secret}).status_code == 204
        with browser.stream("GET", f"/stream/{SYMBOL}") as stream:
            assert stream.status_code == 200 and "api_key" not in str(stream.url)
            assert next_update(stream.iter_lines())["price"]["symbol"] == SYMBOL
        assert browser.get("/symbols").status_code == 200


def test_a_key_in_the_url_is_refused_saying_how_to_send_it(client: TestClient, keys_db: CassandraCluster) -> None:
    secret = new_key(keys_db, ["read", "stream"])
    for path in (f"/symbols?api_key={secret}", f"/?API_KEY={secret}", f"/stream/{SYMBOL}?api%5Fkey={secret}"):
        refused = client.get(path)
        assert refused.status_code == 400
        assert "X-API-Key" in refused.json()["error"] and "/login" in refused.json()["error"]


def test_every_keyed_answer_is_private_and_varies_on_the_key(client: TestClient, keys_db: CassandraCluster) -> None:
    headers = {"X-API-Key": new_key(keys_db, ["read"])}
    for path in (f"/{SYMBOL}/price", f"/{SYMBOL}/price", "/symbols", "/NOSUCH/price", "/health"):
        response = client.get(path, headers=headers)
        assert response.headers["cache-control"].startswith("private") and "public" not in response.headers[
            "cache-control"], path
        assert response.headers["vary"] == "X-API-Key, Cookie", path
    assert client.get(f"/{SYMBOL}/price", headers=headers).headers["x-cache"] == "HIT"


def test_openapi_names_the_scope_of_every_operation(client: TestClient, keys_db: CassandraCluster) -> None:
    document = client.get("/openapi.json", headers={"X-API-Key": new_key(keys_db, ["read"])}).json()
    schemes = document["components"]["securitySchemes"]
    assert schemes["apiKey"]["name"] == "X-API-Key" and schemes["session"] == {**schemes["session"], "in": "cookie",
                                                                              "name": COOKIE}
    scopes = {path: operation["get"].get("x-scope") for path, operation in document["paths"].items()}
    assert scopes["/symbols"] == scopes["/candles/{symbol}"] == "read"
    assert scopes["/forecast/{symbol}"] == scopes["/predictions/{symbol}"] == "forecasts"
    assert scopes["/stream/{symbol}"] == "stream"
    assert document["paths"]["/livez"]["get"]["security"] == []
    assert all({"401", "403", "429"} <= set(operation["get"]["responses"]) for path, operation in
               document["paths"].items() if path != "/livez")


def test_redaction_hides_the_url_key_however_it_is_spelled() -> None:
    assert redact_query("/x?a=1&api_key=s3cret&b=2") == "/x?a=1&api_key=[redacted]&b=2"
    assert redact_query("/x?API%5Fkey=s3cret") == "/x?API%5Fkey=[redacted]"
    assert redact_query("/x?symbol=BTC") == "/x?symbol=BTC"


def test_the_access_log_holds_no_key_or_session_token(keys_db: CassandraCluster, tmp_path: Path) -> None:
    """The API as `pricepipe run` starts it: the uvicorn command, its output written to a log file."""
    settings_key, table_key = f"pp_{uuid.uuid4().hex}", new_key(keys_db, ["read", "stream"])
    port, log = _free_port(), tmp_path / "api.log"
    env = {**{name: value for name, value in os.environ.items() if not name.startswith("PRICEPIPE_API")},
           "PRICEPIPE_KEYSPACE": keys_db.keyspace, "PRICEPIPE_API_KEY": settings_key}
    uvicorn = str(Path(sys.executable).parent / "uvicorn")
    with log.open("wb") as output:
        server = subprocess.Popen([uvicorn, "api.app:app", "--host", "127.0.0.1", "--port", str(port), "--workers",
                                   "1", "--http", UVICORN_HTTP], env=env, stdout=output, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base_url, timeout=30) as client:
            wait_until(lambda: _answers(client), 60)
            tokens = []
            for secret in (settings_key, table_key):
                assert client.get("/symbols", headers={"X-API-Key": secret}).status_code == 200
                assert client.get(f"/symbols?api_key={secret}").status_code == 400
                assert client.get(f"/?x=1&api_key={secret}").status_code == 400
                assert client.post("/login", headers={"X-API-Key": secret}).status_code == 204
                tokens.append(client.cookies[COOKIE])
                assert client.get("/symbols").status_code == 200
                with client.stream("GET", f"/stream/{SYMBOL}") as stream:
                    assert stream.status_code == 200
                    next_update(stream.iter_lines())
                assert client.post("/logout").status_code == 204
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)
    written = log.read_text()
    assert '"GET /symbols HTTP/1.1" 200' in written and "api_key=[redacted]" in written
    assert all(secret not in written for secret in (settings_key, table_key, *tokens))
    assert COOKIE not in written


def _answers(client: httpx.Client) -> bool:
    try:
        return client.get("/livez").status_code == 200
    except httpx.TransportError:
        return False


def test_without_keys_configured_the_api_stays_open(auth_settings: Settings) -> None:
    with TestClient(create_app(dataclasses.replace(auth_settings, api_auth=False))) as open_client:
        assert open_client.get("/symbols").status_code == 200
        assert open_client.post("/login").status_code == 404
