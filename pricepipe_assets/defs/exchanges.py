"""The `exchanges` group: the feeds that write Kafka from outside Dagster, as assets.

`pricepipe feed` and `pricepipe import-candles` are processes of their own, so nothing in Dagster
materializes these assets; `feeds_sensor` observes them instead, recording what each has published
lately, read from the last message of every partition of the topics they write.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import dagster as dg

from pricepipe_assets.contract.records import Record
from pricepipe_assets.contract.topics import CANDLES_1M, ORDERBOOK, QUOTES, TRADES
from pricepipe_assets.contract.utc import utc_iso
from pricepipe_assets.defs.resources.kafka import KafkaResource
from pricepipe_assets.kafka import batches as kafka_batches
from pricepipe_assets.settings import Settings

# The feeds' observations are for people watching the UI: every half minute is often enough.
FEEDS_INTERVAL_S = 30

BINANCE_FEED = dg.AssetKey("binance_feed")
BITMEX_FEED = dg.AssetKey("bitmex_feed")
CCXT_FEED = dg.AssetKey("ccxt_feed")
CANDLE_FILES = dg.AssetKey("candle_files")

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
        CCXT_FEED, group_name="exchanges", kinds={"ccxt"},
        description="Any other venue CCXT supports: trades and order books of PRICEPIPE_CCXT_MARKETS published by "
        "`pricepipe feed --source ccxt`, 1m and 1d candles by `pricepipe backfill --source ccxt`. Observed by "
        "`feeds_sensor` (a Binance record counts for `binance_feed`, whichever client published it).",
    ),
    dg.AssetSpec(
        CANDLE_FILES, group_name="exchanges", kinds={"csv"},
        description="Candles kept as CSV files (a multi-year daily history exported elsewhere, in Binance's 12 kline "
        "columns or timestamp,open,high,low,close,volume), published by `pricepipe import-candles`.",
    ),
]


# The topics the feeds write, and the feed asset of each venue (a record's `exchange`); every other
# venue's records come through CCXT, named by CCXT's exchange id.
FEED_TOPICS = (CANDLES_1M, TRADES, QUOTES, ORDERBOOK)
FEED_OF_EXCHANGE = {"binance": BINANCE_FEED, "bitmex": BITMEX_FEED}



def feed_observations(newest: Mapping[str, list[Record]],
                      retained: Mapping[str, int]) -> tuple[list[dg.AssetObservation], str]:
    """Per feed: the newest event time of each of its symbols on each topic, and the messages each
    topic holds; with a signature, to record them only on change."""
    by_feed: dict[dg.AssetKey, dict[str, dict[str, int]]] = {}
    for topic, records in newest.items():
        for record in records:
            feed = FEED_OF_EXCHANGE.get(getattr(record, "exchange", "").split("-")[0], CCXT_FEED)  # binance-cm is Binance
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


@dg.sensor(
    name="feeds_sensor",
    minimum_interval_seconds=FEEDS_INTERVAL_S,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Records what the feeds outside Dagster (`pricepipe feed`) have published: an observation of "
    "`binance_feed`, `bitmex_feed` and `ccxt_feed` with the records on each topic and each symbol's newest event time, read "
    "from the last message of every partition.",
)
def feeds_sensor(context: dg.SensorEvaluationContext, kafka: KafkaResource) -> dg.SensorResult:
    tails = {topic: kafka_batches.newest_records(kafka, topic) for topic in FEED_TOPICS}
    events, signature = feed_observations({topic: records for topic, (records, _) in tails.items()},
                                          {topic: retained for topic, (_, retained) in tails.items()})
    if signature == context.cursor:
        return dg.SensorResult(skip_reason="the feeds published nothing new")
    return dg.SensorResult(asset_events=events, cursor=signature)


def definitions(settings: Settings) -> dg.Definitions:
    return dg.Definitions(assets=FEEDS, sensors=[feeds_sensor])
