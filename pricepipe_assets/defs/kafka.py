"""The `kafka` group: the topics of the data contract as assets (`kafka_topics`, in `ingestion`,
creates them).

Nothing materializes a topic: it is written by its producers and read by the assets fed from it,
and the graph shows exactly that (feeds and `binance_history` → topic → lake and live assets;
the models → `predictions` → `predictions_live`). Its state arrives as observations: each Kafka
sensor (`lake/sensors.py`) records the topic's end offsets and the lag of every asset that
consumes it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import dagster as dg

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
from pricepipe_assets.defs.exchanges import BINANCE_FEED, BITMEX_FEED, CANDLE_FILES, CCXT_FEED
from pricepipe_assets.kafka import batches as kafka_batches
from pricepipe_assets.kafka.batches import GroupOffsets
from pricepipe_assets.settings import Settings


def topic_key(topic: str) -> dg.AssetKey:
    """The asset of a contract topic (its name without the deployment's prefix)."""
    return dg.AssetKey(f"{topic.replace('.', '_')}_topic")


# What writes each topic: the feeds outside Dagster, and the assets that publish.
WRITERS: dict[str, tuple[dg.AssetKey, ...]] = {
    CANDLES_1M: (BINANCE_FEED, CCXT_FEED, dg.AssetKey("binance_history"), dg.AssetKey("trade_candles")),
    CANDLES_1H: (BINANCE_FEED, CANDLE_FILES),
    CANDLES_1D: (BINANCE_FEED, CCXT_FEED, CANDLE_FILES),
    TRADES: (BINANCE_FEED, BITMEX_FEED, CCXT_FEED),
    QUOTES: (BITMEX_FEED,),
    ORDERBOOK: (BINANCE_FEED, BITMEX_FEED, CCXT_FEED),
    PREDICTIONS: (dg.AssetKey("daily_forecast"), dg.AssetKey("minute_predictions")),
    # Every producer sends what the contract refuses here, and so do the readers of each topic.
    DEADLETTER: (BINANCE_FEED, BITMEX_FEED, CCXT_FEED, dg.AssetKey("binance_history"),
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


def definitions(settings: Settings) -> dg.Definitions:
    return dg.Definitions(assets=TOPICS)
