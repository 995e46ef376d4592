"""Hostile HTTP against the real server: live streams past the cap, oversized and malformed
requests, slow and idle clients.

Every test talks to a real uvicorn on 127.0.0.1, serving the API over the filled keyspace with the
HTTP protocol the API runs with (``api.server``). This module's server caps live streams at
``STREAMS_MAX`` and gives a request ``REQUEST_TIMEOUT_S`` to arrive, so that the caps and
deadlines are reached in seconds. Each refusal must be a 4xx (503 for the stream cap) in the API's
JSON error shape, and the server must go on answering everyone else.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import select
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx2 as httpx
import pytest
from starlette.applications import Starlette

from api.app import create_app
from api.server import GuardedHttpProtocol
from pricepipe_assets_tests.api.conftest import SYMBOL, Filled, LiveSymbol, served

STREAMS_MAX = 3
REQUEST_TIMEOUT_S = 1.0


class ShortDeadline(GuardedHttpProtocol):
    request_timeout_s = REQUEST_TIMEOUT_S


@pytest.fixture(scope="module")
def live_symbol(filled: Filled) -> LiveSymbol:
    """The streams' symbol: a stream sends an update only when a row changed, so the test moves it on."""
    return LiveSymbol(filled)


@pytest.fixture(scope="module")
def capped_app(filled: Filled, live_symbol: LiveSymbol) -> Starlette:
    return create_app(dataclasses.replace(filled.settings, api_streams_max=STREAMS_MAX))


@pytest.fixture(scope="module")
def base_url(capped_app: Starlette) -> Iterator[str]:
    with served(capped_app, ShortDeadline) as url:
        yield url


def _connect(base_url: str) -> socket.socket:
    address = urlsplit(base_url)
    return socket.create_connection((address.hostname or "127.0.0.1", address.port or 80), timeout=10)


def _read_until_closed(sock: socket.socket) -> bytes:
    answer = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def exchange(base_url: str, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``request`` byte for byte (no client-side checks or normalisation) and read the answer
    until the server closes. Sending may fail half-way when the server refuses early and closes."""
    with _connect(base_url) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(request)
        return parse_answer(_read_until_closed(sock))


def parse_answer(answer: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    assert status_line.startswith("HTTP/1.1 "), f"no HTTP answer: {answer[:300]!r}"
    headers = dict(line.lower().split(": ", 1) for line in lines)
    return int(status_line.split()[1]), headers, body


def get(target: bytes, *headers: bytes) -> bytes:
    return b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"".join(headers) + b"Connection: close\r\n\r\n"


def assert_json_refusal(answer: tuple[int, dict[str, str], bytes], status: int | None = None) -> dict[str, Any]:
    """A refusal in the API's error shape: 4xx (or exactly ``status``), JSON ``{"error", "status"}``."""
    code, headers, body = answer
    assert (code == status) if status else (400 <= code < 500), f"{code} {body[:300]!r}"
    assert headers.get("content-type", "").startswith("application/json"), f"{code} {headers} {body[:300]!r}"
    refusal = json.loads(body)
    assert set(refusal) == {"error", "status"} and refusal["status"] == code, refusal
    assert isinstance(refusal["error"], str) and 0 < len(refusal["error"]) < 500, refusal
    return refusal


def assert_serving(base_url: str) -> None:
    response = httpx.get(f"{base_url}/symbols", timeout=10)
    assert response.status_code == 200, response.text
    assert SYMBOL in {entry["symbol"] for entry in response.json()["symbols"]}


def wait_until(condition: Callable[[], bool], timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "the condition did not hold in time"
        time.sleep(0.05)


def next_update(lines: Iterator[str]) -> dict[str, Any]:
    assert next(line for line in lines if line.startswith("event:")) == "event: update"
    return json.loads(next(lines).removeprefix("data: "))


@contextlib.contextmanager
def open_streams(client: httpx.Client, base_url: str, symbol: str,
                 count: int) -> Iterator[list[tuple[httpx.Response, Iterator[str]]]]:
    """``count`` live streams of ``symbol`` at once, each past its first update."""
    with contextlib.ExitStack() as stack:
        streams = []
        for _ in range(count):
            response = stack.enter_context(client.stream("GET", f"{base_url}/stream/{symbol}"))
            assert response.status_code == 200, response.read()
            lines = response.iter_lines()
            assert next_update(lines)["candle"] is not None
            streams.append((response, lines))
        yield streams


def test_a_stream_over_the_cap_gets_503_with_retry_after_while_the_open_ones_keep_updating(
        base_url: str, live_symbol: LiveSymbol) -> None:
    with httpx.Client(timeout=30) as client, open_streams(client, base_url, live_symbol.name, STREAMS_MAX) as streams:
        refused = client.get(f"{base_url}/stream/{live_symbol.name}")
        refusal = assert_json_refusal((refused.status_code, dict(refused.headers), refused.content), 503)
        assert "PRICEPIPE_API_STREAMS_MAX" in refusal["error"]
        assert int(refused.headers["retry-after"]) > 0
        newest = live_symbol.tick()
        for _, lines in streams:
            update = next_update(lines)
            if update["candle"]["open_time"] != newest:  # a poll read the candle just before the write, the price after
                update = next_update(lines)
            assert update["candle"]["open_time"] == newest
        assert_serving(base_url)


def test_a_stream_gives_its_slot_back_when_its_client_leaves(base_url: str, capped_app: Starlette,
                                                              live_symbol: LiveSymbol) -> None:
    slots = capped_app.state.context.streams
    with httpx.Client(timeout=30) as client:
        with open_streams(client, base_url, live_symbol.name, STREAMS_MAX) as streams:
            assert slots.open == STREAMS_MAX
            assert client.get(f"{base_url}/stream/NOSUCH").status_code == 404  # refused before taking a slot
            streams[0][0].close()
            wait_until(lambda: slots.open == STREAMS_MAX - 1)
            with client.stream("GET", f"{base_url}/stream/{live_symbol.name}") as again:
                assert again.status_code == 200
                assert next_update(again.iter_lines())["candle"] is not None
        wait_until(lambda: slots.open == 0)


LONG_TARGETS = {
    "100 kB path": b"/candles/" + b"A" * 100_000,
    "1 MB query": b"/symbols?x=" + b"a" * 1_000_000,
    "one parameter 10,000 times": b"/candles/" + SYMBOL.encode() + b"?" + b"&".join([b"start=2024-01-31"] * 10_000),
    "10,000 undeclared parameters": b"/symbols?" + b"&".join(b"p%d=1" % n for n in range(10_000)),
}


@pytest.mark.parametrize("target", LONG_TARGETS.values(), ids=LONG_TARGETS.keys())
def test_a_long_path_or_query_is_refused_with_414(base_url: str, target: bytes) -> None:
    assert_json_refusal(exchange(base_url, get(target)), 414)
    assert_serving(base_url)


HUGE_HEADERS = {
    "one 1 MB header": b"X-Big: " + b"a" * 1_000_000 + b"\r\n",
    "10,000 headers": b"".join(b"X-Header-%d: v\r\n" % n for n in range(10_000)),
}


@pytest.mark.parametrize("headers", HUGE_HEADERS.values(), ids=HUGE_HEADERS.keys())
def test_huge_headers_are_refused_with_431(base_url: str, headers: bytes) -> None:
    assert_json_refusal(exchange(base_url, get(b"/symbols", headers)), 431)
    assert_serving(base_url)


GARBAGE = {
    "raw non-UTF-8 bytes in the path": get(b"/candles/\xff\xfe"),
    "raw non-UTF-8 bytes in the query": get(b"/candles/BTCUSDT?start=\xff\xfe"),
    "percent-encoded non-UTF-8 and NUL in the path": get(b"/candles/%ff%fe%00"),
    "percent-encoded non-UTF-8 parameter name": get(b"/candles/BTCUSDT?%ff%fe=1"),
    "broken percent escapes": get(b"/candles/%zz%2?start=%"),
    "a control byte in the method": b"G\x01T /symbols HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    "an unknown HTTP version": b"GET /symbols HTTP/7.3\r\nHost: 127.0.0.1\r\n\r\n",
    "a header without a colon": get(b"/symbols", b"this is not a header\r\n"),
    "not HTTP at all": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256)) + b"\r\n\r\n",
}


@pytest.mark.parametrize("request_bytes", GARBAGE.values(), ids=GARBAGE.keys())
def test_garbage_in_the_request_is_refused_as_a_client_error(base_url: str, request_bytes: bytes) -> None:
    assert_json_refusal(exchange(base_url, request_bytes))
    assert_serving(base_url)


def test_big_bodies_on_get_and_post_are_answered_without_a_server_error(base_url: str) -> None:
    body = b"x" * 10_000_000
    length = b"Content-Length: %d\r\n" % len(body)
    code, _, answer = exchange(base_url, get(b"/symbols", length) + body)
    assert code == 200, answer[:300]
    posted = b"POST /symbols HTTP/1.1\r\nHost: 127.0.0.1\r\n" + length + b"Connection: close\r\n\r\n" + body
    assert_json_refusal(exchange(base_url, posted), 405)
    assert_serving(base_url)


def test_a_client_sending_its_request_a_byte_at_a_time_gets_408_and_blocks_no_one(base_url: str) -> None:
    request = get(b"/symbols", *(b"X-Padding-%d: slow\r\n" % n for n in range(100)))
    with _connect(base_url) as slow:
        started = time.monotonic()
        for sent, byte in enumerate(request):
            if select.select([slow], [], [], 0.02)[0]:
                break  # the server answered and closed: the rest would not be read
            slow.sendall(bytes([byte]))
            if sent % 10 == 0:
                assert_serving(base_url)
        assert_json_refusal(parse_answer(_read_until_closed(slow)), 408)
    assert time.monotonic() - started < 10 * REQUEST_TIMEOUT_S


def test_connections_that_never_send_a_request_are_closed_with_408_and_block_no_one(base_url: str) -> None:
    idle = [_connect(base_url) for _ in range(200)]
    try:
        assert_serving(base_url)
        for sock in idle:
            assert_json_refusal(parse_answer(_read_until_closed(sock)), 408)
    finally:
        for sock in idle:
            sock.close()
    assert_serving(base_url)


def test_a_body_trickling_in_after_the_answer_is_cut_off_at_the_deadline(base_url: str) -> None:
    with _connect(base_url) as slow:
        slow.sendall(b"POST /symbols HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n")
        started, answered = time.monotonic(), b""
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            while time.monotonic() - started < 10 * REQUEST_TIMEOUT_S:
                if select.select([slow], [], [], 0.05)[0]:
                    if not (chunk := slow.recv(65536)):
                        break
                    answered += chunk
                slow.sendall(b"x")
        assert time.monotonic() - started < 10 * REQUEST_TIMEOUT_S, "the connection was still open"
    assert_json_refusal(parse_answer(answered), 405)
    assert_serving(base_url)
