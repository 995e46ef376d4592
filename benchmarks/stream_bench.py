"""What the stream benchmarks share: the stream worker's stages run in process, a Quix Streams sink
writing rows the way Quix users write them, and the removal of what both sides left in Kafka.

A stage run here is the worker's own code (:func:`pricepipe_assets.stream.worker.start`) with its
steps renamed, so its consumer groups are the benchmark's own: a fresh group reads the topic from
its start, as a fresh Quix group does, and the benchmark never moves or joins the groups that
`pricepipe stream` and the test suite use on the same broker.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from contextlib import suppress
from typing import Any

from pricepipe_assets.kafka.client import KafkaCluster
from pricepipe_assets.settings import Settings
from pricepipe_assets.storage.cassandra import CassandraCluster
from pricepipe_assets.stream import worker
from pricepipe_assets.stream.stages import STAGES, Stage, Stores, Written

# Requests in flight of the Quix sinks, as `CassandraCluster.write_all` has them.
CONCURRENCY = 64


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


def row_sink(cassandra: CassandraCluster, cql: str, row: Callable[[Any], tuple[Any, ...]]) -> Any:
    """A Quix Streams `BatchingSink` that writes ``row(item)`` of every item of a checkpoint's batch
    with one prepared statement, `execute_concurrent_with_args` at ``CONCURRENCY`` in flight."""
    from cassandra.concurrent import execute_concurrent_with_args
    from quixstreams.sinks import BatchingSink, SinkBatch

    session, insert = cassandra.session(), cassandra.prepare(cql)

    class RowSink(BatchingSink):
        def write(self, batch: SinkBatch) -> None:
            execute_concurrent_with_args(session, insert, [row(item) for item in batch], concurrency=CONCURRENCY,
                                         raise_on_first_error=True)

    return RowSink()


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
