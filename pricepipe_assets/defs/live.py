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
from collections.abc import Iterable, Sequence
from typing import Any

import dagster as dg
from dagster import AssetExecutionContext

from pricepipe_assets.contract.records import CANDLE_TOPICS, INTERVAL_MS, Candle, OrderBook, Quote, Trade
from pricepipe_assets.contract.topics import ORDERBOOK, QUOTES, TRADES
from pricepipe_assets.defs.kafka_fed import (
    OffsetRangesConfig,
    batch_metadata,
    commit_batch,
    early_closed,
    read_batch,
    read_while_writing,
    run_topics,
)
from pricepipe_assets.defs.resources.cassandra import CassandraResource, cql_date
from pricepipe_assets.defs.resources.kafka import KafkaResource
from pricepipe_assets.defs.topics import topic_key
from pricepipe_assets.kafka.batches import Batch, Delivered
from pricepipe_assets.storage.cassandra_schema import candle_bucket
from pricepipe_assets.storage.live_tables import (
    UPDATE_LAST_TRADE,
    UPDATE_ORDER_BOOK,
    UPDATE_QUOTE,
    UPDATE_SYMBOL,
    UPSERT_TRADE,
    UPSERT_VENUE_CANDLE,
)
from pricepipe_assets.transforms.trade_stats import (
    HOUR_MS,
    distinct_trades,
    recompute_hours,
    recompute_minutes,
    touched_starts,
    utc_time,
)

DAY_MS = INTERVAL_MS["1d"]
# A live table not written for 5 minutes warns, for 15 fails: its feed, sensor, Kafka or Cassandra
# has stopped. Dagster's daemon evaluates the policy on the clock (`freshness: enabled` in
# dagster.yaml), so a table that receives nothing, and so has no run, still turns stale in the UI.
LIVE_TABLE_FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=dt.timedelta(minutes=15),
                                                      warn_window=dt.timedelta(minutes=5))


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


def record_activity(cassandra: CassandraResource, batch: Batch) -> None:
    """Advance each batch symbol's newest event time in `symbols` (the clock of the API and retention)."""
    newest: dict[str, Any] = {}
    for item in batch.records:
        record = item.record
        if record.symbol not in newest or record.event_time > newest[record.symbol].event_time:
            newest[record.symbol] = record
    cassandra.write_all(UPDATE_SYMBOL, [(r.event_time * 1000, r.exchange, utc_time(r.event_time), r.symbol)
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
    deps=["cassandra_schema", *(topic_key(topic) for topic in CANDLE_TOPICS.values())],
    freshness_policy=LIVE_TABLE_FRESHNESS,
    description="Candles from `candles.1m` (and the hourly and daily ones of `candles.1h` / `candles.1d`, e.g. an "
    "imported history) in Cassandra's `candles` table (one partition per symbol and day, month or year), upserted "
    "on (symbol, interval, open_time): the API's candle charts read it. `is_complete` is false for a candle the "
    "venue closed early (an outage); `early_closed` counts the batch's.",
)
def candles_live(context: AssetExecutionContext, config: OffsetRangesConfig, kafka: KafkaResource,
                 cassandra: CassandraResource) -> dg.MaterializeResult:
    batches, written = [], 0
    for topic in run_topics(config, list(CANDLE_TOPICS.values())):
        batch, rows = read_while_writing(context, kafka, config, topic, cassandra, UPSERT_VENUE_CANDLE, _candle_rows)
        record_activity(cassandra, batch)
        commit_batch(context, kafka, batch)
        batches.append(batch)
        written += rows
    return dg.MaterializeResult(metadata={**batch_metadata(written, *batches),
                                          "early_closed": sum(early_closed(batch) for batch in batches)})


@dg.asset(
    group_name="live",
    kinds={"kafka", "cassandra"},
    deps=["cassandra_schema", topic_key(TRADES)],
    freshness_policy=LIVE_TABLE_FRESHNESS,
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
    hours = recompute_hours(cassandra, touched_starts(((t.symbol, t.ts) for t in _trades(batch.records)), HOUR_MS))
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
    deps=["cassandra_schema", topic_key(QUOTES), topic_key(ORDERBOOK), topic_key(TRADES)],
    freshness_policy=LIVE_TABLE_FRESHNESS,
    description="Per symbol: the latest bid and ask (from `quotes`, and the best levels of `orderbook`, so Binance "
    "symbols have them too) and the last trade price (from `trades`), each with its event time, for the API's `/{symbol}/price`. Written with the event time as Cassandra write time, "
    "so an older event arriving late never overwrites a newer one.",
)
def latest_prices(context: AssetExecutionContext, config: OffsetRangesConfig, kafka: KafkaResource,
                  cassandra: CassandraResource) -> dg.MaterializeResult:
    quotes_batch = read_batch(context, kafka, config, QUOTES, dead_letter=True)
    books_batch = read_batch(context, kafka, config, ORDERBOOK)
    trades_batch = read_batch(context, kafka, config, TRADES)
    quotes = _newest_by_symbol(item.record for item in quotes_batch.records if isinstance(item.record, Quote))
    books = _newest_by_symbol(b for item in books_batch.records if isinstance(b := item.record, OrderBook) and b.bids
                              and b.asks)
    trades = _newest_by_symbol(_trades(trades_batch.records))
    written = cassandra.write_all(UPDATE_QUOTE, [
        (q.ts * 1000, q.exchange, q.bid, q.ask, utc_time(q.ts), q.symbol) for q in quotes])
    written += cassandra.write_all(UPDATE_QUOTE, [
        (b.ts * 1000, b.exchange, b.bids[0][0], b.asks[0][0], utc_time(b.ts), b.symbol) for b in books])
    written += cassandra.write_all(UPDATE_LAST_TRADE, [
        (t.ts * 1000, t.exchange, t.price, utc_time(t.ts), t.symbol) for t in trades])
    record_activity(cassandra, quotes_batch)
    commit_batch(context, kafka, quotes_batch)
    commit_batch(context, kafka, books_batch)
    commit_batch(context, kafka, trades_batch)
    return dg.MaterializeResult(metadata=batch_metadata(written, quotes_batch, books_batch, trades_batch))


@dg.asset(
    group_name="live",
    kinds={"kafka", "cassandra"},
    deps=["cassandra_schema", topic_key(ORDERBOOK)],
    freshness_policy=LIVE_TABLE_FRESHNESS,
    description="Per symbol: the latest order book from `orderbook` (the top PRICEPIPE_BOOK_DEPTH levels of each "
    "side, the venue's sequence and the event time) in Cassandra's `order_books`, one row per symbol, for the API's "
    "`/{symbol}/orderbook` and the chart page. Written with the event time as Cassandra write time, so a book "
    "arriving late never replaces a newer one. Bad messages are skipped (`order_books_lake` dead-letters them).",
)
def order_books_live(context: AssetExecutionContext, config: OffsetRangesConfig, kafka: KafkaResource,
                     cassandra: CassandraResource) -> dg.MaterializeResult:
    batch = read_batch(context, kafka, config, ORDERBOOK)
    books = _newest_by_symbol(item.record for item in batch.records if isinstance(item.record, OrderBook))
    written = cassandra.write_all(UPDATE_ORDER_BOOK, [
        (b.ts * 1000, b.exchange, b.ts, b.sequence, list(b.bids), list(b.asks), b.symbol) for b in books])
    record_activity(cassandra, batch)
    commit_batch(context, kafka, batch)
    spreads = {b.symbol: b.spread for b in books if b.spread is not None}
    return dg.MaterializeResult(metadata={**batch_metadata(written, batch),
                                          "spread_by_symbol": dg.MetadataValue.json(spreads)})
