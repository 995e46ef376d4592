"""The live tables in Cassandra, fed from Kafka by sensor-driven runs; every write is idempotent.

What each table does with a batch is :mod:`pricepipe_assets.transforms.live_writes`; the assets
here read their share of the run's offset range, call it, and commit once it returned.
"""

# No `from __future__ import annotations` here: Dagster reads the context annotation at definition time.
import datetime as dt

import dagster as dg
from dagster import AssetExecutionContext

from pricepipe_assets.contract.records import CANDLE_TOPICS
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
from pricepipe_assets.defs.resources.cassandra import CassandraResource
from pricepipe_assets.defs.resources.kafka import KafkaResource
from pricepipe_assets.defs.topics import topic_key
from pricepipe_assets.storage.live_tables import UPSERT_TRADE, UPSERT_VENUE_CANDLE
from pricepipe_assets.transforms import live_writes

# A live table not written for 5 minutes warns, for 15 fails: its feed, sensor, Kafka or Cassandra
# has stopped. Dagster's daemon evaluates the policy on the clock (`freshness: enabled` in
# dagster.yaml), so a table that receives nothing, and so has no run, still turns stale in the UI.
LIVE_TABLE_FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=dt.timedelta(minutes=15),
                                                      warn_window=dt.timedelta(minutes=5))


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
        batch, rows = read_while_writing(context, kafka, config, topic, cassandra, UPSERT_VENUE_CANDLE,
                                         live_writes.candle_rows)
        live_writes.record_activity(cassandra, batch.records)
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
    batch, stored = read_while_writing(context, kafka, config, TRADES, cassandra, UPSERT_TRADE, live_writes.trade_rows)
    minutes = live_writes.minute_stats(cassandra, batch.records)
    live_writes.record_activity(cassandra, batch.records)
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
    hours = live_writes.hour_stats(cassandra, batch.records)
    commit_batch(context, kafka, batch)
    return dg.MaterializeResult(metadata=batch_metadata(hours, batch))


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
    written = live_writes.latest_prices(cassandra, [*quotes_batch.records, *books_batch.records,
                                                    *trades_batch.records])
    live_writes.record_activity(cassandra, quotes_batch.records)
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
    written, spreads = live_writes.order_books(cassandra, batch.records)
    live_writes.record_activity(cassandra, batch.records)
    commit_batch(context, kafka, batch)
    return dg.MaterializeResult(metadata={**batch_metadata(written, batch),
                                          "spread_by_symbol": dg.MetadataValue.json(spreads)})
