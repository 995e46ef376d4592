"""Trade statistics benchmark: pricepipe's trades → `trade_stats_minute` path beside a Quix Streams app.

Both read the same topic on the local Kafka and write per-minute statistics into the local
Cassandra, in one run, alternating pricepipe then Quix for ``--pairs`` pairs:

* pricepipe: the stream worker's trades stage as `pricepipe stream` runs it (a `StageRunner` on a
  thread of its own: poll, decode and validate, store the trades, write the touched minutes,
  advance the symbols' clock, commit), limited to its `trade_stats_minute` step: the stage's
  followers (the hourly statistics, `trade_candles`) do work the Quix app does not, so they are
  left out to keep the two sides' work the same. A fresh consumer group and keyspace each run,
  timed from the runner's start (consumer created, group joined) to its last commit.
* Quix Streams: what a Quix user writes for the same job: a JSON topic with the trade time as
  message time, `.tumbling_window(60_000)` with count, sum and latest aggregations, `.final()`,
  and a batching sink writing each closed window into a table of the same schema with
  `execute_concurrent_with_args` at 64 in flight; a fresh consumer group and keyspace each run,
  timed from the `Application`'s creation to `run` returning after the last window.

The topic holds the real BTCUSD_PERP aggTrades of 2026-05-08 (from `../shared/data/binance`),
published once with the project's own publisher, then one closing trade: the day's last trade
repeated at the next midnight. A window closes only when a later event arrives, so without it
Quix would never emit the day's last minute; both sides read it, and only the source day is
compared. Each output is compared with a pandas group-by of the source file (count exact, sums,
VWAP and last price to 1e-9 relative). Topics, keyspaces and Quix state are removed at the end.

    .venv/bin/python -m benchmarks.trade_stats [--pairs 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from benchmarks.ingest import Isolated
from benchmarks.stream_bench import StageRun, groups_of, own_stage, remove_groups, row_sink, run_stage
from pricepipe_assets.contract.records import Trade
from pricepipe_assets.contract.topics import TRADES
from pricepipe_assets.defs.resources import CassandraResource, KafkaResource
from pricepipe_assets.sources.binance.dumps import BinanceDumps, Dataset
from pricepipe_assets.storage.cassandra_schema import candle_bucket
from pricepipe_assets.storage.live_tables import UPSERT_MINUTE

REPO = Path(__file__).resolve().parents[1]
SYMBOL = "BTCUSD_PERP"
DAY = dt.date(2026, 5, 8)
DATASET = Dataset.agg_trades(SYMBOL, "futures/cm")
MINUTE_MS = 60_000
STATS = ["trades", "volume", "quote_volume", "buy_volume", "sell_volume", "vwap", "last_price"]


def _time(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC)


def publish(kafka: KafkaResource, data: Path) -> int:
    """The real day and its closing trade into the benchmark's `trades`; returns the messages published."""
    dumps = BinanceDumps(Path.home() / ".cache" / "pricepipe" / "binance-dumps", (data / "binance").as_uri())
    published = dumps.backfill(kafka.publisher(), DATASET, DAY, DAY).records_published
    last = max((t for t in dumps.records(DATASET, DAY, DAY) if isinstance(t, Trade)), key=lambda t: t.ts)
    midnight = int(dt.datetime.combine(DAY + dt.timedelta(days=1), dt.time(), dt.UTC).timestamp() * 1000)
    publisher = kafka.publisher()
    publisher.publish(dataclasses.replace(last, ts=midnight))
    publisher.flush()
    return published + 1


def source_minutes(data: Path) -> pd.DataFrame:
    """The reference: a pandas group-by per minute of the source file, in trade order."""
    path = data / "binance/data/futures/cm/daily/aggTrades" / SYMBOL / f"{SYMBOL}-aggTrades-{DAY}.zip"
    trades = pd.read_csv(path).sort_values(["transact_time", "agg_trade_id"])
    sold = trades["is_buyer_maker"]
    frame = pd.DataFrame({"minute": trades["transact_time"] - trades["transact_time"] % MINUTE_MS,
                          "size": trades["quantity"], "price": trades["price"],
                          "quote": trades["quantity"] * trades["price"],
                          "buy": trades["quantity"].where(~sold, 0.0), "sell": trades["quantity"].where(sold, 0.0)})
    stats = frame.groupby("minute").agg(trades=("size", "size"), volume=("size", "sum"), quote_volume=("quote", "sum"),
                                        buy_volume=("buy", "sum"), sell_volume=("sell", "sum"),
                                        last_price=("price", "last"))
    stats["vwap"] = stats["quote_volume"] / stats["volume"]
    return stats.reset_index()


def check_output(cassandra: CassandraResource, expected: pd.DataFrame, side: str) -> None:
    """Raise unless the keyspace's minute statistics of the day equal the reference."""
    rows = cassandra.session().execute(
        f"SELECT minute, {', '.join(STATS)} FROM trade_stats_minute WHERE symbol = %s AND bucket = %s", (SYMBOL, DAY))
    stored = pd.DataFrame(list(rows))
    stored["minute"] = (stored["minute"] - pd.Timestamp("1970-01-01")) // pd.Timedelta(milliseconds=1)
    try:
        pd.testing.assert_series_equal(stored["minute"], expected["minute"], check_dtype=False)
        pd.testing.assert_series_equal(stored["trades"], expected["trades"], check_dtype=False)
        pd.testing.assert_frame_equal(stored[STATS[1:]], expected[STATS[1:]], check_dtype=False, rtol=1e-9)
    except AssertionError as error:
        raise AssertionError(f"{side}: minute statistics differ from the pandas group-by: {error}") from None


@contextmanager
def fresh_keyspace(kind: str) -> Iterator[CassandraResource]:
    """A keyspace of the project's schema for one side of one pair, dropped afterwards."""
    cassandra = CassandraResource(keyspace=f"bench_{kind}_{uuid.uuid4().hex[:8]}")
    cassandra.migrate()
    try:
        yield cassandra
    finally:
        cassandra.session().execute(f"DROP KEYSPACE IF EXISTS {cassandra.keyspace}")
        cassandra.close()


def run_pricepipe(kafka: KafkaResource, cassandra: CassandraResource, messages: int) -> StageRun:
    """One run of the trades stage's `trade_stats_minute` step over the whole topic, on fresh groups."""
    stage = own_stage("trade_stats_minute", steps=1)
    try:
        return run_stage(stage, kafka, cassandra, messages)
    finally:
        remove_groups(kafka, groups_of(kafka, stage))


def run_quix(kafka: KafkaResource, cassandra: CassandraResource, windows: int, state_dir: Path, group: str) -> float:
    """Seconds of a Quix Streams app computing and storing the topic's closed minute windows."""
    from quixstreams import Application
    from quixstreams.dataframe.windows import Count, Latest, Sum

    def row(item: Any) -> tuple[Any, ...]:
        window = item.value
        return (item.key.decode(), candle_bucket("1m", window["start"]), _time(window["start"]), window["trades"],
                window["volume"], window["quote_volume"], window["buy_volume"], window["sell_volume"],
                window["quote_volume"] / window["volume"], window["last_price"])

    sink = row_sink(cassandra, UPSERT_MINUTE, row)
    started = time.perf_counter()
    app = Application(broker_address=kafka.bootstrap_servers, consumer_group=group, auto_offset_reset="earliest",
                      state_dir=str(state_dir), loglevel="WARNING")
    topic = app.topic(kafka.topic(TRADES), value_deserializer="json",
                      timestamp_extractor=lambda value, headers, timestamp, kind: value["ts"])
    sdf = app.dataframe(topic)
    sdf = sdf.apply(lambda t: {"size": t["size"], "price": t["price"], "quote": t["size"] * t["price"],
                               "buy": t["size"] if t["side"] == "buy" else 0.0,
                               "sell": t["size"] if t["side"] == "sell" else 0.0})
    sdf = sdf.tumbling_window(MINUTE_MS).agg(
        trades=Count(), volume=Sum("size"), quote_volume=Sum("quote"), buy_volume=Sum("buy"),
        sell_volume=Sum("sell"), last_price=Latest("price")).final()
    sdf.sink(sink)
    app.run(count=windows, timeout=60)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data",
                        help="folder holding binance/ (a mirror of Binance's dumps)")
    parser.add_argument("--pairs", type=int, default=3, help="pricepipe/Quix pairs, alternating (at least 3 for the figure)")
    args = parser.parse_args()

    print(f"pricepipe trade statistics benchmark, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores")
    print(f"command: .venv/bin/python -m benchmarks.trade_stats --pairs {args.pairs}")
    expected = source_minutes(args.data)
    windows = len(expected)
    quix_groups: list[str] = []
    results: list[tuple[StageRun, float]] = []
    with Isolated() as env, tempfile.TemporaryDirectory(prefix="pricepipe-quix-") as state:
        try:
            messages = publish(env.kafka, args.data)
            print(f"published {messages:,} trades ({SYMBOL} {DAY}, with the closing trade) to {env.kafka.topic(TRADES)}")
            for pair in range(1, args.pairs + 1):
                with fresh_keyspace("pricepipe") as cassandra:
                    project = run_pricepipe(env.kafka, cassandra, messages)
                    check_output(cassandra, expected, "pricepipe")
                group = f"bench.quix.{uuid.uuid4().hex[:8]}"
                quix_groups.append(group)
                with fresh_keyspace("quix") as cassandra:
                    quix_s = run_quix(env.kafka, cassandra, windows, Path(state) / group, group)
                    check_output(cassandra, expected, "quix")
                results.append((project, quix_s))
                print(f"pair {pair}: pricepipe {project.seconds:.2f} s ({project.describe()}), Quix Streams "
                      f"{quix_s:.2f} s, both equal to the group-by")
        finally:
            remove_groups(env.kafka, quix_groups)

    print("\n| pair | pricepipe s | pricepipe trades/s | Quix s | Quix trades/s | ratio |\n"
          "| ---: | ---: | ---: | ---: | ---: | ---: |")
    ratios = []
    for pair, (project, quix_s) in enumerate(results, 1):
        project_s = project.seconds
        ratios.append(quix_s / project_s)
        print(f"| {pair} | {project_s:.2f} | {messages / project_s:,.0f} | {quix_s:.2f} | {messages / quix_s:,.0f} "
              f"| {ratios[-1]:.2f} |")
    print(f"\nfigure: trade_stats_vs_quix = {statistics.median(ratios):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
