"""A local server speaking BitMEX's realtime WebSocket protocol, because tests cannot reach BitMEX.

It speaks what a client of ``wss://ws.bitmex.com/realtime`` relies on: the welcome ``info``
message, ``{"op": "subscribe", "args": [...]}`` answered per argument with ``success`` (then the
table's ``partial`` snapshot) or an ``error`` for an unknown table or symbol, ``insert`` frames,
and the text ``ping`` answered with ``pong``. Tests steer it from their own thread: insert rows,
send any frame (also broken or hostile ones, see ``hostile``), drop every connection, stop answering
pings.

The ``trade`` partial repeats the last ``trade_partial_size`` trades of its symbol, as BitMEX's
does after a reconnect, so a client's de-duplication is exercised.

Data is real, converted to BitMEX's wire format by the functions below:

* trades: real BitMEX XBTUSD prints from a tardis.dev sample (``samples/trades``);
* quotes: the top of book of a real **Binance USD-M futures BTCUSDT** book snapshot from a
  tardis.dev sample (``samples/orderbook``). It is another venue's book, relabelled with a BitMEX
  symbol only to drive the protocol; its prices and sizes say nothing about BitMEX's market.
* ``orderBookL2_25``: the 25 levels per side of the same venue's tardis top-25 snapshots, as rows
  with an id derived from the price (BitMEX's own ids are opaque numbers; only their uniqueness
  per level matters to a client). ``unsubscribe`` is answered too, so a client can resubscribe.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import json
import threading
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from pricepipe_assets_tests.support.exchange_servers.hostile import WireFrame, send_frame

T = TypeVar("T")

TABLES = ("trade", "quote", "orderBookL2_25")
TRADE_TYPES = {"timestamp": "timestamp", "symbol": "symbol", "side": "symbol", "size": "long", "price": "float",
               "tickDirection": "symbol", "trdMatchID": "guid", "grossValue": "long", "homeNotional": "float",
               "foreignNotional": "float"}
QUOTE_TYPES = {"timestamp": "timestamp", "symbol": "symbol", "bidSize": "long", "bidPrice": "float",
               "askPrice": "float", "askSize": "long"}


def iso_millis(micros: int) -> str:
    """BitMEX's time format (ISO-8601, milliseconds, ``Z``) from tardis' microseconds."""
    stamp = dt.datetime.fromtimestamp(micros // 1000 / 1000, tz=dt.UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{micros // 1000 % 1000:03d}Z"


def _tick_directions(prices: list[float]) -> list[str]:
    """BitMEX's tickDirection of each print: up, down, or unchanged after an up or a down move.

    The sample does not say how its first print compares with the print before the sample; it is
    marked ``ZeroPlusTick``.
    """
    directions: list[str] = []
    for index, price in enumerate(prices):
        before = prices[index - 1] if index else price
        if price > before:
            directions.append("PlusTick")
        elif price < before:
            directions.append("MinusTick")
        elif directions and directions[-1] in ("MinusTick", "ZeroMinusTick"):
            directions.append("ZeroMinusTick")
        else:
            directions.append("ZeroPlusTick")
    return directions


def bitmex_trades_from_tardis(path: Path) -> list[dict[str, Any]]:
    """BitMEX ``trade`` items from a tardis BitMEX trades CSV.

    tardis' ``id`` is BitMEX's trdMatchID and ``amount`` its size in contracts (USD for XBTUSD).
    The notionals are those of an inverse contract: homeNotional = size / price in XBT, grossValue
    the same in satoshis, foreignNotional = size in USD (the sample does not carry them).
    """
    with path.open(newline="") as source:
        rows = [row for row in csv.DictReader(source) if row["exchange"] == "bitmex"]
    prices = [float(row["price"]) for row in rows]
    items = []
    for row, price, direction in zip(rows, prices, _tick_directions(prices), strict=True):
        size = int(row["amount"])
        items.append({
            "timestamp": iso_millis(int(row["timestamp"])),
            "symbol": row["symbol"],
            "side": row["side"].capitalize(),
            "size": size,
            "price": price,
            "tickDirection": direction,
            "trdMatchID": row["id"],
            "grossValue": round(size / price * 100_000_000),
            "homeNotional": round(size / price, 8),
            "foreignNotional": size,
        })
    return items

BOOK_TYPES = {"symbol": "symbol", "id": "long", "side": "symbol", "size": "long", "price": "float",
              "timestamp": "timestamp"}


def bitmex_quotes_from_tardis_book(path: Path, symbol: str) -> list[dict[str, Any]]:
    """BitMEX ``quote`` items from the best bid and ask of each row of a tardis book snapshot CSV."""
    with path.open(newline="") as source:
        rows = list(csv.DictReader(source))
    return [{
        "timestamp": iso_millis(int(row["timestamp"])),
        "symbol": symbol,
        "bidSize": float(row["bids[0].amount"]),
        "bidPrice": float(row["bids[0].price"]),
        "askPrice": float(row["asks[0].price"]),
        "askSize": float(row["asks[0].amount"]),
    } for row in rows]


def bitmex_books_from_tardis(path: Path, symbol: str) -> list[list[dict[str, Any]]]:
    """Per row of a tardis top-25 book snapshot CSV, the ``orderBookL2_25`` rows of that book."""
    with path.open(newline="") as source:
        rows = list(csv.DictReader(source))
    books = []
    for row in rows:
        levels = []
        for side, name in (("Sell", "asks"), ("Buy", "bids")):
            for index in range(25):
                price = float(row[f"{name}[{index}].price"])
                levels.append({"symbol": symbol, "id": 8_800_000_000 - round(price * 100), "side": side,
                               "size": float(row[f"{name}[{index}].amount"]), "price": price,
                               "timestamp": iso_millis(int(row["timestamp"]))})
        books.append(levels)
    return books


def table_frame(table: str, action: str, rows: list[Any], **extra: Any) -> str:
    return json.dumps({"table": table, "action": action, "data": rows, **extra})


@dataclass(eq=False)  # sessions live in a set: identity, not field equality
class _Session:
    connection: ServerConnection
    subscriptions: set[str] = field(default_factory=set)


class BitmexServer:
    """The server, on 127.0.0.1 with an ephemeral port, in a background thread of its own.

    Counters (``connections``, ``pings``) and ``subscribe_requests`` are what clients did; tests
    read them from their thread. ``answer_pings`` may be switched at any time.
    """

    def __init__(self, symbols: Iterable[str] = ("XBTUSD", "ETHUSD", "SOLUSD", "DOGEUSD"),
                 trade_partial_size: int = 5) -> None:
        self.symbols = frozenset(symbols)
        self.trade_partial_size = trade_partial_size
        self.answer_pings = True
        self.connections = 0
        self.pings = 0
        self.subscribe_requests: list[list[str]] = []
        self.unsubscribe_requests: list[list[str]] = []
        self._trades: dict[str, list[dict[str, Any]]] = {}
        self._quotes: dict[str, dict[str, Any]] = {}
        self._books: dict[str, list[dict[str, Any]]] = {}
        self._sessions: set[_Session] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="bitmex-server", daemon=True)
        self._server: Server | None = None

    # --- lifecycle -----------------------------------------------------------------------------

    def __enter__(self) -> BitmexServer:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        self._thread.start()
        self._server = self._call(self._open())

    def stop(self) -> None:
        if self._server is not None:
            self._call(self._close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    @property
    def url(self) -> str:
        assert self._server is not None, "the server is not started"
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"ws://{host}:{port}/realtime"

    async def _open(self) -> Server:
        return await serve(self._handle, "127.0.0.1", 0, ping_interval=None)

    async def _close(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    def _call(self, work: Coroutine[Any, Any, T]) -> T:
        """Run ``work`` on the server's loop and wait for it: state is only touched there."""
        return asyncio.run_coroutine_threadsafe(work, self._loop).result(timeout=10)

    # --- what tests do -------------------------------------------------------------------------

    def seed(self, table: str, rows: list[dict[str, Any]]) -> None:
        """Rows the next ``partial`` will contain, without sending them now."""
        self._call(self._remember(table, rows))

    def seed_book(self, symbol: str, rows: list[dict[str, Any]]) -> None:
        """The ``orderBookL2_25`` rows the next partial of ``symbol`` will contain (replacing earlier ones)."""
        self._books[symbol] = list(rows)

    def insert(self, table: str, rows: list[dict[str, Any]]) -> None:
        """Remember ``rows`` (for later partials) and send them as ``insert`` to their subscribers."""
        self._call(self._insert(table, rows))

    def send(self, frame: WireFrame) -> None:
        """Send any frame, valid or not, to every connection."""
        self._call(self._broadcast(frame))

    def drop_connections(self) -> None:
        """Cut every connection without a closing handshake, like a network failure."""
        self._call(self._drop())

    @property
    def subscribers(self) -> int:
        """Connections that have at least one subscription now."""
        return sum(1 for session in list(self._sessions) if session.subscriptions)

    # --- on the server's loop ------------------------------------------------------------------

    async def _remember(self, table: str, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            if table == "trade":
                self._trades.setdefault(row["symbol"], []).append(row)
            elif table == "orderBookL2_25":
                self._books.setdefault(row["symbol"], []).append(row)
            else:
                self._quotes[row["symbol"]] = row

    async def _insert(self, table: str, rows: list[dict[str, Any]]) -> None:
        await self._remember(table, rows)
        for symbol in dict.fromkeys(row["symbol"] for row in rows):
            frame = table_frame(table, "insert", [row for row in rows if row["symbol"] == symbol])
            for session in list(self._sessions):
                if f"{table}:{symbol}" in session.subscriptions:
                    await self._send(session, frame)

    async def _broadcast(self, frame: WireFrame) -> None:
        for session in list(self._sessions):
            await self._send(session, frame)

    async def _drop(self) -> None:
        for session in list(self._sessions):
            session.connection.transport.abort()

    @staticmethod
    async def _send(session: _Session, frame: WireFrame) -> None:
        try:
            await send_frame(session.connection, frame)
        except ConnectionClosed:
            pass  # the client went away meanwhile; its session ends in _handle

    async def _handle(self, connection: ServerConnection) -> None:
        session = _Session(connection)
        self._sessions.add(session)
        self.connections += 1
        try:
            await connection.send(json.dumps({
                "info": "Welcome to the BitMEX Realtime API.", "version": "local-test",
                "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "docs": "https://www.bitmex.com/app/wsAPI", "limit": {"remaining": 39},
            }))
            async for message in connection:
                await self._answer(session, message)
        except ConnectionClosed:
            pass
        finally:
            self._sessions.discard(session)

    async def _answer(self, session: _Session, message: str | bytes) -> None:
        if message == "ping":
            self.pings += 1
            if self.answer_pings:
                await session.connection.send("pong")
            return
        try:
            request = json.loads(message)
        except ValueError:
            await self._error(session, "Unable to parse request.", None)
            return
        op = request.get("op") if isinstance(request, dict) else None
        args = request.get("args") if op in ("subscribe", "unsubscribe") else None
        if not isinstance(args, list):
            await self._error(session, "Unknown or unsupported operation.", request)
            return
        if op == "unsubscribe":
            self.unsubscribe_requests.append(list(args))
            for arg in args:
                session.subscriptions.discard(str(arg))
                await session.connection.send(json.dumps({"success": True, "unsubscribe": arg, "request": request}))
            return
        self.subscribe_requests.append(list(args))
        for arg in args:
            await self._subscribe(session, str(arg))

    async def _subscribe(self, session: _Session, arg: str) -> None:
        request = {"op": "subscribe", "args": [arg]}
        table, _, symbol = arg.partition(":")
        if table not in TABLES:
            await self._error(session, f"Unknown table: {table}", request)
            return
        if symbol not in self.symbols:
            await self._error(session, f"Unknown or expired symbol: {symbol}", request)
            return
        session.subscriptions.add(arg)
        await session.connection.send(json.dumps({"success": True, "subscribe": arg, "request": request}))
        await session.connection.send(self._partial(table, symbol))

    def _partial(self, table: str, symbol: str) -> str:
        if table == "trade":
            rows = self._trades.get(symbol, [])[-self.trade_partial_size:]
            return table_frame(table, "partial", rows, keys=[], types=TRADE_TYPES, filter={"symbol": symbol},
                               attributes={"timestamp": "sorted", "symbol": "grouped"})
        if table == "orderBookL2_25":
            return table_frame(table, "partial", self._books.get(symbol, []), keys=["symbol", "id", "side"],
                               types=BOOK_TYPES, filter={"symbol": symbol}, attributes={"id": "sorted"})
        rows = [self._quotes[symbol]] if symbol in self._quotes else []
        return table_frame(table, "partial", rows, keys=[], types=QUOTE_TYPES, filter={"symbol": symbol},
                           attributes={"timestamp": "sorted", "symbol": "grouped"})

    @staticmethod
    async def _error(session: _Session, reason: str, request: Any) -> None:
        await session.connection.send(json.dumps({"status": 400, "error": reason, "meta": {}, "request": request}))
