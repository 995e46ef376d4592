"""At most one order book per symbol per ``interval_s`` onto Kafka, and always the newest.

A venue changes a book many times a second; readers want the current state, not every step. A
book offered within ``interval_s`` of the last one published for its symbol waits, replaced by any
newer one, and goes out once the interval has passed (:meth:`BookThrottle.flush_due`, which the
feeds call on every message and on their idle ticks), so the last state is never held back for
longer than one interval. A book that stops being trusted is :meth:`BookThrottle.forget`-ten:
what waits was true then, but publishing it after the venue's history broke would look current.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from pricepipe_assets.contract.books import OrderBook

if TYPE_CHECKING:
    from pricepipe_assets.kafka.publisher import Publisher


class BookThrottle:
    def __init__(self, publisher: Publisher, interval_s: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        if interval_s < 0:
            raise ValueError(f"interval_s must not be negative, got {interval_s}")
        self.published = 0
        self._publisher = publisher
        self._interval_s = interval_s
        self._clock = clock
        self._last: dict[str, float] = {}
        self._waiting: dict[str, OrderBook] = {}

    def offer(self, book: OrderBook) -> None:
        self._waiting[book.symbol] = book
        self.flush_due()

    def forget(self, symbol: str) -> None:
        self._waiting.pop(symbol, None)

    def flush_due(self) -> None:
        now = self._clock()
        for symbol in [s for s in self._waiting if now - self._last.get(s, -float("inf")) >= self._interval_s]:
            self._publisher.publish(self._waiting.pop(symbol))
            self._last[symbol] = now
            self.published += 1
