"""The one way sources put data on Kafka: validated records to their topics, everything else to
``deadletter`` with the reason, delivery confirmed before a source reports success."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from pricepipe_assets.contract import topics
from pricepipe_assets.contract.records import DeadLetter, Record, RecordError

if TYPE_CHECKING:
    from confluent_kafka import KafkaError, Message, Producer

R = TypeVar("R", bound=Record)
log = logging.getLogger(__name__)


class DeliveryError(RuntimeError):
    """Kafka did not confirm some messages; the message says how many and the first reason."""


class Publisher:
    """Wraps an idempotent producer: records keyed by symbol, refused input to the dead-letter topic.

    ``topic_prefix`` is put before every topic name (shared clusters, isolated tests).
    ``sent`` counts messages per topic, ``delivered`` those Kafka confirmed; ``flush`` raises
    :class:`DeliveryError` if any message failed, so a caller never reports data as published
    that is not in Kafka.

    A message that times out is not given up: a librdkafka producer can stay stuck after a broker
    restart (a produce answer naming no leader leaves the partition without one for good,
    confluentinc/librdkafka#5430), so the first timeout retires the producer, takes back what it
    still holds and sends all of it, in order, through a new one from ``new_producer``. Only a
    message the broker wrote without confirming it before the purge can appear twice; every
    consumer writes by key, so a repeat changes nothing downstream.
    """

    def __init__(self, new_producer: Callable[[], Producer], topic_prefix: str = "") -> None:
        self._new_producer = new_producer
        self._producer = new_producer()
        self.topic_prefix = topic_prefix
        self.sent: Counter[str] = Counter()
        self.delivered: Counter[str] = Counter()
        self.producer_restarts = 0
        self._failures: list[str] = []
        self._unsent: list[tuple[str, bytes | None, bytes | None]] = []
        self._oversized_letters: list[tuple[str, bytes | None, bytes | None]] = []
        self._lock = threading.Lock()

    def _on_delivery(self, error: KafkaError | None, message: Message) -> None:
        from confluent_kafka import KafkaError

        topic = str(message.topic())
        with self._lock:
            if error is None:
                self.delivered[topic] += 1
            elif error.code() in (KafkaError._MSG_TIMED_OUT, KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT):
                self._unsent.append((topic, message.key(), message.value()))
            elif error.code() == KafkaError.MSG_SIZE_TOO_LARGE and topic == self._dead_letter_topic:
                self._oversized_letters.append((topic, message.key(), message.value()))
            else:
                self._failures.append(f"{topic}: {error.str()}")

    def _send(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        while True:
            try:
                self._producer.produce(topic, value=value, key=key, on_delivery=self._on_delivery)
                return
            except BufferError:  # local queue full: let deliveries drain, then retry
                self._producer.poll(0.5)
                self._resend_if_stalled()

    @property
    def _dead_letter_topic(self) -> str:
        return self.topic_prefix + topics.DEADLETTER

    def _resend_if_stalled(self) -> None:
        """After a timeout, move everything the current producer still holds to a new one; send
        again without their raw bytes the dead letters the broker refused as too large."""
        with self._lock:
            oversized, self._oversized_letters = self._oversized_letters, []
        for topic, key, value in oversized:
            log.warning("Kafka refused a dead letter of %d bytes as too large; sending it without its raw bytes",
                        len(value or b""))
            self._send(topic, key, DeadLetter.from_json(value or b"").without_raw().to_json())
        if not self._unsent:
            return
        stalled = self._producer
        stalled.purge(in_queue=True, in_flight=True)
        stalled.flush(10)  # serves the purge reports, which put the rest in ``_unsent`` in order
        with self._lock:
            unsent, self._unsent = self._unsent, []
        log.warning("Kafka did not confirm %d message(s) in time; sending them again through a new producer",
                    len(unsent))
        self._producer = self._new_producer()
        self.producer_restarts += 1
        for topic, key, value in unsent:
            self._send(topic, key, value)

    def _produce(self, topic: str, key: str, value: bytes) -> None:
        topic = self.topic_prefix + topic
        self._send(topic, key.encode(), value)
        self.sent[topic] += 1
        self._producer.poll(0)
        self._resend_if_stalled()

    def publish(self, record: Record) -> None:
        """Send a record that is already valid (every parser in ``records`` returns only such)."""
        self._produce(record.topic, record.key, record.to_json())

    def dead_letter(self, source_topic: str, raw: bytes | str, error: str, partition: int | None = None,
                    offset: int | None = None) -> None:
        """Send refused input to ``deadletter``. A letter is never a reason to fail: one the
        producer refuses (a ``message.max.bytes`` below the letter's size) goes without its raw
        bytes, and so does one the broker refuses, from the delivery report on."""
        from confluent_kafka import KafkaException

        letter = DeadLetter.of(source_topic, raw, error, partition, offset)
        try:
            self._produce(letter.topic, letter.key, letter.to_json())
        except KafkaException as refused:
            if not letter.raw:
                raise
            log.warning("the producer refused a dead letter (%s); sending it without its raw bytes", refused)
            self._produce(letter.topic, letter.key, letter.without_raw().to_json())

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
        deadline = time.monotonic() + timeout_s
        while True:
            # len() counts what is queued, in flight or awaiting its delivery report: a stage that
            # published nothing in its batch skips the flush call.
            remaining = self._producer.flush(min(1.0, max(deadline - time.monotonic(), 0))) if len(self._producer) else 0
            if time.monotonic() >= deadline or not (remaining or self._unsent or self._oversized_letters):
                break
            self._resend_if_stalled()
        with self._lock:
            failures = self._failures + [f"{topic}: timed out" for topic, _, _ in self._unsent + self._oversized_letters]
        if remaining or failures:
            first = failures[0] if failures else "timed out"
            raise DeliveryError(f"{len(failures) + remaining} message(s) not delivered to Kafka (first: {first})")
