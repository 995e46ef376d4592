"""Per-minute and per-hour trade statistics that always equal a plain group-by of the distinct trades.

Trades are stored keyed by (symbol, day) / (time, id), so a trade delivered twice or late is one
row; the statistics of every minute a batch touched are rewritten from all of that minute's
distinct trades, then the touched hours from the minute rows, however often a batch is replayed.
Only minutes an earlier batch already wrote are read back from the stored trades; the others are
complete in the batch itself (see :func:`recompute_minutes` for why).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pricepipe_assets.contract.records import INTERVAL_MS, Trade
from pricepipe_assets.storage.cassandra import CassandraCluster
from pricepipe_assets.storage.cassandra_schema import candle_bucket
from pricepipe_assets.storage.live_tables import (
    SELECT_MINUTE_STARTS,
    SELECT_MINUTES,
    SELECT_TRADES,
    UPSERT_HOUR,
    UPSERT_MINUTE,
)

MINUTE_MS = INTERVAL_MS["1m"]
HOUR_MS = INTERVAL_MS["1h"]
DAY_MS = INTERVAL_MS["1d"]

def utc_time(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC)


def _ms(value: dt.datetime) -> int:
    """Milliseconds UTC of a driver timestamp (the driver returns naive UTC datetimes)."""
    return round(value.replace(tzinfo=dt.UTC).timestamp() * 1000)


@dataclass(frozen=True)
class TradeStats:
    """The statistics of a set of trades (one minute, or one hour from its minutes)."""

    trades: int
    volume: float
    quote_volume: float
    buy_volume: float
    sell_volume: float
    last_price: float

    @property
    def vwap(self) -> float:
        return self.quote_volume / self.volume

    def row(self) -> tuple[int, float, float, float, float, float, float]:
        return (self.trades, self.volume, self.quote_volume, self.buy_volume, self.sell_volume, self.vwap,
                self.last_price)

    @classmethod
    def of_trades(cls, trades: Sequence[Any]) -> TradeStats:
        """From stored trade rows in (ts, trade_id) order."""
        buy = sum(t.size for t in trades if t.side == "buy")
        sell = sum(t.size for t in trades if t.side == "sell")
        return cls(len(trades), buy + sell, sum(t.size * t.price for t in trades), buy, sell, trades[-1].price)

    @classmethod
    def of_minutes(cls, minutes: Sequence[Any]) -> TradeStats:
        """From stored minute rows in time order."""
        return cls(sum(m.trades for m in minutes), sum(m.volume for m in minutes),
                   sum(m.quote_volume for m in minutes), sum(m.buy_volume for m in minutes),
                   sum(m.sell_volume for m in minutes), minutes[-1].last_price)


def touched_starts(times_by_symbol: Iterable[tuple[str, int]], step_ms: int) -> dict[str, set[int]]:
    """The starts of the minutes or hours a batch has events in, per symbol."""
    touched: dict[str, set[int]] = defaultdict(set)
    for symbol, ms in times_by_symbol:
        touched[symbol].add(ms - ms % step_ms)
    return touched


def _spans_by_bucket(starts: set[int], bucket_of: Any) -> dict[dt.date, tuple[int, int]]:
    """The first and last touched start within each Cassandra bucket, so each bucket is read once."""
    spans: dict[dt.date, tuple[int, int]] = {}
    for start in starts:
        bucket = bucket_of(start)
        low, high = spans.get(bucket, (start, start))
        spans[bucket] = (min(low, start), max(high, start))
    return spans


def _day(ms: int) -> dt.date:
    return candle_bucket("1m", ms)


def _month(ms: int) -> dt.date:
    return candle_bucket("1h", ms)


TradeKey = tuple[str, int, str]


def distinct_trades(trades: Iterable[Trade]) -> dict[TradeKey, Trade]:
    """The batch's trades by primary key (symbol, time, id), in the table's clustering order; a trade
    delivered more than once keeps its last delivery, as the upserts of the same rows would."""
    unique = {(t.symbol, t.ts, t.trade_id): t for t in trades}
    return {key: unique[key] for key in sorted(unique)}


def _by_minute(trades: Iterable[Trade]) -> dict[str, dict[int, list[Trade]]]:
    minutes: dict[str, dict[int, list[Trade]]] = defaultdict(lambda: defaultdict(list))
    for trade in trades:
        minutes[trade.symbol][trade.ts - trade.ts % MINUTE_MS].append(trade)
    return minutes


def _stored_by_minute(trades: Iterable[Any], minutes: set[int]) -> dict[int, list[Any]]:
    """Stored trades (one range read of a day) grouped by minute, those of ``minutes`` only."""
    by_minute: dict[int, list[Any]] = defaultdict(list)
    for trade in trades:
        ms = _ms(trade.ts)
        if ms - ms % MINUTE_MS in minutes:
            by_minute[ms - ms % MINUTE_MS].append(trade)
    return by_minute


def recompute_minutes(cassandra: CassandraCluster, trades: Iterable[Trade]) -> int:
    """Rewrite the statistics of every minute ``trades`` touch, once those trades are stored; returns
    the minutes written. ``trades`` are distinct and in (time, id) order, like the stored rows.

    A minute that has no statistics row yet is computed from the batch alone, without reading the
    stored trades back, because every trade stored in it is in the batch: a run stores its trades
    before it writes the statistics of each minute they touch, and commits only after both. So a
    stored trade of a minute with no row came from a run that failed before committing, at offsets
    the consumer group has not committed, and the batch starts from the committed offsets, so it
    reads those trades again. (If a later range ends before the failed one did, the minute is
    written without the trades past its end; the run that reads them then finds the row.) A minute
    that has a row may hold trades of earlier batches: it is recomputed from the stored trades,
    which already include this batch. Runs of one topic never overlap (the sensor waits for the
    active one), so no other run writes between the read and the write.
    """
    by_symbol = _by_minute(trades)
    spans = [(symbol, day, first, last) for symbol, minutes in by_symbol.items()
             for day, (first, last) in _spans_by_bucket(set(minutes), _day).items()]
    starts = cassandra.read_all(SELECT_MINUTE_STARTS, [(symbol, day, utc_time(first), utc_time(last + MINUTE_MS))
                                                       for symbol, day, first, last in spans])
    written = [{_ms(row.minute) for row in found} & by_symbol[symbol].keys()
               for found, (symbol, *_) in zip(starts, spans, strict=True)]
    again = [index for index, minutes in enumerate(written) if minutes]
    stored_trades = cassandra.read_all(SELECT_TRADES, [
        (spans[i][0], spans[i][1], utc_time(min(written[i])), utc_time(max(written[i]) + MINUTE_MS)) for i in again])
    stored = {i: _stored_by_minute(found, written[i]) for i, found in zip(again, stored_trades, strict=True)}
    rows = []
    for index, (symbol, day, first, last) in enumerate(spans):
        minutes = by_symbol[symbol]
        rows += [(symbol, day, utc_time(m),
                  *TradeStats.of_trades(stored[index][m] if m in written[index] else minutes[m]).row())
                 for m in sorted(m for m in minutes if first <= m <= last)]
    return cassandra.write_all(UPSERT_MINUTE, rows)


def recompute_hours(cassandra: CassandraCluster, touched: dict[str, set[int]]) -> int:
    """Rewrite the statistics of every touched hour from its minute rows; returns the hours written."""
    hours = [(symbol, hour) for symbol, starts in touched.items() for hour in sorted(starts)]
    found = cassandra.read_all(SELECT_MINUTES, [(symbol, _day(hour), utc_time(hour), utc_time(hour + HOUR_MS))
                                                for symbol, hour in hours])
    rows = [(symbol, _month(hour), utc_time(hour), *TradeStats.of_minutes(minutes).row())
            for (symbol, hour), minutes in zip(hours, found, strict=True) if minutes]
    return cassandra.write_all(UPSERT_HOUR, rows)
