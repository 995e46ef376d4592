"""Soak: the whole platform under a fast replay of real history for half an hour or more.

`pricepipe run` is started as `make run` starts it (Dagster webserver and daemon with sensors and
schedules on, the API, the feed), on a keyspace, topics, lake and Dagster home of its own, with the
feed replaying real 1m candles of PRICEPIPE_SYMBOLS at ``--speed`` (2,880x: two market days a
minute, so 30 minutes replay 60 days) beside a real day of aggTrades. Every ``--every`` seconds it
records:

- throughput: candles and trades produced to Kafka, and what the live assets committed;
- Kafka lag of each Kafka-fed asset's consumer group;
- Dagster runs by status (a failed run is counted and named);
- resident memory of every process: the Dagster webserver, daemon and their code servers, the
  API, the feed, the runs in flight, Kafka and Cassandra;
- the API's answer time for ``/{symbol}/price``.

At the end it prints a summary (memory at the start vs the end of the run, per process, to judge
whether it stays flat), writes the samples as CSV and a plot, and removes its keyspace and topics.

    .venv/bin/python benchmarks/soak.py --minutes 30 [--speed 2880] [--out build/soak]
"""

from __future__ import annotations

import argparse
import csv
import os
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

from infra.local import launcher
from pricepipe_assets.contract.topics import CANDLES_1M, TRADES
from pricepipe_assets.defs.jobs import TOPIC_CONSUMERS
from pricepipe_assets.defs.resources import CassandraResource, KafkaResource
from pricepipe_assets.kafka.batches import committed_and_watermarks, lag
from pricepipe_assets.settings import Settings

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
# How a process of the platform is recognised in /proc/<pid>/cmdline.
PROCESS_KINDS = (("dagster-webserver", "webserver"), ("dagster-daemon", "daemon"), ("api.app:app", "api"),
                 ("pricepipe feed", "feed"), ("dagster code-server", "code server"), ("dagster api grpc", "code server"),
                 ("dagster api execute_run", "run"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def rss_by_kind(root_pid: int, layout: launcher.Layout) -> dict[str, float]:
    """Resident MiB per kind of process: the platform's processes under ``root_pid``, and the servers."""
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
    stack = list(children[root_pid])
    while stack:
        pid = stack.pop()
        stack += children[pid]
        kind = next((name for needle, name in PROCESS_KINDS if needle in cmdlines.get(pid, "")), None)
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


def kafka_progress(kafka: KafkaResource) -> dict[str, int]:
    """Records produced per topic, and each Kafka-fed asset's lag (produced minus committed)."""
    figures: dict[str, int] = {}
    for topic, assets in TOPIC_CONSUMERS.items():
        produced = None
        for asset in assets:
            offsets = committed_and_watermarks(kafka, kafka.consumer_group(asset), topic)
            produced = sum(high for _, _, high in offsets.values())
            figures[f"lag {asset}"] = lag(offsets)
        figures[f"produced {topic}"] = produced or 0
    return figures


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
    produced.set_ylabel("records produced")
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

    settings = Settings.from_env()
    layout = launcher.Layout(settings.state_dir, settings.cache_dir)
    down = [name for name in ("kafka", "cassandra") if not launcher.is_ready(launcher.SERVERS[name])]
    if down:
        launcher.up(down, layout)
    unique = uuid.uuid4().hex[:8]
    work = Path(tempfile.mkdtemp(prefix="pricepipe-soak-"))
    ui_port, api_port = free_port(), free_port()
    env = {**os.environ, "PRICEPIPE_KEYSPACE": f"soak_{unique}", "PRICEPIPE_TOPIC_PREFIX": f"soak.{unique}.",
           "PRICEPIPE_LAKE_URI": str(work / "lake"), "PRICEPIPE_STATE_DIR": str(work / "state"),
           "DAGSTER_HOME": str(work / "dagster"), "PRICEPIPE_DAGSTER_PORT": str(ui_port),
           "PRICEPIPE_API_PORT": str(api_port), "PRICEPIPE_BINANCE_REST_URL": f"http://127.0.0.1:{free_port()}",
           "PRICEPIPE_BINANCE_DUMPS_URL": (SHARED / "binance").as_uri(), "PRICEPIPE_REPLAY_HISTORY_DAYS": "0",
           "PRICEPIPE_REPLAY_SPEED": f"{args.speed:g}", "PRICEPIPE_SYMBOLS": "BTCUSDT,ETHUSDT"}
    kafka = KafkaResource(topic_prefix=env["PRICEPIPE_TOPIC_PREFIX"])
    api = f"http://127.0.0.1:{api_port}"
    run = subprocess.Popen([str(Path(sys.executable).parent / "pricepipe"), "run"], env=env, cwd=REPO,
                           stdout=open(work / "run.log", "w"), stderr=subprocess.STDOUT, start_new_session=True)
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
                  f"failed {sample.get('runs failure', 0):>3}  lag candles_live {sample.get('lag candles_live', 0):>6,}",
                  flush=True)
            time.sleep(args.every)
    finally:
        run.send_signal(signal.SIGINT)
        try:
            run.wait(120)
        except subprocess.TimeoutExpired:
            os.killpg(run.pid, signal.SIGKILL)
        fields = sorted({k for s in samples for k in s}, key=lambda k: (k != "elapsed_s", k))
        with open(args.out / "samples.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fields)
            writer.writeheader()
            writer.writerows(samples)
        if samples:
            plot(samples, args.out / "soak.png")
            print(summary(samples))
            print(f"[soak] samples in {args.out / 'samples.csv'}, plot in {args.out / 'soak.png'}")
        CassandraResource(keyspace=env["PRICEPIPE_KEYSPACE"]).session().execute(
            f"DROP KEYSPACE IF EXISTS {env['PRICEPIPE_KEYSPACE']}")
        admin = kafka.admin()
        mine = [t for t in admin.list_topics(timeout=10).topics if t.startswith(kafka.topic_prefix)]
        if mine:
            admin.delete_topics(mine, operation_timeout=30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
