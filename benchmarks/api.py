"""API benchmark: requests per second and p50/p99 latency of pricepipe's API, beside plain Starlette.

The load generator is `wrk` (Debian: `apt-get install -y wrk`), over loopback only. Each measured
server is `uvicorn` in a subprocess with the same flags (one worker, no access log, the same event
loop and HTTP parser): the API as `uvicorn api.app:app` over a keyspace of the benchmark's own,
and a plain Starlette app whose routes answer a constant body, whose rate is the ceiling of the
framework and server on this machine. Each endpoint's ratio is to the plain route of its kind:
small answers to a constant JSON, a day of candles to a constant body of exactly the same size in
bytes, so the ratio measures pricepipe's work (parameters, Cassandra, encoding, caches), not the
cost of moving the body. The API runs twice, with its answer cache on (`PRICEPIPE_API_CACHE_S=2`,
the default) and off (`0`), so the cost of a real Cassandra read per request shows.

The keyspace is filled through the project's write path first: the real BTCUSDT 1m candles of
2024-01-30 and 2024-01-31 and the real BTCUSD_PERP aggTrades of 2026-05-08 (from
`../shared/data/binance`) are published to Kafka topics with a prefix of the benchmark's own, and
`pricepipe stream` and a `dagster-daemon` with its sensor-driven runs take them to Cassandra and the
lake until every consumer has committed them. BTCUSDT's clock is then the last minute of
2024-01-31: 2024-01-30 is a closed day (encoded once, served with an ETag), 2024-01-31 the day
still open (read from Cassandra on every request). Topics, keyspace, subprocesses and the local
servers it started are removed at the end.

    .venv/bin/python -m benchmarks.api [--duration 5] [--pairs 3] [--threads 2] [--connections 32] [--timeout 10]
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from benchmarks.daemon import REPO, running_daemon, running_stream_worker, wait_for
from benchmarks.hostile_kafka import lagging
from benchmarks.ingest import Isolated
from benchmarks.trade_stats import DATASET as TRADES_DATASET
from benchmarks.trade_stats import DAY as TRADES_DAY
from infra.local import launcher
from pricepipe_assets.settings import Settings
from pricepipe_assets.sources.binance.dumps import BinanceDumps, Dataset

CLOSED_DAY = dt.date(2024, 1, 30)
CURRENT_DAY = dt.date(2024, 1, 31)
MINUTES_IN_A_DAY = 1440
CACHE_SETTINGS = ("2", "0")
PLAIN_BODY = {"status": "ok", "symbol": "BTCUSDT"}
# uvloop and httptools when installed (uvicorn's "auto" would pick them too): named, so both sides surely match.
LOOP = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
HTTP = "httptools" if importlib.util.find_spec("httptools") else "h11"
UVICORN_FLAGS = ["--host", "127.0.0.1", "--workers", "1", "--no-access-log", "--log-level", "warning", "--loop", LOOP,
                 "--http", HTTP]
WRK_INSTALL = "wrk is not installed: `apt-get install -y wrk` (Debian/Ubuntu) puts it on PATH"
SERVER_WAIT_S = 240
UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


@cache
def _constant_body(size: int) -> bytes:
    """A JSON document of exactly ``size`` bytes (at least 10)."""
    return b'{"pad":"' + b"x" * (size - 10) + b'"}'


def plain_app() -> Starlette:
    """The baseline: Starlette routes answering a constant body, no parsing, no store.

    ``/plain`` is a small constant JSON; ``/plain/{size}`` a constant JSON body of ``size`` bytes,
    the same size as the API answer it stands beside.
    """

    async def constant(request: Request) -> JSONResponse:
        return JSONResponse(PLAIN_BODY)

    async def sized(request: Request) -> Response:
        return Response(_constant_body(request.path_params["size"]), media_type="application/json")

    return Starlette(routes=[Route("/plain", constant, methods=["GET"]),
                             Route("/plain/{size:int}", sized, methods=["GET"])])


@dataclass(frozen=True)
class Target:
    """One URL under load, with a check that its answer is the real one (not an error served fast).

    ``sized``: its baseline is the plain body of its own size, not the small constant JSON.
    ``final``: its answer must carry a strong ETag and a long Cache-Control, and answer 304 to it.
    ``hot``: a cached hot endpoint, part of ``api_hot_cached``.
    """

    label: str
    path: str
    check: Callable[[dict[str, Any]], bool]
    sized: bool = False
    final: bool = False
    hot: bool = False


PRICE = Target("`/BTCUSD_PERP/price`", "/BTCUSD_PERP/price", lambda body: body.get("last_source") == "trade", hot=True)
SIX_HOURS = Target("`/transactions/6-hours`", "/transactions/6-hours",
                   lambda body: any(s["symbol"] == "BTCUSD_PERP" and len(s["hours"]) == 6
                                    for s in body.get("symbols", [])), hot=True)
TWELVE_HOURS = Target("`/total/12-hours`", "/total/12-hours", lambda body: len(body.get("hours", [])) == 12, hot=True)
CLOSED_PATH, CURRENT_PATH = (f"/candles/BTCUSDT?start={day}&end={day}" for day in (CLOSED_DAY, CURRENT_DAY))
CLOSED = Target(f"`{CLOSED_PATH}` (closed day, 1,440 1m candles)", CLOSED_PATH,
                lambda body: len(body.get("candles", [])) == MINUTES_IN_A_DAY, sized=True, final=True)
CURRENT = Target(f"`{CURRENT_PATH}` (the open day, 1,440 1m candles)", CURRENT_PATH,
                 lambda body: len(body.get("candles", [])) == MINUTES_IN_A_DAY, sized=True)
TARGETS = {"2": (PRICE, SIX_HOURS, TWELVE_HOURS, CLOSED), "0": (PRICE, SIX_HOURS, CURRENT, CLOSED)}
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
    """Two days of candles and the trades day through Kafka, the stream worker and the sensor-requested
    runs of a daemon, as in production, until no consumer of any topic lags.

    The symbol's clock ends up at the last minute of ``CURRENT_DAY``, so ``CLOSED_DAY`` has ended
    before it (its answer is final) and ``CURRENT_DAY`` is still open (read on every request).
    """
    variables = {**env.variables(), "PRICEPIPE_LAKE_URI": str(lake), "PRICEPIPE_STATE_DIR": str(lake.parent / "state")}
    dumps = BinanceDumps(cache, (data / "binance").as_uri())
    with running_daemon(REPO / "workspace.yaml", variables, prefix="pricepipe-bench-api-home-") as home, \
            running_stream_worker({**variables, "DAGSTER_HOME": str(home)}, home / "stream.log"):
        publisher = env.kafka.publisher()
        candles = dumps.backfill(publisher, Dataset.klines("BTCUSDT", "1m"), CLOSED_DAY, CURRENT_DAY).records_published
        trades = dumps.backfill(publisher, TRADES_DATASET, TRADES_DAY, TRADES_DAY).records_published
        wait_for(lambda: not lagging(env.kafka), home, "the fill's stream stages and runs", timeout_s=600)
    print(f"filled {env.cassandra.keyspace}: {candles:,} candles and {trades:,} aggTrades through "
          f"{env.kafka.topic_prefix}* and the sensor-driven runs")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=10) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
    except urllib.error.HTTPError as error:
        return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read()


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


def verify_final(base: str, path: str) -> None:
    """A closed day's answer is final: a strong ETag, a year of Cache-Control, 304 when the client has it."""
    status, headers, _ = get(base + path)
    etag, control = headers.get("etag", ""), headers.get("cache-control", "")
    if status != 200 or not etag.startswith('"') or "immutable" not in control:
        raise RuntimeError(f"GET {path} answered {status} with ETag {etag!r}, Cache-Control {control!r}: not final")
    again = get(base + path, {"If-None-Match": etag})
    if again[0] != 304 or again[2]:
        raise RuntimeError(f"GET {path} with If-None-Match: {etag} answered {again[0]} and {len(again[2])} bytes")


def measure(base: str, target: Target, args: argparse.Namespace) -> Load:
    """Check the answer once (which also warms the caches and the prepared statements), then load it."""
    status, _, body = get(base + target.path)
    if status != 200 or not target.check(json.loads(body)):
        raise RuntimeError(f"GET {target.path} answered {status} {body[:300]!r}: not the filled data")
    if target.final:
        verify_final(base, target.path)
    wrk = subprocess.run(["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{args.duration}s",
                          f"--timeout={args.timeout}s", "--latency",
                          base + target.path], capture_output=True, text=True, check=True)
    rps, p50, p99, requests, bad = parse_wrk(wrk.stdout)
    print(f"  {target.path}: {rps:,.0f} req/s, p50 {p50:.2f} ms, p99 {p99:.2f} ms ({requests:,} requests, {bad} bad)")
    return Load(rps, p50, p99, requests, bad, len(body))


@dataclass(frozen=True)
class Row:
    """One endpoint under one cache setting, measured in pairs with its baseline right before it."""

    target: Target
    cache_s: str
    loads: list[Load]
    baselines: list[Load]

    @property
    def ratio(self) -> float:
        """The median of the pairs' ratios: each pair ran back to back, so a busy moment of the shared
        machine weighs on both sides of a pair rather than on one side of the figure."""
        return statistics.median(load.rps / base.rps for load, base in zip(self.loads, self.baselines, strict=True))

    @property
    def load(self) -> Load:  # the medians of its pairs
        return _median(self.loads)


def _median(loads: list[Load]) -> Load:
    return Load(*(statistics.median(getattr(load, name) for load in loads) for name in Load.__dataclass_fields__))


def _line(label: str, cache: str, load: Load, ratio: float) -> str:
    return (f"| {label} | {cache} | {load.body_bytes:,} B | {load.rps:,.0f} | {load.p50_ms:.2f} ms "
            f"| {load.p99_ms:.2f} ms | {ratio:.3f} |")


def table(rows: list[Row]) -> str:
    lines = ["| endpoint | answer cache | body | req/s | p50 | p99 | ratio to plain |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for row in rows:
        base = _median(row.baselines)
        label = f"constant {base.body_bytes:,} B body" if row.target.sized else "constant JSON"
        lines.append(_line(f"baseline: plain Starlette, {label}", "-", base, 1.0))
        lines.append(_line(row.target.label, f"on ({row.cache_s} s)" if row.cache_s != "0" else "off", row.load,
                           row.ratio))
    return "\n".join(lines)


def figures(rows: list[Row]) -> dict[str, float]:
    hot = [row for row in rows if row.target.hot and row.cache_s != "0"]
    return {
        "api_closed_day_candles": min(row.ratio for row in rows if row.target is CLOSED),
        "api_current_day_candles": min(row.ratio for row in rows if row.target is CURRENT),
        "api_price_uncached": min(row.ratio for row in rows if row.target is PRICE and row.cache_s == "0"),
        "api_hot_cached": min(row.ratio for row in hot),
        "api_hot_cached_p99_ms": max(row.load.p99_ms for row in hot),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data",
                        help="folder holding binance/ (a mirror of Binance's dumps)")
    parser.add_argument("--duration", type=int, default=5, help="seconds of each load")
    parser.add_argument("--pairs", type=int, default=3, help="baseline-then-endpoint pairs per endpoint and setting")
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
    print(f"command: .venv/bin/python -m benchmarks.api --duration {args.duration} --pairs {args.pairs} "
          f"--threads {args.threads} "
          f"--connections {args.connections} --timeout {args.timeout}")
    print(f"load: wrk -t{args.threads} -c{args.connections} -d{args.duration}s --timeout={args.timeout}s --latency; "
          f"servers: uvicorn {' '.join(UVICORN_FLAGS)}")
    rows: list[Row] = []
    with ExitStack() as stack:
        stack.enter_context(local_servers(settings))
        env = stack.enter_context(Isolated())
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pricepipe-bench-api-")))
        fill(env, args.data, settings.cache_dir / "binance-dumps", folder / "lake")

        plain_base = stack.enter_context(uvicorn_server(["--factory", "benchmarks.api:plain_app"], dict(os.environ),
                                                        folder / "plain.log", "/plain"))
        for cache_s in CACHE_SETTINGS:
            with uvicorn_server(["api.app:app"], api_env(env, cache_s), folder / f"api-cache-{cache_s}.log",
                                "/symbols") as base:
                print(f"API, PRICEPIPE_API_CACHE_S={cache_s}, each beside its plain baseline:")
                for target in TARGETS[cache_s]:
                    size = len(get(base + target.path)[2])
                    baseline = (Target(f"{size:,} B", f"/plain/{size}", lambda body, n=size: len(body["pad"]) == n - 10)
                                if target.sized else PLAIN)
                    loads, baselines = [], []
                    for _ in range(args.pairs):
                        baselines.append(measure(plain_base, baseline, args))
                        loads.append(measure(base, target, args))
                    rows.append(Row(target, cache_s, loads, baselines))

    print()
    print(table(rows))
    bad = sum(load.bad for row in rows for load in (*row.loads, *row.baselines))
    if bad:
        print(f"\n{bad} answers were errors or socket failures: the figures above are not valid")
        return 1
    print()
    for name, value in figures(rows).items():
        print(f"figure: {name} = {value:.{2 if name.endswith('_ms') else 3}f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
