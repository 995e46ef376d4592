"""Soak: the whole platform under a fast replay of real history for half an hour or more.

`pricepipe run` is started as `make run` starts it (Dagster webserver and daemon with sensors and
schedules on, the API, the stream worker, the feed), on a keyspace, topics, lake and Dagster home
of its own, with the feed replaying real 1m candles of PRICEPIPE_SYMBOLS at ``--speed`` (2,880x:
two market days a minute, so 30 minutes replay 60 days) beside a real day of aggTrades. Every
``--every`` seconds it records:

- throughput: candles and trades produced to Kafka, and the records each of the stream worker's
  live assets committed in its consumer group;
- Kafka lag of each Kafka-fed asset's consumer group (the runs' and the stream worker's), over
  every topic it reads;
- Dagster runs by status (a failed run is counted and named);
- resident memory of every process: the Dagster webserver, daemon and their code servers, the
  API, the stream worker, the feed, the runs in flight, Kafka and Cassandra;
- the API's answer time for ``/{symbol}/price``.

At the end it prints a summary (memory at the start vs the end of the run, per process, to judge
whether it stays flat), writes the samples as CSV and a plot, and removes its keyspace, topics,
consumer groups and lake.

    .venv/bin/python benchmarks/soak.py --minutes 30 [--speed 2880] [--out build/soak]
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import dagster as dg
import requests
from confluent_kafka import KafkaException

from infra.local import launcher
from pricepipe_assets.contract.topics import CANDLES_1M, TRADES
from pricepipe_assets.defs.lake.jobs import TOPIC_CONSUMERS
from pricepipe_assets.kafka.batches import committed_and_watermarks, lag
from pricepipe_assets.kafka.client import KafkaCluster, kafka_cluster
from pricepipe_assets.settings import Settings
from pricepipe_assets.storage.cassandra import cassandra_cluster
from pricepipe_assets.stream.stages import stage_topics

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
# How a process of the platform is recognised in /proc/<pid>/cmdline.
PROCESS_KINDS = (("dagster-webserver", "webserver"), ("dagster-daemon", "daemon"), ("api.app:app", "api"),
                 ("pricepipe feed", "feed"), ("pricepipe stream", "stream worker"),
                 ("dagster code-server", "code server"), ("dagster api grpc", "code server"),
                 ("dagster api execute_run", "run"))
STREAM_ASSETS = frozenset(stage_topics())


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def servers_up() -> launcher.Layout:
    """Start Kafka and Cassandra first when they are down, so that they outlive the platform: a
    `pricepipe run` that started them would stop them with itself, under other benchmarks' feet."""
    settings = Settings.from_env()
    layout = launcher.Layout(settings.state_dir, settings.cache_dir)
    down = [name for name in ("kafka", "cassandra") if not launcher.is_ready(launcher.SERVERS[name])]
    if down:
        launcher.up(down, layout)
    return layout


def isolated_env(work: Path, name: str) -> dict[str, str]:
    """The environment of a `pricepipe run` beside any other on this machine: a keyspace, topic
    prefix (hence consumer groups), lake, state and Dagster home of its own under ``work``, free
    ports, and an exchange that never answers, so the feed replays the local dumps mirror as
    `make run` has it do offline."""
    unique = uuid.uuid4().hex[:8]
    return {**os.environ, "PRICEPIPE_KEYSPACE": f"{name}_{unique}", "PRICEPIPE_TOPIC_PREFIX": f"{name}.{unique}.",
            "PRICEPIPE_LAKE_URI": str(work / "lake"), "PRICEPIPE_STATE_DIR": str(work / "state"),
            "DAGSTER_HOME": str(work / "dagster"), "PRICEPIPE_DAGSTER_PORT": str(free_port()),
            "PRICEPIPE_API_PORT": str(free_port()), "PRICEPIPE_BINANCE_REST_URL": f"http://127.0.0.1:{free_port()}",
            "PRICEPIPE_BINANCE_DUMPS_URL": (SHARED / "binance").as_uri()}


def start_platform(env: dict[str, str], work: Path) -> subprocess.Popen[bytes]:
    """`pricepipe run` in a session of its own: a Ctrl-C at the terminal reaches only the benchmark,
    whose cleanup then stops the platform as a user would and waits for it before removing its data."""
    with open(work / "run.log", "wb") as log:
        return subprocess.Popen([str(Path(sys.executable).parent / "pricepipe"), "run"], env=env, cwd=REPO,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def stop_platform(run: subprocess.Popen[bytes]) -> None:
    """Ctrl-C, as a user stops `make run` (it stops its children itself); SIGKILL if it takes over two minutes."""
    run.send_signal(signal.SIGINT)
    try:
        run.wait(120)
    except subprocess.TimeoutExpired:
        os.killpg(run.pid, signal.SIGKILL)
        run.wait()


def remove_platform_data(env: dict[str, str], work: Path) -> None:
    """Drop what the platform wrote outside ``work``'s logs: its keyspace, topics, consumer groups and lake."""
    cassandra = cassandra_cluster(Settings.from_env(env))
    try:
        cassandra.session().execute(f"DROP KEYSPACE IF EXISTS {env['PRICEPIPE_KEYSPACE']}")
    finally:
        cassandra.close()
    kafka = kafka_cluster(Settings.from_env(env))
    admin = kafka.admin()
    groups = [g.group_id for g in admin.list_consumer_groups(request_timeout=10).result().valid
              if g.group_id.startswith(kafka.topic_prefix)]
    for group, future in (admin.delete_consumer_groups(groups, request_timeout=30) if groups else {}).items():
        try:
            future.result()
        except KafkaException as error:  # a member SIGKILLed a moment ago still holds it: say so, go on
            print(f"[cleanup] consumer group {group} left: {error.args[0].str()}")
    mine = [t for t in admin.list_topics(timeout=10).topics if t.startswith(kafka.topic_prefix)]
    if mine:
        admin.delete_topics(mine, operation_timeout=30)
    shutil.rmtree(work / "lake", ignore_errors=True)


def rss_by_kind(root_pid: int, layout: launcher.Layout) -> dict[str, float]:
    """Resident MiB per kind of process: the platform's processes under ``root_pid``, and the servers.

    A process whose command line names no kind counts as its parent's: the API's uvicorn workers
    are `multiprocessing` children of `uvicorn api.app:app`, and a run's Spark JVM is the run's.
    """
    children: dict[int, list[int]] = defaultdict(list)
    cmdlines: dict[int, str] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            parent = int((proc / "stat").read_text().rsplit(") ", 1)[1].split()[1])
            cmdlines[int(proc.name)] = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError, ValueError):
            continue
        children[parent].append(int(proc.name))
    rss: dict[str, float] = defaultdict(float)
    stack: list[tuple[int, str | None]] = [(pid, None) for pid in children[root_pid]]
    while stack:
        pid, parent_kind = stack.pop()
        kind = next((name for needle, name in PROCESS_KINDS if needle in cmdlines.get(pid, "")), parent_kind)
        stack += [(child, kind) for child in children[pid]]
        mib = launcher.rss_mb(pid)
        if kind and mib:
            rss[kind] += mib
    for name in ("kafka", "cassandra"):
        for process in launcher.SERVERS[name].processes:
            pid = launcher.read_pid(layout, process)
            mib = launcher.rss_mb(pid) if pid else None
            if mib:
                rss[name] += mib
    return dict(rss)


def kafka_progress(kafka: KafkaCluster) -> dict[str, int]:
    """Records produced per topic; each Kafka-fed asset's lag, summed over the topics it reads (the
    stream worker's `candles_live` reads three); and the offsets each of the stream worker's assets
    committed in its group, whose rise between samples is what the worker wrote."""
    figures: dict[str, int] = defaultdict(int)
    for topic, assets in TOPIC_CONSUMERS.items():
        figures[f"produced {topic}"] = 0
        for asset in assets:
            offsets = committed_and_watermarks(kafka, kafka.consumer_group(asset), topic)
            figures[f"produced {topic}"] = sum(high for _, _, high in offsets.values())
            figures[f"lag {asset}"] += lag(offsets)
            if asset in STREAM_ASSETS:
                figures[f"committed {asset}"] += sum(c or 0 for c, _, _ in offsets.values())
    return dict(figures)


def run_counts(dagster_home: Path) -> dict[str, Any]:
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        runs = instance.get_runs()
    counts: dict[str, Any] = defaultdict(int)
    for run in runs:
        counts[f"runs {run.status.value.lower()}"] += 1
    counts["failed jobs"] = ",".join(sorted({r.job_name for r in runs if r.status == dg.DagsterRunStatus.FAILURE}))
    return dict(counts)


def api_latency_ms(api: str, symbol: str) -> float | None:
    started = time.perf_counter()
    try:
        ok = requests.get(f"{api}/{symbol}/price", timeout=10).status_code == 200
    except requests.RequestException:
        return None
    return (time.perf_counter() - started) * 1000 if ok else None


def plot(samples: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = [s["elapsed_s"] / 60 for s in samples]
    fig, (memory, lag, produced) = plt.subplots(3, 1, figsize=(10, 10), sharex=True)
    kinds = sorted({k.removeprefix("rss ") for s in samples for k in s if k.startswith("rss ")})
    for kind in kinds:
        memory.plot(minutes, [s.get(f"rss {kind}", 0) for s in samples], label=kind)
    memory.set_ylabel("resident MiB")
    memory.legend(loc="upper left", fontsize=8, ncol=3)
    for key in sorted(k for k in samples[-1] if k.startswith("lag ")):
        lag.plot(minutes, [s.get(key, 0) for s in samples], label=key.removeprefix("lag "))
    lag.set_ylabel("Kafka lag (records)")
    lag.legend(loc="upper left", fontsize=8, ncol=3)
    for key in sorted(k for k in samples[-1] if k.startswith("produced ")):
        produced.plot(minutes, [s.get(key, 0) for s in samples], label=key.removeprefix("produced "))
    for key in sorted(k for k in samples[-1] if k.startswith("committed ")):
        produced.plot(minutes, [s.get(key, 0) for s in samples], linestyle="--",
                      label=f"{key.removeprefix('committed ')} (stream worker)")
    produced.set_ylabel("records produced / committed")
    produced.set_xlabel("minutes since start")
    produced.legend(loc="upper left", fontsize=8)
    fig.suptitle("pricepipe soak: memory, lag and throughput over time")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def summary(samples: list[dict[str, Any]], window_s: float = 300) -> str:
    """Per process, median RSS of the first and of the last ``window_s`` seconds; and the totals."""
    first = [s for s in samples if s["elapsed_s"] <= window_s]
    last = [s for s in samples if s["elapsed_s"] >= samples[-1]["elapsed_s"] - window_s]
    lines = ["| process | RSS first 5 min (MiB) | RSS last 5 min (MiB) | change |", "| --- | --- | --- | --- |"]
    for key in sorted(k for k in samples[-1] if k.startswith("rss ")):
        a = statistics.median(s.get(key, 0) for s in first)
        b = statistics.median(s.get(key, 0) for s in last)
        lines.append(f"| {key.removeprefix('rss ')} | {a:.0f} | {b:.0f} | {b - a:+.0f} |")
    end, start = samples[-1], samples[0]
    minutes = (end["elapsed_s"] - start["elapsed_s"]) / 60
    lines.append("")
    for topic in (CANDLES_1M, TRADES):
        key = f"produced {topic}"
        lines.append(f"- {topic}: {end.get(key, 0):,} records produced in {minutes:.1f} min "
                     f"({(end.get(key, 0) - start.get(key, 0)) / (minutes * 60):,.1f}/s)")
    committed = sorted(k for k in end if k.startswith("committed "))
    if committed:
        lines.append("- stream worker committed: " + ", ".join(
            f"{k.removeprefix('committed ')} {end[k]:,} ({(end[k] - start.get(k, 0)) / (minutes * 60):,.1f}/s)"
            for k in committed))
    lags = {k: v for k, v in end.items() if k.startswith("lag ")}
    lines.append(f"- lag at the end: {', '.join(f'{k[4:]} {v:,}' for k, v in sorted(lags.items()))}; "
                 f"largest lag seen: {max(max(s.get(k, 0) for s in samples) for k in lags):,}")
    runs = {k: v for k, v in end.items() if k.startswith("runs ")}
    lines.append(f"- Dagster runs: {', '.join(f'{k[5:]} {v}' for k, v in sorted(runs.items()))}"
                 + (f" (failed jobs: {end['failed jobs']})" if end.get("failed jobs") else ""))
    latencies = [s["api_price_ms"] for s in samples if s.get("api_price_ms") is not None]
    if latencies:
        lines.append(f"- API /{{symbol}}/price: median {statistics.median(latencies):.1f} ms, "
                     f"max {max(latencies):.1f} ms over {len(latencies)} samples")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--speed", type=float, default=2880.0)
    parser.add_argument("--every", type=float, default=15.0, help="seconds between samples")
    parser.add_argument("--out", type=Path, default=REPO / "build" / "soak")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    layout = servers_up()
    work = Path(tempfile.mkdtemp(prefix="pricepipe-soak-"))
    env = {**isolated_env(work, "soak"), "PRICEPIPE_REPLAY_HISTORY_DAYS": "0",
           "PRICEPIPE_REPLAY_SPEED": f"{args.speed:g}", "PRICEPIPE_SYMBOLS": "BTCUSDT,ETHUSDT"}
    kafka = kafka_cluster(Settings.from_env(env))
    api = f"http://127.0.0.1:{env['PRICEPIPE_API_PORT']}"
    run = start_platform(env, work)
    samples: list[dict[str, Any]] = []
    started = time.monotonic()
    print(f"[soak] pricepipe run (pid {run.pid}) for {args.minutes:g} min at {args.speed:g}x; log {work / 'run.log'}")
    try:
        while time.monotonic() - started < args.minutes * 60:
            if run.poll() is not None:
                print(f"[soak] pricepipe run exited with {run.returncode}; see {work / 'run.log'}")
                break
            sample: dict[str, Any] = {"elapsed_s": round(time.monotonic() - started, 1)}
            sample.update({f"rss {k}": round(v, 1) for k, v in rss_by_kind(run.pid, layout).items()})
            try:
                sample.update(kafka_progress(kafka))
                sample.update(run_counts(work / "dagster"))
            except Exception as error:  # noqa: BLE001 - a sample is skipped, the soak goes on
                sample["error"] = f"{type(error).__name__}: {error}"[:200]
            sample["api_price_ms"] = api_latency_ms(api, "BTCUSDT")
            samples.append(sample)
            print(f"[soak] {sample['elapsed_s'] / 60:5.1f} min  candles {sample.get(f'produced {CANDLES_1M}', 0):>8,}  "
                  f"trades {sample.get(f'produced {TRADES}', 0):>8,}  runs ok {sample.get('runs success', 0):>4}  "
                  f"failed {sample.get('runs failure', 0):>3}  "
                  f"lag candles_live {sample.get('lag candles_live', 0):>6,}  "
                  f"stream worker {sample.get('rss stream worker', 0):>5.0f} MiB", flush=True)
            time.sleep(args.every)
    finally:
        stop_platform(run)
        fields = sorted({k for s in samples for k in s}, key=lambda k: (k != "elapsed_s", k))
        with open(args.out / "samples.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fields)
            writer.writeheader()
            writer.writerows(samples)
        if samples:
            plot(samples, args.out / "soak.png")
            print(summary(samples))
            print(f"[soak] samples in {args.out / 'samples.csv'}, plot in {args.out / 'soak.png'}")
        remove_platform_data(env, work)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
