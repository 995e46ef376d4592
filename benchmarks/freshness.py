"""Freshness benchmark: candles from produce to readable in Cassandra through pricepipe's stream worker,
beside a Quix Streams app, on a quiet machine and with one core kept busy.

What a user of the live tables waits for is the delay from a feed's produce call to the row being
readable. Each side is a consumer process of its own, started for each round and stopped after it:

* pricepipe: `pricepipe stream` as production runs it (every stage, the Dagster reporter into a
  Dagster home of its own), on a topic prefix and keyspace of its own (`Isolated`). With
  ``--pricepipe stage``, only its candles stage runs in the process, so what the rest of the worker
  costs shows as the difference.
* Quix Streams: what a Quix user writes for the job: an `Application` with `commit_interval=0.25`
  reading JSON candles from its own `candles.1m`, and a `BatchingSink` writing each checkpoint's
  candles with the same cassandra-driver, the same `INSERT` and the same rows into a keyspace of the
  project's schema. pricepipe also validates each record and advances the symbol's clock in
  `symbols` (one more write per batch): that is part of its path, not of the row's.

Rounds alternate pricepipe, Quix, pricepipe, Quix, first on the quiet machine, then with a busy-loop
process holding one of the cores. In a round, after one warm-up candle became readable (the group
joined, the connections open) and ``SETTLE_S`` more, real ETHUSDT 1m candles
(`../shared/data/binance`) are produced at ``--rate`` a second for ``--seconds`` with the project's
publisher (its producer's `linger.ms`), and a poller in this process runs a prepared SELECT on each
pending candle's key every 10 ms. CPU per event is the consumer process's own user + system time
(`/proc/<pid>/stat`, all threads) over the round divided by the candles produced: idle time
between candles included, as a long-lived consumer pays it; the idle rate alone is measured over
``IDLE_S`` before each round. Topics, keyspaces, consumer groups and Dagster homes are removed at
the end.

A chart page sees a candle later still: when the API's live stream sends it. In each pricepipe
round the API runs beside the worker as its own process on the worker's keyspace
(:mod:`benchmarks.sse_freshness`), and one client in this process, connected once the warm-up
candle was readable, holds `/stream/ETHUSDT` open. A candle's SSE delay runs from its produce call
to the arrival of the first `update` event whose candle is that one or a newer one (an event
carries only the newest candle); `sse_freshness_p95_s` pools the quiet rounds, and a candle no
event carried within ``DRAIN_S`` counts as infinite. The API's process is not part of the
worker's CPU figures; the machine's other core is shared with it as in production.

    .venv/bin/python -m benchmarks.freshness [--rate 5] [--seconds 60] [--rounds 2] [--pricepipe stream]
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from benchmarks.daemon import DAGSTER_YAML, REPO, running_process, running_stream_worker
from benchmarks.ingest import FIRST_DAY, Isolated, dumps
from benchmarks.sse_freshness import StreamClient, running_api, stream_delays
from benchmarks.stream_bench import remove_groups, row_sink, serve_stage
from pricepipe_assets.contract.records import Candle
from pricepipe_assets.contract.topics import CANDLES_1M
from pricepipe_assets.settings import Settings
from pricepipe_assets.sources.binance.dumps import Dataset
from pricepipe_assets.storage.cassandra import cassandra_cluster
from pricepipe_assets.storage.cassandra_schema import candle_bucket
from pricepipe_assets.storage.live_tables import UPSERT_VENUE_CANDLE
from pricepipe_assets.stream.stages import STAGES

SELECT_CANDLE = "SELECT open_time FROM candles WHERE symbol = ? AND interval = '1m' AND bucket = ? AND open_time = ?"
POLL_EVERY_S = 0.01
# A process's first seconds (connections, metadata, pools) are not what a long-lived consumer
# costs: rounds start this long after the warm-up candle was readable.
SETTLE_S = 15.0
IDLE_S = 10.0
# How long after the last produce a round waits for the stragglers.
DRAIN_S = 30.0
# How long the live stream may take to show the warm-up candle (the API reads the symbols' clocks once per cache period).
STREAM_WARM_UP_S = 60.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PRICEPIPE, QUIX = "pricepipe", "Quix Streams"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads, from the kernel's accounting."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def quix_row(item: Any) -> tuple[Any, ...]:
    c = item.value
    return (c["symbol"], c["interval"], candle_bucket(c["interval"], c["open_time"]), c["open_time"], c["close_time"],
            c["exchange"], c["open"], c["high"], c["low"], c["close"], c["volume"], c["quote_volume"], c["trades"],
            c["is_complete"])


def serve_quix(bootstrap: str, topic: str, keyspace: str, group: str) -> None:
    """The Quix side's process: until SIGTERM, which `Application.run` handles itself."""
    from quixstreams import Application

    sink = row_sink(cassandra_cluster(Settings.from_env(), keyspace=keyspace), UPSERT_VENUE_CANDLE, quix_row)
    with tempfile.TemporaryDirectory(prefix="pricepipe-quix-") as state:
        app = Application(broker_address=bootstrap, consumer_group=group, auto_offset_reset="earliest",
                          commit_interval=0.25, state_dir=state, loglevel="WARNING")
        app.dataframe(app.topic(topic, value_deserializer="json")).sink(sink)
        app.run()


def running_app(arguments: list[str], variables: dict[str, str], log: Path) -> AbstractContextManager[
        subprocess.Popen[bytes]]:
    """This module as a consumer process (``--quix-app`` or ``--stage-app``) until the block ends."""
    return running_process([sys.executable, "-m", "benchmarks.freshness", *arguments], variables, log)


@dataclass
class Side:
    """One consumer under test: its topics and keyspace, and its process, started for each round;
    with ``api``, also the API over its keyspace, whose live stream is timed too."""

    name: str
    env: Isolated
    process: Callable[[], AbstractContextManager[subprocess.Popen[bytes]]]
    log: Path
    api: Callable[[], AbstractContextManager[Callable[[str], StreamClient]]] | None = None

    def failed(self, process: subprocess.Popen[bytes], what: str) -> RuntimeError:
        tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])
        return RuntimeError(f"{self.name}: {what} (process {'running' if process.poll() is None else 'ended'}); "
                            f"its log ends:\n{tail}")


@dataclass
class Round:
    side: str
    busy: bool
    delays: list[float]
    missing: int
    cpu_s: float
    idle_cpu_share: float
    sse: tuple[list[float], int] | None = None  # the live stream's delays and the candles it never showed


class Prober:
    """Produces candles to a side's topic and times each until a prepared SELECT on its key finds it."""

    def __init__(self, env: Isolated) -> None:
        self.publisher = env.kafka.publisher()
        self.session, self.select = env.cassandra.session(), env.cassandra.prepare(SELECT_CANDLE)
        self.sent_at: list[float] = []  # the last round's produce times, for the delays measured elsewhere

    def readable(self, c: Candle) -> bool:
        key = (c.symbol, candle_bucket("1m", c.open_time), c.open_time)
        return self.session.execute(self.select, key).one() is not None

    def produce(self, candles: list[Candle], rate: float, alive: Callable[[], bool]) -> tuple[list[float], int]:
        """Each candle's produce-to-readable delay (s), and the candles not readable within ``DRAIN_S``."""
        pending: dict[int, float] = {}
        delays: list[float] = []
        lock, done = threading.Lock(), threading.Event()
        self.sent_at = []

        def poll() -> None:
            while not done.is_set():
                with lock:
                    waiting = list(pending)
                for index in waiting:
                    if self.readable(candles[index]):
                        seen = time.monotonic()
                        with lock:
                            delays.append(seen - pending.pop(index))
                time.sleep(POLL_EVERY_S)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        start = time.monotonic()
        for index, candle in enumerate(candles):
            time.sleep(max(0.0, start + index / rate - time.monotonic()))
            sent = time.monotonic()
            with lock:
                pending[index] = sent
            self.sent_at.append(sent)
            self.publisher.publish(candle)
        self.publisher.flush()
        deadline = time.monotonic() + DRAIN_S
        while pending and time.monotonic() < deadline and alive():
            time.sleep(0.05)
        done.set()
        poller.join(10)
        return delays, len(pending)


def measure(side: Side, prober: Prober, warm_up: Candle, candles: list[Candle], rate: float, busy: bool) -> Round:
    """One round: the side's process (and its API) started, warmed up, idle for ``IDLE_S``, then fed ``candles``."""
    with side.process() as process, (side.api() if side.api else nullcontext()) as stream_client:
        prober.publisher.publish(warm_up)
        prober.publisher.flush()
        deadline = time.monotonic() + 180
        while not prober.readable(warm_up):
            if process.poll() is not None or time.monotonic() > deadline:
                raise side.failed(process, "the warm-up candle never became readable")
            time.sleep(0.05)
        client = stream_client(warm_up.symbol) if stream_client else None
        if client and not client.wait_for(warm_up, STREAM_WARM_UP_S, lambda: process.poll() is None):
            raise side.failed(process, f"the API's live stream never showed the warm-up candle ({client.failure})")
        time.sleep(SETTLE_S)
        idle_from, idle_cpu = time.monotonic(), cpu_seconds(process.pid)
        time.sleep(IDLE_S)
        cpu_before = cpu_seconds(process.pid)
        idle_share = (cpu_before - idle_cpu) / (time.monotonic() - idle_from)
        delays, missing = prober.produce(candles, rate, lambda: process.poll() is None)
        if process.poll() is not None:
            raise side.failed(process, "the consumer ended during the round")
        cpu_s = cpu_seconds(process.pid) - cpu_before
        sse = None
        if client:
            client.wait_for(candles[-1], DRAIN_S, lambda: process.poll() is None)
            sse = stream_delays(candles, prober.sent_at, client.seen)
    return Round(side.name, busy, delays, missing, cpu_s, idle_share, sse)


@contextmanager
def busy_core(busy: bool) -> Iterator[None]:
    """A process spinning on one core for the round, when ``busy``."""
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    try:
        yield
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()


def sides(stack: ExitStack, folder: Path, whole_worker: bool) -> tuple[Side, Side]:
    """Both sides on topics and keyspaces of their own; a Dagster home for the worker's reports."""
    project_env, quix_env = stack.enter_context(Isolated()), stack.enter_context(Isolated())
    home = folder / "dagster"
    home.mkdir()
    shutil.copy(DAGSTER_YAML, home / "dagster.yaml")
    variables = {**project_env.variables(), "DAGSTER_HOME": str(home)}
    project_log, quix_log = folder / "pricepipe.log", folder / "quix.log"
    group = f"bench.quix.{uuid.uuid4().hex[:8]}"
    stack.callback(remove_groups, quix_env.kafka, [group])
    stack.callback(remove_groups, project_env.kafka,
                   [project_env.kafka.consumer_group(step.asset) for stage in STAGES for step in stage.steps])
    quix_app = ["--quix-app", quix_env.kafka.bootstrap_servers, quix_env.kafka.topic(CANDLES_1M),
                quix_env.cassandra.keyspace, group]
    project = ((lambda: running_stream_worker(variables, project_log)) if whole_worker
               else (lambda: running_app(["--stage-app"], variables, project_log)))
    api = partial(running_api, project_env.cassandra.keyspace, folder / "api.log")
    return (Side(PRICEPIPE, project_env, project, project_log, api),
            Side(QUIX, quix_env, lambda: running_app(quix_app, {}, quix_log), quix_log))


def pooled(rounds: list[Round], side: str, busy: bool) -> dict[str, float]:
    """A side's delays over its rounds of one condition (a candle never readable counts as infinite)."""
    chosen = [r for r in rounds if r.side == side and r.busy == busy]
    delays = [d for r in chosen for d in r.delays] + [math.inf] * sum(r.missing for r in chosen)
    events = sum(len(r.delays) + r.missing for r in chosen)
    sse = [d for r in chosen if r.sse for d in r.sse[0]] + [math.inf] * sum(r.sse[1] for r in chosen if r.sse)
    return {"candles": events, "p50": percentile(delays, 0.5), "p95": percentile(delays, 0.95),
            "p99": percentile(delays, 0.99), "max": max(delays), "cpu_ms": 1000 * sum(r.cpu_s for r in chosen) / events,
            "idle": 100 * sum(r.idle_cpu_share for r in chosen) / len(chosen),
            "sse_p95": percentile(sse, 0.95) if sse else math.nan}


def sse_line(result: Round) -> str:
    if not result.sse:
        return ""
    seen, missing = result.sse
    return f", SSE p95 {percentile(seen + [math.inf] * missing, 0.95):.3f} s ({missing} never shown)"


def report(rounds: list[Round]) -> list[str]:
    header = "| p50 s | p95 s | p99 s | max s | CPU ms/candle | idle CPU % of a core | SSE p95 s |"
    print(f"\n| condition | side | candles {header}\n| --- | --- | ---: {'| ---: ' * 7}|")
    stats = {}
    for busy in (False, True):
        for side in (PRICEPIPE, QUIX):
            s = stats[side, busy] = pooled(rounds, side, busy)
            print(f"| {'one core busy' if busy else 'quiet'} | {side} | {s['candles']} | {s['p50']:.3f} "
                  f"| {s['p95']:.3f} | {s['p99']:.3f} | {s['max']:.3f} | {s['cpu_ms']:.2f} | {s['idle']:.1f} "
                  f"| {'-' if math.isnan(s['sse_p95']) else format(s['sse_p95'], '.3f')} |")
    quiet, busy = (stats[PRICEPIPE, False], stats[QUIX, False]), (stats[PRICEPIPE, True], stats[QUIX, True])
    return [f"freshness_p99_s = {quiet[0]['p99']:.3f}",
            f"freshness_p99_vs_quix = {quiet[0]['p99'] / quiet[1]['p99']:.2f}",
            f"freshness_p99_vs_quix_busy = {busy[0]['p99'] / busy[1]['p99']:.2f}",
            f"live_cpu_per_event_vs_quix = {quiet[0]['cpu_ms'] / quiet[1]['cpu_ms']:.2f}",
            f"sse_freshness_p95_s = {quiet[0]['sse_p95']:.3f}"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data",
                        help="folder holding binance/ (a mirror of Binance's dumps)")
    parser.add_argument("--rate", type=float, default=5.0, help="candles produced a second")
    parser.add_argument("--seconds", type=float, default=60.0, help="seconds of producing in each round")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of each side in each condition (at least 2)")
    parser.add_argument("--pricepipe", choices=("stream", "stage"), default="stream",
                        help="pricepipe's side: `pricepipe stream` (the figures), or its candles stage alone in a "
                        "process (to see what the rest of the worker costs)")
    parser.add_argument("--quix-app", nargs=4, metavar=("BOOTSTRAP", "TOPIC", "KEYSPACE", "GROUP"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--stage-app", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quix_app:
        serve_quix(*args.quix_app)
        return 0
    if args.stage_app:
        serve_stage("candles_live")
        return 0

    print(f"pricepipe freshness benchmark, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores")
    print(f"command: .venv/bin/python -m benchmarks.freshness {' '.join(sys.argv[1:])}")
    size = int(args.rate * args.seconds) + 1  # the warm-up candle, then the round's
    needed = 2 * args.rounds * size
    last = FIRST_DAY + dt.timedelta(days=math.ceil(needed / 1440) - 1)
    candles = [c for c in dumps(args.data).records(Dataset.klines("ETHUSDT", "1m"), FIRST_DAY, last)
               if isinstance(c, Candle)]
    rounds: list[Round] = []
    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pricepipe-freshness-")))
        both = sides(stack, folder, args.pricepipe == "stream")
        probers = {side.name: Prober(side.env) for side in both}
        slot = 0
        for busy in (False, True):
            with busy_core(busy):
                for number in range(1, args.rounds + 1):
                    chunk = candles[slot * size:(slot + 1) * size]
                    slot += 1
                    for side in both:
                        result = measure(side, probers[side.name], chunk[0], chunk[1:], args.rate, busy)
                        rounds.append(result)
                        ordered = sorted(result.delays)
                        print(f"{'busy' if busy else 'quiet'} round {number}, {side.name}: {len(ordered)} readable, "
                              f"{result.missing} missing, p50 {percentile(ordered, 0.5):.3f} s, p99 "
                              f"{percentile(ordered, 0.99):.3f} s, max {ordered[-1]:.3f} s, "
                              f"{1000 * result.cpu_s / len(chunk[1:]):.2f} CPU ms/candle{sse_line(result)}",
                              flush=True)
    figures = report(rounds)
    print()
    for figure in figures:
        print(f"figure: {figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
