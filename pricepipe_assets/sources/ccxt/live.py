"""Live trades (and order books where the venue streams them) of CCXT venues through ccxt.pro.

``watch_trades`` keeps one subscription per market; when the connection drops, ccxt.pro raises a
``NetworkError`` and the next call connects and subscribes again. The trades that happened while
the feed was away are then read over REST (``fetch_trades`` from the newest trade the feed
published), before the stream's new batch. Stream and REST overlap at the junction, and a venue
may repeat trades on a new subscription, so every trade is published only if its id (or, for a
venue that gives none, its time, price, size and side) is not among the ones the feed remembers:
never twice, whichever path brought it first.

Binance's REST history of trades from a given time is its *aggregated* trades, numbered apart from
the raw ones, so on Binance (and its US, USD-M and COIN-M classes) the aggregated stream is watched
too: the ids of both paths agree.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pricepipe_assets.contract.books import OrderBook, parse_levels
from pricepipe_assets.contract.record_values import RecordError, parse_finite, parse_integer, preview
from pricepipe_assets.contract.records import Trade
from pricepipe_assets.sources.backoff import exponential_backoff
from pricepipe_assets.sources.ccxt.markets import CcxtSourceError, contract_symbol, find_market
from pricepipe_assets.sources.recent_ids import RecentIds

if TYPE_CHECKING:
    from pricepipe_assets.kafka.publisher import Publisher
    from pricepipe_assets.sources.book_throttle import BookThrottle

log = logging.getLogger(__name__)

WATCH_TRADES_PARAMS: Mapping[str, Mapping[str, str]] = {
    venue: {"name": "aggTrade"} for venue in ("binance", "binanceus", "binanceusdm", "binancecoinm")}
REMEMBERED_TRADES = 100_000
FILL_PAGE = 1000


def trade_key(trade: Mapping[str, Any]) -> str:
    """What tells two deliveries of one trade apart from two trades."""
    if trade.get("id") not in (None, ""):
        return str(trade["id"])
    return f"{trade.get('timestamp')}-{trade.get('price')}-{trade.get('amount')}-{trade.get('side')}"


def trade_from_ccxt(trade: Mapping[str, Any], exchange: str, symbol: str) -> Trade:
    """A CCXT trade structure as a validated contract trade."""
    if not isinstance(trade, Mapping):
        raise RecordError(f"a CCXT trade is an object, got {preview(trade)!r}")
    side = trade.get("side")
    if side not in ("buy", "sell"):
        raise RecordError(f"the taker's side must be buy or sell, got {preview(side)!r}")
    record = Trade(exchange=exchange, symbol=symbol, trade_id=trade_key(trade),
                   ts=parse_integer(trade.get("timestamp"), "ts"), side=side,
                   size=parse_finite(trade.get("amount"), "size"), price=parse_finite(trade.get("price"), "price"))
    record.check()
    return record


def book_from_ccxt(book: Mapping[str, Any], exchange: str, symbol: str, depth: int, sequence: int,
                   now_ms: int) -> OrderBook:
    """A CCXT order book's top ``depth`` levels; ``sequence`` is the venue's nonce when it sends one,
    else the count of books the feed received for the market (as for BitMEX, see the contract)."""
    bids = parse_levels([level[:2] for level in book.get("bids", [])[:depth]], "bids")
    asks = parse_levels([level[:2] for level in book.get("asks", [])[:depth]], "asks")
    nonce = book.get("nonce")
    record = OrderBook(exchange=exchange, symbol=symbol, ts=int(book.get("timestamp") or now_ms),
                       sequence=int(nonce) if isinstance(nonce, int) else sequence, bids=bids, asks=asks)
    record.check()
    return record


@dataclass
class LiveCounts:
    trades: int = 0
    filled: int = 0
    repeats: int = 0
    books: int = 0
    book_failures: int = 0
    reconnects: int = 0


class CcxtLiveFeed:
    """One venue's markets; ``run`` blocks until ``stop`` is set (the feed's threads call it)."""

    def __init__(self, publisher: Publisher, exchange: Any, symbols: Sequence[str], *,
                 books: BookThrottle | None = None, book_depth: int = 10,
                 backoff: Callable[[int], float] | None = None) -> None:
        self.exchange = exchange
        self.counts = LiveCounts()
        self._publisher = publisher
        self._symbols = tuple(symbols)
        self._books = books
        self._book_depth = book_depth
        self._backoff = backoff or exponential_backoff(initial_s=0.5, cap_s=30.0)
        self._seen = RecentIds(REMEMBERED_TRADES)
        self._newest: dict[str, int] = {}

    @property
    def source(self) -> str:
        return f"ccxt.{self.exchange.id}"

    def status_line(self) -> str:
        c = self.counts
        return (f"{self.exchange.id}: {c.trades:,} trades ({c.filled:,} gap-filled, {c.repeats:,} repeats dropped), "
                f"{c.books:,} books ({c.book_failures} failures), {c.reconnects} reconnects")

    def run(self, stop: threading.Event) -> None:
        asyncio.run(self._run(stop))

    async def _run(self, stop: threading.Event) -> None:
        try:
            markets = await self._markets()
            work: list[asyncio.Task[Any]] = [asyncio.create_task(self._trades(m)) for m in markets]
            if self._books is not None and self.exchange.has.get("watchOrderBook"):
                work += [asyncio.create_task(self._order_books(m)) for m in markets]
            stopped = asyncio.create_task(asyncio.to_thread(stop.wait))
            done, _ = await asyncio.wait([stopped, *work], return_when=asyncio.FIRST_COMPLETED)
            for task in work:
                task.cancel()
            await asyncio.gather(*work, return_exceptions=True)
            stop.set()
            await stopped
            for task in done - {stopped}:
                task.result()
        finally:
            await self.exchange.close()

    async def _markets(self) -> list[dict[str, Any]]:
        import ccxt

        if not self.exchange.has.get("watchTrades"):
            raise CcxtSourceError(f"{self.exchange.id} streams no trades through CCXT (watchTrades)")
        try:
            await self.exchange.load_markets()
        except ccxt.BaseError as error:
            raise CcxtSourceError(f"cannot load the markets of {self.exchange.id}: {type(error).__name__}: "
                                  f"{error}") from None
        return [find_market(self.exchange, symbol) for symbol in self._symbols]

    async def _trades(self, market: dict[str, Any]) -> None:
        import ccxt

        symbol, params = market["symbol"], dict(WATCH_TRADES_PARAMS.get(self.exchange.id, {}))
        failures, fill = 0, False
        while True:
            try:
                trades = await self.exchange.watch_trades(symbol, params=params)
            except ccxt.NetworkError as error:
                failures, fill = failures + 1, True
                self.counts.reconnects += 1
                delay = self._backoff(failures)
                log.warning("%s %s: %s; reconnecting in %.1f s", self.exchange.id, symbol, error, delay)
                await asyncio.sleep(delay)
                continue
            except ccxt.BaseError as error:
                raise CcxtSourceError(f"{self.exchange.id} refused the trades of {symbol}: "
                                      f"{type(error).__name__}: {error}") from None
            failures = 0
            if fill:
                await self._fill(market)
                fill = False
            for trade in trades:
                self._offer(market, trade)

    async def _fill(self, market: dict[str, Any]) -> None:
        """The trades since the newest one published, page by page, over REST."""
        import ccxt

        since = self._newest.get(market["symbol"])
        if since is None or not self.exchange.has.get("fetchTrades"):
            return
        while True:
            try:
                page = await self.exchange.fetch_trades(market["symbol"], since=since, limit=FILL_PAGE)
            except ccxt.BaseError as error:
                log.warning("%s %s: the gap since %s was not filled: %s", self.exchange.id, market["symbol"],
                            since, error)
                return
            new = [self._offer(market, trade, filled=True) for trade in page]
            newest = max((int(t["timestamp"]) for t in page if isinstance(t.get("timestamp"), int)), default=since)
            if not any(new) or newest <= since:
                return
            since = newest

    def _offer(self, market: dict[str, Any], trade: Mapping[str, Any], *, filled: bool = False) -> bool:
        """Publish a trade not published before (a broken one to the dead letters); True if it was new."""
        symbol = contract_symbol(market)
        if not self._seen.add(f"{symbol}|{trade_key(trade)}"):
            self.counts.repeats += 1
            return False
        raw = json.dumps(trade.get("info", trade), separators=(",", ":"), default=str)
        record = self._publisher.offer(f"{self.source}.trades", raw,
                                       lambda: trade_from_ccxt(trade, self.exchange.id, symbol))
        if record is not None:
            self.counts.trades += 1
            self.counts.filled += filled
            self._newest[market["symbol"]] = max(record.ts, self._newest.get(market["symbol"], record.ts))
        return True

    async def _order_books(self, market: dict[str, Any]) -> None:
        """The market's book, kept by ccxt.pro; any trouble with it (a snapshot refused, a dropped
        connection) is retried after a growing wait and logged, and never stops the trades."""
        import ccxt

        assert self._books is not None, "books are watched only with a throttle"
        symbol, failures, received = market["symbol"], 0, 0
        while True:
            try:
                book = await self.exchange.watch_order_book(symbol)
            except ccxt.BaseError as error:
                failures += 1
                self.counts.book_failures += 1
                self._books.forget(contract_symbol(market))
                delay = self._backoff(failures)
                log.warning("%s %s book: %s: %s; again in %.1f s", self.exchange.id, symbol, type(error).__name__,
                            error, delay)
                await asyncio.sleep(delay)
                continue
            failures, received = 0, received + 1
            try:
                record = book_from_ccxt(book, self.exchange.id, contract_symbol(market), self._book_depth, received,
                                        self.exchange.milliseconds())
            except RecordError as error:
                self._publisher.dead_letter(f"{self.source}.orderbook", json.dumps(book, default=str), str(error))
                continue
            self._books.offer(record)
            self.counts.books += 1
