"""One job per topic the lake keeps, selecting the assets that topic feeds in runs; the topic's sensor
launches it. And the analytics and retention jobs, which their schedules launch."""

from __future__ import annotations

import dagster as dg

from pricepipe_assets.contract.topics import (
    CANDLES_1D,
    CANDLES_1H,
    CANDLES_1M,
    ORDERBOOK,
    PREDICTIONS,
    QUOTES,
    TRADES,
)
from pricepipe_assets.stream.stages import stage_assets

# Which assets consume which topic in sensor-driven runs (the lake, the history), each through its own
# consumer group (`pricepipe.<asset>`). The live tables are the stream worker's (`stream/stages.py`).
TOPIC_ASSETS: dict[str, tuple[str, ...]] = {
    CANDLES_1M: ("candles_lake",),
    CANDLES_1H: ("candles_lake",),
    CANDLES_1D: ("candles_lake",),
    TRADES: ("trades_lake",),
    ORDERBOOK: ("order_books_lake",),
}

# Assets a topic's job runs after its Kafka-fed ones, without reading the topic themselves.
TOPIC_FOLLOWERS: dict[str, tuple[str, ...]] = {
    CANDLES_1M: ("minute_predictions",),
}

# The stream worker's tables whose checks a topic's job runs (the worker runs no check itself).
TOPIC_CHECKED: dict[str, tuple[str, ...]] = {
    CANDLES_1M: ("candles_live",),
    ORDERBOOK: ("order_books_live",),
}

# Every consumer of each topic, the runs' and the stream worker's: the lag its sensor observes.
TOPIC_CONSUMERS: dict[str, tuple[str, ...]] = {
    topic: (*TOPIC_ASSETS.get(topic, ()), *stage_assets().get(topic, ()))
    for topic in (CANDLES_1M, CANDLES_1H, CANDLES_1D, TRADES, QUOTES, ORDERBOOK, PREDICTIONS)
}

# Spark and retention runs take minutes; `dagster.yaml` lets at most one of them run at a time, so
# the live topics' runs always keep the other slots and a rollup never holds up ingest.
BATCH_LANE = {"pricepipe/lane": "batch"}


def job_name(topic: str) -> str:
    return f"{topic.replace('.', '_')}_job"


def topic_job(topic: str) -> dg.UnresolvedAssetJobDefinition:
    """The job that takes a range of ``topic`` to every asset it feeds in runs (and their checks), and
    checks the stream worker's tables it names."""
    return dg.define_asset_job(
        job_name(topic),
        selection=dg.AssetSelection.assets(*TOPIC_ASSETS[topic], *TOPIC_FOLLOWERS.get(topic, ()))
        | dg.AssetSelection.checks_for_assets(*TOPIC_CHECKED.get(topic, ())),
        description=f"Takes a range of Kafka offsets of `{topic}` (run config) to the lake.",
        executor_def=dg.in_process_executor,
    )


TOPIC_JOBS: dict[str, dg.UnresolvedAssetJobDefinition] = {topic: topic_job(topic) for topic in TOPIC_ASSETS}

analytics_job = dg.define_asset_job(
    "analytics_job",
    selection=dg.AssetSelection.groups("analytics", "ml") - dg.AssetSelection.assets(*TOPIC_FOLLOWERS[CANDLES_1M]),
    description="Rolls up the lake's history with Spark, rebuilds features, trains the models and publishes the "
    "15-day forecast. In one process, so every step shares one Spark session.",
    executor_def=dg.in_process_executor,
    tags=BATCH_LANE,
)

retention_job = dg.define_asset_job(
    "retention_job",
    selection=dg.AssetSelection.groups("retention"),
    description="Archives one expired day of every hot Cassandra table to the lake, then deletes it; compacts the "
    "day's raw files.",
    executor_def=dg.in_process_executor,
    tags=BATCH_LANE,
)
