"""Hostile HTTP campaign: over 10,000 hostile requests against the API, counting every answer that is not a refusal.

The API runs as ``pricepipe run`` starts it (the supervisor's command, one worker, the default stream cap) on
127.0.0.1, over a keyspace of its own holding two real days of BTCUSDT 1m candles. Families (docs/reliability.md
describes each): schemathesis cases from ``/openapi.json``, long paths, query parameters, headers, garbage bytes,
bodies, slow clients, idle connections, and live streams past the cap. Traffic goes to 127.0.0.1 only, in bounded
numbers, so the run ends by itself. Counted, beside a ``/health`` probe every second: answers by class, the cap's 503s
apart from other 5xx, silent drops (no HTTP answer), refusals not in the API's JSON error shape, stalled streams, idle
connections open past their deadline, crashes (the server gone or a probe missed).

    .venv/bin/python -m benchmarks.hostile_http [--examples 2500] [--streams 300] [--rounds 2] [--seed 26]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import hypothesis
import requests
import schemathesis

from api.live import KEEP_ALIVE_S as STREAM_KEEP_ALIVE_S
from api.routes.prices import STREAM_PATH
from api.server import REQUEST_TIMEOUT_S, UVICORN_HTTP
from benchmarks.daemon import REPO, api_launch, stop_group
from pricepipe_assets.contract.records import Candle
from pricepipe_assets.contract.topics import CANDLES_1M
from pricepipe_assets.kafka.batches import Delivered
from pricepipe_assets.settings import Settings
from pricepipe_assets.sources.binance.dumps import BinanceDumps, Dataset
from pricepipe_assets.storage.cassandra import cassandra_cluster
from pricepipe_assets.storage.live_tables import UPSERT_VENUE_CANDLE
from pricepipe_assets.transforms import live_writes

HOST = "127.0.0.1"
SYMBOL = "BTCUSDT"
DAYS = (dt.date(2024, 1, 1), dt.date(2024, 1, 2))
KEEP_ALIVE_S = 5  # uvicorn's default --timeout-keep-alive, which pricepipe run keeps
ANSWER_TIMEOUT_S = 30.0
PATHS = ("/candles/{}", "/{}/price", "/forecast/{}", "/moving-average/{}", "/{}/orderbook", "/{}/trades/5",
         "/predictions/{}", "/stream/{}")
NAMES = ("start", "end", "interval", "period", "window", "depth", "limit", "days", "api_key", "model")
SIZES = (8 * 1024 + 1, 16 * 1024, 64 * 1024, 100_000, 1_000_000)
NO_ANSWER = (TimeoutError, ConnectionError, asyncio.IncompleteReadError, ValueError, IndexError)  # or half of one


@dataclass
class Tally:
    """One family's answers. ``requests`` counts connections too, for the families that send nothing."""

    requests: int = 0
    ok: int = 0  # 1xx-3xx
    refused: int = 0  # 4xx
    capped: int = 0  # the stream cap's 503
    errors: int = 0  # any other 5xx
    silent: int = 0  # no HTTP answer at all
    unshaped: int = 0  # a 4xx or 5xx not in the API's JSON error shape

    def add(self, status: int | None, body: bytes = b"") -> None:
        self.requests += 1
        self.silent += status is None
        if status is not None:
            capped = status == 503 and b"PRICEPIPE_API_STREAMS_MAX" in body
            self.ok, self.refused = self.ok + (status < 400), self.refused + (400 <= status < 500)
            self.capped, self.errors = self.capped + capped, self.errors + (status >= 500 and not capped)
            self.unshaped += status >= 400 and not _error_shape(status, body)

    @classmethod
    def total(cls, tallies: dict[str, Tally]) -> Tally:
        return cls(**{f.name: sum(getattr(t, f.name) for t in tallies.values()) for f in fields(cls)})


def _error_shape(status: int, body: bytes) -> bool:
    with contextlib.suppress(ValueError):
        answer = json.loads(body)
        return isinstance(answer, dict) and set(answer) == {"error", "status"} and answer["status"] == status
    return False


@dataclass
class Outcome:
    tallies: dict[str, Tally] = field(default_factory=dict)
    admitted: list[int] = field(default_factory=list)  # streams let in, per round
    stalled: int = 0
    held: int = 0
    crashes: int = 0  # probes missed, and the server process gone


def request(target: bytes, *headers: bytes, method: bytes = b"GET", body: bytes = b"", close: bool = True) -> bytes:
    head = [method + b" " + target + b" HTTP/1.1", b"Host: 127.0.0.1", *headers]
    return b"\r\n".join([*head, *([b"Connection: close"] if close else []), b"", b""]) + body


async def answer_of(reader: asyncio.StreamReader) -> tuple[int | None, bytes]:
    """Status and body of the next answer (no body for a stream); (None, b"") when none came."""
    with contextlib.suppress(*NO_ANSWER):
        async with asyncio.timeout(ANSWER_TIMEOUT_S):
            status, length = int((await reader.readline()).split()[1]), 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                length = int(value) if name.lower() == b"content-length" else length
            return status, await reader.readexactly(length)
    return None, b""


async def _send(writer: asyncio.StreamWriter, data: bytes, pace_s: float, paced_from: int) -> None:
    with contextlib.suppress(ConnectionError):
        writer.write(data[:paced_from] if pace_s else data)
        await writer.drain()
        for start in range(paced_from, len(data) if pace_s else 0):
            await asyncio.sleep(pace_s)
            writer.write(data[start:start + 1])
            await writer.drain()


async def exchange(port: int, data: bytes, pace_s: float = 0.0, paced_from: int = 0) -> tuple[int | None, bytes]:
    """Send ``data`` (from ``paced_from`` on a byte every ``pace_s``) while awaiting the answer, if any."""
    try:
        reader, writer = await asyncio.open_connection(HOST, port)
    except OSError:
        return None, b""
    sending = asyncio.create_task(_send(writer, data, pace_s, paced_from))
    try:
        return await answer_of(reader)
    finally:
        sending.cancel()
        writer.close()


async def run_all(port: int, requests_: list[bytes], tally: Tally, pace_s: float = 0.0, paced_from: int = 0) -> None:
    """Every request, 64 at a time, or all at once when paced (slow clients wait together)."""
    gate = asyncio.Semaphore(len(requests_) if pace_s else 64)

    async def one(data: bytes) -> None:
        async with gate:
            tally.add(*await exchange(port, data, pace_s, paced_from))

    await asyncio.gather(*(one(data) for data in requests_))


def _path(rng: random.Random, symbol: bytes = SYMBOL.encode()) -> bytes:
    return rng.choice(PATHS).encode().replace(b"{}", symbol)


def long_paths(rng: random.Random, count: int) -> list[bytes]:
    """Half of them long in the path, half in the query."""
    fillers = [rng.choice((b"A", b"%41", b"/", b"../", b"%2F", b"\xc3\xa9")) * (SIZES[n % 5] // 2 + 1)
               for n in range(count)]
    return [request(_path(rng, filler) if n % 2 else _path(rng) + b"?start=" + filler)
            for n, filler in enumerate(fillers)]


def query_parameters(rng: random.Random, count: int) -> list[bytes]:
    """One parameter repeated, many undeclared ones, or one huge value."""
    def query(n: int, name: bytes, times: int, value: bytes) -> bytes:
        return (b"&".join([name + b"=" + value] * times) if n % 3 == 0 else name + b"=" + b"9" * rng.choice(SIZES)
                if n % 3 == 2 else b"&".join(b"p%d=%s" % (i, value) for i in range(times)))

    return [request(_path(rng) + b"?" + query(n, rng.choice(NAMES).encode(), rng.choice((2, 20, 200, 1_000, 10_000)),
                                          rng.choice((b"2024-01-01", b"1", b"", b"%00", b"x" * 64, b"1e309"))))
            for n in range(count)]


def headers(rng: random.Random, count: int) -> list[bytes]:
    kinds = (lambda: [b"X-Big: " + b"a" * rng.choice(SIZES)], lambda: [b"X-H%d: v" % i for i in range(10_000)],
             lambda: [b"Cookie: " + b"c=" + b"z" * 40_000], lambda: [b"Content-Length: 1", b"Content-Length: 2"],
             lambda: [b"Transfer-Encoding: chunked", b"Content-Length: 3"], lambda: [b"X-Folded: a", b" b"],
             lambda: [b"X-API-Key: \xff\xfe", b"If-None-Match: \x80\"x\""], lambda: [b"Host: a", b"Host: b"])
    return [request(b"/symbols", *rng.choice(kinds)()) for _ in range(count)]


def garbage(rng: random.Random, count: int) -> list[bytes]:
    def raw(size: int) -> bytes:
        return rng.randbytes(rng.randrange(1, size))

    def encoded(size: int) -> bytes:
        return b"".join(b"%%%02X" % byte for byte in raw(size))

    tricks = (b"/%", b"/%z", b"/%%41", b"/%C0%AE%C0%AE/", b"/a%0d%0aX-Injected:%201", b"/\\..\\")
    kinds = (lambda: request(b"/candles/" + raw(40)), lambda: request(b"/candles/BTCUSDT?start=" + raw(40)),
             lambda: request(_path(rng, b"") + encoded(40)),
             lambda: request(b"/candles/BTCUSDT?" + encoded(20) + b"=" + encoded(20)),
             lambda: request(rng.choice(tricks)), lambda: request(b"/symbols", method=raw(12)),
             lambda: b"GET /symbols HTTP/" + raw(4) + b"\r\nHost: x\r\n\r\n", lambda: raw(2_000) + b"\r\n\r\n")
    return [rng.choice(kinds)() for _ in range(count)]


def bodies(rng: random.Random, count: int) -> list[bytes]:
    """A body as long as announced, a tenth of it, or chunks of no valid size; kept-alive, so the
    server reads what it was sent instead of resetting the connection under our answer."""
    def one(body: bytes, kind: int) -> bytes:
        head = (b"Content-Length: %d" % len(body), b"Content-Length: %d" % (len(body) * 10),
                b"Transfer-Encoding: chunked")[kind]
        return request(b"/symbols", head, method=rng.choice((b"GET", b"POST", b"PUT", b"DELETE", b"PATCH")),
                       body=b"zz\r\n" + body if kind == 2 else body, close=False)

    return [one(b"x" * rng.choice((1_000, 100_000, 1_000_000, 10_000_000)), rng.randrange(3)) for _ in range(count)]


async def idle_connections(port: int, answering: int, silent: int, tally: Tally) -> int:
    """Connections sending one request then nothing (closed after keep-alive), or nothing (408 at the
    request deadline). Returns how many were still open 10 s past their deadline."""
    async def held(send: bool) -> bool:
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(request(b"/symbols", close=False) if send else b"")
        tally.add(*await answer_of(reader))
        try:
            with contextlib.suppress(ConnectionError):
                await asyncio.wait_for(reader.read(), KEEP_ALIVE_S + 10)  # until the server closes
            return False
        except TimeoutError:
            return True
        finally:
            writer.close()

    return sum(await asyncio.gather(*(held(True) for _ in range(answering)), *(held(False) for _ in range(silent))))


async def stream_round(port: int, count: int, stream_s: float, tally: Tally) -> tuple[int, int]:
    """``count`` streams at once, then each admitted one's first update and what follows: (admitted, stalled)."""
    connections = [await asyncio.open_connection(HOST, port) for _ in range(count)]

    async def admitted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        writer.write(request(STREAM_PATH.replace("{symbol}", SYMBOL).encode(), close=False))
        tally.add(*(answer := await answer_of(reader)))
        return answer[0] == 200

    async def stalled(reader: asyncio.StreamReader) -> bool:
        """Live: the first update, then another event or the keep-alive sent while nothing changes."""
        with contextlib.suppress(*NO_ANSWER):
            async with asyncio.timeout(2 * stream_s + STREAM_KEEP_ALIVE_S + 5):
                for end in (b"event: update", b"\n\n", b"\n\n"):
                    await reader.readuntil(end)
                return False
        return True

    try:
        opened = [reader for (reader, writer), ok in
                  zip(connections, await asyncio.gather(*(admitted(*c) for c in connections)), strict=True) if ok]
        return len(opened), sum(await asyncio.gather(*(stalled(reader) for reader in opened)))
    finally:
        for _, writer in connections:
            writer.close()


def fuzz(base: str, examples: int) -> Tally:
    """schemathesis cases over the served document, sent as schemathesis sends them (requests)."""
    tally, session = Tally(), requests.Session()
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json").exclude(path=STREAM_PATH)
    for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
        @hypothesis.settings(max_examples=examples, deadline=None, database=None, phases=[hypothesis.Phase.generate],
                             derandomize=True, suppress_health_check=list(hypothesis.HealthCheck))
        @hypothesis.given(schema.as_strategy(mode))
        def send(case: schemathesis.Case) -> None:
            try:
                response = case.call(base_url=base, session=session, timeout=ANSWER_TIMEOUT_S)
                tally.add(response.status_code, response.content)
            except requests.RequestException:
                tally.add(None)

        send()
    return tally


async def probe(port: int, process: subprocess.Popen[bytes], outcome: Outcome, done: asyncio.Event) -> None:
    """``GET /health`` every second for the whole run: no 200 within 5 s, or the process gone, is a crash."""
    while not done.is_set():
        started, (status, _) = time.monotonic(), await exchange(port, request(b"/health"))
        outcome.crashes += status != 200 or time.monotonic() - started > 5 or process.poll() is not None
        await asyncio.sleep(1)


async def hostile(port: int, process: subprocess.Popen[bytes], args: argparse.Namespace, stream_s: float,
                  outcome: Outcome) -> None:
    done, rng, tallies = asyncio.Event(), random.Random(args.seed), outcome.tallies
    probing = asyncio.create_task(probe(port, process, outcome, done))
    tallies["schemathesis"] = await asyncio.to_thread(fuzz, f"http://{HOST}:{port}", args.examples)
    for name, build, count in (("long paths", long_paths, 600), ("query parameters", query_parameters, 600),
                               ("headers", headers, 400), ("garbage", garbage, 2_000), ("bodies", bodies, 200)):
        await run_all(port, build(rng, count), tallies.setdefault(name, Tally()))
    slow, slow_head = tallies.setdefault("slow clients", Tally()), request(b"/symbols", b"X-Slow: " + b"x" * 400)
    slow_body = request(b"/symbols", b"Content-Length: 100000", method=b"POST")
    await asyncio.gather(run_all(port, [slow_head] * 100, slow, 0.5),
                         run_all(port, [slow_body + b"x" * 100_000] * 50, slow, 0.2, len(slow_body)))
    outcome.held = await idle_connections(port, 1_000, 500, tallies.setdefault("idle connections", Tally()))
    streams = tallies.setdefault("live streams", Tally())
    for _ in range(args.rounds):
        admitted, stalled = await stream_round(port, args.streams, stream_s, streams)
        outcome.admitted.append(admitted)
        outcome.stalled += stalled
        await asyncio.sleep(1)  # the server sees the closed streams go
    done.set()
    await probing


@contextlib.contextmanager
def filled_keyspace(settings: Settings, data: Path) -> Iterator[str]:
    """A keyspace of its own (dropped on exit) with real candles, written by the live tables' write path."""
    cassandra = cassandra_cluster(replace(settings, keyspace=f"bench_hostile_{uuid.uuid4().hex[:8]}"))
    cassandra.migrate()
    try:
        dumps = BinanceDumps(settings.cache_dir / "binance-dumps", (data / "binance").as_uri())
        records = [Delivered(CANDLES_1M, 0, offset, candle) for offset, candle in
                   enumerate(r for r in dumps.records(Dataset.klines(SYMBOL, "1m"), *DAYS) if isinstance(r, Candle))]
        cassandra.write_all(UPSERT_VENUE_CANDLE, live_writes.candle_rows(records))
        live_writes.record_activity(cassandra, records)
        print(f"filled {cassandra.keyspace} with {len(records):,} real 1m candles of {SYMBOL}, {DAYS[0]}..{DAYS[1]}")
        yield cassandra.keyspace
    finally:
        cassandra.session().execute(f"DROP KEYSPACE IF EXISTS {cassandra.keyspace}")
        cassandra.close()


@contextlib.contextmanager
def api_server(keyspace: str, log: Path, http: str) -> Iterator[tuple[subprocess.Popen[bytes], int, list[str]]]:
    """The API as ``pricepipe run`` starts it, with one worker so that the stream cap applies to the whole server."""
    command, variables, port = api_launch(keyspace, HOST)
    if http not in command:
        command = [*command, "--http", http]
    process = subprocess.Popen(command, cwd=REPO, env=variables, stdout=log.open("wb"), stderr=subprocess.STDOUT,
                               start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while "Uvicorn running on" not in log.read_text(errors="replace"):  # logged once it listens
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the API did not start; see {log}")
            time.sleep(0.3)
        yield process, port, command
    finally:
        stop_group(process)


def table(tallies: dict[str, Tally]) -> str:
    lines = ["| family | requests | 2xx/3xx | 4xx | stream cap 503 | other 5xx | no answer | not in the error shape |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, t in [*tallies.items(), ("**all**", Tally.total(tallies))]:
        lines.append(f"| {name} | {t.requests:,} | {t.ok:,} | {t.refused:,} | {t.capped:,} | {t.errors:,} | "
                     f"{t.silent:,} | {t.unshaped:,} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data", help="folder holding binance/")
    parser.add_argument("--examples", type=int, default=2500, help="schemathesis cases per generation mode")
    parser.add_argument("--streams", type=int, default=300, help="live streams opened at once in each round")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of live streams")
    parser.add_argument("--seed", type=int, default=26)
    parser.add_argument("--http", default=UVICORN_HTTP, help="uvicorn's --http (httptools: without api/server.py)")
    args = parser.parse_args()
    settings, outcome = Settings.from_env(), Outcome()
    print(f"pricepipe hostile HTTP campaign, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores\n"
          f"command: .venv/bin/python -m benchmarks.hostile_http --examples {args.examples} --streams {args.streams} "
          f"--rounds {args.rounds} --seed {args.seed} --http {args.http}")
    with filled_keyspace(settings, args.data) as keyspace, tempfile.TemporaryDirectory() as folder:
        with api_server(keyspace, Path(folder) / "api.log", args.http) as (process, port, command):
            print(f"server: {' '.join(command)}", flush=True)
            asyncio.run(hostile(port, process, args, settings.api_stream_s, outcome))
        tracebacks = (Path(folder) / "api.log").read_text(errors="replace").count("Traceback")
    print(f"streams admitted per round: {outcome.admitted} (cap {settings.api_streams_max}); "
          f"request deadline {REQUEST_TIMEOUT_S:g} s\n\n"
          f"{table(outcome.tallies)}\n")
    all_ = Tally.total(outcome.tallies)
    zeros = {"hostile_http_5xx": all_.errors, "hostile_http_silent_drops": all_.silent,
             "hostile_http_unshaped_refusals": all_.unshaped, "hostile_http_server_crashes": outcome.crashes,
             "hostile_http_server_tracebacks": tracebacks, "hostile_http_idle_connections_held": outcome.held,
             "sse_streams_stalled": outcome.stalled}
    for name, value in {"hostile_http_requests": all_.requests, **zeros, "sse_over_cap_503": all_.capped}.items():
        print(f"figure: {name} = {value}")
    wrong_cap = all_.capped != sum(args.streams - admitted for admitted in outcome.admitted) or any(
        admitted != settings.api_streams_max for admitted in outcome.admitted)
    failed = [name for name, value in zeros.items() if value] + (["the stream cap"] if wrong_cap else [])
    print(f"\nfailed: {', '.join(failed)}" if failed else "")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
