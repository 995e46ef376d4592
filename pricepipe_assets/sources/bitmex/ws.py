"""BitMEX realtime WebSocket client: the ``trade``, ``quote`` and ``orderBookL2_25`` tables onto Kafka.

Decisions, and why:

* BitMEX's keepalive is application-level: after a quiet spell the client sends the text ``ping``
  and BitMEX answers ``pong``. A ping that gets no pong in time means the connection is dead even
  if TCP has not noticed yet, so the client reconnects (a :class:`TextPing`, which turns the
  websockets library's own protocol pings off).
* After every (re)connect BitMEX sends a ``partial`` snapshot that repeats recent trades. Trade ids
  are remembered per symbol in a bounded memory, so a reconnect never publishes a trade twice and
  memory stays flat however long the client runs. The snapshot's quote is skipped when it equals
  the last quote published for its symbol, for the same reason.
* BitMEX advises dropping messages that arrive before a table's ``partial``. That matters for
  tables whose rows are updated in place (order books); trades and quotes are append-only and
  de-duplicated, so early inserts are kept: dropping them could lose prints.
* Order books are kept by :class:`~pricepipe_assets.sources.bitmex.books.BitmexBooks` and published
  through a :class:`BookThrottle`; a book that falls out of step is resubscribed, which makes BitMEX
  send a fresh ``partial``.
* ``update`` and ``delete`` do not occur for the trade and quote tables on BitMEX; they are counted, not parsed,
  so an unexpected one shows on the status line instead of being mistaken for new data.
* Every element that is not a valid record goes to ``deadletter`` with the reason, whatever is wrong
  with it, and the rest of its frame still goes on; so does a frame that cannot be read at all (see
  ``sources.frames``). A frame above ``max_frame_bytes`` is refused whole without parsing. A frame
  is read to its records before any is published, so a failure while reading is always the frame's
  dead letter, and only Kafka's own failures raise.
* The connection's life (reconnects, backoff, the ``ping`` timing, stopping) is the shared
  :class:`~pricepipe_assets.sources.websocket.WebSocketClient`'s; the backoff starts over only
  when a table delivered data, since BitMEX greets and confirms even on a connection it then drops.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import ClientConnection

from pricepipe_assets.contract.books import OrderBook
from pricepipe_assets.contract.records import Quote, RecordError, Trade
from pricepipe_assets.kafka.publisher import Publisher
from pricepipe_assets.sources.bitmex.books import BOOK_TABLE, BitmexBooks
from pricepipe_assets.sources.bitmex.formats import quote_from_bitmex, trade_from_bitmex
from pricepipe_assets.sources.book_throttle import BookThrottle
from pricepipe_assets.sources.frames import frame_json, json_bytes, parse_or_refuse
from pricepipe_assets.sources.recent_ids import RecentIds
from pricepipe_assets.sources.websocket import ConnectionCounts, TextPing, WebSocketClient

log = logging.getLogger(__name__)

DEFAULT_URL = "wss://ws.bitmex.com/realtime"
DEFAULT_SYMBOLS: tuple[str, ...] = ("XBTUSD", "ETHUSD", "SOLUSD", "DOGEUSD")
TABLES: tuple[str, ...] = ("trade", "quote")

# ``source_topic`` of the dead letters: the feed a refused input came from (it never was on Kafka).
FRAME_SOURCE = "bitmex.ws"
TRADE_SOURCE = "bitmex.ws.trade"
QUOTE_SOURCE = "bitmex.ws.quote"
BOOK_SOURCE = "bitmex.ws.orderBookL2_25"

# Frames up to this multiple of ``max_frame_bytes`` are read and dead-lettered; larger ones make
# websockets close the connection (1009), so a hostile or broken peer cannot exhaust memory. That
# close is recoverable like any lost connection: the client reconnects after its backoff.
TRANSPORT_LIMIT_FACTOR = 8

Frame = str | bytes


@dataclass
class BitmexCounts(ConnectionCounts):
    """What the client did since it started, for a status line (read from any thread)."""

    trades: int = 0
    quotes: int = 0
    books: int = 0
    resubscribes: int = 0
    duplicates: int = 0
    ignored: int = 0
    errors: int = 0

    def status_line(self) -> str:
        return (f"bitmex: {self.trades} trades, {self.quotes} quotes, {self.books} book changes, "
                f"{self.resubscribes} book resubscribes, {self.reconnects} reconnects, "
                f"{self.dead_letters} dead letters, {self.duplicates} duplicates skipped, "
                f"{self.ignored} update/delete ignored, {self.errors} errors from BitMEX")


def _request_args(message: Mapping[str, Any]) -> str:
    request = message.get("request")
    if isinstance(request, Mapping):
        return f"{request.get('op', '?')} {request.get('args', '')}"
    return "a request"


class BitmexClient(WebSocketClient[BitmexCounts]):
    """Streams BitMEX trades and quotes to Kafka through a :class:`Publisher` until stopped.

    Reconnects after any connection loss with ``backoff``; ``counts`` and :meth:`status_line`
    report progress, ``subscriptions`` what BitMEX confirmed on the current connection.
    """

    name = "BitMEX"

    def __init__(
        self,
        publisher: Publisher,
        *,
        url: str = DEFAULT_URL,
        symbols: Sequence[str] = DEFAULT_SYMBOLS,
        ping_after_s: float = 5.0,
        pong_timeout_s: float = 5.0,
        open_timeout_s: float = 10.0,
        backoff: Callable[[int], float] | None = None,
        max_frame_bytes: int = 1024 * 1024,
        remembered_trades: int = 10_000,
        poll_s: float = 0.25,
        books: BookThrottle | None = None,
        book_depth: int = 10,
    ) -> None:
        self._symbols = tuple(dict.fromkeys(symbol.strip().upper() for symbol in symbols))
        if not self._symbols or not all(self._symbols):
            raise ValueError(f"BitMEX symbols must be non-empty names, got {list(symbols)!r}")
        if min(ping_after_s, pong_timeout_s, open_timeout_s, poll_s) <= 0:
            raise ValueError("ping_after_s, pong_timeout_s, open_timeout_s and poll_s must be positive")
        if max_frame_bytes < 1:
            raise ValueError(f"max_frame_bytes must be positive, got {max_frame_bytes}")
        # max_queue: websockets' default, as BitMEX's frames are read as they come
        super().__init__(url, publisher, BitmexCounts(), backoff=backoff, open_timeout_s=open_timeout_s,
                         poll_s=poll_s, max_size=max_frame_bytes * TRANSPORT_LIMIT_FACTOR, max_queue=16,
                         text_ping=TextPing(ping_after_s, pong_timeout_s))
        self._max_frame_bytes = max_frame_bytes
        self._recent_trades = {symbol: RecentIds(remembered_trades) for symbol in self._symbols}
        self._last_quotes: dict[str, Quote] = {}
        self._throttle = books
        self.books = BitmexBooks(self._symbols, book_depth) if books is not None else None
        # replaced, never mutated, so another thread can read it while the loop runs
        self._subscribed: frozenset[str] = frozenset()

    @property
    def symbols(self) -> tuple[str, ...]:
        return self._symbols

    @property
    def subscriptions(self) -> frozenset[str]:
        """The ``table:SYMBOL`` subscriptions BitMEX confirmed on the current connection."""
        return self._subscribed

    def subscription_args(self) -> list[str]:
        tables = (*TABLES, BOOK_TABLE) if self.books is not None else TABLES
        return [f"{table}:{symbol}" for table in tables for symbol in self._symbols]

    def status_line(self) -> str:
        return self.counts.status_line()

    # --- connection ----------------------------------------------------------------------------

    async def _opened(self, connection: ClientConnection) -> None:
        """Subscribe on each new connection; the books start over, as what was missed meanwhile is lost."""
        self._subscribed = frozenset()
        if self.books is not None and self._throttle is not None:
            for symbol in self.books.reset():
                self._throttle.forget(symbol)
        await self._subscribe(connection)

    async def _on_frame(self, frame: bytes) -> None:
        self.handle_frame(frame)

    async def _between_frames(self, connection: ClientConnection) -> None:
        if self.books is not None and self._throttle is not None:
            self._throttle.flush_due()
            await self._resubscribe_broken(connection)

    async def _subscribe(self, connection: ClientConnection) -> None:
        args = self.subscription_args()
        await connection.send(json.dumps({"op": "subscribe", "args": args}))
        log.info("subscribing to BitMEX %s", ", ".join(args))

    async def _resubscribe_broken(self, connection: ClientConnection) -> None:
        assert self.books is not None
        for symbol in sorted(self.books.broken):
            arg = f"{BOOK_TABLE}:{symbol}"
            await connection.send(json.dumps({"op": "unsubscribe", "args": [arg]}))
            await connection.send(json.dumps({"op": "subscribe", "args": [arg]}))
            self._subscribed = self._subscribed - {arg}
            self.counts.resubscribes += 1
        self.books.broken.clear()

    # --- frames --------------------------------------------------------------------------------

    def handle_frame(self, frame: Frame) -> None:
        """Take one message from BitMEX: publish its records, dead-letter what is not valid, log the rest."""
        data = frame.encode() if isinstance(frame, str) else frame
        if len(data) > self._max_frame_bytes:
            self._reject(FRAME_SOURCE, data, f"frame of {len(data)} bytes exceeds the limit of "
                                             f"{self._max_frame_bytes} bytes")
            return
        records = parse_or_refuse(lambda: self._read(data), lambda reason: self._reject(FRAME_SOURCE, data, reason))
        if self.books is not None and self._throttle is not None:
            for symbol in self.books.broken:  # a book waiting to be published is out of step too
                self._throttle.forget(symbol)
        for record in records or ():
            self._take(record)

    def _read(self, data: bytes) -> list[Trade | Quote | OrderBook]:
        """The records of a frame, its bad elements dead-lettered; raises when the frame is no message."""
        message = frame_json(data)
        if not isinstance(message, dict):
            raise RecordError(f"expected a JSON object, got {type(message).__name__}")
        if "table" in message:
            return self._read_table(message, data)
        if "success" in message:
            self._take_subscription(message)
        elif "error" in message:
            self._take_error(message)
        elif "info" in message:
            log.info("BitMEX says: %s (version %s, docs %s)", message.get("info"), message.get("version"),
                     message.get("docs"))
        else:
            raise RecordError("unrecognised BitMEX message: no table, success, error or info")
        return []

    def _take_subscription(self, message: Mapping[str, Any]) -> None:
        if message.get("success") is not True:
            self.counts.errors += 1
            log.error("BitMEX did not confirm %s: %s", _request_args(message), message)
            return
        topic = message.get("subscribe")
        if isinstance(topic, str):
            self._subscribed = self._subscribed | {topic}
            log.info("BitMEX confirmed subscription %s", topic)

    def _take_error(self, message: Mapping[str, Any]) -> None:
        self.counts.errors += 1
        log.error("BitMEX refused %s: %s (status %s)", _request_args(message), message.get("error"),
                  message.get("status", "?"))

    def _read_table(self, message: Mapping[str, Any], data: bytes) -> list[Trade | Quote | OrderBook]:
        table, action, rows = message.get("table"), message.get("action"), message.get("data")
        if table == BOOK_TABLE and self.books is not None and isinstance(rows, list):
            books = parse_or_refuse(lambda: self._read_books(message, rows),
                                    lambda reason: self._reject(BOOK_SOURCE, data, reason))
            return list(books or ())
        if table not in TABLES:
            raise RecordError(f"unexpected table {str(table)[:40]!r}: subscribed only to {', '.join(TABLES)}")
        if action in ("update", "delete"):
            self.counts.ignored += 1
            return []
        if action not in ("partial", "insert"):
            raise RecordError(f"unknown action {str(action)[:40]!r} for table {table!r}")
        if not isinstance(rows, list):
            raise RecordError(f"{table} {action} without a data array")
        self._working()
        source, parse = (TRADE_SOURCE, trade_from_bitmex) if table == "trade" else (QUOTE_SOURCE, quote_from_bitmex)
        records = (self._read_row(source, parse, item, data) for item in rows)
        return [record for record in records if record is not None]

    def _read_books(self, message: Mapping[str, Any], rows: list[Any]) -> list[OrderBook]:
        assert self.books is not None
        selected = message.get("filter")
        changed = self.books.take(str(message.get("action")), rows,
                                  selected.get("symbol") if isinstance(selected, Mapping) else None)
        self._working()
        return [book for symbol in changed if (book := self.books.book(symbol)) is not None]

    def _read_row(self, source: str, parse: Callable[[Any], Trade | Quote], item: Any,
                  data: bytes) -> Trade | Quote | None:
        """One element of a table's ``data``; a bad one goes alone to ``deadletter``, as JSON (its frame
        when it cannot be written as JSON again)."""
        return parse_or_refuse(lambda: self._subscribed_only(parse(item)),
                               lambda reason: self._reject(source, json_bytes(item, data), reason))

    def _subscribed_only(self, record: Trade | Quote) -> Trade | Quote:
        """Only subscribed symbols are taken: it keeps the de-duplication memory bounded."""
        if record.symbol not in self._recent_trades:
            raise RecordError(f"symbol {record.symbol!r} was not subscribed (subscribed: {', '.join(self._symbols)})")
        return record

    def _take(self, record: Trade | Quote | OrderBook) -> None:
        """Publish a record read from a frame, unless it repeats one published (as a ``partial`` does)."""
        if isinstance(record, OrderBook):
            assert self._throttle is not None
            self._throttle.offer(record)
            self.counts.books += 1
        elif isinstance(record, Trade):
            if not self._recent_trades[record.symbol].add(record.trade_id):
                self.counts.duplicates += 1
                return
            self._publisher.publish(record)
            self.counts.trades += 1
        else:
            if self._last_quotes.get(record.symbol) == record:
                self.counts.duplicates += 1
                return
            self._last_quotes[record.symbol] = record
            self._publisher.publish(record)
            self.counts.quotes += 1

    def _reject(self, source: str, raw: bytes, reason: str) -> None:
        log.warning("BitMEX input refused (%s): %s", source, reason)
        self._dead_letter(source, raw, reason)
