"""One job per topic the lake keeps, which the topic's sensor launches: it takes a range of the
topic to every asset that reads it in runs, then the assets that follow them, and checks the
stream worker's tables fed by the same topic.

Which asset reads which topic is not written here: it is read off the Kafka-fed assets' own
dependencies on the topic assets, so a new Kafka-fed asset gets its job and sensor by declaring them.
"""

from __future__ import annotations

import dagster as dg

from pricepipe_assets.contract.topics import ALL_TOPICS, CANDLES_1M, ORDERBOOK
from pricepipe_assets.defs.kafka import topic_key
from pricepipe_assets.defs.lake.assets import KAFKA_FED
from pricepipe_assets.stream.stages import stage_assets


def topics_read(asset: dg.AssetsDefinition) -> list[str]:
    """The contract topics ``asset`` depends on, in the contract's order."""
    deps = asset.asset_deps[asset.key]
    return [topic for topic in ALL_TOPICS if topic_key(topic) in deps]


# Which assets consume which topic in sensor-driven runs (the lake, the history), each through its own
# consumer group (`pricepipe.<asset>`). The live tables are the stream worker's (`stream/stages.py`).
TOPIC_ASSETS: dict[str, tuple[str, ...]] = {
    topic: readers for topic in ALL_TOPICS
    if (readers := tuple(asset.key.to_user_string() for asset in KAFKA_FED if topic in topics_read(asset)))
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
_WORKER_ASSETS = stage_assets()
TOPIC_CONSUMERS: dict[str, tuple[str, ...]] = {
    topic: consumers for topic in ALL_TOPICS
    if (consumers := (*TOPIC_ASSETS.get(topic, ()), *_WORKER_ASSETS.get(topic, ())))
}


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
