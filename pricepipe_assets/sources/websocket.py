"""One venue WebSocket kept up until told to stop: what every venue's streaming client shares.

A venue's client says only what is its own: the URL, what to do once connected (subscribe, fill a
gap, reset books), what a frame means, and what to do between frames. The connection's life is
here, the same for every venue. Decisions, and why:

* A connection drops (networks fail, venues close connections daily), so a lost one is opened
  again after ``backoff(n)`` seconds, ``n`` counting the failed attempts in a row: the wait grows to
  a cap and is jittered (see ``sources.backoff``), so clients cut off together do not all knock
  again at the same instant. The count starts over when the venue delivered data (each client calls
  :meth:`WebSocketClient._working` for what counts as data), not at the handshake: a venue that
  accepts and then drops at once would otherwise be asked again at the shortest wait for ever.
* ``reconnects`` counts the open connections that were lost and are being replaced: one as the
  first attempt after the loss starts (so it shows before the venue sees the new connection), none
  for the further attempts a venue refuses (those show in the log's warnings), none when the
  client is stopped instead.
* The client runs in a thread of a CLI and stops when a :class:`threading.Event` is set. Such an
  event cannot wake an asyncio loop, so the loop looks at it at least every ``poll_s`` seconds, in
  the backoff's wait as between frames; stopping takes at most that, plus the frame being handled.
* Keepalive: websockets' own protocol pings by default. A venue whose keepalive is application-level
  (BitMEX: the text ``ping``, answered ``pong``) passes a :class:`TextPing`, and protocol pings are
  turned off, so that exactly one mechanism decides when a connection is dead.
* Frames are read as bytes (see ``sources.frames``); a malformed URL is refused when the client is
  made, being a configuration error, not something to retry for ever.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosedOK, WebSocketException
from websockets.uri import parse_uri

from pricepipe_assets.sources.backoff import exponential_backoff

if TYPE_CHECKING:
    from pricepipe_assets.kafka.publisher import Publisher


# websockets' own defaults: a protocol ping every 20 s, and 10 s for a close handshake.
PROTOCOL_PING_S = 20.0
CLOSE_TIMEOUT_S = 10.0


class DeadConnection(ConnectionError):
    """The peer stopped answering the application-level ``ping``: the connection is treated as lost."""


@dataclass
class ConnectionCounts:
    """The counters every client has; a venue's client adds its own (read them from any thread)."""

    reconnects: int = 0
    dead_letters: int = 0


@dataclass(frozen=True)
class TextPing:
    """An application-level keepalive: ``ping`` after ``after_s`` of silence, ``pong`` due within ``timeout_s``."""

    after_s: float
    timeout_s: float
    ping: str = "ping"
    pong: bytes = b"pong"


class Keepalive:
    """When one connection sends its :class:`TextPing` and when a missing pong means it is dead."""

    def __init__(self, ping: TextPing) -> None:
        self.ping = ping
        self.last_heard = time.monotonic()
        self.ping_sent: float | None = None

    def seconds_left(self, now: float) -> float:
        if self.ping_sent is not None:
            return self.ping_sent + self.ping.timeout_s - now
        return self.last_heard + self.ping.after_s - now

    def heard(self, now: float) -> None:
        """Any message postpones the next ping; only a pong answers one already sent."""
        self.last_heard = now

    def pinged(self, now: float) -> None:
        self.ping_sent = now

    def ponged(self, now: float) -> None:
        self.ping_sent = None
        self.last_heard = now


CountsT = TypeVar("CountsT", bound=ConnectionCounts)


class WebSocketClient(Generic[CountsT]):
    """Connects to ``url``, hands each frame to :meth:`_on_frame`, and reconnects after each loss until stopped.

    A venue's client overrides :meth:`_on_frame` and, where it needs them, :meth:`_opened`,
    :meth:`_between_frames` and :meth:`_closed`. ``retriable`` names the venue's own failures that
    are worth a reconnect, beside the network's (``OSError``, ``WebSocketException``).
    """

    name = "WebSocket"
    retriable: tuple[type[Exception], ...] = ()

    def __init__(self, url: str, publisher: Publisher, counts: CountsT, *,
                 backoff: Callable[[int], float] | None = None, open_timeout_s: float = 10.0, poll_s: float = 0.2,
                 max_size: int, max_queue: int | None = None, text_ping: TextPing | None = None) -> None:
        parse_uri(url)
        self.url = url
        self.counts = counts
        self._publisher = publisher
        self._backoff = backoff or exponential_backoff()
        self._open_timeout_s = open_timeout_s
        self._poll_s = poll_s
        self._max_size = max_size
        self._max_queue = max_queue
        self._text_ping = text_ping
        self._failures = 0
        self._connection_opened = False
        self._stop = threading.Event()
        self._log = logging.getLogger(type(self).__module__)

    def start(self, stop: threading.Event) -> Future[None]:
        """Run in a background thread (a CLI's main thread prints status lines meanwhile).

        The future ends when ``stop`` is set and re-raises whatever ended the client otherwise.
        """
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=type(self).__name__)
        future = executor.submit(self.run, stop)
        executor.shutdown(wait=False)
        return future

    def run(self, stop: threading.Event) -> None:
        """Stream until ``stop`` is set, then wait until Kafka confirmed everything (a thread's target).

        Raises :class:`~pricepipe_assets.kafka.publisher.DeliveryError` if Kafka did not take
        everything, so a caller never reports data as published that is not in Kafka.
        """
        try:
            asyncio.run(self.run_async(stop))
        finally:
            self._publisher.flush()

    async def run_async(self, stop: threading.Event) -> None:
        """Connect, stream, and reconnect after each loss, until ``stop`` is set."""
        self._stop = stop
        retriable: tuple[type[Exception], ...] = (OSError, WebSocketException, *self.retriable)
        while not stop.is_set():
            if self._connection_opened:
                self.counts.reconnects += 1
                self._connection_opened = False
            try:
                await self._session()
                return  # only a stop ends a session without an error
            except ConnectionClosedOK:  # a clean close: the venue's daily one, say
                lost, level = "closed by the peer", logging.INFO
            except retriable as error:
                lost, level = f"lost ({str(error) or type(error).__name__})", logging.WARNING
            if stop.is_set():
                return
            self._failures += 1
            delay = self._backoff(self._failures)
            self._log.log(level, "%s: connection to %s %s; reconnecting in %.2f s (attempt %d)", self.name, self.url,
                          lost, delay, self._failures)
            await self._pause(delay)

    def _working(self) -> None:
        """The venue delivered data: the next loss starts the backoff over from its shortest wait."""
        self._failures = 0

    def _dead_letter(self, source: str, raw: str | bytes, reason: str) -> None:
        self._publisher.dead_letter(source, raw, reason)
        self.counts.dead_letters += 1

    async def _pause(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self._stop.is_set() and (left := deadline - time.monotonic()) > 0:
            await asyncio.sleep(min(left, self._poll_s))

    async def _session(self) -> None:
        """One connection, until it is lost (which raises) or the client is stopped."""
        ping = self._text_ping
        async with connect(self.url, open_timeout=self._open_timeout_s, max_size=self._max_size,
                           max_queue=self._max_queue, ping_interval=None if ping else PROTOCOL_PING_S,
                           close_timeout=ping.timeout_s if ping else CLOSE_TIMEOUT_S) as connection:
            self._connection_opened = True  # whatever ends this session, the next attempt replaces it
            keepalive = Keepalive(ping) if ping else None
            try:
                await self._opened(connection)
                while not self._stop.is_set():
                    frame = await self._next_frame(connection, keepalive)
                    if frame is not None:
                        await self._on_frame(frame)
                    await self._between_frames(connection)
            finally:
                self._closed()

    async def _next_frame(self, connection: ClientConnection, keepalive: Keepalive | None) -> bytes | None:
        """The next data frame, or None when it is time to look at the stop event again.

        With a :class:`TextPing`, sends the ping after its silence and raises :class:`DeadConnection`
        when the pong is late; the pong itself is no data frame.
        """
        timeout = self._poll_s
        if keepalive is not None:
            now = time.monotonic()
            left = keepalive.seconds_left(now)
            if left <= 0:
                if keepalive.ping_sent is not None:
                    raise DeadConnection(f"no pong within {keepalive.ping.timeout_s}s of a ping")
                await connection.send(keepalive.ping.ping)
                keepalive.pinged(now)
                return None
            timeout = min(left, timeout)
        try:
            frame = await asyncio.wait_for(connection.recv(decode=False), timeout=timeout)
        except TimeoutError:  # cancelling recv() is safe in websockets: no message is lost
            return None
        if keepalive is not None:
            if frame == keepalive.ping.pong:
                keepalive.ponged(time.monotonic())
                return None
            keepalive.heard(time.monotonic())
        return frame

    async def _opened(self, connection: ClientConnection) -> None:
        """What a venue does on each new connection before reading frames (subscribe, fill a gap)."""

    async def _on_frame(self, frame: bytes) -> None:
        """What a frame means to the venue; every venue's client says it."""
        raise NotImplementedError

    async def _between_frames(self, connection: ClientConnection) -> None:
        """What a venue does after each frame and each ``poll_s`` without one (publish what is due)."""

    def _closed(self) -> None:
        """What a venue undoes when a connection ends, lost or stopped (cancel its work on that connection)."""
