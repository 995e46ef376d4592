"""Ingest benchmark: Kafka into Cassandra through the stream worker's candles stage, beside the plain driver.

Measured against the local servers in one run, on topics and a keyspace of its own that are
removed at the end: real 1m candles are published to Kafka, then the worker's candles stage runs
in process as `pricepipe stream` runs it (a `StageRunner` on its own thread: poll, decode and
validate, upsert the batch into Cassandra, advance the symbols' clock, commit), on a fresh
consumer group, timed from its first write to its last commit: a long-lived worker creates its
consumer and joins its group once, so that start (printed beside) is not part of its throughput. Beside it, the same rows, already decoded
and in memory, go into a table of the same schema through the plain cassandra-driver as its users
write them: unlogged batches of 100 rows per partition, sent concurrently, pricepipe's own
technique, so the figure cannot come from the technique alone. The two alternate for ``--pairs``
pairs; `candles_ingest_vs_driver_batched` is the median of the pairs' rows/s ratios. Once at the
end, the read alone and the older baseline, one `execute_concurrent_with_args` request a row, whose
ratio to the worker's median is `candles_ingest_vs_driver`. The peers have their rows in memory;
the worker also reads Kafka, decodes and commits.

This benchmark no longer measures freshness. It used to time candles from produce to readable
through sensor-requested runs under a real daemon, against the floor of Dagster's own run model;
the live tables are now written by the stream worker, not by runs, so that floor says nothing
about them any more, and `benchmarks/freshness.py` measures the worker's freshness against a
streaming peer instead. The runs the sensors still request feed the lake, whose readers (the
daily analytics, the models) work in days, so a floor in seconds is no figure anyone waits on.

    .venv/bin/python -m benchmarks.ingest [--days 30] [--pairs 3]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Self

import dagster as dg

from benchmarks.daemon import REPO
from benchmarks.stream_bench import StageRun, groups_of, own_stage, remove_groups, run_stage
from pricepipe_assets.contract.records import Candle
from pricepipe_assets.contract.topics import ALL_TOPICS, CANDLES_1M
from pricepipe_assets.defs.resources import CassandraResource, KafkaResource
from pricepipe_assets.kafka.batches import committed_and_watermarks, group_ranges, lag, read
from pricepipe_assets.sources.binance.dumps import BinanceDumps, Dataset
from pricepipe_assets.storage.cassandra_schema import candle_bucket
from pricepipe_assets.storage.live_tables import UPSERT_VENUE_CANDLE

FIRST_DAY = dt.date(2024, 1, 1)
CONCURRENCY = 64
# A consumer group that never commits: reading the whole topic once, to time the read alone.
READER = "bench.read-only"


def _time(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC)


def candle_row(c: Candle) -> tuple[Any, ...]:
    return (c.symbol, c.interval, candle_bucket(c.interval, c.open_time), _time(c.open_time), _time(c.close_time),
            c.exchange, c.open, c.high, c.low, c.close, c.volume, c.quote_volume, c.trades, c.is_complete)


class Isolated:
    """A topic prefix and a keyspace of the benchmark's own, removed on exit."""

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:8]
        self.kafka = KafkaResource(topic_prefix=f"bench.{tag}.")
        self.cassandra = CassandraResource(keyspace=f"bench_{tag}")

    def __enter__(self) -> Self:
        self.kafka.ensure_topics(ALL_TOPICS)
        self.cassandra.migrate()
        return self

    def __exit__(self, *exc: object) -> None:
        admin = self.kafka.admin()
        for future in admin.delete_topics([self.kafka.topic(t) for t in ALL_TOPICS], operation_timeout=10).values():
            with contextlib.suppress(Exception):  # a topic that never got created is fine
                future.result(30)
        self.cassandra.session().execute(f"DROP KEYSPACE IF EXISTS {self.cassandra.keyspace}")
        self.cassandra.close()

    def variables(self) -> dict[str, str]:
        """The environment that points pricepipe's code location at these topics and this keyspace."""
        return {"PRICEPIPE_TOPIC_PREFIX": self.kafka.topic_prefix, "PRICEPIPE_KEYSPACE": self.cassandra.keyspace}


def dumps(data: Path) -> BinanceDumps:
    return BinanceDumps(Path.home() / ".cache" / "pricepipe" / "binance-dumps", (data / "binance").as_uri())


def publish(kafka: KafkaResource, data: Path, days: int) -> list[Candle]:
    """Real BTCUSDT 1m candles of ``days`` days into the benchmark's `candles.1m`; returns them."""
    last = FIRST_DAY + dt.timedelta(days=days - 1)
    dataset = Dataset.klines("BTCUSDT", "1m")
    dumps(data).backfill(kafka.publisher(), dataset, FIRST_DAY, last)
    return [c for c in dumps(data).records(dataset, FIRST_DAY, last) if isinstance(c, Candle)]


def same_table(cassandra: CassandraResource, table: str, copy: str) -> None:
    """Create ``copy`` with ``table``'s schema as Cassandra reports it, so the peers write what the worker writes."""
    session = cassandra.session()
    cql = session.cluster.metadata.keyspaces[cassandra.keyspace].tables[table].as_cql_query()
    session.execute(cql.replace(f"{cassandra.keyspace}.{table} (", f"{cassandra.keyspace}.{copy} (", 1))


@dataclasses.dataclass(frozen=True)
class Throughput:
    """Seconds of each path over the same rows: per pair the worker's run and the batched peer's."""

    rows: int
    read_s: float
    baseline_s: float
    pairs: list[tuple[StageRun, float]]


def throughput(data: Path, days: int, pairs: int) -> Throughput:
    """Alternating worker and batched peer ``pairs`` times (each overwriting the rows of the previous
    pair, as Cassandra's upserts do), then the read alone and the one-request-a-row baseline once."""
    from cassandra.concurrent import execute_concurrent, execute_concurrent_with_args

    with Isolated() as env:
        candles = publish(env.kafka, data, days)
        print(f"published {len(candles):,} candles ({days} days of BTCUSDT 1m) to {env.kafka.topic(CANDLES_1M)}")
        messages = lag(committed_and_watermarks(env.kafka, READER, CANDLES_1M))
        session = env.cassandra.session()
        same_table(env.cassandra, "candles", "candles_baseline")
        insert = session.prepare(UPSERT_VENUE_CANDLE.replace("INSERT INTO candles ", "INSERT INTO candles_baseline "))
        rows = [candle_row(c) for c in candles]
        results = []
        for pair in range(1, pairs + 1):
            stage = own_stage("candles_live")
            try:
                project = run_stage(stage, env.kafka, env.cassandra, messages)
            finally:
                remove_groups(env.kafka, groups_of(env.kafka, stage))
            written = session.execute("SELECT COUNT(*) FROM candles").one()[0]
            if written != len(candles):
                raise RuntimeError(f"the candles stage stored {written:,} of {len(candles):,} candles")
            started = time.perf_counter()
            execute_concurrent(session, partition_batches(insert, rows), concurrency=CONCURRENCY,
                               raise_on_first_error=True)
            results.append((project, time.perf_counter() - started))
            print(f"pair {pair}: worker {project.working_s:.2f} s ({project.describe()}), batched peer "
                  f"{results[-1][1]:.2f} s", flush=True)

        started = time.perf_counter()
        batch = read(env.kafka, READER, group_ranges(env.kafka, READER, CANDLES_1M, None), dead_letter=False)
        read_s = time.perf_counter() - started
        if len(batch.records) != len(candles):
            raise RuntimeError(f"read {len(batch.records):,} of {len(candles):,} candles")
        started = time.perf_counter()
        execute_concurrent_with_args(session, insert, rows, concurrency=CONCURRENCY, raise_on_first_error=True)
        baseline_s = time.perf_counter() - started
    return Throughput(len(candles), read_s, baseline_s, results)


def partition_batches(insert: Any, rows: list[tuple[Any, ...]]) -> list[tuple[Any, tuple[()]]]:
    """The driver's fastest bulk insert of these rows, as its users write it: unlogged batches of
    100 rows of one partition (symbol, interval, day), sent concurrently."""
    from cassandra.query import BatchStatement, BatchType

    by_partition: dict[tuple[Any, ...], list[tuple[Any, ...]]] = {}
    for row in rows:
        by_partition.setdefault(row[:3], []).append(row)
    requests = []
    for group in by_partition.values():
        for start in range(0, len(group), 100):
            batch = BatchStatement(batch_type=BatchType.UNLOGGED)
            for row in group[start:start + 100]:
                batch.add(insert, row)
            requests.append((batch, ()))
    return requests


def run_timings(home: Path) -> dict[str, float]:
    """Median seconds from a run's creation to its start and from start to end, from the daemon's instance."""
    with dg.DagsterInstance.from_config(str(home)) as instance:
        records = [r for r in instance.get_run_records() if r.start_time and r.end_time]
    if not records:
        return {"runs": 0.0, "queued_s": 0.0, "running_s": 0.0}
    return {"runs": float(len(records)),
            "queued_s": statistics.median(r.start_time - r.create_timestamp.timestamp() for r in records),
            "running_s": statistics.median(r.end_time - r.start_time for r in records)}


def report_throughput(result: Throughput) -> list[str]:
    rows = result.rows
    print("\n| pair | worker s | worker rows/s | batched peer s | peer rows/s | worker / peer |\n"
          "| ---: | ---: | ---: | ---: | ---: | ---: |")
    ratios = []
    for pair, (project, batched_s) in enumerate(result.pairs, 1):
        ratios.append(batched_s / project.working_s)
        print(f"| {pair} | {project.working_s:.2f} | {rows / project.working_s:,.0f} | {batched_s:.2f} "
              f"| {rows / batched_s:,.0f} | {ratios[-1]:.2f} |")
    project_s = statistics.median(project.working_s for project, _ in result.pairs)
    print(f"\n| path | rows | seconds | rows/s |\n| --- | ---: | ---: | ---: |\n"
          f"| pricepipe: the stream worker's candles stage (Kafka poll, decode + validate, upsert, commit), "
          f"median of the pairs | {rows:,} | {project_s:.2f} | {rows / project_s:,.0f} |\n"
          f"| reading + decoding the topic alone (`kafka.batches.read`) | {rows:,} | {result.read_s:.2f} "
          f"| {rows / result.read_s:,.0f} |\n"
          f"| baseline: plain driver `execute_concurrent_with_args`, rows in memory | {rows:,} "
          f"| {result.baseline_s:.2f} | {rows / result.baseline_s:,.0f} |")
    return [f"candles_ingest_vs_driver = {result.baseline_s / project_s:.2f}",
            f"candles_ingest_vs_driver_batched = {statistics.median(ratios):.2f}"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data",
                        help="folder holding binance/ (a mirror of Binance's dumps)")
    parser.add_argument("--days", type=int, default=30, help="days of BTCUSDT 1m candles to publish and write")
    parser.add_argument("--pairs", type=int, default=3, help="worker / batched peer pairs, alternating")
    args = parser.parse_args()

    print(f"pricepipe ingest benchmark, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores")
    print(f"command: .venv/bin/python -m benchmarks.ingest {' '.join(sys.argv[1:])}")
    figures = report_throughput(throughput(args.data, args.days, args.pairs))
    print()
    for figure in figures:
        print(f"figure: {figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
