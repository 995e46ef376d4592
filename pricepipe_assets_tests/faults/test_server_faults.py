"""The real servers fail under a stream of work, and nothing is lost or doubled.

Each test stops or restarts a real server in the middle of the work, then compares Cassandra and
the lake with the source file row for row. They stop the shared local servers, so they restart
them before they end, whatever happens.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from infra.local import launcher
from pricepipe_assets.contract.topics import CANDLES_1M
from pricepipe_assets.defs.resources import CassandraResource, KafkaResource, LakeResource
from pricepipe_assets.kafka.publisher import Publisher
from pricepipe_assets.settings import Settings
from pricepipe_assets_tests.defs.test_pipeline import _assert_candles_equal_source
from pricepipe_assets_tests.support.kafka_reads import consume
from pricepipe_assets_tests.support.kafka_runs import CANDLE_DAY, definitions, drain, run_requested, tick
from pricepipe_assets_tests.support.lake_fill import real_minutes

CHUNKS = 3


@pytest.fixture
def layout(local_servers: None, settings: Settings) -> launcher.Layout:
    layout = launcher.Layout(settings.state_dir, settings.cache_dir)
    for name in ("kafka", "cassandra"):
        if not any(launcher.read_pid(layout, p) for p in launcher.SERVERS[name].processes):
            pytest.fail(f"{name} was not started by pricepipe's launcher here, so this test cannot stop it")
    return layout


@pytest.fixture
def restarts(layout: launcher.Layout) -> Iterator[None]:
    """Whatever the test did to the servers, they serve again afterwards."""
    yield
    down = [name for name in ("kafka", "cassandra") if not launcher.is_ready(launcher.SERVERS[name])]
    if down:
        launcher.up(down, layout, print)


def _publish(publisher: Publisher, candles: list, pause_s: float = 0.0) -> None:
    for candle in candles:
        publisher.publish(candle)
        if pause_s:
            time.sleep(pause_s)
    publisher.flush(timeout_s=180)


def test_cassandra_stopped_mid_stream_fails_runs_that_later_runs_catch_up_without_loss_or_double(
        layout: launcher.Layout, restarts: None, kafka: KafkaResource, cassandra: CassandraResource,
        local_lake: LakeResource, shared_data: Path, tmp_path: Path) -> None:
    candles = real_minutes(shared_data, tmp_path, "BTCUSDT", CANDLE_DAY, CANDLE_DAY)
    size = len(candles) // CHUNKS
    chunks = [candles[i * size:(i + 1) * size] for i in range(CHUNKS)]
    defs, instance, publisher = definitions(kafka, cassandra, local_lake), dg.DagsterInstance.ephemeral(), kafka.publisher()

    _publish(publisher, chunks[0])
    assert all(run.success for run in drain(defs, CANDLES_1M, kafka, instance))
    launcher.down(["cassandra"], layout, print)
    failed = []
    for chunk in chunks[1:]:
        _publish(publisher, chunk)
        outcome = tick(CANDLES_1M, kafka, instance)
        assert isinstance(outcome, dg.SensorResult)
        failed += [run_requested(defs, CANDLES_1M, request, instance, raise_on_error=False)
                   for request in outcome.run_requests]
    assert failed and not any(run.success for run in failed)

    launcher.up(["cassandra"], layout, print)
    assert all(run.success for run in drain(defs, CANDLES_1M, kafka, instance))
    _assert_candles_equal_source(cassandra, local_lake, shared_data)


def test_kafka_restarted_while_the_feed_produces_loses_nothing_and_doubles_nothing(
        layout: launcher.Layout, restarts: None, kafka: KafkaResource, cassandra: CassandraResource,
        local_lake: LakeResource, shared_data: Path, tmp_path: Path) -> None:
    candles = real_minutes(shared_data, tmp_path, "BTCUSDT", CANDLE_DAY, CANDLE_DAY)
    publisher = kafka.publisher()
    errors: list[BaseException] = []

    def produce() -> None:
        try:
            _publish(publisher, candles, pause_s=0.02)
        except BaseException as error:  # noqa: BLE001 - handed to the test thread
            errors.append(error)

    producer = threading.Thread(target=produce)
    producer.start()
    time.sleep(3)
    launcher.down(["kafka"], layout, print)
    launcher.up(["kafka"], layout, print)
    producer.join(timeout=300)
    assert not producer.is_alive() and errors == []
    assert publisher.undelivered == 0

    delivered = consume(kafka, CANDLES_1M, len(candles))
    assert len(delivered) == len(candles)
    assert len({m.value() for m in delivered}) == len(candles)
    assert all(run.success for run in drain(definitions(kafka, cassandra, local_lake), CANDLES_1M, kafka,
                                            dg.DagsterInstance.ephemeral()))
    _assert_candles_equal_source(cassandra, local_lake, shared_data)
