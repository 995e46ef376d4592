"""One Cassandra poll per symbol per worker, fanned out to every live stream of that symbol.

A chart page wants each change of its symbol's newest candle, price and book soon after the row is
readable. Reading them for every client would cost Cassandra one set of reads per client per
period, the same few rows read again for each page: 200 pages of one symbol polling every 0.25 s
would be some 3,000 statements a second. So while a symbol has clients, the worker runs one poller
for it, which keeps the newest event it read; each client sends that event when it differs from
the last one the client got. The poller starts with the symbol's first client and stops when its
last one leaves, so a symbol nobody watches costs nothing.

A client that reads slowly (or a burst of changes) skips the events in between and gets the newest:
a chart only ever shows the newest state, so nothing queues up per client.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable

log = logging.getLogger("pricepipe.api")

# Proxies close a response that stays silent for a while (nginx: 60 s by default), and a symbol whose
# rows do not change sends no update: a comment line, which EventSource ignores, keeps it open.
KEEP_ALIVE_S = 15.0
KEEP_ALIVE = b": keep-alive\n\n"

Poll = Callable[[], Awaitable[bytes]]


class FeedStopped(Exception):
    """The poller failed with an error that is not a store outage (those are events): its streams end,
    and the browsers' EventSource connects again, starting a new poller."""


class Feed:
    """One symbol's poller and the newest event it read (the whole server-sent event, encoded once for
    all clients)."""

    def __init__(self, poll: Poll, interval_s: float) -> None:
        self.poll = poll
        self.interval_s = interval_s
        self.event: bytes | None = None
        self.failure: Exception | None = None
        self.clients = 0
        self.polls = 0
        self.changed = asyncio.Event()  # set, and replaced, whenever the event changes or the poller fails
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        """Polls at a fixed rate, so a row is sent at most one period (and one read) after it was written."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                started = loop.time()
                event = await self.poll()
                self.polls += 1
                if event != self.event:
                    self.event = event
                    self._wake()
                await asyncio.sleep(started + self.interval_s - loop.time())
        except Exception as error:
            log.exception("the live stream's poller stopped")
            self.failure = error
            self._wake()

    def _wake(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()


class Feeds:
    """The pollers of this worker, by symbol, each reading every ``interval_s`` seconds."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self.running: dict[str, Feed] = {}

    async def stream(self, symbol: str, poll: Poll) -> AsyncGenerator[bytes, None]:
        """One client's events of ``symbol``: the newest at once (after the first poll when the client
        starts the poller), then each change, and a keep-alive comment after ``KEEP_ALIVE_S`` without one.

        ``poll`` reads the symbol's event; the first client's starts the poller, so every client of a
        symbol passes the same one. The client joins on the first event asked for and leaves however
        the generator ends (closed, or cancelled with the response), without awaiting anything.
        """
        feed = self.running.get(symbol)
        if feed is None or feed.failure is not None:
            feed = self.running[symbol] = Feed(poll, self.interval_s)
        feed.clients += 1
        try:
            sent: bytes | None = None
            while True:
                if feed.failure is not None:
                    raise FeedStopped(symbol) from feed.failure
                if feed.event is not None and feed.event != sent:
                    sent = feed.event
                    yield sent
                    continue
                try:
                    async with asyncio.timeout(KEEP_ALIVE_S):
                        await feed.changed.wait()
                except TimeoutError:
                    yield KEEP_ALIVE
        finally:
            feed.clients -= 1
            if feed.clients == 0:
                feed.task.cancel()
                if self.running.get(symbol) is feed:
                    del self.running[symbol]
