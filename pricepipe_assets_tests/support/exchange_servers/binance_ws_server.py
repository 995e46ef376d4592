"""A local Binance combined kline stream (``/stream?streams=btcusdt@kline_1m/...``) replaying real 1m klines.

The day is replayed as fast as the client reads, minute by minute: for each minute an open
update (``"x": false``, as Binance sends while a minute runs) per symbol, then the closed kline
per symbol. The server keeps a simulated clock, the minute being replayed, which a test hands to
the client as its clock, so "the last closed minute" means the same to both.

Connections can be dropped after a number of frames; the minutes that pass while the client is
away are skipped (the client must read them over REST), and the exchange can stay unreachable for
a few handshakes. Extra raw frames (malformed or hostile ones, see ``hostile``) can be slipped in
after any frame; when the client closes the connection (on one too large for it), the next
connection resumes where this one stopped.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from http import HTTPStatus
from typing import Protocol, TypeVar
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from pricepipe_assets_tests.support.exchange_servers.hostile import WireFrame, send_frame

MINUTE_MS = 60_000


@dataclass(frozen=True)
class Drop:
    """Cut the connection after ``after_frames`` frames; the client is away ``skip_minutes``.

    ``clean`` closes with 1001 "going away" (Binance's daily disconnect) instead of cutting the
    TCP connection; ``refuse`` handshakes after the drop are answered 503 (exchange unreachable).
    With ``skip_minutes=0`` the stream resumes at the start of the interrupted minute, so the
    client sees again any close of that minute it already had.
    """

    after_frames: int
    skip_minutes: int
    clean: bool = False
    refuse: int = 0


@dataclass(frozen=True)
class Frame:
    minute: int
    symbol: str
    text: str


def kline_frame(symbol: str, row: list[str], closed: bool) -> str:
    """A combined-stream frame of a dump line: the closed kline, or an early update of its minute."""
    open_time, close_time = int(row[0]), int(row[6])
    if closed:
        values = {"o": row[1], "h": row[2], "l": row[3], "c": row[4], "v": row[5], "n": int(row[8]), "q": row[7],
                  "V": row[9], "Q": row[10]}
    else:
        values = {"o": row[1], "h": row[1], "l": row[1], "c": row[1], "v": "0.00000000", "n": 0, "q": "0.00000000",
                  "V": "0.00000000", "Q": "0.00000000"}
    event_time = close_time + 1 if closed else open_time + 1000
    kline = {"t": open_time, "T": close_time, "s": symbol, "i": "1m", "f": 100, "L": 200, **values, "x": closed,
             "B": "0"}
    event = {"e": "kline", "E": event_time, "s": symbol, "k": kline}
    return json.dumps({"stream": f"{symbol.lower()}@kline_1m", "data": event})


def timeline(candles: Mapping[str, list[list[str]]], open_updates: bool) -> list[Frame]:
    symbols = sorted(candles)
    minutes = len(next(iter(candles.values())))
    frames = []
    for minute in range(minutes):
        if open_updates:
            frames += [Frame(minute, s, kline_frame(s, candles[s][minute], closed=False)) for s in symbols]
        frames += [Frame(minute, s, kline_frame(s, candles[s][minute], closed=True)) for s in symbols]
    return frames


def subscribed(path: str) -> set[str]:
    """The symbols of ``/stream?streams=btcusdt@kline_1m/ethusdt@kline_1m``."""
    streams = parse_qs(urlsplit(path).query).get("streams", [""])[-1]
    return {name.split("@")[0].upper() for name in streams.split("/") if name.endswith("@kline_1m")}


class BinanceWsServer:
    """The replay: one position in the day shared by successive connections, like an exchange's clock."""

    def __init__(self, candles: Mapping[str, list[list[str]]], *, open_updates: bool = True,
                 drops: Sequence[Drop] = (), extra_frames: Mapping[int, Sequence[WireFrame]] | None = None) -> None:
        self.frames = timeline(candles, open_updates)
        self.start_ms = int(next(iter(candles.values()))[0][0])
        self.position = 0
        self.connections = 0
        self.refused = 0
        self._drops = list(drops)
        self._refuse = 0
        self._extra = {index: list(raws) for index, raws in (extra_frames or {}).items()}
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def finished(self) -> bool:
        return self.position >= len(self.frames)

    def now_ms(self) -> int:
        """The simulated clock: the start of the minute being replayed (all earlier minutes closed)."""
        minute = self.frames[self.position].minute if not self.finished else self.frames[-1].minute + 1
        return self.start_ms + minute * MINUTE_MS

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if self._refuse:
            self._refuse -= 1
            self.refused += 1
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "exchange unreachable\n")
        return None

    async def handler(self, connection: ServerConnection) -> None:
        assert connection.request is not None, "a handler runs only after the handshake"
        symbols = subscribed(connection.request.path)
        drop = self._drops.pop(0) if self._drops else None
        self.connections += 1
        try:
            await self._replay(connection, symbols, drop)
        except ConnectionClosed:
            return  # the client left: the replay's position stays for its next connection

    async def _replay(self, connection: ServerConnection, symbols: set[str], drop: Drop | None) -> None:
        sent = 0
        while not self.finished:
            if drop is not None and sent == drop.after_frames:
                await self._hang_up(connection, drop)
                return
            frame = self.frames[self.position]
            if frame.symbol in symbols:
                await connection.send(frame.text)
                sent += 1
            for raw in self._extra.pop(self.position, ()):
                await send_frame(connection, raw)
            self.position += 1
        await connection.wait_closed()

    async def _hang_up(self, connection: ServerConnection, drop: Drop) -> None:
        """Move the clock past the minutes the client will miss, then cut it off."""
        resume_minute = self.frames[self.position].minute + drop.skip_minutes
        self.position = next((i for i, f in enumerate(self.frames) if f.minute >= resume_minute), len(self.frames))
        self._refuse = drop.refuse
        if drop.clean:
            await connection.close(1001, "going away")
        else:
            connection.transport.abort()

    async def serve(self, ready: threading.Event, stopped: asyncio.Event) -> None:
        async with serve(self.handler, "127.0.0.1", 0, process_request=self.process_request) as server:
            self.port = server.sockets[0].getsockname()[1]
            ready.set()
            await stopped.wait()


class _Serving(Protocol):
    async def serve(self, ready: threading.Event, stopped: asyncio.Event) -> None: ...


S = TypeVar("S", bound=_Serving)


@contextmanager
def running(server: S) -> Iterator[S]:
    """A WebSocket test server (this one, the depth stream's) on its own event loop in a background
    thread, on an ephemeral port."""
    name = type(server).__name__
    loop = asyncio.new_event_loop()
    stopped = asyncio.Event()
    ready = threading.Event()
    thread = threading.Thread(target=loop.run_until_complete, args=(server.serve(ready, stopped),),
                              name=name, daemon=True)
    thread.start()
    assert ready.wait(10), f"the {name} test server did not start"
    try:
        yield server
    finally:
        loop.call_soon_threadsafe(stopped.set)
        thread.join(10)
        loop.close()

