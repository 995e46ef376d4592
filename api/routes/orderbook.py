"""``GET /{symbol}/orderbook``: the best levels of a symbol's newest order book, with spread and mid."""

from __future__ import annotations

from typing import Any

from api import queries
from api import schemas as s
from api.context import ApiContext
from api.endpoint import Endpoint
from api.params import Param, finite
from api.routes.symbols import SYMBOL
from api.windows import iso

# What the feeds store is PRICEPIPE_BOOK_DEPTH levels per side (10 by default); deeper asks get those.
MAX_DEPTH = 100
LEVEL = s.obj(price=s.number(), size=s.number("quantity at this price, in the venue's unit"))
ORDER_BOOK = s.obj(
    symbol=s.string(), exchange=s.string(nullable=True),
    time=s.time("event time of the book; null when no book arrived yet", nullable=True),
    sequence=s.integer("the venue's update id (Binance) or message count (BitMEX) of this state", nullable=True),
    bids=s.array(LEVEL, "best (highest) bid first"), asks=s.array(LEVEL, "best (lowest) ask first"),
    spread=s.number("best ask minus best bid; null while a side is empty", nullable=True),
    mid=s.number("halfway between best bid and best ask; null while a side is empty", nullable=True),
)
DEPTH = Param("depth", "query", "integer", "levels per side wanted (at most what the feed stores, "
              "PRICEPIPE_BOOK_DEPTH)", default=10, minimum=1, maximum=MAX_DEPTH)


def _levels(stored: Any, depth: int) -> list[dict[str, float | None]]:
    return [{"price": finite(price), "size": finite(size)} for price, size in (stored or [])[:depth]]


async def order_book(context: ApiContext, symbol: str, depth: int) -> dict[str, Any]:
    """One single-partition read of `order_books`; the symbols table only for the 404 and the
    exchange of a symbol without a book yet (an empty book, not an error: the feed may be starting)."""
    rows = await context.store.rows(queries.ORDER_BOOK, (symbol,))
    row = rows[0] if rows else None
    if row is None:
        info = await context.symbol(symbol)
        return {"symbol": symbol, "exchange": info.exchange, "time": None, "sequence": None, "bids": [], "asks": [],
                "spread": None, "mid": None}
    bids, asks = _levels(row.bids, depth), _levels(row.asks, depth)
    best_bid = bids[0]["price"] if bids else None
    best_ask = asks[0]["price"] if asks else None
    spread, mid = None, None
    if best_bid is not None and best_ask is not None:
        spread, mid = best_ask - best_bid, (best_ask + best_bid) / 2
    return {"symbol": symbol, "exchange": row.exchange, "time": iso(row.ts), "sequence": row.sequence,
            "bids": bids, "asks": asks, "spread": spread, "mid": mid}


ENDPOINTS = (
    Endpoint(
        "/{symbol}/orderbook", order_book, "market data", "Best bids and asks of the newest order book, with spread",
        ORDER_BOOK, params=(SYMBOL, DEPTH), cached=True,
        description="From the `orderbook` topic: Binance's diff depth stream kept in sync with its REST snapshot, and "
        "BitMEX's `orderBookL2_25`; a book the feed could not keep in sync is never stored. At most one book per "
        "symbol per PRICEPIPE_BOOK_PUBLISH_S seconds arrives.",
    ),
)
