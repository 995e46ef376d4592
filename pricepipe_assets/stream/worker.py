"""The stream worker: one long-lived process that writes the live tables as records arrive.

Each stage (see :mod:`pricepipe_assets.stream.stages`) runs on a thread of its own with a
consumer subscribed through its consumer group, so two or more workers share the partitions by
Kafka's own group protocol and take over a stopped one's. A batch is whatever the consumer holds
when its first message arrives; it is decoded (bad messages to `deadletter` by the topic's one
dead-lettering stage) and handed to the stage's writer thread, and the next batch is read and
decoded while it is written: a backlog costs the longer of the two, not their sum. Rows are written
as soon as their batch is; offsets are committed at most every ``COMMIT_EVERY_S`` (with the
symbols' clock in `symbols`, which a commit must not pass), so a trickle of single records pays one
Cassandra request each, not three.

Offsets are committed only once everything before them was written, so a worker killed at any
moment leaves offsets its successor reads again, and the writes are upserts on natural keys:
nothing is lost, nothing doubled. Partitions taken away by a rebalance are first written and
committed (the group waits for that), so their new owner never races an older write. A write that
fails (Cassandra away) is read again from the same offsets after a capped backoff, never skipped.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pricepipe_assets.contract.records import INTERVAL_MS, RecordError, decode
from pricepipe_assets.contract.utc import utc_day
from pricepipe_assets.kafka.batches import Delivered, OffsetRange
from pricepipe_assets.stream.stages import STAGES, Stage, Stores, Written
from pricepipe_assets.transforms.live_writes import record_activity

if TYPE_CHECKING:
    from confluent_kafka import Consumer, Message, TopicPartition

log = logging.getLogger(__name__)

# The most messages one write takes: large enough that a backlog goes in few writes, small enough
# that a batch is written in well under a second.
MAX_BATCH = 5_000
POLL_S = 0.5
# How often offsets (and the symbols' clock) are committed: what a killed worker's successor reads
# again is at most this much, and a commit costs a request of its own.
COMMIT_EVERY_S = 0.5
# Batches of this many records and more are written on the stage's writer thread while the next
# one is read; smaller ones on the reading thread.
OVERLAP_FROM = 100
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
    lag: int = 0
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
                             self.first_ms, self.last_ms, self.days, self.delays_s, self.lag)
            self.written, self.records, self.dead_letters, self.failures = {}, 0, 0, 0
            self.ranges, self.newest, self.first_ms, self.last_ms, self.days, self.delays_s = {}, {}, None, None, set(), []
        return taken


@dataclass
class Batch:
    """A poll's records, the offset range of each partition it covers, each message's delay since
    its producer's timestamp, and the bad messages among them."""

    records: list[Delivered]
    ranges: list[OffsetRange]
    delays_s: list[float]
    bad: int


class StageRunner:
    """One stage's consumer loop; ``run`` returns when ``stop`` is set.

    Only the loop's thread calls the consumers; the writer thread only writes Cassandra and
    publishes, one batch at a time, in the order they were read."""

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
        self._consumer: Consumer | None = None
        self._committers: list[Consumer] = []
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"stream-{stage.asset}-write")
        self._in_flight: tuple[Future[dict[str, Written]], Batch] | None = None
        self._written: dict[tuple[str, int], int] = {}
        self._activity: dict[str, Delivered] = {}
        self._commit_at = 0.0

    @property
    def consumer(self) -> Consumer:
        """The stage's consumer, once :meth:`run` made it."""
        if self._consumer is None:
            raise RuntimeError(f"{self.stage.asset}: the stage is not running")
        return self._consumer

    def run(self) -> None:
        kafka = self.stores.kafka
        consumer = kafka.consumer(kafka.consumer_group(self.stage.asset), **{"session.timeout.ms": SESSION_TIMEOUT_MS})
        self._consumer = consumer
        self._committers = [consumer, *(kafka.consumer(kafka.consumer_group(step.asset))
                                        for step in self.stage.steps[1:] if not step.commits_itself)]
        consumer.subscribe(list(self._by_topic), on_revoke=self._on_revoke)
        try:
            while not self.stop.is_set():
                messages = self._read(consumer)
                batch = self._decode(messages) if messages else None
                if not self._finish(batch):
                    continue
                if batch is not None:
                    self._in_flight = (self._start_write(batch), batch)
                self._checkpoint(force=False)
        finally:
            self._finish(None)
            self._checkpoint(force=True, wait=True)
            self._writer.shutdown()
            for committer in self._committers:
                committer.close()
            self.stores.publisher.flush()
            self.stores.cassandra.close()

    def _read(self, consumer: Consumer) -> list[Message]:
        """What the consumer holds now while a batch is being written (the next batch overlaps the
        write); otherwise waits for the first message, at most until the next commit is due."""
        if self._in_flight is not None:
            held: list[Message] = consumer.consume(num_messages=MAX_BATCH, timeout=0)
            return held
        wait_s = POLL_S if not self._written else max(0.0, min(POLL_S, self._commit_at - time.monotonic()))
        # The client waits whole milliseconds, rounding down: a wait shorter than one would return at
        # once and spin until the commit is due.
        first = consumer.poll(math.ceil(wait_s * 1000) / 1000)
        if first is None:
            return []
        return [first, *consumer.consume(num_messages=MAX_BATCH - 1, timeout=0)]

    def _decode(self, messages: Sequence[Message]) -> Batch:
        """The batch's records; bad messages go to `deadletter` if this stage owns their topic."""
        batch = Batch([], [], [], 0)
        spans: dict[tuple[str, int], tuple[int, int]] = {}
        now = self._clock()
        for message in messages:
            if message.error() is not None:
                continue
            full_topic, partition, offset = message.topic(), message.partition(), message.offset()
            assert full_topic is not None and partition is not None and offset is not None, "set on every fetched message"
            topic = self._by_topic[full_topic]
            first, _ = spans.get((topic, partition), (offset, offset))
            spans[topic, partition] = (min(first, offset), offset + 1)
            created_ms = message.timestamp()[1]
            if created_ms > 0:
                batch.delays_s.append(now - created_ms / 1000)
            raw = message.value()
            try:
                batch.records.append(Delivered(topic, partition, offset, decode(topic, raw)))
            except RecordError as error:
                batch.bad += 1
                if topic in self.stage.dead_letters:
                    self.stores.publisher.dead_letter(full_topic, raw or b"", str(error), partition, offset)
        batch.ranges = [OffsetRange(topic, partition, start, end) for (topic, partition), (start, end) in spans.items()]
        return batch

    def _start_write(self, batch: Batch) -> Future[dict[str, Written]]:
        """A batch of a few records is written on this thread: handing it to the writer costs more
        than the read it would overlap."""
        if len(batch.records) >= OVERLAP_FROM:
            return self._writer.submit(self._write, batch)
        written: Future[dict[str, Written]] = Future()
        try:
            written.set_result(self._write(batch))
        except Exception as error:
            written.set_exception(error)
        return written

    def _write(self, batch: Batch) -> dict[str, Written]:
        """Every step's write of the batch, in order."""
        results = {step.asset: step.write(self.stores, batch.records, batch.ranges) for step in self.stage.steps}
        self.stores.publisher.flush()
        return results

    def _finish(self, following: Batch | None) -> bool:
        """Wait for the batch being written. If its write failed, it and ``following`` (read
        meanwhile) are read again after the backoff, and this returns False."""
        if self._in_flight is None:
            return True
        future, batch = self._in_flight
        self._in_flight = None
        try:
            results = future.result()
        except Exception:  # any failure: the same offsets are read again after the backoff
            log.exception("%s: writing %d records failed; reading them again", self.stage.asset, len(batch.records))
            self.progress.failures += 1
            self._rewind([*batch.ranges, *(following.ranges if following else ())])
            return False
        self._failures_in_a_row = 0
        for r in batch.ranges:
            self._written[r.topic, r.partition] = max(r.end, self._written.get((r.topic, r.partition), 0))
        for item in batch.records:
            if item.topic in self.stage.activity:
                newest = self._activity.get(item.record.key)  # an activity record's key is its symbol
                if newest is None or item.record.event_time >= newest.record.event_time:
                    self._activity[item.record.key] = item
        self.progress.add(results, batch.records, batch.ranges, batch.delays_s, batch.bad)
        return True

    def _checkpoint(self, *, force: bool, wait: bool = False) -> None:
        """Advance the symbols' clock, then commit what was written, if a commit is due (or
        ``force``). If the clock cannot be written, nothing is committed: the next checkpoint tries
        again, and a successor reads those records again."""
        if not self._written or not (force or time.monotonic() >= self._commit_at):
            return
        self._commit_at = time.monotonic() + COMMIT_EVERY_S
        try:
            record_activity(self.stores.cassandra, self._activity.values())
        except Exception:
            log.warning("%s: the symbols' clock could not be written; committing later", self.stage.asset,
                        exc_info=True)
            return
        offsets = self._offsets()
        for committer in self._committers:
            self._commit(committer, offsets, wait)
        self._written.clear()
        self._activity.clear()
        self.progress.lag = self._lag()

    def _lag(self) -> int:
        """What this worker's partitions hold beyond its read position, from the high watermarks
        its fetches brought: no request, where asking the group's committed offsets costs a client
        of its own per topic (other workers report their partitions)."""
        from confluent_kafka import KafkaException

        consumer = self.consumer
        lag = 0
        try:
            for tp in consumer.position(consumer.assignment()):
                if tp.offset >= 0:
                    _, high = consumer.get_watermark_offsets(tp, cached=True)
                    lag += max(0, high - tp.offset)
        except KafkaException:  # a report's figure is not worth failing a commit for
            return self.progress.lag
        return lag

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Before partitions move to another worker: write what was read and commit it, so the new
        owner starts where this one stopped and never races one of its writes; then forget what the
        writes remember of them, which the new owner will change."""
        self._finish(None)
        self._checkpoint(force=True, wait=True)
        self.stores.recent.forget()

    def _offsets(self) -> list[TopicPartition]:
        from confluent_kafka import TopicPartition

        kafka = self.stores.kafka
        return [TopicPartition(kafka.topic(topic), partition, end) for (topic, partition), end in self._written.items()]

    def _commit(self, committer: Consumer, offsets: list[TopicPartition], wait: bool) -> None:
        """A commit refused because the partitions moved to another worker in between only means
        that worker writes the same rows again."""
        from confluent_kafka import KafkaException

        try:
            if wait:
                committer.commit(offsets=offsets, asynchronous=False)
            else:
                committer.commit(offsets=offsets, asynchronous=True)
        except KafkaException as error:
            log.warning("%s: commit refused (%s); the partitions' new owner writes them again", self.stage.asset,
                        error.args[0].str())

    def _rewind(self, ranges: Sequence[OffsetRange]) -> None:
        from confluent_kafka import KafkaException, TopicPartition

        self._failures_in_a_row += 1
        starts: dict[tuple[str, int], int] = {}
        for r in ranges:
            starts[r.topic, r.partition] = min(r.start, starts.get((r.topic, r.partition), r.start))
        for (topic, partition), start in starts.items():
            try:
                self.consumer.seek(TopicPartition(self.stores.kafka.topic(topic), partition, start))
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
