"""A local Binance aggregated-trade stream (``<symbol>@aggTrade`` over ``/ws`` with ``SUBSCRIBE``, as
ccxt.pro subscribes) and its REST history (``GET /api/v3/aggTrades``), replaying real trades; it also
streams given ``depthUpdate`` events to a ``<symbol>@depth@100ms`` subscriber (the native depth
tests' real events, see ``binance_depth_server``).

The trades are real Binance BTCUSDT spot prints (``samples/trades``); each becomes an aggregated
trade of one print (``a = f = l`` = its trade id), which Binance sends whenever a taker order fills
against a single maker order. The stream and REST share one clock, the position in the replay:
REST answers only trades already streamed or missed. A drop cuts the connection after a number of
trades; the trades of ``missed`` pass while the client is away (only REST has them), and the next
connection starts ``repeated`` trades before where it resumes, so stream and REST overlap.
"""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

TRADES_FILE = "samples/trades/nautilus_binance_btcusdt-trades.parquet"
MAX_LIMIT = 1000


def agg_rows(shared_data: Path, count: int) -> list[list[str]]:
    """The first ``count`` real trades as rows of Binance's aggTrades dumps (the native parser's input)."""
    import pyarrow.parquet as pq

    rows = pq.read_table(shared_data / TRADES_FILE).slice(0, count).to_pylist()
    return [[str(r["trade_id"]), f"{r['price']:.8f}", f"{r['quantity']:.8f}", str(r["trade_id"]), str(r["trade_id"]),
             str(int(r["timestamp"].timestamp() * 1000)), r["buyer_maker"].lower()] for r in rows]


def wire_trade(row: list[str]) -> dict[str, Any]:
    """A row as Binance's aggregated trade object (REST) and the body of its stream event."""
    return {"a": int(row[0]), "p": row[1], "q": row[2], "f": int(row[3]), "l": int(row[4]), "T": int(row[5]),
            "m": row[6] == "true", "M": True}


@dataclass(frozen=True)
class Drop:
    after: int
    missed: int
    repeated: int


class BinanceTradeServer:
    """Serves ``trades`` of ``symbol``; ``drops`` apply to successive connections, in order."""

    def __init__(self, symbol: str, trades: list[list[str]], drops: list[Drop],
                 depth_events: list[dict[str, Any]] | None = None) -> None:
        self.symbol = symbol
        self.depth_events = depth_events or []
        self.trades = trades
        self.drops = list(drops)
        self.position = 0
        self.happened = 0
        self.connections = 0
        self.rest_requests: list[dict[str, str]] = []
        self.port = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def agg_trades(self, query: dict[str, str]) -> tuple[int, Any]:
        """Binance's answer to ``GET /api/v3/aggTrades`` (``startTime``/``endTime`` inclusive)."""
        self.rest_requests.append(query)
        if query.get("symbol") != self.symbol:
            return 400, {"code": -1121, "msg": "Invalid symbol."}
        start, end = int(query.get("startTime", 0)), int(query.get("endTime", 2**63))
        limit = min(int(query.get("limit", 500)), MAX_LIMIT)
        rows = [wire_trade(row) for row in self.trades[:self.happened] if start <= int(row[5]) <= end]
        return 200, rows[:limit]

    async def handler(self, connection: ServerConnection) -> None:
        self.connections += 1
        drop = self.drops.pop(0) if self.drops else None
        sender: asyncio.Task[None] | None = None
        try:
            async for message in connection:
                request = json.loads(message)
                await connection.send(json.dumps({"result": None, "id": request["id"]}))
                if f"{self.symbol.lower()}@aggTrade" in request.get("params", []) and sender is None:
                    sender = asyncio.create_task(self._stream(connection, drop))
                if f"{self.symbol.lower()}@depth@100ms" in request.get("params", []):
                    for event in self.depth_events:
                        await asyncio.sleep(0.05)
                        await connection.send(json.dumps(event))
        except ConnectionClosed:
            pass
        finally:
            if sender is not None:
                sender.cancel()

    async def _stream(self, connection: ServerConnection, drop: Drop | None) -> None:
        sent = 0
        while self.position < len(self.trades):
            if drop is not None and sent == drop.after:
                self.position += drop.missed
                self.happened = max(self.happened, self.position)
                self.position -= drop.repeated
                connection.transport.abort()
                return
            row = self.trades[self.position]
            event = {"e": "aggTrade", "E": int(row[5]) + 1, "s": self.symbol, **wire_trade(row)}
            await connection.send(json.dumps(event))
            self.position += 1
            self.happened = max(self.happened, self.position)
            sent += 1
            await asyncio.sleep(0.001)

    async def serve(self, ready: threading.Event, stopped: asyncio.Event) -> None:
        async with serve(self.handler, "127.0.0.1", 0) as server:
            self.port = server.sockets[0].getsockname()[1]
            ready.set()
            await stopped.wait()
