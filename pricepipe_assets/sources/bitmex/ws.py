"""BitMEX realtime WebSocket client: the ``trade``, ``quote`` and ``orderBookL2_25`` tables onto Kafka.

Decisions, and why:

* BitMEX's keepalive is application-level: after a quiet spell the client sends the text ``ping``
  and BitMEX answers ``pong``. A ping that gets no pong in time means the connection is dead even
  if TCP has not noticed yet, so the client reconnects. The websockets library's own protocol
  pings are turned off so that exactly one mechanism decides when a connection is dead.
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
* Every element that is not a valid record goes to ``deadletter`` with the reason, and the rest of
  its frame still goes on. A frame above ``max_frame_bytes`` is refused whole without parsing, and
  its dead letter keeps only the frame's start, because Kafka refuses messages of about 1 MB.
* The loop is made to run in a thread of a CLI: :meth:`BitmexClient.run` owns its event loop and
  stops when a :class:`threading.Event` is set. Such an event cannot wake an asyncio loop, so the
  loop looks at it at least every ``poll_s`` seconds.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException
from websockets.uri import parse_uri

from pricepipe_assets.contract.records import Quote, RecordError
from pricepipe_assets.kafka.publisher import Publisher
from pricepipe_assets.sources.backoff import exponential_backoff
from pricepipe_assets.sources.bitmex.books import BOOK_TABLE, BitmexBooks
from pricepipe_assets.sources.bitmex.formats import quote_from_bitmex, trade_from_bitmex
from pricepipe_assets.sources.bitmex.keepalive import Keepalive, RecentIds
from pricepipe_assets.sources.book_throttle import BookThrottle

log = logging.getLogger(__name__)

DEFAULT_URL = "wss://ws.bitmex.com/realtime"
DEFAULT_SYMBOLS: tuple[str, ...] = ("XBTUSD", "ETHUSD", "SOLUSD", "DOGEUSD")
TABLES: tuple[str, ...] = ("trade", "quote")

# ``source_topic`` of the dead letters: the feed a refused input came from (it never was on Kafka).
FRAME_SOURCE = "bitmex.ws"
TRADE_SOURCE = "bitmex.ws.trade"
QUOTE_SOURCE = "bitmex.ws.quote"
BOOK_SOURCE = "bitmex.ws.orderBookL2_25"

# How much of an oversized frame its dead letter keeps: enough to see what it was.
KEPT_FRAME_BYTES = 64 * 1024
# Frames up to this multiple of ``max_frame_bytes`` are read and dead-lettered; larger ones make
# websockets close the connection, so a hostile or broken peer cannot exhaust memory.
TRANSPORT_LIMIT_FACTOR = 8

Frame = str | bytes


class DeadConnection(ConnectionError):
    """The peer stopped answering BitMEX's ``ping``: the connection is treated as lost."""


# What ends one connection and leads to a reconnect; anything else is a bug and propagates.
RECOVERABLE = (OSError, TimeoutError, WebSocketException)


@dataclass
class BitmexCounts:
    """What the client did since it started, for a status line (read from any thread)."""

    trades: int = 0
    quotes: int = 0
    books: int = 0
    resubscribes: int = 0
    reconnects: int = 0
    dead_letters: int = 0
    duplicates: int = 0
    ignored: int = 0
    errors: int = 0

    def status_line(self) -> str:
        return (f"bitmex: {self.trades} trades, {self.quotes} quotes, {self.books} book changes, "
                f"{self.resubscribes} book resubscribes, {self.reconnects} reconnects, "
                f"{self.dead_letters} dead letters, {self.duplicates} duplicates skipped, "
                f"{self.ignored} update/delete ignored, {self.errors} errors from BitMEX")


def _element_json(item: Any) -> bytes:
    """An element of a frame's ``data`` as compact JSON: the raw input of its dead letter."""
    return json.dumps(item, separators=(",", ":"), ensure_ascii=False).encode()


def _request_args(message: Mapping[str, Any]) -> str:
    request = message.get("request")
    if isinstance(request, Mapping):
        return f"{request.get('op', '?')} {request.get('args', '')}"
    return "a request"


class BitmexClient:
    """Streams BitMEX trades and quotes to Kafka through a :class:`Publisher` until stopped.

    Reconnects after any connection loss with ``backoff``; ``counts`` and :meth:`status_line`
    report progress, ``subscriptions`` what BitMEX confirmed on the current connection.
    """

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
        parse_uri(url)  # a malformed URL is a configuration error, not something to retry forever
        self._symbols = tuple(dict.fromkeys(symbol.strip().upper() for symbol in symbols))
        if not self._symbols or not all(self._symbols):
            raise ValueError(f"BitMEX symbols must be non-empty names, got {list(symbols)!r}")
        if min(ping_after_s, pong_timeout_s, open_timeout_s, poll_s) <= 0:
            raise ValueError("ping_after_s, pong_timeout_s, open_timeout_s and poll_s must be positive")
        if max_frame_bytes < 1:
            raise ValueError(f"max_frame_bytes must be positive, got {max_frame_bytes}")
        self.url = url
        self.counts = BitmexCounts()
        self._publisher = publisher
        self._ping_after_s = ping_after_s
        self._pong_timeout_s = pong_timeout_s
        self._open_timeout_s = open_timeout_s
        self._backoff = backoff or exponential_backoff()
        self._failures = 0
        self._max_frame_bytes = max_frame_bytes
        self._poll_s = poll_s
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

    # --- running -------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Stream until ``stop`` is set, then wait until Kafka confirmed everything (a thread's target).

        Raises :class:`~pricepipe_assets.kafka.publisher.DeliveryError` if Kafka did not take
        everything, so a caller never reports data as published that is not in Kafka.
        """
        try:
            asyncio.run(self.run_async(stop))
        finally:
            self._publisher.flush()

    async def run_async(self, stop: threading.Event) -> None:
        """Connect, stream, and reconnect after each loss, until ``stop`` is set."""
        while not stop.is_set():
            try:
                await self._stream(stop)
            except RECOVERABLE as error:
                if stop.is_set():
                    return
                self._failures += 1
                delay = self._backoff(self._failures)
                log.warning("BitMEX connection to %s lost (%s); reconnecting in %.2fs", self.url,
                            str(error) or type(error).__name__, delay)
                await self._pause(delay, stop)
                if not stop.is_set():
                    self.counts.reconnects += 1

    async def _pause(self, seconds: float, stop: threading.Event) -> None:
        deadline = time.monotonic() + seconds
        while not stop.is_set() and (left := deadline - time.monotonic()) > 0:
            await asyncio.sleep(min(left, self._poll_s))

    async def _stream(self, stop: threading.Event) -> None:
        """One connection: subscribe, then handle frames until stopped or the connection is lost."""
        async with connect(
            self.url,
            open_timeout=self._open_timeout_s,
            ping_interval=None,
            close_timeout=self._pong_timeout_s,
            max_size=self._max_frame_bytes * TRANSPORT_LIMIT_FACTOR,
        ) as connection:
            self._subscribed = frozenset()
            if self.books is not None and self._throttle is not None:  # what was missed meanwhile is lost
                for symbol in self.books.reset():
                    self._throttle.forget(symbol)
            await self._subscribe(connection)
            keepalive = Keepalive(self._ping_after_s, self._pong_timeout_s)
            while not stop.is_set():
                frame = await self._next_frame(connection, keepalive)
                if frame is not None:
                    self.handle_frame(frame)
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

    async def _next_frame(self, connection: ClientConnection, keepalive: Keepalive) -> Frame | None:
        """The next data frame, or None when it is time to look at the stop event again.

        Sends ``ping`` after ``ping_after_s`` of silence and raises :class:`DeadConnection` when
        its ``pong`` is late.
        """
        now = time.monotonic()
        left = keepalive.seconds_left(now)
        if left <= 0:
            if keepalive.ping_sent is not None:
                raise DeadConnection(f"no pong within {self._pong_timeout_s}s of a ping")
            await connection.send("ping")
            keepalive.pinged(now)
            return None
        try:
            frame = await asyncio.wait_for(connection.recv(), timeout=min(left, self._poll_s))
        except TimeoutError:  # cancelling recv() is safe in websockets: no message is lost
            return None
        if frame == "pong":
            keepalive.ponged(time.monotonic())
            return None
        keepalive.heard(time.monotonic())
        return frame

    # --- frames --------------------------------------------------------------------------------

    def handle_frame(self, frame: Frame) -> None:
        """Take one message from BitMEX: publish its records, dead-letter what is not valid, log the rest."""
        data = frame.encode() if isinstance(frame, str) else frame
        if len(data) > self._max_frame_bytes:
            self._reject(FRAME_SOURCE, data[:KEPT_FRAME_BYTES],
                         f"frame of {len(data)} bytes exceeds the limit of {self._max_frame_bytes} bytes "
                         f"(dead letter keeps its first {min(len(data), KEPT_FRAME_BYTES)} bytes)")
            return
        try:
            message = json.loads(data)
        except ValueError as error:
            self._reject(FRAME_SOURCE, data, f"not valid JSON: {error}")
            return
        if not isinstance(message, dict):
            self._reject(FRAME_SOURCE, data, f"expected a JSON object, got {type(message).__name__}")
        elif "table" in message:
            self._take_table(message, data)
        elif "success" in message:
            self._take_subscription(message)
        elif "error" in message:
            self._take_error(message)
        elif "info" in message:
            log.info("BitMEX says: %s (version %s, docs %s)", message.get("info"), message.get("version"),
                     message.get("docs"))
        else:
            self._reject(FRAME_SOURCE, data, "unrecognised BitMEX message: no table, success, error or info")

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

    def _take_table(self, message: Mapping[str, Any], data: bytes) -> None:
        table, action, rows = message.get("table"), message.get("action"), message.get("data")
        if table == BOOK_TABLE and self.books is not None and isinstance(rows, list):
            self._take_books(message, rows, data)
        elif table not in TABLES:
            self._reject(FRAME_SOURCE, data,
                         f"unexpected table {str(table)[:40]!r}: subscribed only to {', '.join(TABLES)}")
        elif action in ("update", "delete"):
            self.counts.ignored += 1
        elif action not in ("partial", "insert"):
            self._reject(FRAME_SOURCE, data, f"unknown action {str(action)[:40]!r} for table {table!r}")
        elif not isinstance(rows, list):
            self._reject(FRAME_SOURCE, data, f"{table} {action} without a data array")
        else:
            self._failures = 0
            take = self._take_trade if table == "trade" else self._take_quote
            for item in rows:
                take(item)

    def _take_books(self, message: Mapping[str, Any], rows: list[Any], data: bytes) -> None:
        assert self.books is not None and self._throttle is not None
        selected = message.get("filter")
        try:
            changed = self.books.take(str(message.get("action")), rows,
                                      selected.get("symbol") if isinstance(selected, Mapping) else None)
        except RecordError as error:
            for symbol in self.books.broken:
                self._throttle.forget(symbol)
            self._reject(BOOK_SOURCE, data, str(error))
            return
        self._failures = 0
        for symbol in changed:
            book = self.books.book(symbol)
            if book is not None:
                self._throttle.offer(book)
                self.counts.books += 1

    def _check_symbol(self, symbol: str) -> None:
        """Only subscribed symbols are taken: it keeps the de-duplication memory bounded."""
        if symbol not in self._recent_trades:
            raise RecordError(f"symbol {symbol!r} was not subscribed (subscribed: {', '.join(self._symbols)})")

    def _take_trade(self, item: Any) -> None:
        try:
            trade = trade_from_bitmex(item)
            self._check_symbol(trade.symbol)
        except RecordError as error:
            self._reject(TRADE_SOURCE, _element_json(item), str(error))
            return
        if not self._recent_trades[trade.symbol].add(trade.trade_id):
            self.counts.duplicates += 1
            return
        self._publisher.publish(trade)
        self.counts.trades += 1

    def _take_quote(self, item: Any) -> None:
        try:
            quote = quote_from_bitmex(item)
            self._check_symbol(quote.symbol)
        except RecordError as error:
            self._reject(QUOTE_SOURCE, _element_json(item), str(error))
            return
        if self._last_quotes.get(quote.symbol) == quote:
            self.counts.duplicates += 1
            return
        self._last_quotes[quote.symbol] = quote
        self._publisher.publish(quote)
        self.counts.quotes += 1

    def _reject(self, source: str, raw: bytes, reason: str) -> None:
        log.warning("BitMEX input refused (%s): %s", source, reason)
        self._publisher.dead_letter(source, raw, reason)
        self.counts.dead_letters += 1
