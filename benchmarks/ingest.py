"""Ingest benchmark: Kafka into Cassandra through pricepipe's write path, and freshness, each beside a peer.

Two parts, each measured against the local servers in one run, on topics and a keyspace of its
own that are removed at the end; `--skip-freshness` or `--skip-throughput` runs one alone.

1. Throughput: real 1m candles are published to Kafka, then the `candles_live` asset is
   materialized as a sensor-requested run does it (read the offset range, decode and validate,
   upsert into Cassandra, commit). Beside it, the same rows, already decoded and in memory, are
   inserted by a plain cassandra-driver `execute_concurrent_with_args` into a fresh table of the
   same schema. `candles_ingest_vs_driver` is pricepipe's rows/s over the driver's; the project's
   path also reads Kafka and commits. Since pricepipe writes unlogged batches per partition, the
   same rows are also written that way by the plain driver (`candles_ingest_vs_driver_batched`),
   so the figure cannot come from the technique alone.
2. Freshness: a real `dagster-daemon` runs pricepipe's code location (sensors on); candles are
   produced to Kafka one at a time and each is polled for in Cassandra: the delay from produce to
   readable is what a user of the live tables waits. Its floor, in the same run: another daemon
   under the same `dagster.yaml` and sensor interval runs `benchmarks/freshness_floor.py`, whose
   trivial sensor requests a run of a trivial asset per request file; the delay from writing the
   file to the asset's marker is Dagster's own part. `freshness_p95_vs_floor` is pricepipe's p95
   over the floor's (1.0 would mean pricepipe adds nothing to Dagster's run model).

    .venv/bin/python -m benchmarks.ingest [--days 30] [--freshness-records 60] [--every 1] [--sensor-interval 2]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Self

import dagster as dg

from benchmarks.daemon import REPO, running_daemon, wait_for
from pricepipe_assets.contract.records import Candle
from pricepipe_assets.contract.topics import ALL_TOPICS, CANDLES_1M
from pricepipe_assets.defs.live import candles_live
from pricepipe_assets.defs.resources import CassandraResource, KafkaResource
from pricepipe_assets.kafka.batches import group_ranges, read
from pricepipe_assets.sources.binance.dumps import BinanceDumps, Dataset
from pricepipe_assets.storage.cassandra_schema import candle_bucket
from pricepipe_assets.storage.live_tables import UPSERT_CANDLE

FIRST_DAY = dt.date(2024, 1, 1)
CONCURRENCY = 64
# A consumer group that never commits: reading the whole topic once, to time the read alone.
READER = "bench.read-only"
SELECT_CANDLE = "SELECT open_time FROM candles WHERE symbol = ? AND interval = '1m' AND bucket = ? AND open_time = ?"


def _time(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC)


def candle_row(c: Candle) -> tuple[Any, ...]:
    return (c.symbol, c.interval, candle_bucket(c.interval, c.open_time), _time(c.open_time), _time(c.close_time),
            c.exchange, c.open, c.high, c.low, c.close, c.volume, c.quote_volume, c.trades)


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


def throughput(data: Path, days: int) -> dict[str, float]:
    with Isolated() as env:
        candles = publish(env.kafka, data, days)
        print(f"published {len(candles):,} candles ({days} days of BTCUSDT 1m) to {env.kafka.topic(CANDLES_1M)}")

        started = time.perf_counter()
        result = dg.materialize([candles_live], resources={"kafka": env.kafka, "cassandra": env.cassandra},
                                instance=dg.DagsterInstance.ephemeral())
        project_s = time.perf_counter() - started
        written = result.asset_materializations_for_node("candles_live")[0].metadata["dagster/row_count"].value

        started = time.perf_counter()
        batch = read(env.kafka, READER, group_ranges(env.kafka, READER, CANDLES_1M, None), dead_letter=False)
        read_s = time.perf_counter() - started

        from cassandra.concurrent import execute_concurrent, execute_concurrent_with_args

        session = env.cassandra.session()
        session.execute("CREATE TABLE candles_baseline (symbol text, interval text, bucket date, open_time timestamp, "
                        "close_time timestamp, exchange text, open double, high double, low double, close double, "
                        "volume double, quote_volume double, trades int, "
                        "PRIMARY KEY ((symbol, interval, bucket), open_time))")
        insert = session.prepare(UPSERT_CANDLE.replace("INSERT INTO candles ", "INSERT INTO candles_baseline "))
        rows = [candle_row(c) for c in candles]
        started = time.perf_counter()
        execute_concurrent_with_args(session, insert, rows, concurrency=CONCURRENCY, raise_on_first_error=True)
        baseline_s = time.perf_counter() - started
        session.execute("TRUNCATE candles_baseline")
        started = time.perf_counter()
        execute_concurrent(session, partition_batches(insert, rows), concurrency=CONCURRENCY,
                           raise_on_first_error=True)
        batched_s = time.perf_counter() - started
    return {"rows": float(written), "project_s": project_s, "baseline_s": baseline_s, "batched_s": batched_s,
            "read_s": read_s, "read_rows": float(len(batch.records))}


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


def produce_to_readable(produce: Callable[[int], None], readable: Callable[[int], bool], count: int,
                        every_s: float, home: Path) -> list[float]:
    """Item 0 warms the daemon up (code location loaded, sensors ticking); then items 1..count-1 are
    produced ``every_s`` apart while a poller times each one's produce-to-readable delay (s)."""
    produce(0)
    wait_for(lambda: readable(0), home, "the daemon's first run")
    produced: dict[int, float] = {}
    delays: list[float] = []
    lock = threading.Lock()
    done = threading.Event()

    def poll() -> None:
        while not done.is_set() or produced:
            with lock:
                pending = list(produced.items())
            for item, _ in pending:
                if readable(item):
                    seen = time.monotonic()
                    with lock:
                        delays.append(seen - produced.pop(item))
            time.sleep(0.05)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    for item in range(1, count):
        started = time.monotonic()
        produce(item)
        with lock:
            produced[item] = started
        time.sleep(max(0.0, every_s - (time.monotonic() - started)))
    done.set()
    poller.join(timeout=120)
    if produced:
        print(f"  {len(produced)} items never became readable within 120 s of the last one produced")
    return delays


def run_timings(home: Path) -> dict[str, float]:
    """Median seconds from a run's creation to its start and from start to end, from the daemon's instance."""
    with dg.DagsterInstance.from_config(str(home)) as instance:
        records = [r for r in instance.get_run_records() if r.start_time and r.end_time]
    if not records:
        return {"runs": 0.0, "queued_s": 0.0, "running_s": 0.0}
    return {"runs": float(len(records)),
            "queued_s": statistics.median(r.start_time - r.create_timestamp.timestamp() for r in records),
            "running_s": statistics.median(r.end_time - r.start_time for r in records)}


def pricepipe_freshness(data: Path, count: int, every_s: float, interval_s: int) -> tuple[list[float], dict[str, float]]:
    """Produce-to-readable delays (s) of ETHUSDT candles through pricepipe's code location under a daemon."""
    candles = [c for c in dumps(data).records(Dataset.klines("ETHUSDT", "1m"), FIRST_DAY, FIRST_DAY)
               if isinstance(c, Candle)][:count]
    with Isolated() as env, tempfile.TemporaryDirectory(prefix="pricepipe-bench-lake-") as lake:
        variables = {**env.variables(), "PRICEPIPE_LAKE_URI": lake, "PRICEPIPE_STATE_DIR": str(Path(lake) / "state"),
                     "PRICEPIPE_SENSOR_INTERVAL_S": str(interval_s)}
        with running_daemon(REPO / "workspace.yaml", variables, prefix="pricepipe-bench-home-") as home:
            publisher = env.kafka.publisher()
            session, select = env.cassandra.session(), env.cassandra.prepare(SELECT_CANDLE)

            def produce(item: int) -> None:
                publisher.publish(candles[item])
                publisher.flush()

            def readable(item: int) -> bool:
                c = candles[item]
                return session.execute(select, (c.symbol, candle_bucket("1m", c.open_time), _time(c.open_time))).one() is not None

            delays = produce_to_readable(produce, readable, count, every_s, home)
            return delays, run_timings(home)


def floor_freshness(count: int, every_s: float, interval_s: int) -> tuple[list[float], dict[str, float]]:
    """Request-to-marker delays (s) of the trivial code location under the same `dagster.yaml` and interval."""
    with tempfile.TemporaryDirectory(prefix="pricepipe-bench-floor-") as folder:
        requests, done = Path(folder) / "requests", Path(folder) / "done"
        requests.mkdir()
        variables = {"PRICEPIPE_FLOOR_DIR": folder, "PRICEPIPE_SENSOR_INTERVAL_S": str(interval_s)}
        with running_daemon(REPO / "benchmarks" / "freshness_floor.yaml", variables,
                            prefix="pricepipe-bench-home-") as home:
            delays = produce_to_readable(lambda item: (requests / f"{item:06d}").touch(),
                                         lambda item: (done / f"{item:06d}").exists(), count, every_s, home)
            return delays, run_timings(home)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def summary(values: Iterable[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"p50": percentile(ordered, 0.5), "p95": percentile(ordered, 0.95), "max": ordered[-1],
            "mean": statistics.fmean(ordered)}


def report_throughput(figures: dict[str, float]) -> list[str]:
    project = figures["rows"] / figures["project_s"]
    baseline = figures["rows"] / figures["baseline_s"]
    print("\n| path | rows | seconds | rows/s |\n| --- | ---: | ---: | ---: |")
    print(f"| pricepipe: `candles_live` run (Kafka read, decode + validate, upsert, commit) | {figures['rows']:,.0f} "
          f"| {figures['project_s']:.2f} | {project:,.0f} |")
    print(f"| of which reading + decoding the range alone | {figures['read_rows']:,.0f} | {figures['read_s']:.2f} "
          f"| {figures['read_rows'] / figures['read_s']:,.0f} |")
    batched = figures["rows"] / figures["batched_s"]
    print(f"| baseline: plain driver `execute_concurrent_with_args`, rows in memory | {figures['rows']:,.0f} "
          f"| {figures['baseline_s']:.2f} | {baseline:,.0f} |")
    print(f"| peer: plain driver, unlogged batches of 100 rows per partition, rows in memory | {figures['rows']:,.0f} "
          f"| {figures['batched_s']:.2f} | {batched:,.0f} |")
    return [f"candles_ingest_vs_driver = {project / baseline:.2f}",
            f"candles_ingest_vs_driver_batched = {project / batched:.2f}"]


def report_freshness(sides: dict[str, tuple[list[float], dict[str, float]]]) -> list[str]:
    print("\n| side | items | p50 s | p95 s | max s | mean s | runs | median run queued→started s "
          "| median run started→ended s |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    stats = {}
    for side, (delays, runs) in sides.items():
        stats[side] = summary(delays)
        s = stats[side]
        print(f"| {side} | {len(delays)} | {s['p50']:.2f} | {s['p95']:.2f} | {s['max']:.2f} | {s['mean']:.2f} "
              f"| {runs['runs']:.0f} | {runs['queued_s']:.2f} | {runs['running_s']:.2f} |")
    project, floor = stats["pricepipe"], stats["floor"]
    return [*(f"freshness_{k}_s = {project[k]:.2f}" for k in ("p50", "p95", "max")),
            *(f"freshness_floor_{k}_s = {floor[k]:.2f}" for k in ("p50", "p95", "max")),
            f"freshness_p95_vs_floor = {project['p95'] / floor['p95']:.2f}"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data",
                        help="folder holding binance/ (a mirror of Binance's dumps)")
    parser.add_argument("--days", type=int, default=30, help="days of 1m candles for the throughput part")
    parser.add_argument("--freshness-records", type=int, default=60,
                        help="items produced on each side of the freshness part (the first warms the daemon up)")
    parser.add_argument("--every", type=float, default=1.0, help="seconds between two produced items")
    parser.add_argument("--sensor-interval", type=int, default=2, help="PRICEPIPE_SENSOR_INTERVAL_S of both daemons")
    parser.add_argument("--skip-throughput", action="store_true", help="run the freshness part only")
    parser.add_argument("--skip-freshness", action="store_true", help="run the throughput part only")
    args = parser.parse_args()

    print(f"pricepipe ingest benchmark, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores")
    print(f"command: .venv/bin/python -m benchmarks.ingest {' '.join(sys.argv[1:])}")
    figures: list[str] = []
    if not args.skip_throughput:
        figures += report_throughput(throughput(args.data, args.days))
    if not args.skip_freshness:
        print(f"\nfreshness: {args.freshness_records} items a side, one every {args.every:g} s, "
              f"sensor interval {args.sensor_interval} s, infra/dagster/dagster.yaml")
        sides = {"floor": floor_freshness(args.freshness_records, args.every, args.sensor_interval),
                 "pricepipe": pricepipe_freshness(args.data, args.freshness_records, args.every,
                                                  args.sensor_interval)}
        if not all(delays for delays, _ in sides.values()):
            print("freshness: no item became readable on one side")
            return 1
        figures += report_freshness(sides)
    print()
    for figure in figures:
        print(f"figure: {figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
