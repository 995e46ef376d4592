"""The one way sources put data on Kafka: validated records to their topics, everything else to
``deadletter`` with the reason, delivery confirmed before a source reports success."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from pricepipe_assets import topics
from pricepipe_assets.records import DeadLetter, Record, RecordError

if TYPE_CHECKING:
    from confluent_kafka import KafkaError, Message, Producer

R = TypeVar("R", bound=Record)


class DeliveryError(RuntimeError):
    """Kafka did not confirm some messages; the message says how many and the first reason."""


class Publisher:
    """Wraps an idempotent producer: records keyed by symbol, refused input to the dead-letter topic.

    ``topic_prefix`` is put before every topic name (shared clusters, isolated tests).
    ``sent`` counts messages per topic, ``delivered`` those Kafka confirmed; ``flush`` raises
    :class:`DeliveryError` if any message failed, so a caller never reports data as published
    that is not in Kafka.
    """

    def __init__(self, producer: Producer, topic_prefix: str = "") -> None:
        self._producer = producer
        self.topic_prefix = topic_prefix
        self.sent: Counter[str] = Counter()
        self.delivered: Counter[str] = Counter()
        self._failures: list[str] = []
        self._lock = threading.Lock()

    def _on_delivery(self, error: KafkaError | None, message: Message) -> None:
        with self._lock:
            if error is not None:
                self._failures.append(f"{message.topic()}: {error.str()}")
            else:
                self.delivered[message.topic()] += 1

    def _produce(self, topic: str, key: str, value: bytes) -> None:
        topic = self.topic_prefix + topic
        while True:
            try:
                self._producer.produce(topic, value=value, key=key.encode(), on_delivery=self._on_delivery)
                break
            except BufferError:  # local queue full: let deliveries drain, then retry
                self._producer.poll(0.5)
        self.sent[topic] += 1
        self._producer.poll(0)

    def publish(self, record: Record) -> None:
        """Send a record that is already valid (every parser in ``records`` returns only such)."""
        self._produce(record.topic, record.key, record.to_json())

    def dead_letter(self, source_topic: str, raw: bytes | str, error: str, partition: int | None = None,
                    offset: int | None = None) -> None:
        letter = DeadLetter.of(source_topic, raw, error, partition, offset)
        self._produce(letter.topic, letter.key, letter.to_json())

    def offer(self, source_topic: str, raw: bytes | str, parse: Callable[[], R]) -> R | None:
        """Parse and publish, or dead-letter ``raw`` with the reason; never raises for bad input."""
        try:
            record = parse()
        except RecordError as error:
            self.dead_letter(source_topic, raw, str(error))
            return None
        self.publish(record)
        return record

    @property
    def undelivered(self) -> int:
        """Messages Kafka reported as failed so far (a long-running feed shows this in its status line)."""
        with self._lock:
            return len(self._failures)

    @property
    def dead_letters(self) -> int:
        return self.sent[self.topic_prefix + topics.DEADLETTER]

    def flush(self, timeout_s: float = 60) -> None:
        """Wait until Kafka confirmed everything sent so far; raise if anything failed or is still queued."""
        remaining = self._producer.flush(timeout_s)
        with self._lock:
            failures = list(self._failures)
        if remaining or failures:
            first = failures[0] if failures else "timed out"
            raise DeliveryError(f"{len(failures) + remaining} message(s) not delivered to Kafka (first: {first})")
