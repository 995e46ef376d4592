"""Candle history of any CCXT venue through ``fetch_ohlcv``, page by page, into the candle topics.

Venues cap a page differently (Binance 1,000 rows, Kraken 720, some fewer) and some ignore
``since`` beyond their window, so a page is never judged by its length: reading goes on from just
after the newest candle received until a page brings nothing new or the range is read. Only candles
inside the range, in strictly increasing open time and already closed are yielded, so publishing
everything yielded never publishes a candle twice nor one still running. CCXT's own limiter spaces
the calls by the venue's ``rateLimit``; a venue that refuses anyway (``RateLimitExceeded``,
``DDoSProtection``) or drops the connection is asked again after a growing wait, a bounded number of
times.

CCXT's unified OHLCV row is ``[open time, open, high, low, close, volume]``: it has no quote volume
and no trade count, so both are published as 0, as for a plain OHLCV file (``candle_files``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pricepipe_assets.contract.record_values import RecordError, now_ms, parse_finite, parse_integer
from pricepipe_assets.contract.records import INTERVAL_MS, Candle
from pricepipe_assets.sources.backoff import exponential_backoff
from pricepipe_assets.sources.binance.rest import BackfillResult, next_open_time
from pricepipe_assets.sources.ccxt.markets import CcxtSourceError, contract_symbol, load_market
from pricepipe_assets.sources.progress import Progress

if TYPE_CHECKING:
    from pricepipe_assets.kafka.publisher import Publisher

log = logging.getLogger(__name__)

PAGE_LIMIT = 1000
MAX_RETRIES = 5


def candle_from_ohlcv(row: Any, exchange: str, symbol: str, interval: str) -> Candle:
    """A CCXT OHLCV row as a validated contract candle (see the module docstring for the zeros)."""
    if not isinstance(row, Sequence) or isinstance(row, str) or len(row) < 6:
        raise RecordError(f"a CCXT OHLCV row is [timestamp, open, high, low, close, volume], got {str(row)[:80]}")
    open_time = parse_integer(row[0], "open_time")
    candle = Candle(exchange=exchange, symbol=symbol, interval=interval, open_time=open_time,
                    close_time=open_time + INTERVAL_MS[interval] - 1, open=parse_finite(row[1], "open"),
                    high=parse_finite(row[2], "high"), low=parse_finite(row[3], "low"),
                    close=parse_finite(row[4], "close"),
                    volume=parse_finite(row[5] if row[5] is not None else 0, "volume"), quote_volume=0.0, trades=0,
                    is_closed=True, is_complete=True)
    candle.check()
    return candle


@dataclass
class CcxtHistory:
    """One market's candles of one venue; ``open`` loads and checks it, with the clear errors of an
    unknown market or a venue without OHLCV."""

    exchange: Any
    market: dict[str, Any]
    interval: str
    sleep: Callable[[float], None] = time.sleep
    backoff: Callable[[int], float] = exponential_backoff(initial_s=1.0, cap_s=30.0)

    @classmethod
    def open(cls, exchange: Any, symbol: str, interval: str, **options: Any) -> CcxtHistory:
        if interval not in INTERVAL_MS:
            raise CcxtSourceError(f"interval must be one of {', '.join(INTERVAL_MS)}, got {interval!r}")
        if not exchange.has.get("fetchOHLCV"):
            raise CcxtSourceError(f"{exchange.id} offers no candle history (CCXT's fetchOHLCV) to backfill from")
        if interval not in (exchange.timeframes or {}):
            raise CcxtSourceError(f"{exchange.id} has no {interval} candles; its timeframes: "
                                  f"{', '.join(exchange.timeframes or {})}")
        return cls(exchange, load_market(exchange, symbol), interval, **options)

    @property
    def symbol(self) -> str:
        """The market's name in the contract."""
        return contract_symbol(self.market)

    @property
    def source(self) -> str:
        """What dead letters of this history name as their origin (the input never was on Kafka)."""
        return f"ccxt.{self.exchange.id}.ohlcv"

    def candles(self, start_ms: int, end_ms: int, *, after_open_time: int | None = None,
                publisher: Publisher | None = None, progress: Progress | None = None) -> Iterator[Candle]:
        """Closed candles with ``start_ms <= open_time <= end_ms`` in order, each once; with a
        ``publisher``, published before they are yielded and a bad row dead-lettered with its reason."""
        if after_open_time is not None:
            start_ms = max(start_ms, next_open_time(after_open_time, self.interval))
        step = INTERVAL_MS[self.interval]
        previous = start_ms - 1
        while previous < end_ms:
            rows = self._page(start_ms if previous < start_ms else previous + step)
            closed_before = now_ms() - step
            fresh = [row for row in rows if (t := _open_time(row)) is not None and previous < t <= min(end_ms,
                                                                                                       closed_before)]
            if not fresh:
                return
            for row in sorted(fresh, key=_open_time_key):
                candle = self._accept(row, publisher)
                previous = max(previous, _open_time_key(row))
                if candle is not None:
                    yield candle
            if progress is not None:
                progress.update(len(fresh))

    def _accept(self, row: Any, publisher: Publisher | None) -> Candle | None:
        def parse() -> Candle:
            return candle_from_ohlcv(row, self.exchange.id, self.symbol, self.interval)

        if publisher is not None:
            return publisher.offer(self.source, json.dumps(row, separators=(",", ":"), default=str), parse)
        try:
            return parse()
        except RecordError as error:
            raise CcxtSourceError(f"malformed {self.interval} candle of {self.market['symbol']} from "
                                  f"{self.exchange.id}: {error}") from None

    def _page(self, since: int) -> list[Any]:
        """One ``fetch_ohlcv`` call, after waiting out refusals and dropped connections."""
        import ccxt

        for attempt in range(1, MAX_RETRIES + 2):
            try:
                rows = self.exchange.fetch_ohlcv(self.market["symbol"], self.interval, since=since, limit=PAGE_LIMIT)
                return list(rows or [])
            except (ccxt.RateLimitExceeded, ccxt.DDoSProtection, ccxt.NetworkError) as error:
                if attempt > MAX_RETRIES:
                    raise CcxtSourceError(f"{self.exchange.id} still refuses candles of {self.market['symbol']} "
                                          f"after {MAX_RETRIES} retries: {type(error).__name__}: {error}") from None
                delay = self.backoff(attempt)
                log.warning("%s %s: %s, retrying in %.1f s", self.exchange.id, self.market["symbol"],
                            type(error).__name__, delay)
                self.sleep(delay)
            except ccxt.BaseError as error:
                raise CcxtSourceError(f"{self.exchange.id} refused candles of {self.market['symbol']}: "
                                      f"{type(error).__name__}: {error}") from None
        raise AssertionError("unreachable: the loop returns or raises")


def _open_time(row: Any) -> int | None:
    """A row's open time, or None when the row is too broken to tell (its parser will say why)."""
    try:
        return parse_integer(row[0], "open_time")
    except (RecordError, LookupError, TypeError):
        return None


def _open_time_key(row: Any) -> int:
    stamp = _open_time(row)
    assert stamp is not None, "rows without an open time were filtered out"
    return stamp


def backfill(history: CcxtHistory, publisher: Publisher, start_ms: int, end_ms: int, *,
             after_open_time: int | None = None, progress: bool = False) -> BackfillResult:
    """Publish the range's candles and return once Kafka confirmed them all; ``after_open_time``
    (the newest candle already stored) resumes without doubles."""
    dead_before = publisher.dead_letters
    count, last = 0, None
    first = start_ms if after_open_time is None else max(start_ms, next_open_time(after_open_time, history.interval))
    total = max(0, (end_ms - first) // INTERVAL_MS[history.interval] + 1)
    with Progress(f"{history.exchange.id} {history.symbol} {history.interval}", " candles", enabled=progress,
                  total=total) as bar:
        for candle in history.candles(start_ms, end_ms, after_open_time=after_open_time, publisher=publisher,
                                      progress=bar):
            count, last = count + 1, candle.open_time
        publisher.flush()
        bar.step_done(f"{count:,} candles published, {publisher.dead_letters - dead_before:,} dead-lettered")
    return BackfillResult(history.symbol, history.interval, count, publisher.dead_letters - dead_before, last)
