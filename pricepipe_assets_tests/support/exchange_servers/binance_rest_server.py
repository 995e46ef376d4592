"""A local server for Binance's ``GET /api/v3/klines``, fed with real klines from Binance's dumps,
and ``GET /api/v3/depth``, answering with the order book snapshots a test queues per symbol.

It keeps Binance's semantics where a client can get them wrong: rows with
``startTime <= openTime <= endTime``, the first ``limit`` of them (at most 1,000, default 500), the
most recent ones when no ``startTime`` is given, prices as strings and times as integers; HTTP 429
with ``Retry-After`` and Binance's error bodies.
"""

from __future__ import annotations

import csv
import io
import json
import threading
import zipfile
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

KLINES_DIR = Path("binance/data/spot/daily/klines")
MAX_LIMIT = 1000
DEFAULT_LIMIT = 500
INVALID_SYMBOL = {"code": -1121, "msg": "Invalid symbol."}
INVALID_INTERVAL = {"code": -1120, "msg": "Invalid interval."}
TOO_MANY_REQUESTS = {"code": -1003, "msg": "Too many requests; current limit of IP is 6000 request weight per 1 "
                                           "MINUTE. Please use WebSocket Streams for live updates to avoid polling "
                                           "the API."}


def load_day(shared_data: Path, symbol: str, day: str) -> list[list[str]]:
    """The CSV rows of one day's 1m klines dump, as Binance published them."""
    path = shared_data / KLINES_DIR / symbol / "1m" / f"{symbol}-1m-{day}.zip"
    with zipfile.ZipFile(path) as archive:
        (name,) = archive.namelist()
        return list(csv.reader(io.TextIOWrapper(archive.open(name), encoding="ascii")))


def rest_row(row: list[str]) -> list[Any]:
    """A dump line in the REST layout: times and trade counts as numbers, prices as strings."""
    return [int(row[0]), *row[1:6], int(row[6]), row[7], int(row[8]), *row[9:12]]


class BinanceRestServer(ThreadingHTTPServer):
    """Klines of 1m candles per symbol (and of 1d candles for the symbols in ``daily``).

    ``rate_limited_calls`` are the numbers (from 1) of the calls answered with 429 instead;
    ``requests`` records every call's query so a test can see how a client paged.
    """

    daemon_threads = True

    def __init__(self, candles: dict[str, list[list[str]]], *, daily: dict[str, list[list[str]]] | None = None,
                 rate_limited_calls: Collection[int] = (), retry_after_s: int = 1,
                 depth: dict[str, list[dict[str, Any]]] | None = None) -> None:
        super().__init__(("127.0.0.1", 0), KlinesHandler)
        # Rows are found by the open time of the dump line they came from, so a replaced row is
        # served where the original was even when it is too broken to have an open time.
        self.rows = {symbol: {int(row[0]): rest_row(row) for row in rows} for symbol, rows in candles.items()}
        self.daily = {symbol: {int(row[0]): rest_row(row) for row in rows} for symbol, rows in (daily or {}).items()}
        self.retry_after_s = retry_after_s
        self.rate_limited_calls = set(rate_limited_calls)
        self.requests: list[dict[str, str]] = []
        self.lock = threading.Lock()
        # Snapshots per symbol in the order they are served; the last one is served again and again.
        self.depth = {symbol: list(bodies) for symbol, bodies in (depth or {}).items()}
        self.depth_requests: list[dict[str, str]] = []

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def replace(self, symbol: str, open_time: int, row: Any) -> None:
        """Serve ``row`` instead of the kline opened at ``open_time`` (a malformed row, for instance)."""
        assert open_time in self.rows[symbol], f"no {symbol} kline opens at {open_time}"
        self.rows[symbol][open_time] = row

    def answer(self, query: dict[str, str]) -> tuple[int, Any]:
        with self.lock:
            self.requests.append(query)
            if len(self.requests) in self.rate_limited_calls:
                return 429, TOO_MANY_REQUESTS
        if query.get("symbol") not in self.rows:
            return 400, INVALID_SYMBOL
        if query.get("interval") == "1d":
            return 200, self.klines(self.daily.get(query["symbol"], {}), query)
        if query.get("interval") != "1m":
            return 400, INVALID_INTERVAL
        return 200, self.klines(self.rows[query["symbol"]], query)

    def depth_answer(self, query: dict[str, str]) -> tuple[int, Any]:
        """Binance's ``{"lastUpdateId", "bids", "asks"}`` with levels as ``[price, qty]`` strings."""
        with self.lock:
            self.depth_requests.append(query)
            bodies = self.depth.get(query.get("symbol", ""))
            if not bodies:
                return 400, INVALID_SYMBOL
            return 200, bodies.pop(0) if len(bodies) > 1 else bodies[0]

    @staticmethod
    def klines(rows: dict[int, Any], query: dict[str, str]) -> list[Any]:
        limit = min(int(query.get("limit", DEFAULT_LIMIT)), MAX_LIMIT)
        start = int(query.get("startTime", 0))
        end = int(query.get("endTime", 2**63))
        selected = [row for open_time, row in sorted(rows.items()) if start <= open_time <= end]
        return selected[:limit] if "startTime" in query else selected[-limit:]


class KlinesHandler(BaseHTTPRequestHandler):
    server: BinanceRestServer

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = {name: values[-1] for name, values in parse_qs(url.query).items()}
        if url.path == "/api/v3/klines":
            self.reply(*self.server.answer(query))
        elif url.path == "/api/v3/depth":
            self.reply(*self.server.depth_answer(query))
        else:
            self.reply(404, {"code": -1, "msg": f"no endpoint {url.path}"})

    def reply(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if status == 429:
            self.send_header("Retry-After", str(self.server.retry_after_s))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test asserts on ``server.requests`` instead of reading a log."""


@contextmanager
def running(candles: dict[str, list[list[str]]] | None = None, **options: Any) -> Iterator[BinanceRestServer]:
    """The server serving in a background thread on an ephemeral port, shut down afterwards."""
    server = BinanceRestServer(candles or {}, **options)
    thread = threading.Thread(target=server.serve_forever, name="binance-rest-server", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
