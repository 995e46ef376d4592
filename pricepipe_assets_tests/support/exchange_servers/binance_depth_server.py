"""A local Binance combined diff depth stream (``/stream?streams=btcusdt@depth@100ms``) and the real
order book samples of ../shared/data turned into Binance spot's wire shapes.

The samples are USD-M futures data (nautilus exports of Binance's depth snapshot and of one real
``depthUpdate`` with 100 level changes); the spot stream has the same fields except ``pu`` and
``T``, so :func:`spot_event` drops those and :func:`spot_snapshot` writes a snapshot body as
``GET /api/v3/depth`` answers it. Every level of every frame sent is a real level; what a test
constructs beyond that (later update ids, a level's new size) it says in its docstring.
"""

from __future__ import annotations

import asyncio
import csv
import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from pricepipe_assets_tests.support.exchange_servers.hostile import WireFrame, send_frame

SNAPSHOT_CSV = "samples/orderbook/nautilus_binance_btcusdt-depth-snap.csv"
UPDATE_CSV = "samples/orderbook/nautilus_binance_btcusdt-depth-update.csv"


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def spot_snapshot(rows: list[dict[str, str]], last_update_id: int | None = None) -> dict[str, Any]:
    """The snapshot rows as a ``/api/v3/depth`` body (its own ``last_update_id`` unless one is given)."""
    return {"lastUpdateId": last_update_id or int(rows[0]["last_update_id"]),
            "bids": [[r["price"], r["qty"]] for r in rows if r["side"] == "b"],
            "asks": [[r["price"], r["qty"]] for r in rows if r["side"] == "a"]}


def spot_event(rows: list[dict[str, str]]) -> dict[str, Any]:
    """The update rows of one event as the ``data`` of a spot ``depthUpdate`` frame."""
    first = rows[0]
    return {"e": "depthUpdate", "E": int(first["timestamp"]), "s": first["symbol"],
            "U": int(first["first_update_id"]), "u": int(first["last_update_id"]),
            "b": [[r["price"], r["qty"]] for r in rows if r["side"] == "b"],
            "a": [[r["price"], r["qty"]] for r in rows if r["side"] == "a"]}


def load_samples(shared_data: Path) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """The real snapshot rows and the rows of the real update event."""
    return _rows(shared_data / SNAPSHOT_CSV), _rows(shared_data / UPDATE_CSV)


def depth_frame(event: dict[str, Any]) -> str:
    return json.dumps({"stream": f"{event['s'].lower()}@depth@100ms", "data": event})


def subscribed(path: str) -> set[str]:
    streams = parse_qs(urlsplit(path).query).get("streams", [""])[-1]
    return {name.split("@")[0].upper() for name in streams.split("/") if name.endswith("@depth@100ms")}


class BinanceDepthServer:
    """Sends the queued frames of each connection in order, ``pause_s`` apart, then keeps it open.

    ``connections`` is a list per connection (a reconnect gets the next), of real frames and hostile
    ones (see ``hostile``); ``paths`` records what each client subscribed to. A connection the
    client closes loses the rest of its frames. With ``hang_up``, every connection but the last is
    cut (no closing handshake, as a network failure) once its frames are sent.
    """

    def __init__(self, connections: Sequence[Sequence[WireFrame]], pause_s: float = 0.05,
                 hang_up: bool = False) -> None:
        self.connections = [list(frames) for frames in connections]
        self.pause_s = pause_s
        self.hang_up = hang_up
        self.paths: list[str] = []
        self.sent = 0
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def handler(self, connection: ServerConnection) -> None:
        assert connection.request is not None
        self.paths.append(connection.request.path)
        frames = self.connections.pop(0) if self.connections else []
        try:
            for frame in frames:
                await asyncio.sleep(self.pause_s)
                await send_frame(connection, frame)
                self.sent += 1
        except ConnectionClosed:
            return
        if self.hang_up and self.connections:
            await asyncio.sleep(self.pause_s)
            connection.transport.abort()
            return
        await connection.wait_closed()

    async def serve(self, ready: threading.Event, stopped: asyncio.Event) -> None:
        async with serve(self.handler, "127.0.0.1", 0) as server:
            self.port = server.sockets[0].getsockname()[1]
            ready.set()
            await stopped.wait()
