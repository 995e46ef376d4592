"""What the stream benchmarks share: the stream worker's stages run in process or as a process of
their own, a Quix Streams sink writing rows the way Quix users write them, the Quix app's per-minute
trade statistics, freshness seen from outside a consumer (its group's commits against the messages'
produce times), and the removal of what both sides left in Kafka.

A stage run here is the worker's own code (:func:`pricepipe_assets.stream.worker.start`) with its
steps renamed, so its consumer groups are the benchmark's own: a fresh group reads the topic from
its start, as a fresh Quix group does, and the benchmark never moves or joins the groups that
`pricepipe stream` and the test suite use on the same broker.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import signal
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from contextlib import suppress
from typing import TYPE_CHECKING, Any

from pricepipe_assets.contract.records import INTERVAL_MS, Record
from pricepipe_assets.kafka.client import KafkaCluster, kafka_cluster
from pricepipe_assets.kafka.publisher import Publisher
from pricepipe_assets.settings import Settings
from pricepipe_assets.storage.cassandra import CassandraCluster, cassandra_cluster
from pricepipe_assets.storage.cassandra_schema import candle_bucket
from pricepipe_assets.stream import worker
from pricepipe_assets.stream.stages import STAGES, Stage, Stores, Written

if TYPE_CHECKING:
    from confluent_kafka.admin import AdminClient

# Requests in flight of the Quix sinks, as `CassandraCluster.write_all` has them.
CONCURRENCY = 64
MINUTE_MS = INTERVAL_MS["1m"]


def own_stage(asset: str, steps: int | None = None) -> Stage:
    """The worker's stage whose first step writes ``asset``, its first ``steps`` steps only, on
    consumer groups named after a fresh tag."""
    stage = next(stage for stage in STAGES if stage.asset == asset)
    tag = uuid.uuid4().hex[:8]
    renamed = tuple(dataclasses.replace(step, asset=f"{step.asset}.bench-{tag}") for step in stage.steps[:steps])
    return dataclasses.replace(stage, steps=renamed)


def groups_of(kafka: KafkaCluster, stage: Stage) -> list[str]:
    return [kafka.consumer_group(step.asset) for step in stage.steps]


@dataclasses.dataclass(frozen=True)
class StageRun:
    """One in-process run of a stage until it committed every message: seconds from its start to
    the last commit, of which ``startup_s`` before its first write (consumer created, group joined,
    first batch fetched and decoded: what a long-lived worker pays once), and the batches it took."""

    seconds: float
    startup_s: float
    messages: int
    batches: int
    failed_writes: int

    @property
    def working_s(self) -> float:
        """From the first write to the last commit."""
        return self.seconds - self.startup_s

    def describe(self) -> str:
        return (f"{self.batches} batches of {self.messages / self.batches:,.0f} messages on average, the first "
                f"written {self.startup_s:.2f} s after the start, {self.failed_writes} failed writes")


def _committed(runner: worker.StageRunner) -> int:
    with runner.progress.lock:
        return sum(end - start for start, end in runner.progress.ranges.values())


def run_stage(stage: Stage, kafka: KafkaCluster, cassandra: CassandraCluster, messages: int,
              timeout_s: float = 600) -> StageRun:
    """Run ``stage`` on a thread of its own, as `pricepipe stream` does, with stores of its own (the
    runner closes them) until it committed ``messages`` messages; stops it and returns the timing."""
    stores = Stores(kafka, type(cassandra)(**cassandra.model_dump()), kafka.publisher(),
                    Settings().trade_candle_grace_s * 1000)
    stores.cassandra.session()  # connected beforehand, as a long-lived worker is
    first_write: list[float] = []
    step = stage.steps[0]

    def timed(*arguments: Any) -> Written:
        first_write[:] = first_write or [time.perf_counter()]
        return step.write(*arguments)

    timed_stage = dataclasses.replace(stage, steps=(dataclasses.replace(step, write=timed), *stage.steps[1:]))
    stop = threading.Event()
    started = time.perf_counter()
    ((runner, thread),) = worker.start(lambda: stores, stop, [timed_stage])
    try:
        while (committed := _committed(runner)) < messages:
            if not thread.is_alive():
                raise RuntimeError(f"the {stage.asset} stage ended after {committed} of {messages} messages")
            if time.perf_counter() - started > timeout_s:
                raise RuntimeError(f"the {stage.asset} stage committed {committed} of {messages} messages "
                                   f"in {timeout_s:.0f} s")
            time.sleep(0.01)  # seldom enough not to take the interpreter from the stage's thread
        seconds = time.perf_counter() - started
    finally:
        stop.set()
        thread.join(30)
    progress = runner.progress.take()
    return StageRun(seconds, first_write[0] - started, progress.records, len(progress.written.get(stage.asset, [])),
                    progress.failures)


def row_sink(cassandra: CassandraCluster, cql: str, row: Callable[[Any], tuple[Any, ...]],
             key: Callable[[Any], Any] | None = None) -> Any:
    """A Quix Streams `BatchingSink` that writes ``row(item)`` of every item of a checkpoint's batch
    with one prepared statement, `execute_concurrent_with_args` at ``CONCURRENCY`` in flight. With
    ``key``, only the batch's last item of each key is written: a `.current()` window emits every
    update, and a row written twice in one checkpoint would only be overwritten by its later self."""
    from cassandra.concurrent import execute_concurrent_with_args
    from quixstreams.sinks import BatchingSink, SinkBatch

    session, insert = cassandra.session(), cassandra.prepare(cql)

    class RowSink(BatchingSink):
        def write(self, batch: SinkBatch) -> None:
            items = list({key(item): item for item in batch}.values()) if key else batch
            execute_concurrent_with_args(session, insert, [row(item) for item in items], concurrency=CONCURRENCY,
                                         raise_on_first_error=True)

    return RowSink()


def trade_minutes(sdf: Any) -> Any:
    """What a Quix user writes for `trade_stats_minute` over the project's JSON trades (the trade time
    as message time): the size split by taker side, then per symbol a 1-minute tumbling window of
    count, sums and latest price; the caller picks `.final()` or `.current()`."""
    from quixstreams.dataframe.windows import Count, Latest, Sum

    sdf = sdf.apply(lambda t: {"size": t["size"], "price": t["price"], "quote": t["size"] * t["price"],
                               "buy": t["size"] if t["side"] == "buy" else 0.0,
                               "sell": t["size"] if t["side"] == "sell" else 0.0})
    return sdf.tumbling_window(MINUTE_MS).agg(
        trades=Count(), volume=Sum("size"), quote_volume=Sum("quote"), buy_volume=Sum("buy"),
        sell_volume=Sum("sell"), last_price=Latest("price"))


def minute_row(item: Any) -> tuple[Any, ...]:
    """The `trade_stats_minute` row (`UPSERT_MINUTE`) of a window of :func:`trade_minutes`."""
    window = item.value
    start = dt.datetime.fromtimestamp(window["start"] / 1000, dt.UTC)
    return (item.key.decode(), candle_bucket("1m", window["start"]), start, window["trades"], window["volume"],
            window["quote_volume"], window["buy_volume"], window["sell_volume"],
            window["quote_volume"] / window["volume"], window["last_price"])


def serve_stage(asset: str, steps: int | None = None) -> None:
    """The worker's stage whose first step writes ``asset`` (its first ``steps`` steps) as the only
    stage of this process, its stores built from ``PRICEPIPE_*`` as `pricepipe stream` builds them,
    until SIGTERM: a consumer process of its own, so its CPU and its commits are its alone."""
    settings = Settings.from_env()
    kafka = kafka_cluster(settings)
    stage = next(stage for stage in STAGES if stage.asset == asset)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    started = worker.start(lambda: Stores(kafka, cassandra_cluster(settings), kafka.publisher(),
                                          settings.trade_candle_grace_s * 1000),
                           stop, [dataclasses.replace(stage, steps=stage.steps[:steps])])
    stop.wait()
    for _, thread in started:
        thread.join(30)


def members(admin: AdminClient, group: str) -> int:
    """The members of a group holding partitions once it is stable (0 while it rebalances): a
    consumer measured before its group settled would pay the rebalance inside the measurement."""
    from confluent_kafka import ConsumerGroupState, KafkaException

    try:
        description = admin.describe_consumer_groups([group], request_timeout=10)[group].result(30)
    except KafkaException:
        return 0
    if description.state != ConsumerGroupState.STABLE:
        return 0
    return sum(1 for member in description.members if member.assignment.topic_partitions)


Offsets = dict[int, int]


class Sampler(threading.Thread):
    """``committed()`` (a group's committed offset per partition) every ``every_s``, each with the
    wall-clock time it was seen, the clock of the producer's message timestamps."""

    def __init__(self, committed: Callable[[], Offsets], every_s: float) -> None:
        super().__init__(daemon=True)
        self.committed, self.every_s, self.done = committed, every_s, threading.Event()
        self.samples: list[tuple[float, Offsets]] = []

    def run(self) -> None:
        while not self.done.is_set():
            committed = self.committed()
            self.samples.append((time.time(), committed))
            self.done.wait(self.every_s)

    def reached(self, ends: Offsets) -> bool:
        return bool(self.samples) and all(self.samples[-1][1].get(p, 0) >= end for p, end in ends.items())


def pace(publisher: Publisher, records: list[Record], rate: float) -> float:
    """Publish ``records`` at ``rate`` a second, or as fast as the producer goes, and wait for their
    delivery; returns the rate reached, so a step the producer could not feed is seen as such."""
    start, sent = time.monotonic(), 0
    while sent < len(records):
        due = min(len(records), int((time.monotonic() - start) * rate) + 1)
        if due <= sent:
            time.sleep(0.002)
            continue
        for record in records[sent:due]:
            publisher.publish(record)
        sent = due
    reached = len(records) / max(time.monotonic() - start, 1 / rate)
    publisher.flush()
    return reached


def produce_times(kafka: KafkaCluster, topic: str, start: Offsets, end: Offsets) -> dict[int, list[tuple[int, int]]]:
    """Per partition, (offset, producer timestamp in ms) of the messages in [start, end) of the full
    ``topic``, read back after the measurement (so reading costs the consumer under test nothing) by
    an assigned consumer that never commits and so leaves no group behind."""
    from confluent_kafka import TopicPartition

    wanted = {p: stop for p, stop in end.items() if stop > start.get(p, 0)}
    consumer = kafka.consumer(f"bench.read.{uuid.uuid4().hex[:8]}")
    consumer.assign([TopicPartition(topic, p, start.get(p, 0)) for p in wanted])
    stamps: dict[int, list[tuple[int, int]]] = defaultdict(list)
    left, deadline = sum(stop - start.get(p, 0) for p, stop in wanted.items()), time.monotonic() + 120
    try:
        while left > 0:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{left:,} messages of {topic} could not be read back")
            for message in consumer.consume(10_000, timeout=1):
                if message.error() is None and message.offset() < wanted[message.partition()]:
                    stamps[message.partition()].append((message.offset(), message.timestamp()[1]))
                    left -= 1
    finally:
        consumer.close()
    return stamps


def commit_delays(stamps: dict[int, list[tuple[int, int]]],
                  samples: list[tuple[float, Offsets]]) -> tuple[list[float], int]:
    """Each message's seconds from produced to the first sample whose committed offset passed it
    (a consumer that commits after its write has then written it), and how many no sample passed."""
    delays, missing = [], 0
    for partition, messages in stamps.items():
        index = 0
        for offset, produced_ms in sorted(messages):
            while index < len(samples) and samples[index][1].get(partition, 0) <= offset:
                index += 1
            if index == len(samples):
                missing += 1
            else:
                delays.append(samples[index][0] - produced_ms / 1000)
    return delays, missing


def remove_groups(kafka: KafkaCluster, groups: Iterable[str]) -> None:
    """Delete the benchmark's consumer groups and the topics named after them (Quix's changelogs)."""
    groups = list(groups)
    if not groups:
        return
    admin = kafka.admin()
    names = [name for name in admin.list_topics(timeout=10).topics if any(group in name for group in groups)]
    futures = [*(admin.delete_topics(names, operation_timeout=10).values() if names else ()),
               *admin.delete_consumer_groups(groups, request_timeout=10).values()]
    for future in futures:
        with suppress(Exception):  # already gone, or never created: fine
            future.result(30)
