"""Backfill benchmark: one symbol-month of real 1m candles from the dumps to the lake and Cassandra, beside pyarrow.

pricepipe's side is the path a user takes: `pricepipe backfill` (``sources.backfill.backfill``)
publishes BTCUSDT 1m candles of 2024-01 from the dumps mirror to Kafka, and a real
`dagster-daemon` running pricepipe's code location and the stream worker (already up, as in
production) write the lake's raw zone (a local folder, through sensor-driven `candles_1m_job` runs)
and Cassandra (the worker). The clock runs from the start of the backfill until both `candles_lake` and
`candles_live` have committed every offset (each commits only after its write); every candle is
then counted in both stores. Topics, keyspace, lake and Dagster home are the benchmark's own and
removed at the end, and no process is left behind.

The peer, in the same run: plain pyarrow reads the same cached zips (`pyarrow.csv`) and writes
each day as a Parquet file. `backfill_month_vs_pyarrow` is pricepipe's seconds over pyarrow's
seconds: how many times longer the project takes to land the month than a bare conversion of the
files (which validates nothing, goes through no broker and writes no database).

    .venv/bin/python -m benchmarks.backfill [--symbol BTCUSDT] [--month 2024-01] [--sensor-interval 2]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from benchmarks.daemon import REPO, running_daemon, running_stream_worker, wait_for
from benchmarks.ingest import Isolated, candle_row, dumps, run_timings
from pricepipe_assets.contract.records import Candle
from pricepipe_assets.contract.topics import CANDLES_1M
from pricepipe_assets.defs.resources import LakeResource
from pricepipe_assets.kafka.batches import committed_and_watermarks, lag
from pricepipe_assets.settings import Settings
from pricepipe_assets.sources.backfill import backfill
from pricepipe_assets.sources.binance.dump_files import Dataset, days
from pricepipe_assets.storage.lake_datasets import RAW_CANDLES

GROUPS = ("candles_lake", "candles_live")
# A candle of another symbol, produced before the clock starts: the daemon's first run proves the
# code location loaded and the sensors tick, as they would in a deployment that is already running.
WARM_UP = Dataset.klines("ETHUSDT", "1m")


def caught_up(env: Isolated) -> bool:
    """Whether every candle group has committed up to the high watermark of every partition."""
    return all(lag(committed_and_watermarks(env.kafka, env.kafka.consumer_group(asset), CANDLES_1M)) == 0
               for asset in GROUPS)


def count_cassandra(env: Isolated, symbol: str, first: dt.date, last: dt.date) -> int:
    select = env.cassandra.prepare("SELECT COUNT(*) FROM candles WHERE symbol = ? AND interval = '1m' AND bucket = ?")
    return sum(env.cassandra.session().execute(select, (symbol, day)).one()[0] for day in days(first, last))


def count_lake(lake: LakeResource, symbol: str) -> int:
    import pyarrow.compute as pc

    table = lake.read_dataset(RAW_CANDLES, columns=["open_time"], filter=pc.field("symbol") == symbol)
    return len(pc.unique(table["open_time"]))


def pricepipe_side(data: Path, symbol: str, first: dt.date, last: dt.date, interval_s: int) -> dict[str, float]:
    with Isolated() as env, tempfile.TemporaryDirectory(prefix="pricepipe-bench-lake-") as lake_dir:
        variables = {**env.variables(), "PRICEPIPE_LAKE_URI": lake_dir,
                     "PRICEPIPE_STATE_DIR": str(Path(lake_dir) / "state"),
                     "PRICEPIPE_SENSOR_INTERVAL_S": str(interval_s),
                     "PRICEPIPE_BINANCE_DUMPS_URL": (data / "binance").as_uri()}
        settings = Settings.from_env({**os.environ, **variables})
        with running_daemon(REPO / "workspace.yaml", variables, prefix="pricepipe-bench-home-") as home, \
                running_stream_worker({**variables, "DAGSTER_HOME": str(home)}, home / "stream.log"):
            warm = next(c for c in dumps(data).records(WARM_UP, first, first) if isinstance(c, Candle))
            env.kafka.publisher().publish(warm)
            select = env.cassandra.prepare("SELECT open_time FROM candles WHERE symbol = ? AND interval = '1m' "
                                           "AND bucket = ? AND open_time = ?")
            key = candle_row(warm)
            wait_for(lambda: env.cassandra.session().execute(select, (key[0], key[2], key[3])).one() is not None
                     and caught_up(env), home, "the daemon's first run")
            started = time.perf_counter()
            backfill(settings, symbol, first, last)
            published = time.perf_counter()
            wait_for(lambda: caught_up(env), home, "the month's runs", timeout_s=600, every_s=0.1)
            finished = time.perf_counter()
            runs = run_timings(home)
        lake = LakeResource(uri=lake_dir)
        return {"publish_s": published - started, "total_s": finished - started,
                "cassandra_rows": float(count_cassandra(env, symbol, first, last)),
                "lake_rows": float(count_lake(lake, symbol)), **runs}


def pyarrow_side(data: Path, symbol: str, first: dt.date, last: dt.date) -> dict[str, float]:
    """The same zips (already in the cache, as pricepipe left them) to one Parquet file a day, plain pyarrow."""
    import pyarrow.parquet as pq
    from pyarrow import csv

    files = dumps(data).download(Dataset.klines(symbol, "1m"), first, last).files
    with tempfile.TemporaryDirectory(prefix="pricepipe-bench-pyarrow-") as folder:
        started = time.perf_counter()
        rows = 0
        for file in files:
            # The zips' CSV has no header: the columns keep pyarrow's names (f0, f1, ...), and the
            # last, which Binance leaves unused, is dropped.
            with zipfile.ZipFile(file.path) as archive, archive.open(archive.namelist()[0]) as member:
                table = csv.read_csv(member, read_options=csv.ReadOptions(autogenerate_column_names=True))
            day = Path(folder) / f"date={file.day.isoformat()}"
            day.mkdir()
            pq.write_table(table.drop_columns(table.column_names[-1:]), day / "part-0.parquet")
            rows += table.num_rows
        return {"total_s": time.perf_counter() - started, "rows": float(rows)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data",
                        help="folder holding binance/ (a mirror of Binance's dumps)")
    parser.add_argument("--symbol", default="BTCUSDT")
    parser.add_argument("--month", default="2024-01", help="YYYY-MM")
    parser.add_argument("--days", type=int, default=None, help="only the month's first N days (a shorter run)")
    parser.add_argument("--sensor-interval", type=int, default=2, help="PRICEPIPE_SENSOR_INTERVAL_S of the daemon")
    args = parser.parse_args()
    first = dt.date.fromisoformat(f"{args.month}-01")
    last = (first + dt.timedelta(days=31)).replace(day=1) - dt.timedelta(days=1)
    if args.days is not None:
        last = min(last, first + dt.timedelta(days=args.days - 1))
    expected = len(days(first, last)) * 1440

    print(f"pricepipe backfill benchmark, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores")
    print(f"command: .venv/bin/python -m benchmarks.backfill {' '.join(sys.argv[1:])}")
    project = pricepipe_side(args.data, args.symbol, first, last, args.sensor_interval)
    peer = pyarrow_side(args.data, args.symbol, first, last)
    print(f"\n{args.symbol} 1m {first}..{last}, {expected:,} candles expected; sensor interval {args.sensor_interval} s")
    print("\n| path | seconds | candles |\n| --- | ---: | ---: |")
    print(f"| pricepipe: `pricepipe backfill` to Kafka, then sensor-driven runs to the lake and Cassandra "
          f"| {project['total_s']:.2f} | lake {project['lake_rows']:,.0f}, Cassandra {project['cassandra_rows']:,.0f} |")
    print(f"| of which the backfill's publish to Kafka | {project['publish_s']:.2f} | |")
    print(f"| peer: pyarrow reads the zips, writes Parquet | {peer['total_s']:.2f} | {peer['rows']:,.0f} |")
    print(f"\nruns: {project['runs']:.0f} (the warm-up one included), median queued→started {project['queued_s']:.2f} s, "
          f"started→ended {project['running_s']:.2f} s")
    if not project["lake_rows"] == project["cassandra_rows"] == peer["rows"] == expected:
        print("a store does not hold every candle: no figure")
        return 1
    print(f"\nfigure: backfill_month_s = {project['total_s']:.2f}")
    print(f"figure: backfill_month_vs_pyarrow = {project['total_s'] / peer['total_s']:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
