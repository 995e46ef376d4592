"""What each live table does with a batch of records from Kafka: the one write path of the live tables.

Every write is idempotent. Candles are upserted on their natural key. Trades are stored keyed by
(symbol, day) / (time, id), so a trade delivered twice or late is one row, and the statistics of
every minute a batch touched are rewritten from all of that minute's distinct trades (then the
touched hours from the minute rows): the numbers always equal a plain group-by of the distinct
trades, however often a batch is replayed (see :mod:`pricepipe_assets.transforms.trade_stats`).
Quotes, books and last trades are written with their event time as Cassandra's write time, so an
older event arriving late never overwrites a newer one.

The functions take decoded records, not offsets: whoever drives them reads Kafka, calls them, and
commits the offsets only once they returned.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pricepipe_assets.contract.records import INTERVAL_MS, Candle, OrderBook, Prediction, Quote, Trade
from pricepipe_assets.kafka.batches import Delivered
from pricepipe_assets.storage.cassandra import CassandraCluster, cql_date
from pricepipe_assets.storage.cassandra_schema import candle_bucket
from pricepipe_assets.storage.clock import UPDATE_SYMBOL
from pricepipe_assets.storage.live_tables import (
    SELECT_CLOSES,
    UPDATE_LAST_TRADE,
    UPDATE_ORDER_BOOK,
    UPDATE_QUOTE,
    UPSERT_MINUTE,
    UPSERT_TRADE,
)
from pricepipe_assets.storage.prediction_tables import (
    SELECT_ACTUALS,
    UPDATE_ACTUAL,
    UPSERT_FORECAST,
    UPSERT_MODEL_PREDICTION,
    UPSERT_PREDICTION,
)
from pricepipe_assets.transforms.trade_stats import (
    HOUR_MS,
    RecentMinutes,
    distinct_trades,
    minute_rows,
    recompute_hours,
    touched_starts,
    utc_time,
)

DAY_MS = INTERVAL_MS["1d"]
DAILY = "1d"
# The records a venue publishes, each of one symbol on one exchange.
VenueRecord = Candle | Trade | Quote | OrderBook
VENUE_RECORDS = (Candle, Trade, Quote, OrderBook)
Latest = TypeVar("Latest", bound=Quote | Trade | OrderBook)


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
            c.low, c.close, c.volume, c.quote_volume, c.trades, c.is_complete)


def early_closed(records: Iterable[Delivered]) -> int:
    """The distinct candles of a batch the venue closed early: each one marks an outage inside its
    interval, so a batch reports them beside its row count instead of leaving them to the gap check."""
    return len({(c.symbol, c.interval, c.open_time) for item in records
                if isinstance(c := item.record, Candle) and not c.is_complete})


def record_activity(cassandra: CassandraCluster, records: Iterable[Delivered]) -> None:
    """Advance each symbol's newest event time in `symbols` (the clock of the API and retention)."""
    newest: dict[str, VenueRecord] = {}
    for item in records:
        record = item.record
        if not isinstance(record, VENUE_RECORDS):
            raise TypeError(f"only a venue's records advance a symbol's clock, not a {type(record).__name__}")
        if record.symbol not in newest or record.event_time > newest[record.symbol].event_time:
            newest[record.symbol] = record
    cassandra.write_all(UPDATE_SYMBOL, [(r.event_time * 1000, r.exchange, utc_time(r.event_time), r.symbol)
                                        for r in newest.values()])


def _trades(records: Iterable[Delivered]) -> list[Trade]:
    return [item.record for item in records if isinstance(item.record, Trade)]


def candle_rows(records: Sequence[Delivered]) -> list[tuple[Any, ...]]:
    """One row per candle, its last delivery: the rows of a partition go in one batch, where
    Cassandra would settle two writes of the same row by their values, not by their order."""
    latest = {(c.symbol, c.interval, c.open_time): c for item in records if isinstance(c := item.record, Candle)}
    return [_candle_row(c) for c in latest.values()]


def trades_and_minutes(cassandra: CassandraCluster, records: Sequence[Delivered],
                       recent: RecentMinutes) -> tuple[int, int]:
    """Store the batch's distinct trades and rewrite the statistics of every minute they touch;
    returns the trades and the minutes written.

    The trades and minute rows of one (symbol, day) go in the same requests: both tables are
    partitioned by (symbol, day), so Cassandra applies them as one mutation, and a batch spread over
    500 symbols costs one request per symbol rather than two (see
    :mod:`pricepipe_assets.transforms.trade_stats` for why the statistics stay exact)."""
    trades = distinct_trades(_trades(records))
    rows, written = minute_rows(cassandra, trades.values(), recent)
    cassandra.write_together([(UPSERT_TRADE, [_trade_row(t) for t in trades.values()]), (UPSERT_MINUTE, rows)])
    recent.remember(written)
    return len(trades), len(rows)


def hour_stats(cassandra: CassandraCluster, records: Sequence[Delivered]) -> int:
    """Rewrite every hour the batch's trades touched from its minute rows; returns the hours written."""
    return recompute_hours(cassandra, touched_starts(((t.symbol, t.ts) for t in _trades(records)), HOUR_MS))


def _newest_by_symbol(records: Iterable[Latest]) -> list[Latest]:
    """Each symbol's record with the newest ``ts`` (the later delivery on a tie)."""
    newest: dict[str, Latest] = {}
    for record in records:
        if record.symbol not in newest or record.ts >= newest[record.symbol].ts:
            newest[record.symbol] = record
    return list(newest.values())


def latest_prices(cassandra: CassandraCluster, records: Iterable[Delivered]) -> int:
    """Each symbol's newest bid and ask (from quotes and the best levels of two-sided books) and
    last trade price in `latest_prices`; returns the rows written."""
    items = [item.record for item in records]
    quotes = _newest_by_symbol(r for r in items if isinstance(r, Quote))
    books = _newest_by_symbol(r for r in items if isinstance(r, OrderBook) and r.bids and r.asks)
    trades = _newest_by_symbol(r for r in items if isinstance(r, Trade))
    written = cassandra.write_all(UPDATE_QUOTE, [
        (q.ts * 1000, q.exchange, q.bid, q.ask, utc_time(q.ts), q.symbol) for q in quotes])
    written += cassandra.write_all(UPDATE_QUOTE, [
        (b.ts * 1000, b.exchange, b.bids[0][0], b.asks[0][0], utc_time(b.ts), b.symbol) for b in books])
    written += cassandra.write_all(UPDATE_LAST_TRADE, [
        (t.ts * 1000, t.exchange, t.price, utc_time(t.ts), t.symbol) for t in trades])
    return written


def order_books(cassandra: CassandraCluster, records: Iterable[Delivered]) -> tuple[int, dict[str, float]]:
    """Each symbol's newest book in `order_books`; returns the rows written and each book's spread."""
    books = _newest_by_symbol(item.record for item in records if isinstance(item.record, OrderBook))
    written = cassandra.write_all(UPDATE_ORDER_BOOK, [
        (b.ts * 1000, b.exchange, b.ts, b.sequence, list(b.bids), list(b.asks), b.symbol) for b in books])
    return written, {b.symbol: b.spread for b in books if b.spread is not None}


def resolve_actuals(cassandra: CassandraCluster, partitions: set[tuple[Any, ...]], table: str = "predictions") -> int:
    """Set ``actual`` on every prediction of the given partitions of ``table`` whose candle has closed since.

    Predictions and candles share their bucketing, so each partition (``symbol, horizon, bucket``,
    and ``model`` for `model_predictions`) is matched against exactly one candle partition.
    Returns the predictions resolved now.
    """
    select, update = SELECT_ACTUALS[table], UPDATE_ACTUAL[table]
    session = cassandra.session()
    updates = []
    for partition in partitions:
        symbol, horizon, bucket = partition[:3]
        pending = [row.target_time for row in session.execute(cassandra.prepare(select), partition)
                   if row.actual is None]
        if not pending:
            continue
        closes = {row.open_time: row.close for row in session.execute(cassandra.prepare(SELECT_CLOSES),
                                                                       (symbol, horizon, bucket))}
        updates += [(closes[t], *partition, t) for t in pending if t in closes]
    return cassandra.write_all(update, updates)


@dataclass(frozen=True)
class PredictionWrites:
    """What one batch of predictions wrote: rows of `predictions`, of `forecasts`, actuals resolved,
    and the predictions per model and horizon."""

    written: int
    forecasts: int
    resolved: int
    by_model: dict[str, int]


def predictions(cassandra: CassandraCluster, records: Iterable[Delivered]) -> PredictionWrites:
    """Every prediction in `predictions` (the newest of a candle wins) and per model in
    `model_predictions`, each daily forecast whole in `forecasts`, and the actual close of every
    touched partition's predictions whose candle is stored."""
    batch = [item.record for item in records if isinstance(item.record, Prediction)]
    written = cassandra.write_all(UPSERT_PREDICTION, [
        (p.symbol, p.horizon, candle_bucket(p.horizon, p.target_time), utc_time(p.target_time), utc_time(p.made_at),
         p.model, p.model_version, p.predicted, p.lower, p.upper) for p in batch])
    cassandra.write_all(UPSERT_MODEL_PREDICTION, [
        (p.symbol, p.horizon, candle_bucket(p.horizon, p.target_time), p.model, utc_time(p.target_time),
         utc_time(p.made_at), p.model_version, p.predicted, p.lower, p.upper) for p in batch])
    forecasts = cassandra.write_all(UPSERT_FORECAST, [
        (p.symbol, candle_bucket(DAILY, p.made_at), utc_time(p.made_at), utc_time(p.target_time), p.model,
         p.model_version, p.predicted, p.lower, p.upper, p.reason) for p in batch if p.horizon == DAILY])
    # The bucket before each target's too: the last candle of a day is resolved by the next day's run.
    touched = {(p.symbol, p.horizon, candle_bucket(p.horizon, t)) for p in batch
               for t in (p.target_time, p.target_time - INTERVAL_MS[p.horizon])}
    resolved = resolve_actuals(cassandra, touched)
    models: dict[tuple[str, str], set[str]] = defaultdict(set)
    for prediction in batch:
        models[prediction.symbol, prediction.horizon].add(prediction.model)
    resolve_actuals(cassandra, {(*part, model) for part in touched for model in models[part[:2]]}, "model_predictions")
    by_model: dict[str, int] = defaultdict(int)
    for prediction in batch:
        by_model[f"{prediction.model} ({prediction.horizon})"] += 1
    return PredictionWrites(written, forecasts, resolved, dict(by_model))
