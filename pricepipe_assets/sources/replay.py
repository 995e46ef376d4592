"""Replay of stored history into the live Kafka topics, paced by event time.

Downstream consumers (sensors, the Cassandra writer, the API) cannot tell a replay from a live
feed: the same topics, the same records, arriving in event-time order at a chosen speed. That is
what lets the whole platform be demonstrated and tested offline on real market data.

The replayer takes *iterators of records*, not files, so any source that can yield history in
event-time order (the Binance dumps today, the lake tomorrow) feeds it unchanged. Input a source
could not turn into a record travels as :class:`Rejected` and is dead-lettered at its place in the
stream, so a replay never drops anything silently.
"""

from __future__ import annotations

import datetime as dt
import heapq
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

from pricepipe_assets.contract import topics
from pricepipe_assets.contract.records import Record
from pricepipe_assets.kafka.publisher import Publisher

# Sleeps shorter than this are skipped: pacing is anchored to the start, so nothing drifts, and
# a per-trade sleep of microseconds would cost more than it waits.
MIN_SLEEP_S = 0.001


@dataclass(frozen=True, slots=True)
class Rejected:
    """Input a source could not parse; it is replayed as a dead letter, never dropped."""

    source: str
    raw: bytes
    reason: str


Item = Record | Rejected


def _timed(stream: Iterable[Item]) -> Iterator[tuple[int, Item]]:
    """Pairs of (event time, item); a rejected item takes the time of the record before it,
    so it is dead-lettered where it appeared in its source, not all at the start or the end."""
    last = -1
    for item in stream:
        if not isinstance(item, Rejected):
            last = item.event_time
        yield last, item


def _merged(streams: Iterable[Iterable[Item]]) -> Iterator[tuple[int, Item]]:
    return heapq.merge(*(_timed(stream) for stream in streams), key=lambda pair: pair[0])


def merge_by_event_time(streams: Iterable[Iterable[Item]]) -> Iterator[Item]:
    """One stream in event-time order from streams that are each in event-time order.

    Ties keep the order of ``streams`` (a candle closing at the same millisecond as a trade comes
    first when the candles are given first). Lazy: a day of trades is never held in memory.
    """
    return (item for _, item in _merged(streams))


@dataclass(frozen=True)
class ReplayStatus:
    """A snapshot of a replay, safe to read from another thread (a CLI's status line)."""

    published: Mapping[str, int]
    dead_letters: int
    market_time_ms: int | None
    elapsed_s: float
    speed: float | None
    stopped: bool

    def rate(self, count: int) -> float:
        return count / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def clock(self) -> str:
        """Where the replay is in market time and how fast it goes, e.g. ``market 2024-01-01 00:29:59 UTC  x60``."""
        market = "-" if self.market_time_ms is None else dt.datetime.fromtimestamp(
            self.market_time_ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        speed = "max speed" if self.speed is None else f"x{self.speed:g}"
        return f"market {market}  {speed}"

    def line(self) -> str:
        """One line such as ``market 2024-01-01 00:29:59 UTC  x60  candles.1m 30 (1.0/s)  deadletter 0  29 s``."""
        counts = [f"{topic} {count:,} ({self.rate(count):,.1f}/s)" for topic, count in sorted(self.published.items())]
        parts = [self.clock(), *counts, f"{topics.DEADLETTER} {self.dead_letters:,}", f"{self.elapsed_s:,.0f} s"]
        return "  ".join(parts)


class Replayer:
    """Publishes merged history at ``speed`` times real time until the input ends or ``stop`` is set.

    ``speed`` 1.0 is real time, 60 one market minute per second; ``None`` never waits. Waiting is
    anchored to the first item (market time and wall time), so slow publishing is caught up instead
    of accumulating drift. ``clock`` and ``sleep`` are injectable so pacing can be checked without
    a wall clock; the default sleep wakes up as soon as ``stop`` is set.
    """

    def __init__(self, publisher: Publisher, *, speed: float | None = 1.0, stop: threading.Event | None = None,
                 flush_interval_s: float = 1.0, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], object] | None = None) -> None:
        if speed is not None and not speed > 0:
            raise ValueError(f"the replay speed must be a positive factor (1 = real time) or None, got {speed!r}")
        self.publisher = publisher
        self.speed = speed
        self.stop = stop if stop is not None else threading.Event()
        self.flush_interval_s = flush_interval_s
        self._clock = clock
        self._sleep = sleep or self.stop.wait
        self._lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        with self._lock:
            self._published: Counter[str] = Counter()
            self._dead_letters = 0
            self._market_ms: int | None = None
            self._started = self._clock()
        self._anchor: tuple[float, int] | None = None
        self._last_flush = self._started

    def status(self) -> ReplayStatus:
        with self._lock:
            return ReplayStatus(dict(self._published), self._dead_letters, self._market_ms,
                                self._clock() - self._started, self.speed, self.stop.is_set())

    def run(self, *streams: Iterable[Item]) -> ReplayStatus:
        """Replay ``streams`` (each in event-time order) merged; returns the final status.

        Everything published is confirmed by Kafka before this returns, also after a stop;
        :class:`~pricepipe_assets.kafka.publisher.DeliveryError` says when it was not.
        """
        self._reset()
        for market_ms, item in _merged(streams):
            self._wait_for(market_ms)
            if self.stop.is_set():
                break
            self._publish(item, market_ms)
            if self._clock() - self._last_flush >= self.flush_interval_s:
                self._flush()
        self._flush()
        return self.status()

    def _delay(self, market_ms: int, speed: float) -> float:
        """Seconds until ``market_ms`` is due on the wall clock (negative when late)."""
        if self._anchor is None:
            self._anchor = (self._clock(), market_ms)
        wall0, market0 = self._anchor
        return wall0 + (market_ms - market0) / 1000 / speed - self._clock()

    def _wait_for(self, market_ms: int) -> None:
        """Sleep until the item is due; a long pause is first used to confirm what was sent.

        An item without a known time (rejected before any record of its stream) is not waited for.
        """
        if self.speed is None or market_ms < 0 or self.stop.is_set():
            return
        delay = self._delay(market_ms, self.speed)
        if delay >= self.flush_interval_s:
            self._flush()
            delay = self._delay(market_ms, self.speed)
        if delay >= MIN_SLEEP_S:
            self._sleep(delay)

    def _publish(self, item: Item, market_ms: int) -> None:
        if isinstance(item, Rejected):
            self.publisher.dead_letter(item.source, item.raw, item.reason)
        else:
            self.publisher.publish(item)
        with self._lock:
            if isinstance(item, Rejected):
                self._dead_letters += 1
            else:
                self._published[item.topic] += 1
            if market_ms >= 0:
                self._market_ms = market_ms

    def _flush(self) -> None:
        self.publisher.flush()
        self._last_flush = self._clock()
