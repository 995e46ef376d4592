"""The live tables in Cassandra: assets of the graph that the stream worker writes and Dagster observes.

`pricepipe stream` (a long-lived process, started by `pricepipe run`) writes them as records
arrive, through :mod:`pricepipe_assets.transforms.live_writes`, and reports a materialization of
each at most every ``PRICEPIPE_STREAM_REPORT_S`` (Dagster's way of observing a streaming process).
Nothing in Dagster runs them: the freshness policy turns a table stale when the worker, its feed,
Kafka or Cassandra stops, and the Kafka sensors keep recording each one's lag on its topics. The
checks here (OHLC invariants, order books a reader can trust) run in the topic jobs' runs.
"""

# No `from __future__ import annotations` here: Dagster reads the context annotation at definition time.

import datetime as dt
from typing import Any

import dagster as dg

from pricepipe_assets.contract.records import INTERVAL_MS, OrderBook, RecordError
from pricepipe_assets.contract.topics import CANDLES_1M
from pricepipe_assets.defs.kafka import topic_key
from pricepipe_assets.defs.metadata import Materialized, touched_by_latest
from pricepipe_assets.defs.resources.cassandra import CassandraResource
from pricepipe_assets.settings import Settings
from pricepipe_assets.storage.cassandra_schema import MIGRATIONS
from pricepipe_assets.storage.live_tables import all_order_books, day_minute_candles
from pricepipe_assets.stream.stages import TRADE_CANDLES, stage_topics
from pricepipe_assets.transforms.trade_candles import KLINE_EXCHANGES

MINUTE_MS = INTERVAL_MS["1m"]
SHOWN_AT_MOST = 50
# A live table not written for 5 minutes warns, for 15 fails: its feed, the stream worker, Kafka or
# Cassandra has stopped. Dagster's daemon evaluates the policy on the clock (`freshness: enabled`
# in dagster.yaml), so a table that receives nothing still turns stale in the UI.
LIVE_TABLE_FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=dt.timedelta(minutes=15),
                                                      warn_window=dt.timedelta(minutes=5))
WRITTEN_BY = "Written by the stream worker (`pricepipe stream`) as records arrive."

DESCRIPTIONS = {
    "candles_live": "Candles from `candles.1m` (and the hourly and daily ones of `candles.1h` / `candles.1d`, e.g. an "
    "imported history) in Cassandra's `candles` table (one partition per symbol and day, month or year), upserted on "
    "(symbol, interval, open_time): the API's candle charts read it. `is_complete` is false for a candle the venue "
    "closed early (an outage).",
    "trade_stats_minute": "Per symbol and minute: trade count, base and quote volume, buy and sell volume, VWAP and "
    "last price (`trade_stats_minute`, one partition per symbol and day). Trades are first stored in `trades` (keyed "
    "by time and id, so duplicates and late trades are harmless), then every minute a batch touched is rewritten "
    "from all its distinct trades.",
    "trade_stats_hour": "Per symbol and hour: the same statistics as `trade_stats_minute`, summed from its minute "
    "rows (`trade_stats_hour`, one partition per symbol and month), for the API's 6- and 12-hour views; written "
    "after the minutes of the same batch.",
    TRADE_CANDLES: f"1m candles built from `trades` and published to `{CANDLES_1M}` (OHLC, volume, quote volume, "
    "trade count of the minute's distinct trades) for every trade whose `exchange` has no kline source in pricepipe, "
    f"i.e. is not {', '.join(f'`{name}`' for name in sorted(KLINE_EXCHANGES))}: BitMEX, the futures aggTrades replay "
    "(BTCUSD_PERP in the demo). A minute is published once the symbol's newest trade is PRICEPIPE_TRADE_CANDLE_GRACE_S "
    "past its end; a late trade republishes its minute, amended, from the stored trades; each symbol's newest trade "
    "time is committed with the offsets.",
    "latest_prices": "Per symbol: the latest bid and ask (from `quotes`, and the best levels of `orderbook`, so "
    "Binance symbols have them too) and the last trade price (from `trades`), each with its event time, for the "
    "API's `/{symbol}/price`. Written with the event time as Cassandra write time, so an older event arriving late "
    "never overwrites a newer one. Bad messages of `quotes` go to `deadletter`.",
    "order_books_live": "Per symbol: the latest order book from `orderbook` (the top PRICEPIPE_BOOK_DEPTH levels of "
    "each side, the venue's sequence and the event time) in Cassandra's `order_books`, one row per symbol, for the "
    "API's `/{symbol}/orderbook` and the chart page, with the event time as Cassandra write time.",
    "predictions_live": "Predictions from the `predictions` topic in Cassandra: every forecast candle in "
    "`predictions` (the newest prediction of a candle wins) with the actual close filled in once that candle is "
    "stored, the same per model in `model_predictions` (for `/predictions?model=`), and each daily forecast kept "
    "whole in `forecasts` for `/forecast`. Bad messages go to `deadletter`.",
}
# Tables written after another one from the same records, which they read back.
AFTER = {"trade_stats_hour": "trade_stats_minute", TRADE_CANDLES: "trade_stats_minute"}
# Tables whose writes do not follow the feeds minute by minute: the hours follow the minute rows,
# trade_candles publishes rather than keeps a table, predictions come when the models run.
WITHOUT_FRESHNESS = {"trade_stats_hour", TRADE_CANDLES, "predictions_live"}

LIVE_TABLES = [
    dg.AssetSpec(
        asset, group_name="live", kinds={"kafka", "cassandra"},
        deps=["cassandra_schema", *(topic_key(topic) for topic in topics), *([AFTER[asset]] if asset in AFTER else [])],
        freshness_policy=None if asset in WITHOUT_FRESHNESS else LIVE_TABLE_FRESHNESS,
        description=f"{DESCRIPTIONS[asset]} {WRITTEN_BY}",
    )
    for asset, topics in stage_topics().items()
]


@dg.asset(
    group_name="live",
    kinds={"cassandra"},
    description="pricepipe's Cassandra keyspace and tables, brought to the newest schema version by idempotent "
    "migrations (the same ones every process applies on its first connection). An asset rather than start-up code "
    "so the UI shows when the schema was last ensured and what changed.",
)
def cassandra_schema(cassandra: CassandraResource) -> Materialized:
    applied = cassandra.migrate()
    return dg.MaterializeResult(
        metadata={
            "keyspace": cassandra.keyspace,
            "schema_version": cassandra.schema_version(),
            "latest_known_version": MIGRATIONS[-1].version,
            "applied_now": dg.MetadataValue.json([f"{m.version}: {m.description}" for m in applied]),
        }
    )


def ohlc_violations(row: Any) -> list[str]:
    """Why a stored candle breaks the contract (empty when it does not); open outside [low, high] is a
    known quirk, an early close real data. A null ``is_complete`` is a row stored before the column
    existed, when only full candles were accepted, so it means true."""
    problems = []
    if min(row.open, row.high, row.low, row.close) <= 0:
        problems.append("non-positive price")
    if row.high < row.low:
        problems.append("high < low")
    if not row.low <= row.close <= row.high:
        problems.append("close outside [low, high]")
    duration = row.close_time - row.open_time
    if not dt.timedelta(0) <= duration <= dt.timedelta(milliseconds=MINUTE_MS - 1):
        problems.append("close_time outside [open_time, open_time + 59.999 s]")
    elif (duration == dt.timedelta(milliseconds=MINUTE_MS - 1)) != (row.is_complete is not False):
        problems.append("is_complete disagrees with close_time")
    return problems


@dg.asset_check(asset="candles_live", description="Every 1m candle of the days the latest batch touched has "
                "positive prices, high >= low, close within [low, high] and a close time within its minute that "
                "agrees with `is_complete` (open outside [low, high] and early closes are real data, counted but "
                "accepted).")
def candles_live_ohlc(context: dg.AssetCheckExecutionContext, cassandra: CassandraResource) -> dg.AssetCheckResult:
    symbols, days = touched_by_latest(context.instance, "candles_live")
    checked, bad, quirks, early = 0, [], 0, 0
    for symbol in symbols:
        for day in days:
            for row in day_minute_candles(cassandra, symbol, dt.date.fromisoformat(day)):
                checked += 1
                quirks += not row.low <= row.open <= row.high
                early += row.is_complete is False
                problems = ohlc_violations(row)
                if problems:
                    bad.append(f"{symbol} {row.open_time.isoformat()}: {', '.join(problems)}")
    return dg.AssetCheckResult(passed=not bad, metadata={
        "candles_checked": checked, "violations": len(bad), "open_outside_low_high": quirks, "early_closed": early,
        "examples": dg.MetadataValue.json(bad[:SHOWN_AT_MOST]), "days": dg.MetadataValue.json(days)})


@dg.asset_check(asset="order_books_live", description="Every stored book (one row per symbol) is one the contract "
                "accepts: levels best first, positive prices and sizes, not crossed; and each side holds at least one "
                "level when the other does not.")
def order_books_live_valid(cassandra: CassandraResource) -> dg.AssetCheckResult:
    rows = all_order_books(cassandra)
    bad = {}
    for row in rows:
        ts = int(row.ts.replace(tzinfo=dt.UTC).timestamp() * 1000)
        try:
            OrderBook(row.exchange, row.symbol, ts, row.sequence, tuple(map(tuple, row.bids or ())),
                      tuple(map(tuple, row.asks or ()))).check()
        except RecordError as error:
            bad[row.symbol] = str(error)
    spreads = {row.symbol: row.asks[0][0] - row.bids[0][0] for row in rows if row.bids and row.asks}
    return dg.AssetCheckResult(passed=not bad, metadata={
        "books_checked": len(rows), "violations": dg.MetadataValue.json(bad), "spread_by_symbol":
        dg.MetadataValue.json(spreads)})


def definitions(settings: Settings) -> dg.Definitions:
    return dg.Definitions(assets=[cassandra_schema, *LIVE_TABLES],
                          asset_checks=[candles_live_ohlc, order_books_live_valid])
