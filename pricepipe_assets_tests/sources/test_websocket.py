"""The WebSocket client every venue shares, against a real local WebSocket server that follows a script:
refused handshakes, dropped connections, silence, pings answered or not."""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from pricepipe_assets.contract import topics
from pricepipe_assets.defs.resources import KafkaResource
from pricepipe_assets.kafka.publisher import Publisher
from pricepipe_assets.sources.backoff import exponential_backoff
from pricepipe_assets.sources.websocket import ConnectionCounts, TextPing, WebSocketClient
from pricepipe_assets_tests.support.exchange_servers.binance_ws_server import running

CAP_S = 0.2
JITTER = 0.5


@dataclass(frozen=True)
class Step:
    """What the server does with one handshake: refuse it (503), or send ``frames`` and then cut the
    connection (``drop``) or keep it open, answering ``ping`` with ``pong`` when ``pong``."""

    refuse: bool = False
    frames: tuple[bytes, ...] = ()
    drop: bool = False
    pong: bool = True


class ScriptedServer:
    """The n-th handshake follows the n-th step; the last step repeats. Remembers when each came."""

    def __init__(self, script: Sequence[Step]) -> None:
        self.script = list(script)
        self.attempts: list[float] = []
        self.pings = 0
        self.port = 0
        self._accepted: list[Step] = []

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/stream"

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        step = self.script[min(len(self.attempts), len(self.script) - 1)]
        self.attempts.append(time.monotonic())
        if step.refuse:
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "unavailable\n")
        self._accepted.append(step)
        return None

    async def handler(self, connection: ServerConnection) -> None:
        step = self._accepted.pop(0)
        for frame in step.frames:
            await connection.send(frame)
        if step.drop:
            connection.transport.abort()
            return
        try:
            async for message in connection:
                if message == "ping":
                    self.pings += 1
                    if step.pong:
                        await connection.send("pong")
        except ConnectionClosed:
            pass

    async def serve(self, ready: threading.Event, stopped: asyncio.Event) -> None:
        async with serve(self.handler, "127.0.0.1", 0, process_request=self.process_request) as server:
            self.port = server.sockets[0].getsockname()[1]
            ready.set()
            await stopped.wait()


class RecordingClient(WebSocketClient[ConnectionCounts]):
    """A venue of the simplest kind: ``bad`` frames are dead letters, any other frame is data."""

    name = "test venue"

    def __init__(self, url: str, publisher: Publisher, **options: Any) -> None:
        super().__init__(url, publisher, ConnectionCounts(), max_size=1024, poll_s=0.05, **options)
        self.frames: list[bytes] = []

    async def _on_frame(self, frame: bytes) -> None:
        if frame == b"bad":
            self._dead_letter("test.ws", frame, "a bad frame")
            return
        self._working()
        self.frames.append(frame)


class RecordedBackoff:
    """The real capped, jittered backoff, remembering each attempt number and the wait it gave."""

    def __init__(self, backoff: Callable[[int], float]) -> None:
        self.backoff = backoff
        self.waits: list[tuple[int, float]] = []

    def __call__(self, attempt: int) -> float:
        self.waits.append((attempt, self.backoff(attempt)))
        return self.waits[-1][1]


@pytest.fixture()
def publisher(kafka: KafkaResource) -> Publisher:
    kafka.ensure_topics([topics.DEADLETTER])
    return kafka.publisher()


@pytest.fixture()
def stop() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.01)


def test_waits_grow_to_a_jittered_cap_and_start_over_once_the_venue_delivered_data(
        publisher: Publisher, stop: threading.Event) -> None:
    script = [*[Step(refuse=True)] * 5, Step(frames=(b"data",), drop=True), *[Step(refuse=True)] * 2, Step()]
    backoff = RecordedBackoff(exponential_backoff(initial_s=0.025, factor=2, cap_s=CAP_S, jitter=JITTER,
                                                  random_fraction=random.Random(5).random))
    with running(ScriptedServer(script)) as server:
        client = RecordingClient(server.url, publisher, backoff=backoff)
        future = client.start(stop)
        wait_until(lambda: len(server.attempts) == len(script), "the last, lasting connection")
        stop.set()
        future.result(timeout=10)

    assert [attempt for attempt, _ in backoff.waits] == [1, 2, 3, 4, 5, 1, 2, 3]
    waits = [wait for _, wait in backoff.waits]
    capped = [wait for attempt, wait in backoff.waits if attempt >= 4]  # 0.025 * 2**3 reaches the cap
    assert all(CAP_S * (1 - JITTER) <= wait <= CAP_S for wait in capped) and len(set(capped)) == len(capped)
    gaps = [later - earlier for earlier, later in zip(server.attempts, server.attempts[1:], strict=False)]
    assert all(wait - 0.005 <= gap < wait + 2 for gap, wait in zip(gaps, waits, strict=True)), (gaps, waits)
    assert client.frames == [b"data"]


def test_stop_during_a_long_backoff_returns_within_the_poll(publisher: Publisher, stop: threading.Event) -> None:
    backoff = RecordedBackoff(lambda attempt: 3600.0)
    with running(ScriptedServer([Step(refuse=True)])) as server:
        client = RecordingClient(server.url, publisher, backoff=backoff)
        future = client.start(stop)
        wait_until(lambda: bool(backoff.waits), "the first wait")
        asked = time.monotonic()
        stop.set()
        assert future.result(timeout=10) is None
        stopped_after_s = time.monotonic() - asked

    assert stopped_after_s < 1.0
    assert len(server.attempts) == 1 and client.counts.reconnects == 0


def test_reconnects_count_lost_connections_not_refused_handshakes_and_dead_letters_count_refused_frames(
        publisher: Publisher, stop: threading.Event) -> None:
    script = [Step(frames=(b"one", b"bad"), drop=True), Step(refuse=True), Step(refuse=True),
              Step(frames=(b"two", b"bad", b"three"))]
    with running(ScriptedServer(script)) as server:
        client = RecordingClient(server.url, publisher, backoff=lambda attempt: 0.01)
        future = client.start(stop)
        wait_until(lambda: len(client.frames) == 3, "the frames of the last connection")
        stop.set()
        future.result(timeout=10)

    assert client.frames == [b"one", b"two", b"three"] and len(server.attempts) == 4
    assert client.counts == ConnectionCounts(reconnects=1, dead_letters=2)


def pinging_client(server: ScriptedServer, publisher: Publisher) -> RecordingClient:
    return RecordingClient(server.url, publisher, backoff=lambda attempt: 0.01,
                           text_ping=TextPing(after_s=0.1, timeout_s=0.3))


def test_a_text_ping_answered_keeps_a_quiet_connection(publisher: Publisher, stop: threading.Event) -> None:
    with running(ScriptedServer([Step()])) as server:
        client = pinging_client(server, publisher)
        future = client.start(stop)
        wait_until(lambda: server.pings >= 3, "three pings answered on the quiet connection")
        stop.set()
        future.result(timeout=10)

    assert len(server.attempts) == 1 and client.counts.reconnects == 0


def test_a_text_ping_left_unanswered_costs_a_reconnect(
        publisher: Publisher, stop: threading.Event, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=__name__)
    with running(ScriptedServer([Step(pong=False), Step()])) as server:
        client = pinging_client(server, publisher)
        future = client.start(stop)
        wait_until(lambda: len(server.attempts) == 2, "a new connection after the missing pong")
        stop.set()
        future.result(timeout=10)

    assert server.pings >= 1 and client.counts.reconnects == 1
    assert any("no pong within 0.3s of a ping" in record.getMessage() for record in caplog.records)
