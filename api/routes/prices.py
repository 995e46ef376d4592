"""``GET /{symbol}/price`` and the chart page's live stream of the newest candle and price."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from api import queries
from api import schemas as s
from api.answers import encode
from api.context import ApiContext, StreamSlots
from api.endpoint import Endpoint
from api.errors import StoreUnavailable
from api.openapi import STATUS_TEXT
from api.params import finite, parse_all
from api.routes.candles import CANDLE, newest_candle
from api.routes.orderbook import ORDER_BOOK, order_book
from api.routes.symbols import SYMBOL
from api.windows import iso

PRICE = s.obj(
    symbol=s.string(), exchange=s.string(nullable=True),
    buy=s.number("best ask: what a buyer pays now; null when no quote arrived", nullable=True),
    sell=s.number("best bid: what a seller gets now; null when no quote arrived", nullable=True),
    quote_time=s.time("event time of the quote", nullable=True),
    last=s.number("last trade price, or the newest 1m close when no trade arrived", nullable=True),
    last_time=s.time(nullable=True), last_source=s.string("trade or candle", nullable=True),
)


async def price(context: ApiContext, symbol: str) -> dict[str, Any]:
    """The symbol's row of `latest_prices` alone answers a traded symbol, so the common request is one
    single-partition read; the symbols table (for the 404, the exchange and the clock of the candle
    fallback) is read only when that row lacks a trade or an exchange."""
    rows = await context.store.rows(queries.LATEST_PRICE, (symbol,))
    row = rows[0] if rows else None
    traded = row is not None and row.last_price is not None
    info = None if traded and row.exchange else await context.symbol(symbol)
    last, last_time, source = None, None, None
    if traded:
        last, last_time, source = finite(row.last_price), iso(row.trade_time), "trade"
    elif (candle := await newest_candle(context, symbol, info.latest_event_time)) is not None:
        last, last_time, source = candle["close"], candle["close_time"], "candle"
    return {"symbol": symbol, "exchange": (row.exchange if row else None) or info.exchange,
            "buy": finite(row.ask) if row else None, "sell": finite(row.bid) if row else None,
            "quote_time": iso(row.quote_time) if row else None, "last": last, "last_time": last_time,
            "last_source": source}


def _event(name: str, payload: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {encode(payload).decode()}\n\n"


class SlotStream(StreamingResponse):
    """An event stream that gives its slot back however it ends.

    The client leaving is the usual end: Starlette then cancels the task sending the events, which
    may be waiting in ``send`` rather than inside the generator, so the slot is given back here,
    around the whole response, and the generator is closed at once rather than whenever it is
    collected.
    """

    def __init__(self, events: AsyncGenerator[str, None], slots: StreamSlots) -> None:
        super().__init__(events, media_type="text/event-stream",
                         headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
        self.events = events
        self.slots = slots

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.slots.give_back()
            await self.events.aclose()


async def stream(request: Request) -> Response:
    """Server-sent ``update`` events ({"candle", "price", "book"}) every ``PRICEPIPE_API_STREAM_S`` seconds.

    A store outage is an ``error`` event, not the end of the stream: the page shows it and the
    next update arrives once Cassandra answers again. A worker serves at most
    ``PRICEPIPE_API_STREAMS_MAX`` streams; one more is a 503 with ``Retry-After``.
    """
    context: ApiContext = request.app.state.context
    symbol = parse_all((SYMBOL,), request.path_params, request.query_params)["symbol"]
    await context.symbol(symbol)

    async def events() -> AsyncGenerator[str, None]:
        while True:
            try:
                info = await context.symbol(symbol)
                yield _event("update", {"candle": await newest_candle(context, symbol, info.latest_event_time),
                                        "price": await price(context, symbol),
                                        "book": await order_book(context, symbol, STREAM_BOOK_DEPTH)})
            except StoreUnavailable as error:
                yield _event("error", {"error": error.message, "status": error.status})
            await asyncio.sleep(context.settings.api_stream_s)

    context.streams.take()
    return SlotStream(events(), context.streams)


ENDPOINTS = (
    Endpoint(
        "/{symbol}/price", price, "market data", "Current buy (ask) and sell (bid) price, and the last price",
        PRICE, params=(SYMBOL,), cached=True,
        description="Bid and ask come from the `quotes` topic (BitMEX) and the best levels of `orderbook` (Binance, "
        "BitMEX); `last` from the newest trade, or from the "
        "newest 1m candle's close for symbols whose feed has candles only.",
    ),
)
STREAM_PATH = "/stream/{symbol}"
# The chart page shows the best few levels of each side.
STREAM_BOOK_DEPTH = 5
ROUTES = (Route(STREAM_PATH, stream, methods=["GET"], name="stream"),)
STREAM_OPENAPI = {
    "get": {
        "tags": ["market data"], "summary": "Live updates for the chart page (server-sent events)",
        "description": "An `update` event every PRICEPIPE_API_STREAM_S seconds with `{\"candle\", \"price\", "
        "\"book\"}` (the newest 1m candle, the answer of /{symbol}/price and the best 5 levels of "
        "/{symbol}/orderbook); an `error` event while the store is "
        "unavailable. With PRICEPIPE_API_KEY set, pass the key as `?api_key=` (EventSource sends no headers). "
        "One API worker serves at most PRICEPIPE_API_STREAMS_MAX streams at once (default 200); one more is "
        "refused with 503 and `Retry-After`, and a slot frees when a client closes its stream.",
        "parameters": [SYMBOL.schema()],
        "responses": {
            "200": {"description": "an endless text/event-stream",
                    "content": {"text/event-stream": {"schema": s.obj(candle=CANDLE, price=PRICE, book=ORDER_BOOK)}}},
            **{str(status): {"description": STATUS_TEXT[status], "content": {"application/json": {"schema": s.ERROR}}}
               for status in (401, 404, 422)},
            "503": {"description": "this worker already serves PRICEPIPE_API_STREAMS_MAX streams (then with "
                                   "`Retry-After`), or Cassandra is unavailable",
                    "headers": {"Retry-After": {"description": "seconds to wait before asking again",
                                                "schema": {"type": "integer"}}},
                    "content": {"application/json": {"schema": s.ERROR}}},
        },
    },
}
