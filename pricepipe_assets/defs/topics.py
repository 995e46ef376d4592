"""The Kafka topics of the data contract, and the feeds that write them from outside Dagster, as assets.

Nothing materializes them: a topic is written by its producers and read by the assets fed from
it, and the graph shows exactly that (feeds and `binance_history` → topic → lake and live assets;
the models → `predictions` → `predictions_live`). Their state arrives as observations: each Kafka
sensor records the topic's end offsets and the lag of every asset that consumes it, and
`feeds_sensor` records what the feeds have written lately.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import dagster as dg

from pricepipe_assets.contract.records import Record
from pricepipe_assets.contract.topics import (
    ALL_TOPICS,
    CANDLES_1D,
    CANDLES_1H,
    CANDLES_1M,
    DEADLETTER,
    ORDERBOOK,
    PREDICTIONS,
    QUOTES,
    TRADES,
)
from pricepipe_assets.contract.utc import utc_iso
from pricepipe_assets.kafka import batches as kafka_batches
from pricepipe_assets.kafka.batches import GroupOffsets

BINANCE_FEED = dg.AssetKey("binance_feed")
BITMEX_FEED = dg.AssetKey("bitmex_feed")
CANDLE_FILES = dg.AssetKey("candle_files")


def topic_key(topic: str) -> dg.AssetKey:
    """The asset of a contract topic (its name without the deployment's prefix)."""
    return dg.AssetKey(f"{topic.replace('.', '_')}_topic")


FEEDS = [
    dg.AssetSpec(
        BINANCE_FEED, group_name="exchanges", kinds={"binance"},
        description="Binance market data published by `pricepipe feed` (a process of its own, started by "
        "`pricepipe run`): the kline WebSocket with REST gap fill and the diff depth stream synced with REST snapshots "
        "(order books) when Binance answers, otherwise real history from "
        "the dumps replayed at pace, with a day of aggTrades; `pricepipe backfill` publishes dumps too. Observed by "
        "`feeds_sensor`: records per topic and the newest event time.",
    ),
    dg.AssetSpec(
        BITMEX_FEED, group_name="exchanges", kinds={"bitmex"},
        description="BitMEX trades, quotes and order books from its realtime WebSocket, published by `pricepipe feed`. Observed by "
        "`feeds_sensor`.",
    ),
    dg.AssetSpec(
        CANDLE_FILES, group_name="exchanges", kinds={"csv"},
        description="Candles kept as CSV files (a multi-year daily history exported elsewhere, in Binance's 12 kline "
        "columns or timestamp,open,high,low,close,volume), published by `pricepipe import-candles`.",
    ),
]

# What writes each topic: the feeds outside Dagster, and the assets that publish.
WRITERS: dict[str, tuple[dg.AssetKey, ...]] = {
    CANDLES_1M: (BINANCE_FEED, dg.AssetKey("binance_history"), dg.AssetKey("trade_candles")),
    CANDLES_1H: (BINANCE_FEED, CANDLE_FILES),
    CANDLES_1D: (BINANCE_FEED, CANDLE_FILES),
    TRADES: (BINANCE_FEED, BITMEX_FEED),
    QUOTES: (BITMEX_FEED,),
    ORDERBOOK: (BINANCE_FEED, BITMEX_FEED),
    PREDICTIONS: (dg.AssetKey("daily_forecast"), dg.AssetKey("minute_predictions")),
    # Every producer sends what the contract refuses here, and so do the readers of each topic.
    DEADLETTER: (BINANCE_FEED, BITMEX_FEED, dg.AssetKey("binance_history"),
                 *(topic_key(t) for t in (CANDLES_1M, TRADES, QUOTES, ORDERBOOK, PREDICTIONS))),
}

DESCRIPTIONS: dict[str, str] = {
    CANDLES_1M: "1m candles, one JSON record per closed candle, keyed by symbol.",
    CANDLES_1H: "Hourly candles published by `pricepipe backfill --interval 1h` or `pricepipe import-candles`.",
    CANDLES_1D: "Daily candles (e.g. a multi-year history) published by `pricepipe backfill --interval 1d` or "
    "`pricepipe import-candles`.",
    TRADES: "Trades of every venue, keyed by symbol.",
    QUOTES: "Best bid and ask updates (BitMEX), keyed by symbol.",
    ORDERBOOK: "The top levels of each symbol's order book (Binance depth kept in sync with its REST snapshot, BitMEX "
    "`orderBookL2_25`), at most one per symbol per `PRICEPIPE_BOOK_PUBLISH_S`, keyed by symbol.",
    PREDICTIONS: "Forecasts of the daily and minute models, with their 90 % intervals.",
    DEADLETTER: "Messages the contract refused, each with the reason and its origin (topic, partition, offset).",
}

TOPICS = [
    dg.AssetSpec(topic_key(topic), group_name="kafka", kinds={"kafka"}, deps=[*WRITERS[topic], "kafka_topics"],
                 description=f"Kafka topic `{topic}`: {DESCRIPTIONS[topic]} Observed by its sensor: end offsets per "
                 "partition and each consuming asset's lag.")
    for topic in ALL_TOPICS
]

# The topics the feeds write, and the feed asset of each venue (a record's `exchange`).
FEED_TOPICS = (CANDLES_1M, TRADES, QUOTES, ORDERBOOK)
FEED_OF_EXCHANGE = {"binance": BINANCE_FEED, "bitmex": BITMEX_FEED}


def topic_observation(topic: str, offsets_by_asset: Mapping[str, GroupOffsets]) -> tuple[dg.AssetObservation, str]:
    """What a topic's sensor saw: end offsets per partition and each consuming asset's lag (also one
    number per asset, so the UI plots it over time); and a signature, to record it only on change."""
    ends = {partition: high for offsets in offsets_by_asset.values() for partition, (_, _, high) in offsets.items()}
    lags = {asset: kafka_batches.lag(offsets) for asset, offsets in offsets_by_asset.items()}
    metadata: dict[str, dg.JsonMetadataValue | int] = {
        "end_offsets": dg.MetadataValue.json({str(p): ends[p] for p in sorted(ends)}),
        "messages_written": sum(ends.values()),
        "max_lag": max(lags.values(), default=0),
        **{f"lag {asset}": value for asset, value in lags.items()},
    }
    return dg.AssetObservation(asset_key=topic_key(topic), metadata=metadata), json.dumps([ends, lags], sort_keys=True)


def feed_observations(newest: Mapping[str, list[Record]],
                      retained: Mapping[str, int]) -> tuple[list[dg.AssetObservation], str]:
    """Per feed: the newest event time of each of its symbols on each topic, and the messages each
    topic holds; with a signature, to record them only on change."""
    by_feed: dict[dg.AssetKey, dict[str, dict[str, int]]] = {}
    for topic, records in newest.items():
        for record in records:
            feed = FEED_OF_EXCHANGE.get(getattr(record, "exchange", "").split("-")[0])  # binance-cm is Binance
            if feed is not None:
                times = by_feed.setdefault(feed, {}).setdefault(topic, {})
                times[record.key] = max(times.get(record.key, 0), record.event_time)
    events = []
    for feed, topics in sorted(by_feed.items()):
        newest_ms = max(ms for times in topics.values() for ms in times.values())
        events.append(dg.AssetObservation(asset_key=feed, metadata={
            "newest_event_time": utc_iso(newest_ms),
            "newest_by_topic_and_symbol": dg.MetadataValue.json(
                {topic: {symbol: utc_iso(ms) for symbol, ms in sorted(times.items())} for topic, times in topics.items()}),
            "messages_on_topics": dg.MetadataValue.json({topic: retained.get(topic, 0) for topic in topics}),
        }))
    signature = json.dumps([{feed.to_user_string(): topics for feed, topics in by_feed.items()}, retained], sort_keys=True)
    return events, signature
