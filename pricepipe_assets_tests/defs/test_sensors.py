"""Kafka sensors: a tick reads lag only, requests one run per range, retries a failed range, waits for a running one.
The analytics sensor follows new days of the lake's candles."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import dagster as dg

from pricepipe_assets.contract.records import Candle, Quote, Trade
from pricepipe_assets.contract.topics import CANDLES_1M, QUOTES, TRADES
from pricepipe_assets.defs.analytics import analytics_sensor
from pricepipe_assets.defs.exchanges import BINANCE_FEED, BITMEX_FEED, FEED_TOPICS, feeds_sensor
from pricepipe_assets.defs.kafka import topic_key
from pricepipe_assets.defs.lake.jobs import TOPIC_JOBS
from pricepipe_assets.defs.lake.sensors import RANGE_TAG, TOPIC_TAG, kafka_sensor
from pricepipe_assets.defs.resources import CassandraResource, KafkaResource, LakeResource
from pricepipe_assets.kafka.batches import parse_ranges
from pricepipe_assets_tests.support.kafka_runs import definitions, drain, publish_candles, run_requested, tick
from pricepipe_assets_tests.support.lake_fill import real_minutes, write_raw_candles


def test_lag_requests_one_run_keyed_by_its_offset_range_and_none_once_committed(
        kafka: KafkaResource, cassandra: CassandraResource, local_lake: LakeResource, shared_data: Path,
        tmp_path: Path) -> None:
    instance = dg.DagsterInstance.ephemeral()
    kafka.ensure_topics([CANDLES_1M])
    assert tick(CANDLES_1M, kafka, instance).skip_reason.skip_message == f"no lag on {CANDLES_1M}"

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
    assert not tick(CANDLES_1M, kafka, instance, cursor=result.cursor).run_requests


def test_the_lake_gathers_messages_while_they_arrive_until_a_file_is_full_or_the_first_waited_long_enough(
        kafka: KafkaResource, shared_data: Path, tmp_path: Path) -> None:
    instance = dg.DagsterInstance.ephemeral()

    def gathering_tick(cursor: str | None, wait_s: float = 3600) -> dg.SensorResult:
        context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"kafka": kafka})
        return kafka_sensor(CANDLES_1M, minimum_interval_seconds=1, batch_wait_s=wait_s)(context)

    def pending(request: dg.RunRequest) -> int:
        return sum(r.end - r.start for r in parse_ranges(request.run_key))

    publish_candles(kafka, shared_data, tmp_path)  # 1,440 candles, in one partition: no file full
    first = gathering_tick(None)
    assert not first.run_requests and "gather for the lake" in first.skip_reason.skip_message
    publish_candles(kafka, shared_data, tmp_path, dt.date(2024, 1, 2))
    second = gathering_tick(first.cursor)  # still arriving: still gathering, since the same moment
    assert not second.run_requests
    assert json.loads(second.cursor)["pending_since"] == json.loads(first.cursor)["pending_since"]
    (quiet,) = gathering_tick(second.cursor).run_requests  # nothing new since the last tick
    assert pending(quiet) == 2 * 1440
    assert not gathering_tick(None).run_requests
    (waited,) = gathering_tick(gathering_tick(None).cursor, wait_s=0).run_requests  # the first waited long enough
    assert pending(waited) == 2 * 1440

    for day in range(3, 9):
        publish_candles(kafka, shared_data, tmp_path, dt.date(2024, 1, day))
    (full,) = gathering_tick(None).run_requests  # 11,520 candles: the first file is complete
    assert pending(full) == 8 * 1440


def test_a_failed_range_is_requested_again_with_an_attempt_suffix(
        kafka: KafkaResource, local_lake: LakeResource, shared_data: Path, tmp_path: Path) -> None:
    instance = dg.DagsterInstance.ephemeral()
    publish_candles(kafka, shared_data, tmp_path)
    (first,) = tick(CANDLES_1M, kafka, instance).run_requests
    unwritable = tmp_path / "a-file-not-a-folder"
    unwritable.write_text("")
    failed = run_requested(definitions(kafka, CassandraResource(), LakeResource(uri=str(unwritable))), CANDLES_1M,
                           first, instance, raise_on_error=False)
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

    waiting = tick(CANDLES_1M, kafka, instance)
    assert not waiting.run_requests and waiting.skip_reason.skip_message == f"a run for {CANDLES_1M} is queued or running"


def test_each_tick_observes_the_topics_end_offsets_and_each_consumers_lag_when_they_change(
        kafka: KafkaResource, cassandra: CassandraResource, local_lake: LakeResource, shared_data: Path,
        tmp_path: Path) -> None:
    instance = dg.DagsterInstance.ephemeral()
    publish_candles(kafka, shared_data, tmp_path)
    first = tick(CANDLES_1M, kafka, instance)
    (observation,) = first.asset_events
    assert observation.asset_key == topic_key(CANDLES_1M)
    metadata = {name: value.value for name, value in observation.metadata.items()}
    assert metadata["messages_written"] == sum(metadata["end_offsets"].values()) == 1440
    assert metadata["lag candles_live"] == metadata["lag candles_lake"] == metadata["max_lag"] == 1440
    assert not tick(CANDLES_1M, kafka, instance, cursor=first.cursor).asset_events  # nothing changed

    assert all(run.success for run in drain(definitions(kafka, cassandra, local_lake), CANDLES_1M, kafka, instance))
    (caught_up,) = tick(CANDLES_1M, kafka, instance, cursor=first.cursor).asset_events
    assert caught_up.metadata["max_lag"].value == 0


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


def test_the_feeds_sensor_observes_each_feeds_newest_event_per_topic_and_symbol(kafka: KafkaResource) -> None:
    kafka.ensure_topics(FEED_TOPICS)
    publisher = kafka.publisher()
    candle = Candle("binance", "BTCUSDT", "1m", 1704067200000, 1704067259999, 42283.58, 42298.62, 42261.02, 42298.61,
                    35.92724, 1519032.2, 1327, True)
    for record in (candle, Trade("binance-cm", "BTCUSD_PERP", "1", 1704067230000, "sell", 2.0, 42000.0),
                   Trade("bitmex", "XBTUSD", "t-1", 1704067200123, "buy", 1.0, 42000.0),
                   Quote("bitmex", "XBTUSD", 1704067201000, 42000.0, 42000.5, 5.0, 7.0)):
        publisher.publish(record)
    publisher.flush()
    with dg.build_sensor_context(instance=dg.DagsterInstance.ephemeral(), resources={"kafka": kafka}) as context:
        result = feeds_sensor(context)
    observed = {event.asset_key: {k: v.value for k, v in event.metadata.items()} for event in result.asset_events}
    assert observed[BINANCE_FEED]["newest_event_time"] == "2024-01-01T00:00:59.999000+00:00"  # a candle's close
    assert observed[BINANCE_FEED]["newest_by_topic_and_symbol"] == {
        CANDLES_1M: {"BTCUSDT": "2024-01-01T00:00:59.999000+00:00"}, TRADES: {"BTCUSD_PERP": "2024-01-01T00:00:30+00:00"}}
    assert observed[BITMEX_FEED]["newest_by_topic_and_symbol"] == {
        TRADES: {"XBTUSD": "2024-01-01T00:00:00.123000+00:00"}, QUOTES: {"XBTUSD": "2024-01-01T00:00:01+00:00"}}
    assert observed[BITMEX_FEED]["messages_on_topics"] == {TRADES: 2, QUOTES: 1}
    with dg.build_sensor_context(instance=dg.DagsterInstance.ephemeral(), resources={"kafka": kafka},
                                 cursor=result.cursor) as context:
        assert not feeds_sensor(context).asset_events
