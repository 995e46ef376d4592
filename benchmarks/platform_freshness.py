"""Platform freshness: from a candle's produce to `candles.1m` until `/candles/{symbol}` serves it, on
the platform `make run` starts, quiet and while `analytics_job` runs.

The requirement it checks: a candle produced to `candles.1m` is served by `/candles/{symbol}` within
1.5 s at p95, also while `analytics_job` runs. A user of `make run` sees the whole path: the feed's
produce call, the stream worker's write and the symbol's clock, and the API's read of both, with
the Dagster daemon, its runs, the webserver and the feed sharing the machine.

`pricepipe run` is started as `make run` starts it (soak.py's functions: a keyspace, topic prefix,
consumer groups, lake, state and Dagster home of its own, the feed replaying the local dumps
mirror, the daily histories in first) with the demo's own settings: PRICEPIPE_REPLAY_HISTORY_DAYS
of history at once, then the paced replay at PRICEPIPE_REPLAY_SPEED (60x: a BTCUSDT candle a
second). Once the API answers, the feed is past its history and the stream worker has caught up
with it (its `candles_live` lag under ``WARM_LAG``), a consumer in this process reads `candles.1m`
from its end and notes each BTCUSDT candle's Kafka timestamp: the producer's CreateTime, when the
feed produced it. Every ``POLL_S`` the benchmark asks the API, for each candle not served yet:

- ``/candles/BTCUSDT?start=<open time>``: the range ends at the symbol's clock, as in the plain
  ``/candles/BTCUSDT``, so the candle counts as served once its row *and* the clock that puts it
  in the default range are there: the figures;
- ``/candles/BTCUSDT?start=<open time>&end=<open time + 1m>``: its row alone, to tell the write
  path from the clock.

Latency = time of the first answer holding the candle - produce time; a candle not served within
``GIVE_UP_S`` counts as missed, an infinite latency in the percentiles.

`analytics_job` is the platform's own doing as a rule: `analytics_sensor` requests a run once the
history reaches the lake (and for each new day of it), `analytics_schedule` every 30 minutes. If no
run of it exists after ``--launch-after`` of the window, the benchmark launches one as the UI's
Launch button does: `dagster job launch` against the platform's own workspace (its code server),
queued by its instance and started by its daemon. A sample is
"during analytics" when its produce time lies between the start and the end of an `analytics_job`
run, from the run records of the platform's Dagster instance. At the end the platform is stopped
with Ctrl-C and its keyspace, topics, consumer groups and lake are removed.

    .venv/bin/python -m benchmarks.platform_freshness [--minutes 10] [--launch-after 0.3]
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import math
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import requests
from confluent_kafka import OFFSET_END, TIMESTAMP_CREATE_TIME, TopicPartition

from benchmarks.soak import (
    REPO,
    SHARED,
    isolated_env,
    remove_platform_data,
    servers_up,
    start_platform,
    stop_platform,
)
from pricepipe_assets.contract.records import CANDLE_TOPICS, Candle, RecordError, decode
from pricepipe_assets.contract.topics import CANDLES_1M
from pricepipe_assets.kafka.batches import committed_and_watermarks, lag, partitions_of
from pricepipe_assets.kafka.client import KafkaCluster, kafka_cluster
from pricepipe_assets.settings import Settings

SYMBOL = "BTCUSDT"
ANALYTICS_JOB = "analytics_job"
POLL_S = 0.05
GIVE_UP_S = 30.0
# The stream worker counts as caught up with the history once its candles lag this little behind.
WARM_LAG = 100
# Records a second on `candles.1m` above which the feed is still publishing its history at once:
# the paced replay at the demo's 60x produces one candle a second per symbol.
PACED_RATE_MAX = 50.0
WARM_UP_S = 1200.0
RUNS_EVERY_S = 10.0
# An `analytics_job` run: start and end (epoch s, None before), status, and which sensor or schedule
# requested it ("" when launched here).
Run = tuple[float | None, float | None, str, str]


@dataclass
class Sample:
    """One BTCUSDT candle: produce time and the moments its two requests first held it (epoch s)."""

    open_ms: int
    produced_s: float
    served_s: float | None = None
    in_range_s: float | None = None
    during_analytics: bool = False

    def latency(self, served_s: float | None) -> float:
        return math.inf if served_s is None else served_s - self.produced_s


class Api:
    """The platform's API as a client sees it: one keep-alive session, the key when one is set."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.session = requests.Session()
        key = Settings.from_env().api_key
        if key:
            self.session.headers["X-API-Key"] = key

    def healthy(self) -> bool:
        try:
            answer = self.session.get(f"{self.base}/health", timeout=5)
        except requests.RequestException:
            return False
        return answer.ok and all(answer.json().get(name) for name in ("kafka", "cassandra"))

    def holds(self, open_ms: int, bounded: bool) -> bool:
        """Whether the answer for a range starting at the candle holds it: the range ends at the
        symbol's clock, or with ``bounded`` one minute later."""
        start = dt.datetime.fromtimestamp(open_ms / 1000, dt.UTC)
        params = {"start": start.isoformat().replace("+00:00", "Z")}
        if bounded:
            params["end"] = (start + dt.timedelta(minutes=1)).isoformat().replace("+00:00", "Z")
        try:
            answer = self.session.get(f"{self.base}/candles/{SYMBOL}", params=params, timeout=5)
        except requests.RequestException:
            return False
        candles = answer.json().get("candles") if answer.ok else None
        return bool(candles) and dt.datetime.fromisoformat(candles[0]["open_time"]) == start


def wait_until_warm(kafka: KafkaCluster, api: Api, run: subprocess.Popen[bytes]) -> None:
    """Until the API answers, the feed produces at the paced rate and the stream worker caught up:
    the history published at once is a backlog no live candle meets."""
    deadline = time.monotonic() + WARM_UP_S
    high_before, at_before = None, time.monotonic()
    while time.monotonic() < deadline:
        if run.poll() is not None:
            raise RuntimeError(f"pricepipe run exited with {run.returncode} while starting")
        time.sleep(5)
        if not api.healthy():
            continue
        offsets = {topic: committed_and_watermarks(kafka, kafka.consumer_group("candles_live"), topic)
                   for topic in CANDLE_TOPICS.values()}
        behind = sum(lag(by_partition) for by_partition in offsets.values())
        high, now = sum(h for _, _, h in offsets[CANDLES_1M].values()), time.monotonic()
        rate = None if high_before is None else (high - high_before) / (now - at_before)
        high_before, at_before = high, now
        print(f"[platform_freshness] warming up: candles.1m {high:,} ({rate or 0:,.1f}/s), "
              f"candles_live lag {behind:,}", flush=True)
        if rate is not None and 0 < rate <= PACED_RATE_MAX and behind <= WARM_LAG:
            return
    raise RuntimeError(f"the platform did not reach its paced replay within {WARM_UP_S:.0f} s")


def watch_candles(kafka: KafkaCluster, samples: list[Sample], lock: threading.Lock, stop: threading.Event,
                  ready: threading.Event) -> None:
    """Note each BTCUSDT candle produced from now on, with its producer's timestamp (the time this
    consumer saw it if the broker gave none)."""
    consumer = kafka.consumer(f"{kafka.topic_prefix}platform-freshness")
    topic = kafka.topic(CANDLES_1M)
    try:
        consumer.assign([TopicPartition(topic, p, OFFSET_END) for p in partitions_of(consumer, topic)])
        ready.set()
        while not stop.is_set():
            message = consumer.poll(0.1)
            if message is None or message.error() is not None:
                continue
            seen = time.time()
            try:
                candle = decode(CANDLES_1M, message.value())
            except RecordError:
                continue
            if not isinstance(candle, Candle) or candle.symbol != SYMBOL:
                continue
            kind, ms = message.timestamp()
            with lock:
                samples.append(Sample(candle.open_time, ms / 1000 if kind == TIMESTAMP_CREATE_TIME else seen))
    finally:
        ready.set()
        consumer.close()


def analytics_runs(dagster_home: Path) -> list[Run]:
    """Every `analytics_job` run the platform's instance holds."""
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        records = instance.get_run_records(filters=dg.RunsFilter(job_name=ANALYTICS_JOB))
    return [(r.start_time, r.end_time, r.dagster_run.status.value,
             r.dagster_run.tags.get("dagster/sensor_name") or r.dagster_run.tags.get("dagster/schedule_name", ""))
            for r in records]


def launch_analytics(env: dict[str, str]) -> None:
    """Queue a run through the platform's own instance and code server, as the UI's Launch button does."""
    workspace = Path(env["PRICEPIPE_STATE_DIR"]) / "dagster-workspace.yaml"
    done = subprocess.run([str(Path(sys.executable).parent / "dagster"), "job", "launch", "-w", str(workspace),
                           "-j", ANALYTICS_JOB], env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    outcome = "launched" if done.returncode == 0 else f"could not be launched ({done.returncode})"
    print(f"[platform_freshness] {ANALYTICS_JOB} {outcome}: {(done.stdout + done.stderr).strip()[-300:]}", flush=True)


def follow_analytics(env: dict[str, str], runs: list[Run], stop: threading.Event, launch_at: float,
                     served: Callable[[], list[float]]) -> None:
    """Keep ``runs`` current and launch a run at ``launch_at`` (monotonic) if none exists; on a
    thread of its own, since opening the instance and launching take the time of many polls."""
    home = Path(env["DAGSTER_HOME"])
    launched = False
    while not stop.wait(RUNS_EVERY_S):
        runs[:] = analytics_runs(home)
        done = sorted(served())
        print(f"[platform_freshness] candles served {len(done):>4}, p50 {percentile(done, 0.5):.3f} s; "
              f"{ANALYTICS_JOB} runs: {', '.join(status for *_, status, _ in runs) or 'none'}", flush=True)
        if not launched and not runs and time.monotonic() > launch_at:
            launch_analytics(env)
            launched = True


def poll_api(api: Api, samples: list[Sample], lock: threading.Lock) -> None:
    """One round of requests for every candle neither served yet nor given up on."""
    with lock:
        open_ = [s for s in samples if (s.served_s is None or s.in_range_s is None)
                 and time.time() - s.produced_s < GIVE_UP_S]
    for sample in open_:
        if sample.served_s is None and api.holds(sample.open_ms, bounded=False):
            sample.served_s = time.time()
        if sample.in_range_s is None and api.holds(sample.open_ms, bounded=True):
            sample.in_range_s = time.time()


def percentile(values: list[float], share: float) -> float:
    """Nearest rank, so that a missed candle (infinite) counts as the latency it is."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)] if ordered else math.nan


def report(samples: list[Sample], runs: list[Run], out: Path) -> None:
    """Per condition the served and in-range latencies, the samples as CSV, and the figure lines."""
    print("| condition | candles | measure | p50 s | p95 s | p99 s | max s | missed |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, chosen in (("all", samples), ("quiet", [s for s in samples if not s.during_analytics]),
                         ("during analytics", [s for s in samples if s.during_analytics])):
        for measure, values in (("served", [s.latency(s.served_s) for s in chosen]),
                                ("in range", [s.latency(s.in_range_s) for s in chosen])):
            quantiles = " | ".join(f"{percentile(values, q):.3f}" for q in (0.5, 0.95, 0.99))
            print(f"| {name} | {len(chosen)} | {measure} | {quantiles} | {max(values, default=math.nan):.3f} "
                  f"| {sum(math.isinf(v) for v in values)} |")
    for begun, ended, status, origin in runs:
        clock = [f"{dt.datetime.fromtimestamp(t, dt.UTC):%H:%M:%S}" if t else "-" for t in (begun, ended)]
        print(f"[platform_freshness] {ANALYTICS_JOB} ({origin or 'launched here'}): started {clock[0]}, "
              f"ended {clock[1]} UTC, {status} as measuring ended")
    with open(out / "samples.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["open_ms", "produced_s", "served_latency_s", "in_range_latency_s", "during_analytics"])
        writer.writerows([s.open_ms, f"{s.produced_s:.3f}", f"{s.latency(s.served_s):.3f}",
                          f"{s.latency(s.in_range_s):.3f}", s.during_analytics] for s in samples)
    served = [s.latency(s.served_s) for s in samples]
    during = [s.latency(s.served_s) for s in samples if s.during_analytics]
    in_range = [s.latency(s.in_range_s) for s in samples]
    print(f"figure: platform_candle_served_p50_s = {percentile(served, 0.5):.3f}")
    print(f"figure: platform_candle_served_p95_s = {percentile(served, 0.95):.3f}")
    print(f"figure: platform_candle_served_p95_s_during_analytics = {percentile(during, 0.95):.3f}")
    print(f"figure: platform_candle_in_range_p95_s = {percentile(in_range, 0.95):.3f}")
    print(f"figure: platform_candle_samples = {len(served)}")
    print(f"figure: platform_candle_samples_during_analytics = {len(during)}")
    print(f"figure: platform_candle_missed = {sum(math.isinf(v) for v in served)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="measuring window, after the warm-up")
    parser.add_argument("--launch-after", type=float, default=0.3,
                        help=f"share of the window after which {ANALYTICS_JOB} is launched if no run of it exists")
    parser.add_argument("--out", type=Path, default=REPO / "build" / "platform_freshness")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    servers_up()
    work = Path(tempfile.mkdtemp(prefix="pricepipe-platform-freshness-"))
    env = isolated_env(work, "platfresh")
    daily_history = SHARED / "daily_candles"
    if daily_history.is_dir():
        env.setdefault("PRICEPIPE_DAILY_HISTORY_DIR", str(daily_history))
    kafka = kafka_cluster(Settings.from_env(env))
    api = Api(f"http://127.0.0.1:{env['PRICEPIPE_API_PORT']}")
    samples: list[Sample] = []
    runs: list[Run] = []
    lock, stop, ready = threading.Lock(), threading.Event(), threading.Event()

    def served() -> list[float]:
        with lock:
            return [s.latency(s.served_s) for s in samples if s.served_s is not None]

    run = start_platform(env, work)
    print(f"[platform_freshness] pricepipe run (pid {run.pid}); log {work / 'run.log'}, the platform's in "
          f"{work / 'state' / 'logs'}", flush=True)
    try:
        wait_until_warm(kafka, api, run)
        watcher = threading.Thread(target=watch_candles, args=(kafka, samples, lock, stop, ready), daemon=True)
        watcher.start()
        ready.wait(30)
        started, window_s = time.monotonic(), args.minutes * 60
        threading.Thread(target=follow_analytics, args=(env, runs, stop, started + args.launch_after * window_s,
                                                         served), daemon=True).start()
        print(f"[platform_freshness] measuring for {args.minutes:g} min", flush=True)
        while time.monotonic() - started < window_s and run.poll() is None:
            poll_api(api, samples, lock)
            time.sleep(POLL_S)
        if run.poll() is not None:
            print(f"[platform_freshness] pricepipe run exited with {run.returncode}; see {work / 'run.log'}")
        stop.set()
        watcher.join(10)
        while any((s.served_s is None or s.in_range_s is None) and time.time() - s.produced_s < GIVE_UP_S
                  for s in samples):
            poll_api(api, samples, lock)
            time.sleep(POLL_S)
        runs = analytics_runs(work / "dagster")
        now = time.time()
        for sample in samples:
            sample.during_analytics = any(start is not None and start <= sample.produced_s <= (end or now)
                                          for start, end, _, _ in runs)
    finally:
        stop.set()
        stop_platform(run)
        remove_platform_data(env, work)
    report(samples, runs, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
