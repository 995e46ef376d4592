"""Test helpers: the stream worker's stages run in process until they have written what their topics hold."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import dagster as dg

from pricepipe_assets.cli.stream_reports import materializations
from pricepipe_assets.defs.resources import CassandraResource, KafkaResource
from pricepipe_assets.kafka import batches as kafka_batches
from pricepipe_assets.settings import Settings
from pricepipe_assets.stream import worker
from pricepipe_assets.stream.stages import STAGES, Stage, Stores


def stage_lag(kafka: KafkaResource, stage: Stage) -> int:
    """What the stage's slowest asset has not committed yet, over its topics."""
    return max(sum(kafka_batches.lag(kafka_batches.committed_and_watermarks(kafka, kafka.consumer_group(step.asset),
                                                                            topic))
                   for topic in stage.topics)
               for step in stage.steps)


def catch_up(kafka: KafkaResource, cassandra: CassandraResource, topics: Sequence[str], *,
             grace_s: int = Settings().trade_candle_grace_s, timeout_s: float = 180) -> list[dg.AssetMaterialization]:
    """Run the stages reading any of ``topics`` until none lags, then stop them; returns what they
    would have reported to Dagster (one materialization per asset that wrote)."""
    stages = [stage for stage in STAGES if set(stage.topics) & set(topics)]
    stop = threading.Event()
    started = worker.start(lambda: Stores(kafka, CassandraResource(**cassandra.model_dump()), kafka.publisher(),
                                          grace_s * 1000), stop, stages)
    deadline = time.monotonic() + timeout_s
    try:
        while any(stage_lag(kafka, stage) for stage in stages):
            assert time.monotonic() < deadline, f"the stream stages of {topics} still lag after {timeout_s:.0f} s"
            assert all(thread.is_alive() for _, thread in started), "a stream stage ended"
            time.sleep(0.2)
    finally:
        stop.set()
        for _, thread in started:
            thread.join(30)
    return [event for runner, _ in started for event in materializations(runner, runner.progress.take())]


def materialized(instance: dg.DagsterInstance, asset: str) -> dict[str, object]:
    """The metadata values of ``asset``'s latest materialization (the stream worker reports them)."""
    event = instance.get_latest_materialization_event(dg.AssetKey(asset))
    assert event is not None and event.asset_materialization is not None, f"{asset} was never materialized"
    return {name: value.value for name, value in event.asset_materialization.metadata.items()}
