"""Reading a test's own topics back, to assert what reached Kafka exactly once."""

from __future__ import annotations

import time
import uuid
from typing import Any

from pricepipe_assets.defs.resources.kafka import KafkaResource


def consume(kafka: KafkaResource, topic: str, expected: int, timeout_s: float = 60) -> list[Any]:
    """Read ``expected`` messages of a contract topic from the beginning (fails if fewer arrive).

    Returns the confluent-kafka messages in arrival order, then checks for a short while that no
    message beyond ``expected`` is there, so "exactly once" can be asserted.
    """
    consumer = kafka.consumer(f"reader-{uuid.uuid4().hex[:8]}")
    consumer.subscribe([kafka.topic(topic)])
    messages: list[Any] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(messages) < expected and time.monotonic() < deadline:
            batch = consumer.consume(num_messages=10_000, timeout=1)
            messages += [m for m in batch if m.error() is None]
        assert len(messages) >= expected, f"{kafka.topic(topic)}: {len(messages)} of {expected} messages arrived"
        messages += [m for m in consumer.consume(num_messages=10_000, timeout=2) if m.error() is None]
    finally:
        consumer.close()
    return messages
