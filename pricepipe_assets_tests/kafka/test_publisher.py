"""What the publisher does when Kafka does not confirm messages in time or refuses a dead letter as too
large, against the real broker."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from pricepipe_assets.contract.records import DEAD_LETTER_RAW_BYTES, DeadLetter
from pricepipe_assets.contract.topics import ALL_TOPICS, CANDLES_1M, DEADLETTER
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


def test_a_dead_letter_of_any_size_is_delivered_with_its_first_64_kib(kafka: KafkaResource) -> None:
    raw = b"[" * 1_200_000
    publisher = kafka.publisher()

    publisher.dead_letter(kafka.topic(CANDLES_1M), raw, "not valid JSON", partition=1, offset=7)
    publisher.flush(timeout_s=30)

    [message] = consume(kafka, DEADLETTER, 1)
    letter = DeadLetter.from_json(message.value())
    assert (letter.source_offset, letter.size, letter.sha256) == (7, len(raw), hashlib.sha256(raw).hexdigest())
    assert letter.raw_bytes() == raw[:DEAD_LETTER_RAW_BYTES]


def test_a_dead_letter_the_producer_refuses_as_too_large_goes_without_its_raw_bytes(kafka: KafkaResource) -> None:
    publisher = kafka.publisher(**{"message.max.bytes": 10_000})

    publisher.dead_letter(kafka.topic(CANDLES_1M), b"x" * 50_000, "not valid JSON", partition=0, offset=1)
    publisher.flush(timeout_s=30)

    [message] = consume(kafka, DEADLETTER, 1)
    letter = DeadLetter.from_json(message.value())
    assert (letter.raw, letter.size, letter.error) == ("", 50_000, "not valid JSON")


def test_a_dead_letter_the_broker_refuses_as_too_large_goes_again_without_its_raw_bytes(
        kafka: KafkaResource) -> None:
    publisher = kafka.publisher()
    probes = _limit_message_bytes(kafka, DEADLETTER, 10_000)
    raw = os.urandom(50_000)  # incompressible: the broker judges the compressed batch

    publisher.dead_letter(kafka.topic(CANDLES_1M), raw, "not valid JSON", partition=0, offset=1)
    publisher.flush(timeout_s=30)

    [letter] = [DeadLetter.from_json(m.value()) for m in consume(kafka, DEADLETTER, probes + 1)[probes:]]
    assert (letter.raw, letter.size, letter.sha256) == ("", 50_000, hashlib.sha256(raw).hexdigest())
    assert publisher.undelivered == 0


def _limit_message_bytes(kafka: KafkaResource, topic: str, limit: int) -> int:
    """Set a topic's ``max.message.bytes`` and wait until the broker enforces it (a config change
    reaches the partition a moment after the request returns); returns the probes it accepted."""
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource

    admin = kafka.admin()
    resource = ConfigResource(ConfigResource.Type.TOPIC, kafka.topic(topic), incremental_configs=[
        ConfigEntry("max.message.bytes", str(limit), incremental_operation=AlterConfigOpType.SET)])
    for future in admin.incremental_alter_configs([resource]).values():
        future.result()
    producer, accepted = kafka.producer(), 0
    errors: list[object] = []
    for _ in range(50):
        producer.produce(kafka.topic(topic), os.urandom(limit * 2), on_delivery=lambda error, _: errors.append(error))
        producer.flush(10)
        if errors[-1] is not None:
            return accepted
        accepted += 1
        time.sleep(0.2)
    raise AssertionError(f"the broker never enforced max.message.bytes={limit}")
