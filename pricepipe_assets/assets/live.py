"""The live tables in Cassandra, fed from Kafka by sensor-driven runs; every write is idempotent.

Candles are upserted on their natural key. Trades are stored keyed by (symbol, day) / (time, id),
so a trade delivered twice or late is one row, and the statistics of every minute a batch touched
are rewritten from all of that minute's distinct trades (then the touched hours from the minute
rows): the numbers always equal a plain group-by of the distinct trades, however often a batch is
replayed. Only minutes an earlier batch already wrote are read back from the stored trades; the
others are complete in the batch itself (see :func:`recompute_minutes` for why).
"""

# No `from __future__ import annotations` here: Dagster reads the context annotation at definition time.
import datetime as dt
import functools
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg
from dagster import AssetExecutionContext

from pricepipe_assets.assets.kafka_fed import (
    OffsetRangesConfig,
    batch_metadata,
    commit_batch,
    read_batch,
    read_while_writing,
)
from pricepipe_assets.assets.topics import topic_key
from pricepipe_assets.kafka_batches import Batch, Delivered
from pricepipe_assets.records import INTERVAL_MS, Candle, Quote, Trade
from pricepipe_assets.resources.cassandra import CassandraResource, cql_date
from pricepipe_assets.resources.kafka import KafkaResource
from pricepipe_assets.storage.cassandra_schema import candle_bucket
from pricepipe_assets.topics import CANDLES_1M, QUOTES, TRADES

MINUTE_MS = INTERVAL_MS["1m"]
HOUR_MS = INTERVAL_MS["1h"]
DAY_MS = INTERVAL_MS["1d"]

UPSERT_CANDLE = """
INSERT INTO candles (symbol, interval, bucket, open_time, close_time, exchange, open, high, low, close, volume,
                     quote_volume, trades)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
UPSERT_TRADE = """
INSERT INTO trades (symbol, bucket, ts, trade_id, exchange, side, size, price) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
"""
SELECT_TRADES = """
SELECT ts, trade_id, side, size, price FROM trades WHERE symbol = ? AND bucket = ? AND ts >= ? AND ts < ?
"""
STATS_COLUMNS = "trades, volume, quote_volume, buy_volume, sell_volume, vwap, last_price"
UPSERT_MINUTE = f"INSERT INTO trade_stats_minute (symbol, bucket, minute, {STATS_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
SELECT_MINUTES = f"SELECT minute, {STATS_COLUMNS} FROM trade_stats_minute WHERE symbol = ? AND bucket = ? AND minute >= ? AND minute < ?"
SELECT_MINUTE_STARTS = "SELECT minute FROM trade_stats_minute WHERE symbol = ? AND bucket = ? AND minute >= ? AND minute < ?"
UPSERT_HOUR = f"INSERT INTO trade_stats_hour (symbol, bucket, hour, {STATS_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
UPDATE_QUOTE = """
UPDATE latest_prices USING TIMESTAMP ? SET exchange = ?, bid = ?, ask = ?, quote_time = ? WHERE symbol = ?
"""
UPDATE_LAST_TRADE = """
UPDATE latest_prices USING TIMESTAMP ? SET exchange = ?, last_price = ?, trade_time = ? WHERE symbol = ?
"""
UPDATE_SYMBOL = """
UPDATE symbols USING TIMESTAMP ? SET exchange = ?, latest_event_time = ? WHERE symbol = ?
"""


def _time(ms: int) -> dt.datetime:
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
    def of_trades(cls, trades: Sequence[Any]) -> "TradeStats":
        """From stored trade rows in (ts, trade_id) order."""
        buy = sum(t.size for t in trades if t.side == "buy")
        sell = sum(t.size for t in trades if t.side == "sell")
        return cls(len(trades), buy + sell, sum(t.size * t.price for t in trades), buy, sell, trades[-1].price)

    @classmethod
    def of_minutes(cls, minutes: Sequence[Any]) -> "TradeStats":
        """From stored minute rows in time order."""
        return cls(sum(m.trades for m in minutes), sum(m.volume for m in minutes),
                   sum(m.quote_volume for m in minutes), sum(m.buy_volume for m in minutes),
                   sum(m.sell_volume for m in minutes), minutes[-1].last_price)


def _touched(times_by_symbol: Iterable[tuple[str, int]], step_ms: int) -> dict[str, set[int]]:
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


@functools.lru_cache(maxsize=1024)
def _bucket(interval: str, start_ms: int) -> Any:
    """The `bucket` column of a row, once per bucket: the rows of a batch share a few."""
    return cql_date(candle_bucket(interval, start_ms))


def _trade_row(t: Trade) -> tuple[Any, ...]:
    """A `trades` row; times as epoch milliseconds, which the driver takes for a timestamp as is."""
    return (t.symbol, _bucket("1m", t.ts - t.ts % DAY_MS), t.ts, t.trade_id, t.exchange, t.side, t.size, t.price)


def _candle_row(c: Candle) -> tuple[Any, ...]:
    start = c.open_time - c.open_time % DAY_MS
    return (c.symbol, c.interval, _bucket(c.interval, start), c.open_time, c.close_time, c.exchange, c.open, c.high,
            c.low, c.close, c.volume, c.quote_volume, c.trades)


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


def _written_minutes(cassandra: CassandraResource, symbol: str, day: dt.date, first: int, last: int) -> set[int]:
    select = cassandra.prepare(SELECT_MINUTE_STARTS)
    return {_ms(row.minute) for row in cassandra.session().execute(select, (symbol, day, _time(first),
                                                                           _time(last + MINUTE_MS)))}


def _stored_minutes(cassandra: CassandraResource, symbol: str, day: dt.date,
                    minutes: set[int]) -> dict[int, list[Any]]:
    """The stored trades of ``minutes`` (all in ``day``), one range read, grouped by minute."""
    by_minute: dict[int, list[Any]] = defaultdict(list)
    select = cassandra.prepare(SELECT_TRADES)
    for trade in cassandra.session().execute(select, (symbol, day, _time(min(minutes)),
                                                      _time(max(minutes) + MINUTE_MS))):
        ms = _ms(trade.ts)
        if ms - ms % MINUTE_MS in minutes:
            by_minute[ms - ms % MINUTE_MS].append(trade)
    return by_minute


def recompute_minutes(cassandra: CassandraResource, trades: Iterable[Trade]) -> int:
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
    rows = []
    for symbol, minutes in _by_minute(trades).items():
        for day, (first, last) in _spans_by_bucket(set(minutes), _day).items():
            in_day = {m for m in minutes if first <= m <= last}
            written = _written_minutes(cassandra, symbol, day, first, last) & in_day
            stored = _stored_minutes(cassandra, symbol, day, written) if written else {}
            rows += [(symbol, day, _time(m), *TradeStats.of_trades(stored[m] if m in written else minutes[m]).row())
                     for m in sorted(in_day)]
    return cassandra.write_all(UPSERT_MINUTE, rows)


def recompute_hours(cassandra: CassandraResource, touched: dict[str, set[int]]) -> int:
    """Rewrite the statistics of every touched hour from its minute rows; returns the hours written."""
    session, select = cassandra.session(), cassandra.prepare(SELECT_MINUTES)
    rows = []
    for symbol, hours in touched.items():
        for hour in sorted(hours):
            minutes = list(session.execute(select, (symbol, _day(hour), _time(hour), _time(hour + HOUR_MS))))
            if minutes:
                rows.append((symbol, _month(hour), _time(hour), *TradeStats.of_minutes(minutes).row()))
    return cassandra.write_all(UPSERT_HOUR, rows)


def record_activity(cassandra: CassandraResource, batch: Batch) -> None:
    """Advance each batch symbol's newest event time in `symbols` (the clock of the API and retention)."""
    newest: dict[str, Any] = {}
    for item in batch.records:
        record = item.record
        if record.symbol not in newest or record.event_time > newest[record.symbol].event_time:
            newest[record.symbol] = record
    cassandra.write_all(UPDATE_SYMBOL, [(r.event_time * 1000, r.exchange, _time(r.event_time), r.symbol)
                                        for r in newest.values()])


def _trades(records: Iterable[Delivered]) -> list[Trade]:
    return [item.record for item in records if isinstance(item.record, Trade)]


def _trade_rows(records: Sequence[Delivered]) -> list[tuple[Any, ...]]:
    return [_trade_row(t) for t in distinct_trades(_trades(records)).values()]


def _candle_rows(records: Sequence[Delivered]) -> list[tuple[Any, ...]]:
    """One row per candle, its last delivery: the rows of a partition go in one batch, where
    Cassandra would settle two writes of the same row by their values, not by their order."""
    latest = {(c.symbol, c.interval, c.open_time): c for item in records if isinstance(c := item.record, Candle)}
    return [_candle_row(c) for c in latest.values()]


@dg.asset(
    group_name="live",
    kinds={"kafka", "cassandra"},
    deps=["cassandra_schema", topic_key(CANDLES_1M)],
    description="1m candles from `candles.1m` in Cassandra's `candles` table (one partition per symbol and day), "
    "upserted on (symbol, interval, open_time): the API's candle charts read it.",
)
def candles_live(context: AssetExecutionContext, config: OffsetRangesConfig, kafka: KafkaResource,
                 cassandra: CassandraResource) -> dg.MaterializeResult:
    batch, written = read_while_writing(context, kafka, config, CANDLES_1M, cassandra, UPSERT_CANDLE, _candle_rows)
    record_activity(cassandra, batch)
    commit_batch(context, kafka, batch)
    return dg.MaterializeResult(metadata=batch_metadata(written, batch))


@dg.asset(
    group_name="live",
    kinds={"kafka", "cassandra"},
    deps=["cassandra_schema", topic_key(TRADES)],
    description="Per symbol and minute: trade count, base and quote volume, buy and sell volume, VWAP and last "
    "price (`trade_stats_minute`, one partition per symbol and day). Trades are first stored in `trades` while "
    "the batch is read (keyed by time and id, so duplicates and late trades are harmless), then every minute the "
    "batch touched is rewritten from all its distinct trades: from the batch alone if no earlier batch wrote that "
    "minute, else from the stored trades.",
)
def trade_stats_minute(context: AssetExecutionContext, config: OffsetRangesConfig, kafka: KafkaResource,
                       cassandra: CassandraResource) -> dg.MaterializeResult:
    batch, stored = read_while_writing(context, kafka, config, TRADES, cassandra, UPSERT_TRADE, _trade_rows)
    trades = distinct_trades(_trades(batch.records)).values()
    minutes = recompute_minutes(cassandra, trades)
    record_activity(cassandra, batch)
    commit_batch(context, kafka, batch)
    return dg.MaterializeResult(metadata={**batch_metadata(minutes, batch), "trades_stored": stored})


@dg.asset(
    group_name="live",
    kinds={"kafka", "cassandra"},
    deps=["trade_stats_minute", topic_key(TRADES)],
    description="Per symbol and hour: the same statistics as `trade_stats_minute`, summed from its minute rows "
    "(`trade_stats_hour`, one partition per symbol and month), for the API's 6- and 12-hour views. Reads the "
    "same trades from Kafka only to learn which hours to recompute.",
)
def trade_stats_hour(context: AssetExecutionContext, config: OffsetRangesConfig, kafka: KafkaResource,
                     cassandra: CassandraResource) -> dg.MaterializeResult:
    batch = read_batch(context, kafka, config, TRADES)
    hours = recompute_hours(cassandra, _touched(((t.symbol, t.ts) for t in _trades(batch.records)), HOUR_MS))
    commit_batch(context, kafka, batch)
    return dg.MaterializeResult(metadata=batch_metadata(hours, batch))


def _newest_by_symbol(records: Iterable[Any]) -> list[Any]:
    newest: dict[str, Any] = {}
    for record in records:
        if record.symbol not in newest or record.ts >= newest[record.symbol].ts:
            newest[record.symbol] = record
    return list(newest.values())


@dg.asset(
    group_name="live",
    kinds={"kafka", "cassandra"},
    deps=["cassandra_schema", topic_key(QUOTES), topic_key(TRADES)],
    description="Per symbol: the latest bid and ask (from `quotes`) and the last trade price (from `trades`), each "
    "with its event time, for the API's `/{symbol}/price`. Written with the event time as Cassandra write time, "
    "so an older event arriving late never overwrites a newer one.",
)
def latest_prices(context: AssetExecutionContext, config: OffsetRangesConfig, kafka: KafkaResource,
                  cassandra: CassandraResource) -> dg.MaterializeResult:
    quotes_batch = read_batch(context, kafka, config, QUOTES, dead_letter=True)
    trades_batch = read_batch(context, kafka, config, TRADES)
    quotes = _newest_by_symbol(item.record for item in quotes_batch.records if isinstance(item.record, Quote))
    trades = _newest_by_symbol(_trades(trades_batch.records))
    written = cassandra.write_all(UPDATE_QUOTE, [
        (q.ts * 1000, q.exchange, q.bid, q.ask, _time(q.ts), q.symbol) for q in quotes])
    written += cassandra.write_all(UPDATE_LAST_TRADE, [
        (t.ts * 1000, t.exchange, t.price, _time(t.ts), t.symbol) for t in trades])
    record_activity(cassandra, quotes_batch)
    commit_batch(context, kafka, quotes_batch)
    commit_batch(context, kafka, trades_batch)
    return dg.MaterializeResult(metadata=batch_metadata(written, quotes_batch, trades_batch))
