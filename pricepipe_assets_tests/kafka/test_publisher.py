"""What the publisher does when Kafka does not confirm messages in time, against the real broker."""

from __future__ import annotations

from pathlib import Path

import pytest

from pricepipe_assets.contract.topics import ALL_TOPICS, CANDLES_1M
from pricepipe_assets.defs.resources import KafkaResource
from pricepipe_assets.kafka.publisher import DeliveryError, Publisher
from pricepipe_assets_tests.support.kafka_reads import consume
from pricepipe_assets_tests.support.kafka_runs import CANDLE_DAY
from pricepipe_assets_tests.support.lake_fill import real_minutes

NOWHERE = {"bootstrap.servers": "127.0.0.1:1", "message.timeout.ms": 1_000}


def test_messages_a_stalled_producer_timed_out_go_again_through_a_new_one_once_each_in_order(
        kafka: KafkaResource, shared_data: Path, tmp_path: Path) -> None:
    candles = real_minutes(shared_data, tmp_path, "BTCUSDT", CANDLE_DAY, CANDLE_DAY)[:200]
    producers = iter([kafka.producer(**NOWHERE), kafka.producer()])
    kafka.ensure_topics(ALL_TOPICS)
    publisher = Publisher(lambda: next(producers), kafka.topic_prefix)

    for candle in candles:
        publisher.publish(candle)
    publisher.flush(timeout_s=60)

    assert publisher.producer_restarts == 1 and publisher.undelivered == 0
    delivered = consume(kafka, CANDLES_1M, len(candles))
    assert [m.value() for m in delivered] == [c.to_json() for c in candles]


def test_messages_kafka_never_confirms_fail_the_flush_by_its_deadline(kafka: KafkaResource, shared_data: Path,
                                                                      tmp_path: Path) -> None:
    candles = real_minutes(shared_data, tmp_path, "BTCUSDT", CANDLE_DAY, CANDLE_DAY)[:20]
    publisher = Publisher(lambda: kafka.producer(**NOWHERE), kafka.topic_prefix)

    for candle in candles:
        publisher.publish(candle)
    with pytest.raises(DeliveryError, match="20 message"):
        publisher.flush(timeout_s=4)
    assert publisher.producer_restarts >= 1
