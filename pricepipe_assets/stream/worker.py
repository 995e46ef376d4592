"""The stream worker: one long-lived process that writes the live tables as records arrive.

Each stage (see :mod:`pricepipe_assets.stream.stages`) runs on a thread of its own with a
consumer subscribed through its consumer group, so two or more workers share the partitions by
Kafka's own group protocol and take over a stopped one's. A batch is whatever the consumer holds
when its first message arrives; it is decoded (bad messages to `deadletter` by the topic's one
dead-lettering stage), written, and only then committed, so a worker killed at any moment leaves
offsets its successor reads again, and the writes are upserts on natural keys: nothing is lost,
nothing doubled. A write that fails (Cassandra away) is retried from the same offsets after a
capped backoff, never skipped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pricepipe_assets.contract.records import INTERVAL_MS, RecordError, decode
from pricepipe_assets.contract.utc import utc_day
from pricepipe_assets.kafka.batches import Delivered, OffsetRange
from pricepipe_assets.stream.stages import STAGES, Stage, Stores, Written

if TYPE_CHECKING:
    from confluent_kafka import Consumer, Message

log = logging.getLogger(__name__)

# The most messages one write takes: large enough that a backlog goes in few writes, small enough
# that a batch is written in well under a second.
MAX_BATCH = 5_000
POLL_S = 0.5
MAX_BACKOFF_S = 10.0
# How long a worker that stopped answering keeps its partitions before the others take them over:
# the broker's default of 45 s would hold a killed worker's share that long.
SESSION_TIMEOUT_MS = 10_000
DAY_MS = INTERVAL_MS["1d"]


@dataclass
class Progress:
    """What a stage wrote since the last report, summed up as it goes (never the records themselves,
    so a busy interval costs no memory): per asset its writes, and for the stage the records read,
    bad messages, offsets, event times by symbol, days touched and each message's delay since it
    was produced. The worker's reporter takes it."""

    written: dict[str, list[Written]] = field(default_factory=dict)
    records: int = 0
    dead_letters: int = 0
    failures: int = 0
    ranges: dict[tuple[str, int], tuple[int, int]] = field(default_factory=dict)
    newest: dict[str, int] = field(default_factory=dict)
    first_ms: int | None = None
    last_ms: int | None = None
    days: set[str] = field(default_factory=set)
    delays_s: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, results: dict[str, Written], records: Sequence[Delivered], ranges: Sequence[OffsetRange],
            delays_s: Sequence[float], dead_letters: int) -> None:
        times = [item.record.timestamp for item in records]
        with self.lock:
            for asset, written in results.items():
                self.written.setdefault(asset, []).append(written)
            self.records += len(records)
            self.dead_letters += dead_letters
            for r in ranges:
                start, end = self.ranges.get((r.topic, r.partition), (r.start, r.end))
                self.ranges[r.topic, r.partition] = (min(start, r.start), max(end, r.end))
            for item in records:
                key, ms = item.record.key, item.record.timestamp
                if ms > self.newest.get(key, 0):
                    self.newest[key] = ms
            if times:
                self.first_ms = min(times) if self.first_ms is None else min(self.first_ms, *times)
                self.last_ms = max(times) if self.last_ms is None else max(self.last_ms, *times)
                self.days.update({utc_day(ms) for ms in {ms - ms % DAY_MS for ms in times}})
            self.delays_s.extend(delays_s)

    def take(self) -> Progress:
        """Everything recorded so far, leaving this empty."""
        with self.lock:
            taken = Progress(self.written, self.records, self.dead_letters, self.failures, self.ranges, self.newest,
                             self.first_ms, self.last_ms, self.days, self.delays_s)
            self.written, self.records, self.dead_letters, self.failures = {}, 0, 0, 0
            self.ranges, self.newest, self.first_ms, self.last_ms, self.days, self.delays_s = {}, {}, None, None, set(), []
        return taken


class StageRunner:
    """One stage's consumer loop; ``run`` returns when ``stop`` is set."""

    def __init__(self, stage: Stage, stores: Stores, stop: threading.Event, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.stage = stage
        self.stores = stores
        self.stop = stop
        self.progress = Progress()
        self._clock = clock
        self._failures_in_a_row = 0
        kafka = stores.kafka
        self._by_topic = {kafka.topic(topic): topic for topic in stage.topics}

    def run(self) -> None:
        kafka = self.stores.kafka
        consumer = kafka.consumer(kafka.consumer_group(self.stage.asset), **{"session.timeout.ms": SESSION_TIMEOUT_MS})
        followers = {step.asset: kafka.consumer(kafka.consumer_group(step.asset)) for step in self.stage.steps[1:]
                     if not step.commits_itself}
        consumer.subscribe(list(self._by_topic))
        try:
            while not self.stop.is_set():
                first = consumer.poll(POLL_S)
                if first is None:
                    continue
                messages = [first, *consumer.consume(num_messages=MAX_BATCH - 1, timeout=0)]
                self._process(consumer, followers, messages)
        finally:
            for follower in followers.values():
                follower.close()
            consumer.close()
            self.stores.publisher.flush()
            self.stores.cassandra.close()

    def _decode(self, messages: Sequence[Message]) -> tuple[list[Delivered], list[OffsetRange], list[float], int]:
        """The batch's records, the offset range of each partition it covers, each message's delay
        since its producer's timestamp, and the bad messages (dead-lettered by the owning stage)."""
        records: list[Delivered] = []
        spans: dict[tuple[str, int], tuple[int, int]] = {}
        delays: list[float] = []
        bad = 0
        now = self._clock()
        for message in messages:
            if message.error() is not None:
                continue
            full_topic, partition, offset = message.topic(), message.partition(), message.offset()
            topic = self._by_topic[full_topic]
            first, _ = spans.get((topic, partition), (offset, offset))
            spans[topic, partition] = (min(first, offset), offset + 1)
            created_ms = message.timestamp()[1]
            if created_ms > 0:
                delays.append(now - created_ms / 1000)
            raw = message.value()
            try:
                records.append(Delivered(topic, partition, offset, decode(topic, raw)))
            except RecordError as error:
                bad += 1
                if topic in self.stage.dead_letters:
                    self.stores.publisher.dead_letter(full_topic, raw or b"", str(error), partition, offset)
        ranges = [OffsetRange(topic, partition, start, end) for (topic, partition), (start, end) in spans.items()]
        return records, ranges, delays, bad

    def _process(self, consumer: Consumer, followers: dict[str, Consumer], messages: Sequence[Message]) -> None:
        records, ranges, delays, bad = self._decode(messages)
        try:
            results = {step.asset: step.write(self.stores, records, ranges) for step in self.stage.steps}
            self.stores.publisher.flush()
        except Exception:  # any failure: the same offsets are read again after the backoff
            log.exception("%s: writing %d records failed; reading them again", self.stage.asset, len(records))
            self.progress.failures += 1
            self._rewind(consumer, ranges)
            return
        self._failures_in_a_row = 0
        offsets = self._offsets(ranges)
        for committer in (consumer, *followers.values()):
            self._commit(committer, offsets)
        self.progress.add(results, records, ranges, delays, bad)

    def _offsets(self, ranges: Sequence[OffsetRange]) -> list[object]:
        from confluent_kafka import TopicPartition

        return [TopicPartition(self.stores.kafka.topic(r.topic), r.partition, r.end) for r in ranges]

    def _commit(self, committer: Consumer, offsets: list[object]) -> None:
        """Commit after the write; a commit refused because the partitions moved to another worker
        in between only means that worker writes the same rows again."""
        from confluent_kafka import KafkaException

        try:
            committer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as error:
            log.warning("%s: commit refused (%s); the partitions' new owner writes them again", self.stage.asset,
                        error.args[0].str())

    def _rewind(self, consumer: Consumer, ranges: Sequence[OffsetRange]) -> None:
        from confluent_kafka import KafkaException, TopicPartition

        self._failures_in_a_row += 1
        for r in ranges:
            try:
                consumer.seek(TopicPartition(self.stores.kafka.topic(r.topic), r.partition, r.start))
            except KafkaException:  # revoked meanwhile: its new owner starts from the committed offset
                continue
        self.stop.wait(min(MAX_BACKOFF_S, 0.5 * 2 ** (self._failures_in_a_row - 1)))


def start(stores_of: Callable[[], Stores], stop: threading.Event,
          stages: Sequence[Stage] = STAGES) -> list[tuple[StageRunner, threading.Thread]]:
    """A runner and a thread per stage, started; each stage gets stores of its own (clients are not
    shared between threads), which its runner closes when it stops."""
    started = []
    for stage in stages:
        runner = StageRunner(stage, stores_of(), stop)
        thread = threading.Thread(target=runner.run, name=f"stream-{stage.asset}", daemon=True)
        thread.start()
        started.append((runner, thread))
    return started
