"""The order book record of pricepipe's Kafka contract: the top levels of one symbol's book.

A venue's feed keeps a full local book in step with the exchange and publishes only its top
levels (``PRICEPIPE_BOOK_DEPTH`` per side), so a message stays small and a reader needs no
history to use it: every record is the whole visible book at ``ts``, not a change to apply.

Decisions (see ``docs/data-contract.md``):

* ``bids`` and ``asks`` are arrays of ``[price, size]``, best first: bids strictly falling, asks
  strictly rising, every price and size positive (a level of size 0 is a removed level and is
  never published). Anything else is a book a reader could not trust, so it is refused.
* A crossed book (best bid at or above best ask) is refused: it can only come from a local book
  that missed an update, and publishing it would put a wrong spread on the API.
* One side may be empty (a thin market, or a snapshot that holds one side only); both may not.
* ``sequence`` is the venue's own counter for the state published (Binance's ``lastUpdateId``
  or final update id ``u``, a BitMEX message count for a book without one), so a reader can tell
  which of two books of one symbol is newer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from pricepipe_assets.contract import topics
from pricepipe_assets.contract.record_base import Record, SymbolKeyed
from pricepipe_assets.contract.record_values import RecordError, parse_finite, parse_symbol, preview, sane_time

# No venue publishes more than this many levels in a message; a record with more is refused.
MAX_LEVELS = 1000

Level = tuple[float, float]
Levels = tuple[Level, ...]


def parse_levels(value: Any, name: str) -> Levels:
    """``[[price, size], ...]`` (numbers or numeric strings, as Binance sends them) as float pairs."""
    if not isinstance(value, (list, tuple)):
        raise RecordError(f"{name} must be an array of [price, size], got {type(value).__name__}")
    if len(value) > MAX_LEVELS:
        raise RecordError(f"{name} has {len(value)} levels, more than the {MAX_LEVELS} allowed")
    levels = []
    for index, level in enumerate(value):
        if not isinstance(level, (list, tuple)) or len(level) != 2:
            raise RecordError(f"{name}[{index}] must be [price, size], got {preview(level)!r}")
        levels.append((parse_finite(level[0], f"{name}[{index}] price"), parse_finite(level[1], f"{name}[{index}] size")))
    return tuple(levels)


def _check_side(levels: Levels, name: str, falling: bool) -> None:
    for index, (price, size) in enumerate(levels):
        if not price > 0:
            raise RecordError(f"{name}[{index}] price must be positive, got {price}")
        if not size > 0:
            raise RecordError(f"{name}[{index}] size must be positive, got {size}")
        if index and (price >= levels[index - 1][0] if falling else price <= levels[index - 1][0]):
            order = "falling" if falling else "rising"
            raise RecordError(f"{name} must be strictly {order} in price, best first: {name}[{index}] {price} "
                              f"after {levels[index - 1][0]}")


@dataclass(frozen=True, slots=True)
class OrderBook(SymbolKeyed, Record):
    exchange: str
    symbol: str
    ts: int
    sequence: int
    bids: Levels
    asks: Levels

    INTS: ClassVar[frozenset[str]] = frozenset({"ts", "sequence"})
    PARSERS: ClassVar[Mapping[str, Any]] = {"bids": parse_levels, "asks": parse_levels}

    @property
    def topic(self) -> str:
        return topics.ORDERBOOK

    @property
    def timestamp(self) -> int:
        return self.ts

    @property
    def best_bid(self) -> Level | None:
        return self.bids[0] if self.bids else None

    @property
    def best_ask(self) -> Level | None:
        return self.asks[0] if self.asks else None

    @property
    def spread(self) -> float | None:
        """Best ask minus best bid; None when a side is empty."""
        return self.asks[0][0] - self.bids[0][0] if self.bids and self.asks else None

    @property
    def mid(self) -> float | None:
        return (self.asks[0][0] + self.bids[0][0]) / 2 if self.bids and self.asks else None

    def top(self, depth: int) -> OrderBook:
        """The same book cut to its best ``depth`` levels per side."""
        return OrderBook(self.exchange, self.symbol, self.ts, self.sequence, self.bids[:depth], self.asks[:depth])

    def check(self) -> None:
        parse_symbol(self.symbol)
        sane_time(self.ts, "ts")
        if self.sequence < 0:
            raise RecordError(f"sequence must not be negative, got {self.sequence}")
        if not self.bids and not self.asks:
            raise RecordError("an order book needs at least one level on one side")
        _check_side(self.bids, "bids", falling=True)
        _check_side(self.asks, "asks", falling=False)
        if self.bids and self.asks and self.bids[0][0] >= self.asks[0][0]:
            raise RecordError(f"crossed book: best bid {self.bids[0][0]} at or above best ask {self.asks[0][0]}")
