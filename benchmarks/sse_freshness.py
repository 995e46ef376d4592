"""The SSE side of the freshness benchmark: candles from produce to an event of the API's live stream.

A chart page does not read Cassandra: it waits for the `update` event of `/stream/{symbol}`, which
the API sends after its shared poll of the symbol (every ``PRICEPIPE_API_STREAM_S``) read a change.
So beside pricepipe's worker, the API runs as `pricepipe run` starts it (uvicorn, one worker, no
API key) on the worker's keyspace, and one client in this process holds the symbol's stream open,
noting when each event arrived and the open time of the candle it carries.

An event carries the newest candle only: candles produced closer together than a poll period are
shown together, and the page never sees the older one on its own. So a candle counts as received
with the first event whose candle is the same or a newer one, as a chart shows it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from api.routes.prices import STREAM_PATH
from benchmarks.daemon import REPO, api_launch, stop_group
from pricepipe_assets.cli.supervisor import wait_port
from pricepipe_assets.contract.records import Candle

HOST = "127.0.0.1"
API_START_S = 120.0


def open_time_ms(payload: dict[str, object]) -> int | None:
    """The open time of the candle an `update` event carries, in the records' milliseconds."""
    candle = payload.get("candle")
    if not isinstance(candle, dict):
        return None
    return round(dt.datetime.fromisoformat(candle["open_time"].replace("Z", "+00:00")).timestamp() * 1000)


class StreamClient:
    """One client of the API's live stream of a symbol, on a thread of its own.

    The thread blocks in a read of the socket between events; closing shuts the socket down, which
    ends that read at once, so the API sees the client leave and stops its poller.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.seen: list[tuple[float, int]] = []  # (monotonic time received, candle open time ms)
        self.failure: str | None = None
        self.socket: socket.socket | None = None
        self.closing = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        with httpx.Client(timeout=httpx.Timeout(10.0, read=None)) as client:
            while not self.closing.is_set():
                try:
                    with client.stream("GET", self.url) as response:
                        if response.status_code != 200:
                            self.failure = f"{response.status_code}: {response.read()[:300]!r}"
                            time.sleep(0.2)
                            continue
                        self.socket = response.extensions["network_stream"].get_extra_info("socket")
                        for line in response.iter_lines():
                            if line.startswith("data: ") and (opened := open_time_ms(json.loads(line[6:]))):
                                self.seen.append((time.monotonic(), opened))
                except httpx.HTTPError as error:
                    self.failure = repr(error)
                    time.sleep(0.2)

    def newest(self) -> int:
        return self.seen[-1][1] if self.seen else -1

    def wait_for(self, candle: Candle, timeout_s: float, alive: Callable[[], bool]) -> bool:
        """Whether an event carrying ``candle`` (or a newer one) arrives within ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while self.newest() < candle.open_time:
            if time.monotonic() > deadline or not alive():
                return False
            time.sleep(0.05)
        return True

    def close(self) -> None:
        self.closing.set()
        if self.socket is not None:
            with contextlib.suppress(OSError):  # already closed by the server
                self.socket.shutdown(socket.SHUT_RDWR)
        self.thread.join(10)


def stream_delays(candles: list[Candle], sent_at: list[float], seen: list[tuple[float, int]]) -> tuple[list[float], int]:
    """Each candle's produce-to-event delay (s), and the candles no event carried: candles and events
    are both in time order, so one pass pairs each candle with the first event at least as new."""
    found: list[float] = []
    events = iter(seen)
    event = next(events, None)
    for candle, sent in zip(candles, sent_at, strict=True):
        while event is not None and (event[1] < candle.open_time or event[0] < sent):
            event = next(events, None)
        if event is None:
            break
        found.append(event[0] - sent)
    return found, len(candles) - len(found)


@contextmanager
def running_api(keyspace: str, log: Path) -> Iterator[Callable[[str], StreamClient]]:
    """The API over ``keyspace`` until the block ends; yields a way to open a stream client of a
    symbol. Clients are closed before the API stops, which then need not wait out their streams."""
    command, variables, port = api_launch(keyspace, HOST)
    with log.open("ab") as output:
        process = subprocess.Popen(command, cwd=REPO, env=variables, stdout=output, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    clients: list[StreamClient] = []

    def client(symbol: str) -> StreamClient:
        clients.append(StreamClient(f"http://{HOST}:{port}{STREAM_PATH.format(symbol=symbol)}"))
        return clients[-1]

    try:
        if not wait_port(HOST, port, API_START_S, lambda: process.poll() is None):
            raise RuntimeError(f"the API did not start; its log ends:\n{log.read_text(errors='replace')[-3000:]}")
        yield client
    finally:
        for opened in clients:
            opened.close()
        stop_group(process)
