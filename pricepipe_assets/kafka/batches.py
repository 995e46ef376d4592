"""Reading a fixed offset range of Kafka topics, and committing a consumer group's progress.

Sensors decide *which* offsets a run covers; runs read exactly that range (assign + seek, never
subscribe, so no group rebalance can move a partition away mid-run), write, and only then commit.
Because the range is fixed before the run starts, a replay of the same run reads the same
messages, which is what makes the writes behind it idempotent.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pricepipe_assets.contract.records import Record, RecordError, decode

if TYPE_CHECKING:
    from confluent_kafka import Consumer, Message

    from pricepipe_assets.kafka.client import KafkaCluster
    from pricepipe_assets.kafka.publisher import Publisher

# Offsets Kafka reports for "no committed offset yet" (OFFSET_INVALID) are negative.
NO_OFFSET = 0
METADATA_TIMEOUT_S = 5.0
# A partition that delivers nothing for this long while offsets remain is an error, not an end.
IDLE_TIMEOUT_S = 30.0
POLL_BATCH = 5_000


# Per partition: a group's committed offset (None before its first commit), low and high watermark.
GroupOffsets = dict[int, tuple[int | None, int, int]]


class KafkaReadError(RuntimeError):
    """The broker did not deliver the requested range in time; the run fails and is retried."""


@dataclass(frozen=True, order=True)
class OffsetRange:
    """Offsets ``[start, end)`` of one partition of a contract topic (name without the prefix).

    ``unread_from`` is where the reading group's own progress stood when a range starts earlier
    (a lake file's block read again whole): the bad messages before it were dead-lettered when they
    were first read, so they are neither sent nor counted again. It is not part of the text form.
    """

    topic: str
    partition: int
    start: int
    end: int
    unread_from: int | None = field(default=None, compare=False)

    def __str__(self) -> str:
        return f"{self.topic}:{self.partition}:{self.start}-{self.end}"

    @classmethod
    def parse(cls, text: str) -> OffsetRange:
        """The inverse of ``str()``: ``topic:partition:start-end``."""
        topic, partition, span = text.strip().rsplit(":", 2)
        start, end = span.split("-")
        return cls(topic, int(partition), int(start), int(end))


def format_ranges(ranges: Iterable[OffsetRange]) -> str:
    """The canonical text of a set of ranges, used for run keys, tags and run config."""
    return ",".join(str(r) for r in sorted(ranges))


def parse_ranges(text: str) -> list[OffsetRange]:
    return [OffsetRange.parse(part) for part in text.split(",") if part.strip()]


@dataclass(frozen=True, slots=True)
class Delivered:
    """A decoded record and where it came from."""

    topic: str
    partition: int
    offset: int
    record: Record


@dataclass
class Batch:
    """What one read of a range produced: valid records in offset order per partition, and the bad ones."""

    ranges: list[OffsetRange]
    records: list[Delivered] = field(default_factory=list)
    dead_letters: int = 0

    def timestamps(self) -> list[int]:
        return [item.record.timestamp for item in self.records]


def _metadata_consumer(kafka: KafkaCluster, group_id: str) -> Consumer:
    return kafka.consumer(group_id, **{"socket.timeout.ms": int(METADATA_TIMEOUT_S * 1000)})


def partitions_of(consumer: Consumer, full_topic: str) -> list[int]:
    """Partition ids of a topic; an absent topic has none."""
    topic = consumer.list_topics(full_topic, timeout=METADATA_TIMEOUT_S).topics.get(full_topic)
    if topic is None or topic.error is not None:
        return []
    return sorted(topic.partitions)


def committed_and_watermarks(kafka: KafkaCluster, group_id: str, topic: str) -> GroupOffsets:
    """Per partition: the group's committed offset (None if it never committed), low and high watermark.

    Metadata requests only, with short timeouts: safe inside a sensor tick.
    """
    from confluent_kafka import TopicPartition

    full_topic = kafka.topic(topic)
    consumer = _metadata_consumer(kafka, group_id)
    try:
        partitions = partitions_of(consumer, full_topic)
        if not partitions:
            return {}
        committed = consumer.committed([TopicPartition(full_topic, p) for p in partitions], timeout=METADATA_TIMEOUT_S)
        result = {}
        for tp in committed:
            low, high = consumer.get_watermark_offsets(tp, timeout=METADATA_TIMEOUT_S, cached=False)
            result[tp.partition] = (tp.offset if tp.offset >= NO_OFFSET else None, low, high)
        return result
    finally:
        consumer.close()


def position(committed: int | None, low: int) -> int:
    """Where a group reads next in a partition: its committed offset, or the oldest retained one."""
    return max(committed if committed is not None else low, low)


def lag(offsets: GroupOffsets) -> int:
    """The messages a group has not committed yet, over all partitions."""
    return sum(high - position(committed, low) for committed, low, high in offsets.values())


def pending_ranges(topic: str, offsets_by_group: Iterable[GroupOffsets],
                   max_offsets_per_partition: int) -> list[OffsetRange]:
    """The offsets of ``topic`` that at least one of the groups has not committed yet, from each
    group's :func:`committed_and_watermarks`.

    Each partition's range starts at the slowest group's position, so one run serves every
    consuming asset; ``max_offsets_per_partition`` bounds what one run has to hold in memory.
    """
    starts: dict[int, int] = {}
    highs: dict[int, int] = {}
    for offsets in offsets_by_group:
        for partition, (committed, low, high) in offsets.items():
            start = position(committed, low)
            starts[partition] = min(starts.get(partition, start), start)
            highs[partition] = high
    return [
        OffsetRange(topic, p, starts[p], min(highs[p], starts[p] + max_offsets_per_partition))
        for p in sorted(starts)
        if starts[p] < highs[p]
    ]


def group_ranges(kafka: KafkaCluster, group_id: str, topic: str, ends: dict[int, int] | None,
                 align_to: int = 1) -> list[OffsetRange]:
    """What ``group_id`` still has to read of ``topic`` up to ``ends`` (default: the high watermarks).

    ``align_to`` moves each start back to a multiple of it (never below the low watermark), for
    writers whose output files each cover a fixed block of offsets and must be rewritten whole.
    """
    ranges = []
    for partition, (committed, low, high) in committed_and_watermarks(kafka, group_id, topic).items():
        end = high if ends is None else ends.get(partition, 0)
        unread = position(committed, low)
        start = max(low, unread - unread % align_to)
        if start < end:
            ranges.append(OffsetRange(topic, partition, start, end, unread_from=unread))
    return ranges


def read(kafka: KafkaCluster, group_id: str, ranges: Sequence[OffsetRange], *, dead_letter: bool,
         on_records: Callable[[Sequence[Delivered]], None] | None = None) -> Batch:
    """Every message in ``ranges``, decoded; messages that fail ``records.decode`` are counted and,
    when ``dead_letter`` is set (one asset per topic owns that), sent to ``deadletter`` with their
    origin, once: not again when a range re-reads offsets before its ``unread_from``.
    ``on_records`` gets each poll's new records as they arrive, so a writer can start on them while
    the rest of the range is read.

    A bad message never stops the read. Raises :class:`KafkaReadError` if the broker stops
    delivering before the end of a range, so a run never commits offsets it did not read.
    """
    from confluent_kafka import TopicPartition

    batch = Batch(list(ranges))
    if not ranges:
        return batch
    by_topic = {kafka.topic(r.topic): r.topic for r in ranges}
    remaining = {(kafka.topic(r.topic), r.partition): r.end for r in ranges}
    unread_from = {(kafka.topic(r.topic), r.partition): r.unread_from or r.start for r in ranges}
    consumer = kafka.consumer(group_id)
    publisher = kafka.publisher() if dead_letter else None
    consumer.assign([TopicPartition(kafka.topic(r.topic), r.partition, r.start) for r in ranges])
    consume = consumer.consume
    # Asking for no more than is left lets the last poll return the moment the range is complete,
    # instead of waiting out its timeout for messages that will never come (a second per run).
    left = sum(r.end - r.start for r in ranges)
    try:
        last_progress = time.monotonic()
        while remaining:
            messages = consume(num_messages=max(1, min(POLL_BATCH, left)), timeout=1.0)
            before = len(batch.records)
            taken = _collect_all(batch, publisher, by_topic, remaining, unread_from, messages)
            if taken:
                left -= taken
                last_progress = time.monotonic()
            if on_records is not None and len(batch.records) > before:
                on_records(batch.records[before:])
            _drop_finished(consumer, remaining)
            if remaining and time.monotonic() - last_progress > IDLE_TIMEOUT_S:
                raise KafkaReadError(f"no message for {IDLE_TIMEOUT_S:.0f} s before the end of {sorted(remaining.items())}")
        if publisher is not None:
            publisher.flush()
    finally:
        consumer.close()
    return batch


def _collect_all(batch: Batch, publisher: Publisher | None, by_topic: dict[str, str],
                 remaining: dict[tuple[str, int], int], unread_from: dict[tuple[str, int], int],
                 messages: list[Message]) -> int:
    """Decode the messages of one poll that fall in their range; returns how many did. One tight
    loop per poll, since every step of it runs once per message of a batch."""
    append, taken = batch.records.append, 0
    for message in messages:
        if message.error() is not None:
            continue
        topic, partition, offset = message.topic(), message.partition(), message.offset()
        assert topic is not None and partition is not None and offset is not None, "set on every fetched message"
        end = remaining.get((topic, partition))
        if end is None or offset >= end:
            continue
        taken += 1
        contract_topic, raw = by_topic[topic], message.value()
        try:
            append(Delivered(contract_topic, partition, offset, decode(contract_topic, raw)))
        except RecordError as error:
            if offset < unread_from[(topic, partition)]:
                continue
            batch.dead_letters += 1
            if publisher is not None:
                publisher.dead_letter(publisher.topic_prefix + contract_topic, raw or b"", str(error), partition,
                                      offset)
    return taken


def _drop_finished(consumer: Consumer, remaining: dict[tuple[str, int], int]) -> None:
    """Forget partitions whose position reached the range end (control records included)."""
    from confluent_kafka import TopicPartition

    positions = consumer.position([TopicPartition(topic, partition) for topic, partition in remaining])
    for tp in positions:
        if tp.offset >= remaining[(tp.topic, tp.partition)]:
            del remaining[(tp.topic, tp.partition)]
    if remaining:
        consumer.pause([tp for tp in positions if (tp.topic, tp.partition) not in remaining])


def commit(kafka: KafkaCluster, group_id: str, ranges: Iterable[OffsetRange],
           metadata: Mapping[int, str] | None = None) -> None:
    """Commit each range's end for ``group_id``: called only after the write covering it succeeded.
    ``metadata`` (per partition) is stored with the offset in the same request, so the two never
    disagree."""
    from confluent_kafka import TopicPartition

    metadata = metadata or {}
    offsets = [TopicPartition(kafka.topic(r.topic), r.partition, r.end, metadata=metadata.get(r.partition, ""))
               for r in ranges]
    if not offsets:
        return
    consumer = kafka.consumer(group_id)
    try:
        consumer.commit(offsets=offsets, asynchronous=False)
    finally:
        consumer.close()


def newest_records(kafka: KafkaCluster, topic: str,
                   timeout_s: float = METADATA_TIMEOUT_S) -> tuple[list[Record], int]:
    """The last valid record of each partition of ``topic`` (what its producers wrote most recently),
    and the messages the topic holds (end minus start offsets), from the same watermark requests.

    One short read from each partition's end, for a sensor tick: a partition whose last message
    is not a valid record (or does not arrive in time) is left out rather than waited for.
    """
    from confluent_kafka import TopicPartition

    full_topic = kafka.topic(topic)
    consumer = _metadata_consumer(kafka, "pricepipe.observer")
    try:
        ends, retained = [], 0
        for partition in partitions_of(consumer, full_topic):
            low, high = consumer.get_watermark_offsets(TopicPartition(full_topic, partition), timeout=timeout_s,
                                                       cached=False)
            retained += high - low
            if high > low:
                ends.append(TopicPartition(full_topic, partition, high - 1))
        if not ends:
            return [], retained
        consumer.assign(ends)
        newest: dict[int | None, Record] = {}
        deadline = time.monotonic() + timeout_s
        while len(newest) < len(ends) and time.monotonic() < deadline:
            for message in consumer.consume(num_messages=len(ends), timeout=0.5):
                if message.error() is None:
                    with contextlib.suppress(RecordError):
                        newest[message.partition()] = decode(topic, message.value())
        return list(newest.values()), retained
    finally:
        consumer.close()
