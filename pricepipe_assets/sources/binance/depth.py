"""A Binance spot order book kept in step with the diff depth stream and a REST snapshot.

This follows Binance's "How to manage a local order book correctly" for spot, step by step:

1. Events of ``<symbol>@depth@100ms`` are buffered from the moment the stream is open.
2. A snapshot is read from ``GET /api/v3/depth``. One whose ``lastUpdateId`` is older than the
   first buffered event (``lastUpdateId + 1 < U``) cannot be continued by the stream: it is thrown
   away and read again, the buffer kept.
3. Buffered events with ``u <= lastUpdateId`` are already in the snapshot and are dropped. The
   first event applied must bridge the snapshot, ``U <= lastUpdateId + 1 <= u``; every later one
   must continue the previous, ``U == previous u + 1``. Anything else is a gap: the book is thrown
   away and the whole procedure starts again from 1 with the event that showed the gap.
4. Quantities are absolute; 0 removes a level. Removing a level the local book does not hold is
   normal (it lies beyond the snapshot's depth) and is ignored.

The book counts as *trusted* only once an event bridged a snapshot, and only trusted books are
returned by :meth:`DepthSync.book`, so a feed can never publish a book with a hole in its history.
Nothing here does I/O: the stream feeds events and snapshots in and publishes what comes out.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pricepipe_assets.contract.books import OrderBook, parse_levels
from pricepipe_assets.contract.record_values import RecordError, parse_integer, parse_symbol, sane_time

EXCHANGE = "binance"
# Events kept while a snapshot is on its way; older ones are dropped first (the snapshot is newer).
MAX_BUFFERED = 10_000


@dataclass(frozen=True, slots=True)
class DepthEvent:
    """One ``depthUpdate``: the changed levels between update ids ``first_id`` (U) and ``final_id`` (u)."""

    symbol: str
    event_time: int
    first_id: int
    final_id: int
    bids: tuple[tuple[float, float], ...]
    asks: tuple[tuple[float, float], ...]


@dataclass(frozen=True, slots=True)
class DepthSnapshot:
    last_update_id: int
    bids: tuple[tuple[float, float], ...]
    asks: tuple[tuple[float, float], ...]


def _sizes_may_be_zero(value: Any, name: str) -> tuple[tuple[float, float], ...]:
    levels = parse_levels(value, name)
    for price, size in levels:
        if not price > 0 or size < 0:
            raise RecordError(f"{name} level [{price}, {size}] needs a positive price and a size of 0 or more")
    return levels


def depth_event(data: Mapping[str, Any]) -> DepthEvent:
    """The ``data`` of a combined-stream ``depthUpdate`` frame, checked. An event time the contract
    would refuse is refused here, before the event reaches a book: applied, it would make every book
    built on it fail its check, a resync that hides what was wrong."""
    if not isinstance(data, Mapping) or data.get("e") != "depthUpdate":
        raise RecordError('expected a depthUpdate event {"e": "depthUpdate", ...}')
    try:
        event = DepthEvent(parse_symbol(data["s"]), sane_time(parse_integer(data["E"], "E"), "E"),
                           parse_integer(data["U"], "U"), parse_integer(data["u"], "u"),
                           _sizes_may_be_zero(data["b"], "b"), _sizes_may_be_zero(data["a"], "a"))
    except KeyError as missing:
        raise RecordError(f"depthUpdate without field {missing}") from None
    if event.final_id < event.first_id:
        raise RecordError(f"depthUpdate with u {event.final_id} before U {event.first_id}")
    return event


def depth_snapshot(body: Any) -> DepthSnapshot:
    """The answer of ``GET /api/v3/depth``, checked."""
    if not isinstance(body, Mapping):
        raise RecordError("a depth snapshot must be a JSON object")
    try:
        return DepthSnapshot(parse_integer(body["lastUpdateId"], "lastUpdateId"),
                             _sizes_may_be_zero(body["bids"], "bids"), _sizes_may_be_zero(body["asks"], "asks"))
    except KeyError as missing:
        raise RecordError(f"depth snapshot without field {missing}") from None


class DepthSync:
    """One symbol's local book; see the module docstring for the rules it follows."""

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.resyncs = 0
        self.stale_snapshots = 0
        self._buffer: deque[DepthEvent] = deque(maxlen=MAX_BUFFERED)
        self._bids: dict[float, float] = {}
        self._asks: dict[float, float] = {}
        self._last_id: int | None = None  # the update id the local book is at, once a snapshot is in
        self._bridged = False
        self._event_time = 0

    @property
    def trusted(self) -> bool:
        return self._bridged

    @property
    def needs_snapshot(self) -> bool:
        """Events are buffered and no snapshot is in: the stream should read one now."""
        return self._last_id is None and bool(self._buffer)

    def reset(self) -> None:
        """Forget everything (a reconnect: events were missed); the next event starts a new sync."""
        self._buffer.clear()
        self._bids.clear()
        self._asks.clear()
        self._last_id, self._bridged = None, False

    def on_event(self, event: DepthEvent) -> bool:
        """Take one event; True when the trusted book changed. A gap starts a resync (``resyncs``)."""
        if self._last_id is None:
            self._buffer.append(event)
            return False
        return self._apply(event)

    def on_snapshot(self, snapshot: DepthSnapshot) -> bool:
        """Take a REST snapshot and replay the buffer onto it; False when it was too old to use."""
        if self._last_id is not None:
            return True
        if self._buffer and snapshot.last_update_id + 1 < self._buffer[0].first_id:
            self.stale_snapshots += 1
            return False
        self._bids = {price: size for price, size in snapshot.bids if size > 0}
        self._asks = {price: size for price, size in snapshot.asks if size > 0}
        self._last_id, self._bridged = snapshot.last_update_id, False
        buffered, self._buffer = list(self._buffer), deque(maxlen=MAX_BUFFERED)
        for event in buffered:
            if self._last_id is None:  # a gap inside the buffer: the rest waits for the next snapshot
                self._buffer.append(event)
            else:
                self._apply(event)
        return True

    def _apply(self, event: DepthEvent) -> bool:
        assert self._last_id is not None
        if event.final_id <= self._last_id:
            return False
        expected = self._last_id + 1
        if event.first_id > expected or (self._bridged and event.first_id != expected):
            self.resyncs += 1
            self.reset()
            self._buffer.append(event)
            return False
        for side, levels in ((self._bids, event.bids), (self._asks, event.asks)):
            for price, size in levels:
                if size > 0:
                    side[price] = size
                else:
                    side.pop(price, None)
        self._last_id, self._bridged = event.final_id, True
        self._event_time = event.event_time
        return True

    def book(self, depth: int) -> OrderBook | None:
        """The best ``depth`` levels per side; None while the book is not trusted. A crossed or empty
        book can only come from a missed update, so it starts a resync like a gap."""
        if not self._bridged or self._last_id is None:
            return None
        bids = tuple((price, self._bids[price]) for price in heapq.nlargest(depth, self._bids))
        asks = tuple((price, self._asks[price]) for price in heapq.nsmallest(depth, self._asks))
        book = OrderBook(EXCHANGE, self.symbol, self._event_time, self._last_id, bids, asks)
        try:
            book.check()
        except RecordError:
            self.resyncs += 1
            self.reset()
            return None
        return book
