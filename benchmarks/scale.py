"""Scale benchmark: the trades a second the stream worker's trades stage holds with fresh statistics
over many symbols, beside a Quix Streams app doing the same job, and with two workers.

The real BTCUSD_PERP aggTrades of 2026-05-08 (`../shared/data/binance`, 105,280 trades) are dealt
round-robin over ``--symbols`` derived symbols (`BTCUSD_PERP_000`, ...): ids, times, sides, prices
and sizes stay real. The day is replayed pass after pass, each pass one day later, so each (symbol,
minute) is new and event time only moves forward, as in a live feed. The project's `Publisher` (its
producer's `linger.ms` and lz4) sends them, in this process, to a `trades` topic with the project's
default partitions, so every side reads the same JSON. Each side has a topic prefix and keyspace of
its own (`Isolated`) and consumer processes that are started once and kept running; a side is only
restarted after a rate it did not hold, with its backlog skipped, so no side works off a backlog
while another is measured:

* pricepipe: the worker's trades stage as `pricepipe stream` runs it (a `StageRunner` thread: poll,
  decode and validate, store the trades, write the touched minutes, advance the symbols' clock,
  commit after the write; the stored trades and the clock are work of its own), limited to its
  `trade_stats_minute` step, because the followers (hourly statistics, `trade_candles`) do work the
  Quix app does not. ``--followers`` runs the whole stage.
* Quix Streams: an `Application` with `commit_interval=0.25` over the same JSON (trade time as
  message time): per symbol a 1-minute tumbling window of count, sums and latest price, `.current()`,
  and a `BatchingSink` that upserts each checkpoint's touched minutes (the last update of each) into
  `trade_stats_minute` with the same cassandra-driver, 64 requests in flight. Quix commits at its
  checkpoint, after the sink returned.
* pricepipe, two workers: two processes of that stage in one consumer group, sharing the partitions.

The rate steps up through ``--rates`` trades a second, ``--seconds`` at each step, and the sides take
turns at each rate (pricepipe, Quix, two workers). A side stops climbing at the first rate it does
not hold; then ``--refine`` bisection steps run between its best held rate and that one. Freshness
is measured from outside, the same way for every side. Each message's produce time is its Kafka
timestamp (the producer sets it at the produce call; it is read back after the step). A thread here
reads the side's committed offsets every 50 ms, and a message counts as fresh at the first reading
whose committed offset passed it. Both sides commit only after their writes returned, so a row is
readable at the latest then (pricepipe may write a batch well before the commit covering it;
Quix writes at its checkpoint, every 0.25 s, just before committing). A rate is held
when the producer reached 95 % of it, every message was committed within ``DRAIN_S`` of the last
produce, and the p99 of (commit seen − produced) is at most 2 s. A side's sustained figure is its
highest held rate. CPU is the side's own processes' (from /proc) per thousand trades. The producer
shares the machine's cores with the sides: at 16k trades a second it takes about 2/3 of a core.
Topics, keyspaces, consumer groups and Quix's changelogs are removed at the end.

    .venv/bin/python -m benchmarks.scale [--seconds 20] [--rates 250,500,1000,2000,4000,8000,16000] [--symbols 500]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import itertools
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

from benchmarks.daemon import running_process
from benchmarks.freshness import cpu_seconds, percentile
from benchmarks.ingest import Isolated, dumps
from benchmarks.stream_bench import (
    Sampler,
    commit_delays,
    members,
    minute_row,
    pace,
    produce_times,
    remove_groups,
    row_sink,
    serve_stage,
    trade_minutes,
)
from benchmarks.trade_stats import DATASET, DAY, REPO, SYMBOL
from pricepipe_assets.contract.records import INTERVAL_MS, Trade
from pricepipe_assets.contract.topics import TRADES
from pricepipe_assets.defs.resources import KafkaResource
from pricepipe_assets.settings import Settings
from pricepipe_assets.storage.cassandra import cassandra_cluster
from pricepipe_assets.storage.live_tables import UPSERT_MINUTE
from pricepipe_assets.stream.stages import STAGES

ASSET = "trade_stats_minute"
FRESH_S = 2.0
SAMPLE_S = 0.05
# How long after the last produce a step waits for its messages to be committed.
DRAIN_S = 10.0
# A side's processes are measured only after they joined, wrote this many trades, and idled this long.
WARM_UP = 1_000
SETTLE_S = 5.0
START_S = 180.0
DAY_MS = INTERVAL_MS["1d"]
PRICEPIPE, QUIX, TWO_WORKERS = "pricepipe", "Quix Streams", "pricepipe, two workers"


def replay(day: list[Trade], symbols: int) -> Iterator[Trade]:
    """The day's trades dealt round-robin over derived symbols, pass after pass, each pass a day later."""
    names = [f"{SYMBOL}_{n:0{len(str(symbols - 1))}d}" for n in range(symbols)]
    for shift in itertools.count(0, DAY_MS):
        for index, trade in enumerate(day):
            yield dataclasses.replace(trade, symbol=names[index % symbols], ts=trade.ts + shift)


class Wide(Isolated):
    """`Isolated` with the project's default partitions, which two workers need to have some to share."""

    def __init__(self) -> None:
        super().__init__()
        self.kafka = KafkaResource(topic_prefix=self.kafka.topic_prefix,
                                   topic_partitions=Settings().kafka_topic_partitions)


@dataclasses.dataclass(frozen=True)
class Step:
    """One side at one rate: what the producer reached, each trade's freshness, the side's CPU, and
    how many attempts a consumer process ended in (the second is the last)."""

    rate: int
    reached: float
    delays: list[float]
    missing: int
    cpu_s: float
    crashes: int

    @property
    def trades(self) -> int:
        return len(self.delays) + self.missing

    def quantile(self, share: float) -> float:
        return percentile(self.delays + [math.inf] * self.missing, share)

    @property
    def held(self) -> bool:
        return (self.reached >= 0.95 * self.rate and self.missing == 0 and self.crashes < 2
                and self.quantile(0.99) <= FRESH_S)

    def describe(self) -> str:
        return (f"reached {self.reached:,.0f}/s, p50 {self.quantile(0.5):.3f} s, p99 {self.quantile(0.99):.3f} s, "
                f"max {self.quantile(1.0):.3f} s, {self.missing:,} of {self.trades:,} not committed, "
                f"{1e6 * self.cpu_s / max(self.trades, 1):.0f} CPU ms per 1k trades, {self.crashes} crashes")


class Side:
    """One consumer under test: its topic and keyspace, its processes (one command each), its group's
    offsets as seen from outside, and its own stream of the replayed trades."""

    def __init__(self, name: str, env: Isolated, group: str, commands: list[list[str]], logs: Path,
                 trades: Iterator[Trade]) -> None:
        from confluent_kafka import TopicPartition

        self.name, self.env, self.group, self.commands, self.logs, self.trades = name, env, group, commands, logs, trades
        self.topic = env.kafka.topic(TRADES)
        self.publisher = env.kafka.publisher()
        self.watcher = env.kafka.consumer(group)  # never subscribes: it only reads the group's commits
        self.admin = env.kafka.admin()
        self.lock = threading.Lock()
        partitions = sorted(self.watcher.list_topics(self.topic, timeout=10).topics[self.topic].partitions)
        self.partitions = [TopicPartition(self.topic, p) for p in partitions]
        self.stack = ExitStack()
        self.processes: list[subprocess.Popen[bytes]] = []
        self.steps: list[Step] = []

    def committed(self) -> dict[int, int]:
        with self.lock:
            return {tp.partition: max(tp.offset, 0) for tp in self.watcher.committed(self.partitions, timeout=10)}

    def ends(self) -> dict[int, int]:
        with self.lock:
            return {tp.partition: self.watcher.get_watermark_offsets(tp, timeout=10, cached=False)[1]
                    for tp in self.partitions}

    def cpu(self) -> float:
        return sum(cpu_seconds(process.pid) for process in self.processes)

    def ended(self) -> str | None:
        """The end of the log of a process that ended, if one did."""
        ended = [n for n, process in enumerate(self.processes) if process.poll() is not None]
        if not ended:
            return None
        log = (self.logs / f"{self.slug}.{ended[0]}.log").read_text(errors="replace")
        return f"{self.name}: a consumer process ended; its log ends:\n" + "\n".join(log.splitlines()[-30:])

    def check_alive(self, what: str) -> None:
        if (ended := self.ended()) is not None:
            raise RuntimeError(f"{what}: {ended}")

    @property
    def slug(self) -> str:
        return self.name.replace(" ", "").replace(",", "-").lower()

    def wait_committed(self, deadline: float, what: str) -> None:
        ends = self.ends()
        while any(self.committed().get(p, 0) < end for p, end in ends.items()):
            self.check_alive(what)
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: not everything committed {what}")
            time.sleep(0.1)

    def start(self) -> None:
        """Start the processes, wait until each holds partitions, then warm them up."""
        print(f"{self.name}: starting {len(self.commands)} consumer process(es)", file=sys.stderr, flush=True)
        self.processes = [self.stack.enter_context(running_process(command, self.env.variables(),
                                                                   self.logs / f"{self.slug}.{n}.log"))
                          for n, command in enumerate(self.commands)]
        deadline = time.monotonic() + START_S
        while members(self.admin, self.group) < len(self.processes):
            self.check_alive("joining the group")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: its {len(self.processes)} process(es) never all held partitions")
            time.sleep(0.2)
        for trade in itertools.islice(self.trades, WARM_UP):
            self.publisher.publish(trade)
        self.publisher.flush()
        self.wait_committed(deadline, "during the warm-up")
        time.sleep(SETTLE_S)

    def stop(self) -> None:
        self.stack.close()
        self.processes = []

    def reset(self) -> None:
        """Stop the processes and move the group to the topic's end: the backlog of a rate not held would
        otherwise be worked off while another side is measured, on the same cores."""
        from confluent_kafka import KafkaException, TopicPartition

        self.stop()
        ends = [TopicPartition(self.topic, p, end) for p, end in self.ends().items()]
        consumer = self.env.kafka.consumer(self.group)
        try:
            for attempt in range(30):  # until the stopped members have left the group
                try:
                    consumer.commit(offsets=ends, asynchronous=False)
                    return
                except KafkaException:
                    time.sleep(1 + attempt)
            raise RuntimeError(f"{self.name}: could not move {self.group} past its backlog")
        finally:
            consumer.close()

    def close(self) -> None:
        self.stop()
        self.watcher.close()


def measure(side: Side, rate: int, seconds: float) -> Step:
    """One step: the side fed ``rate`` trades a second for ``seconds``, then given ``DRAIN_S`` to
    commit them; a side that did not hold the rate is reset. A consumer process that ends during
    the step is reported, restarted, and given the step once more: Quix 3.28 was seen to stop on a
    message of its own changelog handed to its dataframe, which says nothing of the rate."""
    crashes = 0
    while True:
        if not side.processes:
            side.start()
        trades = list(itertools.islice(side.trades, round(rate * seconds)))
        start, cpu_before = side.ends(), side.cpu()
        sampler = Sampler(side.committed, SAMPLE_S)
        sampler.start()
        try:
            reached = pace(side.publisher, trades, rate)
            end, deadline = side.ends(), time.monotonic() + DRAIN_S
            while not sampler.reached(end) and time.monotonic() < deadline and side.ended() is None:
                time.sleep(SAMPLE_S)
        finally:
            sampler.done.set()
            sampler.join(10)
        if (ended := side.ended()) is None or crashes:
            break
        crashes += 1
        print(ended, file=sys.stderr, flush=True)
        side.reset()
    crashes += ended is not None
    cpu_s = side.cpu() - cpu_before if ended is None else math.nan
    stamps = produce_times(side.env.kafka, side.topic, start, end)
    step = Step(rate, reached, *commit_delays(stamps, sampler.samples), cpu_s, crashes)
    side.steps.append(step)
    print(f"{side.name} at {rate:,} trades/s: {step.describe()}: {'held' if step.held else 'NOT held'}",
          file=sys.stderr, flush=True)
    if not step.held:
        side.reset()
    return step


def refined(steps: list[Step]) -> int | None:
    """The next rate to try between the best held and the lowest not held above it (bisection on a
    log scale, halving when none held); None when the ladder's top was held or the gap is closed."""
    held = max((s.rate for s in steps if s.held), default=0)
    failed = min((s.rate for s in steps if not s.held and s.rate > held), default=None)
    if failed is None:
        return None
    rate = int(round(math.sqrt(held * failed) if held else failed / 2, -2))
    return rate if held * 1.05 < rate < failed * 0.95 else None


def sustained(side: Side) -> int:
    return max((s.rate for s in side.steps if s.held), default=0)


def sides(stack: ExitStack, folder: Path, day: list[Trade], symbols: int, steps: int | None) -> list[Side]:
    """The three sides on topics and keyspaces of their own; their groups are removed at the end."""
    me = [sys.executable, "-m", "benchmarks.scale"]
    stage = [*me, "--stage-app", str(steps or 0)]
    made = []
    for name in (PRICEPIPE, QUIX, TWO_WORKERS):
        env = stack.enter_context(Wide())
        if name == QUIX:
            groups = [f"bench.quix.{uuid.uuid4().hex[:8]}"]
            commands = [[*me, "--quix-app", env.kafka.bootstrap_servers, env.kafka.topic(TRADES),
                         env.cassandra.keyspace, groups[0], str(folder / "quix-state")]]
        else:
            groups = [env.kafka.consumer_group(step.asset) for s in STAGES if s.asset == ASSET for step in s.steps]
            commands = [stage] * (2 if name == TWO_WORKERS else 1)
        stack.callback(remove_groups, env.kafka, groups)
        side = Side(name, env, groups[0], commands, folder, replay(day, symbols))
        stack.callback(side.close)
        made.append(side)
    return made


def serve_quix(bootstrap: str, topic: str, keyspace: str, group: str, state: str) -> None:
    """The Quix side's process, until SIGTERM (which `Application.run` handles); its state folder
    outlives a restart, as a deployed app's volume does, so a restart does not replay the changelog."""
    from quixstreams import Application

    sink = row_sink(cassandra_cluster(Settings.from_env(), keyspace=keyspace), UPSERT_MINUTE, minute_row,
                    key=lambda item: (item.key, item.value["start"]))
    app = Application(broker_address=bootstrap, consumer_group=group, auto_offset_reset="earliest",
                      commit_interval=0.25, state_dir=state, loglevel="WARNING")
    trades = app.topic(topic, value_deserializer="json",
                       timestamp_extractor=lambda value, headers, timestamp, kind: value["ts"])
    trade_minutes(app.dataframe(trades)).current().sink(sink)
    app.run()


def report(all_sides: list[Side], top: int) -> list[str]:
    print("\n| side | trades/s asked | reached | trades | p50 s | p99 s | max s | not committed "
          "| CPU ms / 1k trades | crashes | held |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
          "| --- |")
    for side in all_sides:
        for s in sorted(side.steps, key=lambda s: s.rate):
            print(f"| {side.name} | {s.rate:,} | {s.reached:,.0f} | {s.trades:,} | {s.quantile(0.5):.3f} "
                  f"| {s.quantile(0.99):.3f} | {s.quantile(1.0):.3f} | {s.missing:,} "
                  f"| {1e6 * s.cpu_s / max(s.trades, 1):.0f} | {s.crashes} | {'yes' if s.held else 'no'} |")
    for side in all_sides:
        if sustained(side) >= top:
            print(f"{side.name} held the highest rate asked: its figure is a lower bound")
    one, quix, two = (sustained(side) for side in all_sides)
    return [f"stream_sustained_trades_s = {one}", f"stream_sustained_trades_s_quix = {quix}",
            f"stream_sustained_vs_quix = {one / quix if quix else math.nan:.2f}",
            f"stream_sustained_trades_s_two_workers = {two}",
            f"stream_sustained_two_workers_vs_one = {two / one if one else math.nan:.2f}"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data",
                        help="folder holding binance/ (a mirror of Binance's dumps)")
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds of producing at each rate")
    parser.add_argument("--rates", type=lambda text: sorted(int(r) for r in text.split(",")),
                        default=[250, 500, 1000, 2000, 4000, 8000, 16000], help="trades a second to step through, comma-separated")
    parser.add_argument("--symbols", type=int, default=500, help="derived symbols the day's trades are dealt over")
    parser.add_argument("--refine", type=int, default=2, help="bisection steps per side after the ladder")
    parser.add_argument("--followers", action="store_true",
                        help="run the trades stage with its followers (hourly statistics, trade_candles)")
    parser.add_argument("--quix-app", nargs=5, help=argparse.SUPPRESS)
    parser.add_argument("--stage-app", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quix_app:
        serve_quix(*args.quix_app)
        return 0
    if args.stage_app is not None:
        serve_stage(ASSET, args.stage_app or None)
        return 0

    print(f"pricepipe scale benchmark, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores")
    print(f"command: .venv/bin/python -m benchmarks.scale {' '.join(sys.argv[1:])}")
    day = [t for t in dumps(args.data).records(DATASET, DAY, DAY) if isinstance(t, Trade)]
    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pricepipe-scale-")))
        all_sides = sides(stack, folder, day, args.symbols, None if args.followers else 1)
        for rate in args.rates:
            for side in all_sides:
                if all(step.held for step in side.steps):
                    measure(side, rate, args.seconds)
        for _ in range(args.refine):
            for side in all_sides:
                if (rate := refined(side.steps)) is not None:
                    measure(side, rate, args.seconds)
    figures = report(all_sides, args.rates[-1])
    print()
    for figure in figures:
        print(f"figure: {figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
