"""API benchmark: requests per second and p50/p99 latency of pricepipe's API, beside a plain Starlette app.

The load generator is `wrk` (Debian: `apt-get install -y wrk`), over loopback only. Each measured
server is `uvicorn` in a subprocess with the same flags (one worker, no access log): the API as
`uvicorn api.app:app` over a keyspace of the benchmark's own, and a plain Starlette endpoint
answering a constant JSON, whose rate is the ceiling of the framework and server on this machine.
The ratio to it is the figure: what pricepipe's parameter parsing, Cassandra reads and JSON
encoding cost. The API runs twice, with its answer cache on (`PRICEPIPE_API_CACHE_S=2`, the
default) and off (`0`), so the cost of a real Cassandra read per request shows.

The keyspace is filled through the project's write path first: the real BTCUSDT 1m candles of
2024-01-31 and the real BTCUSD_PERP aggTrades of 2026-05-08 (from `../shared/data/binance`) are
published to Kafka topics with a prefix of the benchmark's own, and the sensor-driven runs are
drained in process. Topics, keyspace, subprocesses and the local servers it started are removed
at the end.

    .venv/bin/python benchmarks/api.py [--duration 10] [--threads 2] [--connections 32] [--timeout 10]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import dagster as dg  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import JSONResponse  # noqa: E402
from starlette.routing import Route  # noqa: E402

from benchmarks.ingest import Isolated  # noqa: E402
from infra.local import launcher  # noqa: E402
from pricepipe_assets.resources import LakeResource  # noqa: E402
from pricepipe_assets.settings import Settings  # noqa: E402
from pricepipe_assets.topics import CANDLES_1M, TRADES  # noqa: E402
from pricepipe_assets_tests.assets.kafka_runs import definitions, drain, publish_candles, publish_trades  # noqa: E402

CANDLE_DAY = dt.date(2024, 1, 31)
MINUTES_IN_A_DAY = 1440
CACHE_SETTINGS = ("2", "0")
PLAIN_BODY = {"status": "ok", "symbol": "BTCUSDT"}
UVICORN_FLAGS = ["--host", "127.0.0.1", "--workers", "1", "--no-access-log", "--log-level", "warning"]
WRK_INSTALL = "wrk is not installed: `apt-get install -y wrk` (Debian/Ubuntu) puts it on PATH"
SERVER_WAIT_S = 240
UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def plain_app() -> Starlette:
    """The baseline: a Starlette route answering a constant JSON, no parsing, no store."""

    async def constant(request: Request) -> JSONResponse:
        return JSONResponse(PLAIN_BODY)

    return Starlette(routes=[Route("/plain", constant, methods=["GET"])])


@dataclass(frozen=True)
class Target:
    """One URL under load, with a check that its answer is the real one (not an error served fast)."""

    label: str
    path: str
    check: Callable[[dict[str, Any]], bool]


TARGETS = (
    Target("`/BTCUSD_PERP/price`", "/BTCUSD_PERP/price", lambda body: body.get("last_source") == "trade"),
    Target("`/candles/BTCUSDT?start=2024-01-31&end=2024-01-31` (1,440 1m candles)",
           "/candles/BTCUSDT?start=2024-01-31&end=2024-01-31",
           lambda body: len(body.get("candles", [])) == MINUTES_IN_A_DAY),
    Target("`/transactions/6-hours`", "/transactions/6-hours",
           lambda body: any(s["symbol"] == "BTCUSD_PERP" and len(s["hours"]) == 6 for s in body.get("symbols", []))),
)
PLAIN = Target("baseline: plain Starlette, constant JSON", "/plain", lambda body: body == PLAIN_BODY)


@dataclass(frozen=True)
class Load:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    bad: int  # non-2xx answers plus socket errors: any makes the figure meaningless
    body_bytes: int


@contextmanager
def local_servers(settings: Settings) -> Iterator[None]:
    """Kafka and Cassandra: started unless their processes run, then awaited until they answer.

    A server whose processes run but do not answer yet is being started by someone else (a test
    run, `pricepipe infra up`): it is waited for, not counted as this run's, so it is not stopped
    at the end; only the servers this run started are.
    """
    layout = launcher.Layout(settings.state_dir, settings.cache_dir)
    names = ("kafka", "cassandra")
    started = [name for name in names
               if not all(launcher.read_pid(layout, process) for process in launcher.SERVERS[name].processes)]
    if started:
        launcher.up(started, layout)
    try:
        deadline = time.monotonic() + SERVER_WAIT_S
        while not all(launcher.is_ready(launcher.SERVERS[name]) for name in names):
            if time.monotonic() > deadline:
                raise RuntimeError(f"Kafka or Cassandra did not answer within {SERVER_WAIT_S} s")
            time.sleep(1)
        yield
    finally:
        if started:
            launcher.down(started, layout)


def fill(env: Isolated, data: Path, cache: Path, lake: Path) -> None:
    """The candles day and the trades day through Kafka and the sensor-requested runs, as in production."""
    instance = dg.DagsterInstance.ephemeral()
    defs = definitions(env.kafka, env.cassandra, LakeResource(uri=str(lake)))
    candles = publish_candles(env.kafka, data, cache, CANDLE_DAY)
    drain(defs, CANDLES_1M, env.kafka, instance)
    trades = publish_trades(env.kafka, data, cache)
    drain(defs, TRADES, env.kafka, instance)
    print(f"filled {env.cassandra.keyspace}: {candles:,} candles and {trades:,} aggTrades through "
          f"{env.kafka.topic_prefix}* and the sensor-driven runs")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@contextmanager
def uvicorn_server(app: list[str], env: dict[str, str], log: Path, ready_path: str) -> Iterator[str]:
    """``uvicorn <app>`` on a free loopback port in a subprocess; yields its base URL, stops it on exit."""
    port = free_port()
    command = [str(Path(sys.executable).parent / "uvicorn"), *app, *UVICORN_FLAGS, "--port", str(port)]
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{' '.join(app)} exited with {process.returncode}; see {log}")
            try:
                if get(base + ready_path)[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{' '.join(app)} did not answer within 60 s; see {log}")
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def api_env(env: Isolated, cache_s: str) -> dict[str, str]:
    variables = {name: value for name, value in os.environ.items() if name != "PRICEPIPE_API_KEY"}
    return {**variables, "PRICEPIPE_KEYSPACE": env.cassandra.keyspace, "PRICEPIPE_TOPIC_PREFIX": env.kafka.topic_prefix,
            "PRICEPIPE_API_CACHE_S": cache_s}


def _field(pattern: str, output: str) -> str:
    found = re.search(pattern, output, re.MULTILINE)
    if found is None:
        raise RuntimeError(f"wrk printed no {pattern!r}; its output:\n{output}")
    return found.group(1)


def _ms(text: str) -> float:
    """wrk's latency ("812.00us", "1.23ms", "2.01s") in milliseconds."""
    unit = text.lstrip("0123456789.")
    return float(text[:len(text) - len(unit)]) * UNITS_MS[unit]


def parse_wrk(output: str) -> tuple[float, float, float, int, int]:
    """(rps, p50 ms, p99 ms, requests, bad answers) from `wrk --latency` output."""
    rps = float(_field(r"Requests/sec:\s+([\d.]+)", output))
    p50 = _ms(_field(r"^\s+50%\s+(\S+)", output))
    p99 = _ms(_field(r"^\s+99%\s+(\S+)", output))
    requests = int(_field(r"(\d+) requests in", output))
    bad = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", output))
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    bad += sum(int(n) for n in errors.groups()) if errors else 0
    return rps, p50, p99, requests, bad


def measure(base: str, target: Target, args: argparse.Namespace) -> Load:
    """Check the answer once (which also warms the cache and the prepared statements), then load it."""
    status, body = get(base + target.path)
    if status != 200 or not target.check(json.loads(body)):
        raise RuntimeError(f"GET {target.path} answered {status} {body[:300]!r}: not the filled data")
    wrk = subprocess.run(["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{args.duration}s",
                          f"--timeout={args.timeout}s", "--latency",
                          base + target.path], capture_output=True, text=True, check=True)
    rps, p50, p99, requests, bad = parse_wrk(wrk.stdout)
    print(f"  {target.path}: {rps:,.0f} req/s, p50 {p50:.2f} ms, p99 {p99:.2f} ms ({requests:,} requests, {bad} bad)")
    return Load(rps, p50, p99, requests, bad, len(body))


def table(plain: Load, rows: list[tuple[Target, str, Load]]) -> str:
    lines = ["| endpoint | answer cache | body | req/s | p50 | p99 | ratio to plain |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
             (f"| {PLAIN.label} | - | {plain.body_bytes:,} B | {plain.rps:,.0f} | {plain.p50_ms:.2f} ms "
              f"| {plain.p99_ms:.2f} ms | 1.00 |")]
    for target, cache_s, load in rows:
        cache = f"on ({cache_s} s)" if cache_s != "0" else "off"
        lines.append(f"| {target.label} | {cache} | {load.body_bytes:,} B | {load.rps:,.0f} | {load.p50_ms:.2f} ms "
                     f"| {load.p99_ms:.2f} ms | {load.rps / plain.rps:.3f} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data",
                        help="folder holding binance/ (a mirror of Binance's dumps)")
    parser.add_argument("--duration", type=int, default=10, help="seconds of load per endpoint and setting")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--connections", type=int, default=32, help="wrk open connections")
    parser.add_argument("--timeout", type=int, default=10,
                        help="wrk's per-request timeout (s); its default of 2 s counts slow answers as errors and "
                        "leaves them out of the percentiles")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print(WRK_INSTALL, file=sys.stderr)
        return 2

    settings = Settings.from_env()
    print(f"pricepipe API benchmark, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores")
    print(f"command: .venv/bin/python benchmarks/api.py --duration {args.duration} --threads {args.threads} "
          f"--connections {args.connections} --timeout {args.timeout}")
    print(f"load: wrk -t{args.threads} -c{args.connections} -d{args.duration}s --timeout={args.timeout}s --latency; "
          f"servers: uvicorn {' '.join(UVICORN_FLAGS)}")
    rows: list[tuple[Target, str, Load]] = []
    with ExitStack() as stack:
        stack.enter_context(local_servers(settings))
        env = stack.enter_context(Isolated())
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pricepipe-bench-api-")))
        fill(env, args.data, settings.cache_dir / "binance-dumps", folder / "lake")

        plain_base = stack.enter_context(uvicorn_server(["--factory", "benchmarks.api:plain_app"], dict(os.environ),
                                                        folder / "plain.log", "/plain"))
        print("plain Starlette:")
        plain = measure(plain_base, PLAIN, args)
        for cache_s in CACHE_SETTINGS:
            with uvicorn_server(["api.app:app"], api_env(env, cache_s), folder / f"api-cache-{cache_s}.log",
                                "/symbols") as base:
                print(f"API, PRICEPIPE_API_CACHE_S={cache_s}:")
                rows += [(target, cache_s, measure(base, target, args)) for target in TARGETS]

    print()
    print(table(plain, rows))
    bad = plain.bad + sum(load.bad for _, _, load in rows)
    if bad:
        print(f"\n{bad} answers were errors or socket failures: the figures above are not valid")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
