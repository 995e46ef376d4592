"""Ingest benchmark: Kafka into Cassandra through pricepipe's write path, beside a plain driver insert.

Two figures, each measured against the local servers in one run, on topics and a keyspace of
its own that are removed at the end:

1. Throughput: real 1m candles are published to Kafka, then the `candles_live` asset is
   materialized as a sensor-requested run does it (read the offset range, decode and validate,
   upsert into Cassandra, commit). Beside it, the same rows, already decoded and in memory, are
   inserted by a plain cassandra-driver `execute_concurrent_with_args` into a fresh table of the
   same schema. The ratio is the figure; the project's path also reads Kafka and commits.
2. Freshness: with a real `dagster-daemon` running the code location (sensors on), candles are
   produced one at a time and each is polled for in Cassandra; the delay from produce to readable
   is what a user of the live tables waits.

    .venv/bin/python benchmarks/ingest.py [--days 30] [--freshness-records 120]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import dagster as dg  # noqa: E402
from tqdm import tqdm  # noqa: E402

from pricepipe_assets.assets.live import UPSERT_CANDLE, candles_live  # noqa: E402
from pricepipe_assets.kafka_batches import group_ranges, read  # noqa: E402
from pricepipe_assets.records import Candle  # noqa: E402
from pricepipe_assets.resources import CassandraResource, KafkaResource  # noqa: E402
from pricepipe_assets.resources.cassandra_schema import candle_bucket  # noqa: E402
from pricepipe_assets.sources.binance_dumps import BinanceDumps, Dataset  # noqa: E402
from pricepipe_assets.topics import ALL_TOPICS, CANDLES_1M  # noqa: E402

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

    def __enter__(self) -> Isolated:
        self.kafka.ensure_topics(ALL_TOPICS)
        self.cassandra.migrate()
        return self

    def __exit__(self, *exc: object) -> None:
        admin = self.kafka.admin()
        for future in admin.delete_topics([self.kafka.topic(t) for t in ALL_TOPICS], operation_timeout=10).values():
            try:
                future.result(30)
            except Exception:  # noqa: BLE001 - a topic that never got created is fine
                pass
        self.cassandra.session().execute(f"DROP KEYSPACE IF EXISTS {self.cassandra.keyspace}")
        self.cassandra.close()


def publish(kafka: KafkaResource, data: Path, days: int) -> list[Candle]:
    """Real BTCUSDT 1m candles of ``days`` days into the benchmark's `candles.1m`; returns them."""
    dumps = BinanceDumps(Path.home() / ".cache" / "pricepipe" / "binance-dumps", (data / "binance").as_uri())
    last = FIRST_DAY + dt.timedelta(days=days - 1)
    dataset = Dataset.klines("BTCUSDT", "1m")
    dumps.backfill(kafka.publisher(), dataset, FIRST_DAY, last)
    return [c for c in dumps.records(dataset, FIRST_DAY, last) if isinstance(c, Candle)]


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

        from cassandra.concurrent import execute_concurrent_with_args

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
    return {"rows": float(written), "project_s": project_s, "baseline_s": baseline_s, "read_s": read_s,
            "read_rows": float(len(batch.records))}


def _start_daemon(env: Isolated, home: Path, lake: Path, interval_s: int) -> subprocess.Popen[bytes]:
    shutil.copy(REPO / "infra" / "dagster" / "dagster.yaml", home / "dagster.yaml")
    variables = {**os.environ, "DAGSTER_HOME": str(home), "PRICEPIPE_TOPIC_PREFIX": env.kafka.topic_prefix,
                 "PRICEPIPE_KEYSPACE": env.cassandra.keyspace, "PRICEPIPE_LAKE_URI": str(lake),
                 "PRICEPIPE_STATE_DIR": str(home / "state"), "PRICEPIPE_SENSOR_INTERVAL_S": str(interval_s)}
    daemon = Path(sys.executable).parent / "dagster-daemon"
    return subprocess.Popen([str(daemon), "run", "-w", "workspace.yaml"], cwd=REPO, env=variables,
                            stdout=(home / "daemon.log").open("wb"), stderr=subprocess.STDOUT, start_new_session=True)


def freshness(data: Path, records: int, every_s: float, interval_s: int) -> list[float]:
    """Produce-to-readable delays (s) of ``records`` candles produced ``every_s`` apart, daemon running."""
    with Isolated() as env, tempfile.TemporaryDirectory(prefix="pricepipe-bench-") as folder:
        home = Path(folder)
        dumps = BinanceDumps(Path.home() / ".cache" / "pricepipe" / "binance-dumps", (data / "binance").as_uri())
        candles = [c for c in dumps.records(Dataset.klines("ETHUSDT", "1m"), FIRST_DAY, FIRST_DAY)
                   if isinstance(c, Candle)][:records]
        daemon = _start_daemon(env, home, home / "lake", interval_s)
        try:
            _wait_for_first_run(env, candles[0])
            publisher = env.kafka.publisher()
            session, select = env.cassandra.session(), env.cassandra.prepare(SELECT_CANDLE)
            produced: dict[int, float] = {}
            delays: list[float] = []
            lock = threading.Lock()
            done = threading.Event()

            def poll() -> None:
                while not done.is_set() or produced:
                    with lock:
                        pending = list(produced.items())
                    for open_time, at in pending:
                        key = ("ETHUSDT", candle_bucket("1m", open_time), _time(open_time))
                        if session.execute(select, key).one() is not None:
                            with lock:
                                delays.append(time.monotonic() - produced.pop(open_time))
                    time.sleep(0.05)

            poller = threading.Thread(target=poll, daemon=True)
            poller.start()
            for candle in tqdm(candles[1:], desc="freshness: producing", unit="candle"):
                publisher.publish(candle)
                publisher.flush()
                with lock:
                    produced[candle.open_time] = time.monotonic()
                time.sleep(every_s)
            done.set()
            poller.join(timeout=120)
            return delays
        finally:
            os.killpg(daemon.pid, signal.SIGTERM)
            try:
                daemon.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(daemon.pid, signal.SIGKILL)
                daemon.wait()


def _wait_for_first_run(env: Isolated, candle: Candle, timeout_s: float = 240) -> None:
    """Publish one candle and wait until the daemon's first run stored it: code location loaded, sensors ticking."""
    publisher = env.kafka.publisher()
    publisher.publish(candle)
    publisher.flush()
    select = env.cassandra.prepare(SELECT_CANDLE)
    key = (candle.symbol, candle_bucket("1m", candle.open_time), _time(candle.open_time))
    deadline = time.monotonic() + timeout_s
    while env.cassandra.session().execute(select, key).one() is None:
        if time.monotonic() > deadline:
            raise RuntimeError("the daemon stored nothing within 4 minutes; see its log in DAGSTER_HOME/daemon.log")
        time.sleep(0.5)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data",
                        help="folder holding binance/ (a mirror of Binance's dumps)")
    parser.add_argument("--days", type=int, default=30, help="days of 1m candles for the throughput part")
    parser.add_argument("--freshness-records", type=int, default=120, help="candles produced for the freshness part")
    parser.add_argument("--every", type=float, default=1.0, help="seconds between two produced candles")
    parser.add_argument("--sensor-interval", type=int, default=2, help="PRICEPIPE_SENSOR_INTERVAL_S of the daemon")
    args = parser.parse_args()

    print(f"pricepipe ingest benchmark, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores")
    print(f"command: .venv/bin/python benchmarks/ingest.py --days {args.days} --freshness-records "
          f"{args.freshness_records} --every {args.every:g} --sensor-interval {args.sensor_interval}")
    figures = throughput(args.data, args.days)
    project = figures["rows"] / figures["project_s"]
    baseline = figures["rows"] / figures["baseline_s"]
    print("\n| path | rows | seconds | rows/s |\n| --- | ---: | ---: | ---: |")
    print(f"| pricepipe: `candles_live` run (Kafka read, decode + validate, upsert, commit) | {figures['rows']:,.0f} "
          f"| {figures['project_s']:.2f} | {project:,.0f} |")
    print(f"| of which reading + decoding the range alone | {figures['read_rows']:,.0f} | {figures['read_s']:.2f} "
          f"| {figures['read_rows'] / figures['read_s']:,.0f} |")
    print(f"| baseline: plain driver `execute_concurrent_with_args`, rows in memory | {figures['rows']:,.0f} "
          f"| {figures['baseline_s']:.2f} | {baseline:,.0f} |")
    print(f"\nratio pricepipe / baseline: {project / baseline:.2f}")

    delays = freshness(args.data, args.freshness_records, args.every, args.sensor_interval)
    if not delays:
        print("freshness: no candle became readable")
        return 1
    print(f"\nfreshness over {len(delays)} candles, one produced every {args.every:g} s, sensor interval "
          f"{args.sensor_interval} s: p50 {percentile(delays, 0.5):.1f} s, p95 {percentile(delays, 0.95):.1f} s, "
          f"max {max(delays):.1f} s, mean {statistics.fmean(delays):.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
