"""Kafka sensors: a tick reads lag only, requests one run per range, retries a failed range, waits for a running one.
The analytics sensor follows new days of the lake's candles."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import dagster as dg

from pricepipe_assets.jobs import TOPIC_JOBS
from pricepipe_assets.kafka_batches import parse_ranges
from pricepipe_assets.resources import CassandraResource, KafkaResource, LakeResource
from pricepipe_assets.sensors import RANGE_TAG, TOPIC_TAG, analytics_sensor
from pricepipe_assets.topics import CANDLES_1M
from pricepipe_assets_tests.assets.kafka_runs import definitions, publish_candles, run_requested, tick
from pricepipe_assets_tests.assets.lake_fill import real_minutes, write_raw_candles


def test_lag_requests_one_run_keyed_by_its_offset_range_and_none_once_committed(
        kafka: KafkaResource, cassandra: CassandraResource, local_lake: LakeResource, shared_data: Path,
        tmp_path: Path) -> None:
    instance = dg.DagsterInstance.ephemeral()
    kafka.ensure_topics([CANDLES_1M])
    assert isinstance(tick(CANDLES_1M, kafka, instance), dg.SkipReason)

    assert publish_candles(kafka, shared_data, tmp_path) == 1440
    result = tick(CANDLES_1M, kafka, instance, cursor=None)
    assert isinstance(result, dg.SensorResult)
    (request,) = result.run_requests
    ranges = parse_ranges(request.run_key)
    assert all(r.topic == CANDLES_1M and r.start == 0 for r in ranges)
    assert sum(r.end - r.start for r in ranges) == 1440  # every candle of the day is keyed by BTCUSDT
    assert json.loads(result.cursor)["run_key"] == request.run_key
    assert request.tags == {TOPIC_TAG: CANDLES_1M, RANGE_TAG: request.run_key, "dagster/max_runtime": "900"}

    assert run_requested(definitions(kafka, cassandra, local_lake), CANDLES_1M, request, instance).success
    assert isinstance(tick(CANDLES_1M, kafka, instance, cursor=result.cursor), dg.SkipReason)


def test_a_failed_range_is_requested_again_with_an_attempt_suffix(
        kafka: KafkaResource, local_lake: LakeResource, shared_data: Path, tmp_path: Path) -> None:
    instance = dg.DagsterInstance.ephemeral()
    publish_candles(kafka, shared_data, tmp_path)
    (first,) = tick(CANDLES_1M, kafka, instance).run_requests
    unreachable = CassandraResource(hosts=["127.0.0.1"], port=1, keyspace="nowhere")
    failed = run_requested(definitions(kafka, unreachable, local_lake), CANDLES_1M, first, instance,
                           raise_on_error=False)
    assert not failed.success

    (again,) = tick(CANDLES_1M, kafka, instance).run_requests
    assert again.run_key == f"{first.run_key}#attempt2"
    assert again.run_config == first.run_config


def test_no_second_run_while_one_is_queued_or_running(kafka: KafkaResource, shared_data: Path,
                                                      tmp_path: Path) -> None:
    instance = dg.DagsterInstance.ephemeral()
    publish_candles(kafka, shared_data, tmp_path)
    (request,) = tick(CANDLES_1M, kafka, instance).run_requests
    defs = definitions(kafka, CassandraResource(), LakeResource(uri=str(tmp_path)))
    job = defs.resolve_job_def(TOPIC_JOBS[CANDLES_1M].name)
    instance.create_run_for_job(job, run_config=request.run_config, tags=request.tags)

    assert isinstance(tick(CANDLES_1M, kafka, instance), dg.SkipReason)


def test_the_analytics_sensor_runs_once_per_new_day_of_candles_in_the_lake(
        local_lake: LakeResource, shared_data: Path, tmp_path: Path) -> None:
    candles = real_minutes(shared_data, tmp_path, "BTCUSDT", dt.date(2024, 1, 1), dt.date(2024, 1, 2))
    write_raw_candles(local_lake, candles[:1440])
    with dg.instance_for_test() as instance:
        def tick(cursor: str | None) -> dg.SensorResult | dg.SkipReason:
            with dg.build_sensor_context(instance=instance, cursor=cursor, resources={"lake": local_lake}) as context:
                return analytics_sensor(context)

        first = tick(None)
        assert isinstance(first, dg.SensorResult) and len(first.run_requests) == 1
        assert isinstance(tick(first.cursor), dg.SkipReason)
        write_raw_candles(local_lake, candles)
        second = tick(first.cursor)
        assert isinstance(second, dg.SensorResult) and second.cursor == "2 days up to 2024-01-02"
