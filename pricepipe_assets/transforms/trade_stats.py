"""Per-minute and per-hour trade statistics that always equal a plain group-by of the distinct trades.

Trades are stored keyed by (symbol, day) / (time, id), so a trade delivered twice or late is one
row; the statistics of every minute a batch touched are rewritten from all of that minute's
distinct trades, then the touched hours from the minute rows, however often a batch is replayed.
A minute's trades come from the batch, from the stream worker's memory of the minutes it wrote
(:class:`RecentMinutes`), or, for a minute an earlier batch wrote that memory does not know, from
the stored trades (see :func:`minute_rows` for why nothing else is read).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pricepipe_assets.contract.records import INTERVAL_MS, Trade
from pricepipe_assets.contract.utc import day_start_ms
from pricepipe_assets.storage.cassandra import CassandraCluster, cql_date, driver_ms
from pricepipe_assets.storage.cassandra_schema import candle_bucket
from pricepipe_assets.storage.live_tables import (
    SELECT_MINUTE_STARTS,
    SELECT_MINUTES,
    SELECT_NEWEST_MINUTE,
    SELECT_TRADES,
    UPSERT_HOUR,
)

MINUTE_MS = INTERVAL_MS["1m"]
HOUR_MS = INTERVAL_MS["1h"]
DAY_MS = INTERVAL_MS["1d"]

def utc_time(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC)


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


# A minute's distinct trades by (time ms, id): records of a batch or rows read back.
MinuteTrades = dict[tuple[int, str], Any]


def _by_key(trades: Iterable[Trade]) -> MinuteTrades:
    return {(t.ts, t.trade_id): t for t in trades}


def _stats(prints: MinuteTrades) -> TradeStats:
    """Of a minute's distinct trades, summed in the stored rows' clustering order (time, then id), so
    the floating-point sums do not depend on where the trades came from."""
    return TradeStats.of_trades([prints[key] for key in sorted(prints)])


class RecentMinutes:
    """The distinct trades of each symbol's recent minutes, as this process wrote them, so a batch
    touching such a minute again computes it without reading anything back.

    It holds, per (symbol, day) partition of `trade_stats_minute`, a *floor*: a minute from which on
    every row of the partition is one this memory wrote. The floor is found by reading the
    partition's newest row when a batch first touches it; from then on only this process writes
    the symbol (its partition of `trades` is assigned to this process alone) and it remembers what
    it writes. So a minute at or past the floor is either remembered, with all its trades, or has
    no row yet; neither is read. Minutes more than ``keep_ms`` older than a symbol's newest are
    forgotten and the floor raised past them: a trade that late has its minute read back. The
    worker forgets everything when partitions move, since another process then writes them.
    """

    def __init__(self, keep_ms: int = 5 * MINUTE_MS) -> None:
        self.keep_ms = keep_ms
        self._floors: dict[str, dict[dt.date, int]] = defaultdict(dict)
        self._minutes: dict[str, dict[int, MinuteTrades]] = defaultdict(dict)
        self._newest: dict[str, int] = {}

    def learn_floors(self, cassandra: CassandraCluster, partitions: Iterable[tuple[str, dt.date]]) -> None:
        """Read the newest row of each partition without a floor (concurrently, once per partition)."""
        new = sorted({(symbol, day) for symbol, day in partitions if day not in self._floors[symbol]})
        for (symbol, day), rows in zip(new, cassandra.read_all(SELECT_NEWEST_MINUTE, new), strict=True):
            self._floors[symbol][day] = driver_ms(rows[0].minute) + MINUTE_MS if rows else day_start_ms(day)

    def minute(self, symbol: str, minute: int) -> MinuteTrades | None:
        """All the stored trades of a minute (none if it has no row yet), or None if unknown here."""
        remembered = self._minutes[symbol].get(minute)
        if remembered is not None:
            return remembered
        floor = self._floors[symbol].get(_day(minute))
        return {} if floor is not None and minute >= floor else None

    def remember(self, written: Mapping[tuple[str, int], MinuteTrades]) -> None:
        """Minutes just written with all their trades; then forget what fell out of the window."""
        for (symbol, minute), prints in written.items():
            self._minutes[symbol][minute] = prints
            self._newest[symbol] = max(minute, self._newest.get(symbol, minute))
        for symbol in {symbol for symbol, _ in written}:
            cutoff = self._newest[symbol] - self.keep_ms
            minutes = self._minutes[symbol]
            for minute in [m for m in minutes if m < cutoff]:
                del minutes[minute]
            floors = self._floors[symbol]
            for day in list(floors):
                if _day(cutoff) > day:
                    del floors[day]  # read again if touched again
                else:
                    floors[day] = max(floors[day], cutoff)

    def forget(self) -> None:
        self._floors.clear()
        self._minutes.clear()
        self._newest.clear()


def _read_back(cassandra: CassandraCluster, unknown: dict[str, dict[int, list[Trade]]]) -> dict[tuple[str, int], MinuteTrades]:
    """All the trades of minutes not known to memory: the batch's, and the stored ones of those
    minutes that already have a row (see :func:`minute_rows` for why the others need no read)."""
    spans = [(symbol, day, first, last) for symbol, minutes in unknown.items()
             for day, (first, last) in _spans_by_bucket(set(minutes), _day).items()]
    starts = cassandra.read_all(SELECT_MINUTE_STARTS, [(symbol, day, utc_time(first), utc_time(last + MINUTE_MS))
                                                       for symbol, day, first, last in spans])
    written = [{driver_ms(row.minute) for row in found} & unknown[symbol].keys()
               for found, (symbol, *_) in zip(starts, spans, strict=True)]
    again = [index for index, minutes in enumerate(written) if minutes]
    stored = cassandra.read_all(SELECT_TRADES, [
        (spans[i][0], spans[i][1], utc_time(min(written[i])), utc_time(max(written[i]) + MINUTE_MS)) for i in again])
    complete = {(symbol, minute): _by_key(trades) for symbol, minutes in unknown.items()
                for minute, trades in minutes.items()}
    for index, found in zip(again, stored, strict=True):
        symbol = spans[index][0]
        for row in found:
            ms = driver_ms(row.ts)
            if ms - ms % MINUTE_MS in written[index]:
                complete[symbol, ms - ms % MINUTE_MS].setdefault((ms, row.trade_id), row)
    return complete


def minute_rows(cassandra: CassandraCluster, trades: Iterable[Trade],
                recent: RecentMinutes) -> tuple[list[tuple[Any, ...]], dict[tuple[str, int], MinuteTrades]]:
    """The statistics rows of every minute ``trades`` touch, and all the trades of each of those
    minutes; to be written with the trades, after which the caller tells ``recent``.

    A minute ``recent`` knows is computed from memory and the batch. Otherwise a minute that has no
    row yet is computed from the batch alone, without reading the stored trades back, because every
    trade stored in it is in the batch: trades are stored in the same requests as their minutes'
    rows, and offsets committed only after all of them returned. So a stored trade of a minute with
    no row came from a write that failed before its commit, at offsets the consumer group has not
    committed, and the batch starts from the committed offsets, so it reads those trades again. (If
    a later batch ends before the failed one did, the minute is written without the trades past its
    end; the batch that reads them then finds the row, or the minute in memory.) A minute that has
    a row has its stored trades read back and merged with the batch's, the batch's delivery winning
    as its upsert will. One process writes a symbol at a time (its partition of `trades` is assigned
    to one consumer), so nothing writes between the read and the write.
    """
    by_symbol = _by_minute(trades)
    recent.learn_floors(cassandra, {(symbol, _day(m)) for symbol, minutes in by_symbol.items() for m in minutes})
    complete: dict[tuple[str, int], MinuteTrades] = {}
    unknown: dict[str, dict[int, list[Trade]]] = defaultdict(dict)
    for symbol, minutes in by_symbol.items():
        for minute, batch in minutes.items():
            known = recent.minute(symbol, minute)
            if known is None:
                unknown[symbol][minute] = batch
            else:
                complete[symbol, minute] = {**known, **_by_key(batch)}
    complete.update(_read_back(cassandra, unknown))
    rows = [(symbol, cql_date(_day(minute)), utc_time(minute), *_stats(prints).row())
            for (symbol, minute), prints in sorted(complete.items())]
    return rows, complete


def recompute_hours(cassandra: CassandraCluster, touched: dict[str, set[int]]) -> int:
    """Rewrite the statistics of every touched hour from its minute rows; returns the hours written."""
    hours = [(symbol, hour) for symbol, starts in touched.items() for hour in sorted(starts)]
    found = cassandra.read_all(SELECT_MINUTES, [(symbol, _day(hour), utc_time(hour), utc_time(hour + HOUR_MS))
                                                for symbol, hour in hours])
    rows = [(symbol, _month(hour), utc_time(hour), *TradeStats.of_minutes(minutes).row())
            for (symbol, hour), minutes in zip(hours, found, strict=True) if minutes]
    return cassandra.write_all(UPSERT_HOUR, rows)
