"""``GET /{symbol}/price`` and the chart page's live stream of the newest candle, price and book."""

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
from api.live import KEEP_ALIVE, KEEP_ALIVE_S
from api.openapi import RETRY_AFTER, STATUS_TEXT, guarded
from api.params import finite, parse_all
from api.routes.candles import CANDLE, newest_candle
from api.routes.orderbook import ORDER_BOOK, order_book
from api.routes.symbols import SYMBOL
from api.windows import iso
from pricepipe_assets.storage.api_keys import STREAM

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
    row: Any = rows[0] if rows else None  # a driver row
    traded = row is not None and row.last_price is not None
    exchange = row.exchange if row is not None else None
    info = None if traded and exchange else await context.symbol(symbol)
    last, last_time, source = None, None, None
    if traded:
        last, last_time, source = finite(row.last_price), iso(row.trade_time), "trade"
    elif info is not None and (candle := await newest_candle(context, symbol, info.latest_event_time)) is not None:
        last, last_time, source = candle["close"], candle["close_time"], "candle"
    return {"symbol": symbol, "exchange": exchange or (info.exchange if info is not None else None),
            "buy": finite(row.ask) if row else None, "sell": finite(row.bid) if row else None,
            "quote_time": iso(row.quote_time) if row else None, "last": last, "last_time": last_time,
            "last_source": source}


def _event(name: str, payload: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + encode(payload) + b"\n\n"


async def stream_event(context: ApiContext, symbol: str) -> bytes:
    """One poll of a symbol's live stream, shared by all its clients (:mod:`api.live`). The three reads
    run at once, so an update reaches the page one read's latency after the poll starts; a store
    outage is an ``error`` event, and the next poll that Cassandra answers is an update again."""
    try:
        info = await context.symbol(symbol)
        candle, quote, book = await asyncio.gather(newest_candle(context, symbol, info.latest_event_time),
                                                   price(context, symbol),
                                                   order_book(context, symbol, STREAM_BOOK_DEPTH))
    except StoreUnavailable as error:
        return _event("error", {"error": error.message, "status": error.status})
    return _event("update", {"candle": candle, "price": quote, "book": book})


class SlotStream(StreamingResponse):
    """An event stream that gives its slot back however it ends.

    The client leaving is the usual end: Starlette then cancels the task sending the events, which
    may be waiting in ``send`` rather than inside the generator, so the slot is given back here,
    around the whole response, and the generator is closed at once rather than whenever it is
    collected: closing it takes the client off its symbol's poller, which stops with the last one.
    """

    def __init__(self, events: AsyncGenerator[bytes, None], slots: StreamSlots) -> None:
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
    """Server-sent ``update`` events ({"candle", "price", "book"}) as the symbol's rows change.

    The worker reads the symbol every ``PRICEPIPE_API_STREAM_S`` seconds, once for all its clients
    (:mod:`api.live`), and a client gets an update when what was read differs from the last one it
    got, so a new row reaches the page within about one period of being readable. A store outage is
    an ``error`` event, not the end of the stream: the page shows it and the next update arrives once
    Cassandra answers again. A worker serves at most ``PRICEPIPE_API_STREAMS_MAX`` streams; one more
    is a 503 with ``Retry-After``.
    """
    context: ApiContext = request.app.state.context
    symbol = parse_all((SYMBOL,), request.path_params, request.query_params)["symbol"]
    await context.symbol(symbol)
    context.streams.take()
    return SlotStream(context.feeds.stream(symbol, lambda: stream_event(context, symbol)), context.streams)


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
ROUTES = ((Route(STREAM_PATH, stream, methods=["GET"], name="stream"), STREAM),)
STREAM_OPENAPI = {
    "get": guarded({
        "tags": ["market data"], "summary": "Live updates for the chart page (server-sent events)",
        "description": "An `update` event with `{\"candle\", \"price\", \"book\"}` (the newest 1m candle, the "
        "answer of /{symbol}/price and the best 5 levels of /{symbol}/orderbook) at once, then whenever one of "
        "them changed: each API worker reads a symbol every PRICEPIPE_API_STREAM_S seconds (default 0.25) while "
        "it has clients, once for all of them, so a new row arrives within about that time of being readable. "
        "An `error` event while the store is unavailable (an `update` follows once it answers again), and a "
        f"comment line (`{KEEP_ALIVE.decode().strip()}`) after {KEEP_ALIVE_S:g} s without an event, so that proxies "
        "keep the connection open. "
        "EventSource sends no headers: a browser sends the session cookie of `POST /login` instead. "
        "One API worker serves at most PRICEPIPE_API_STREAMS_MAX streams at once (default 200); one more is "
        "refused with 503 and `Retry-After`, and a slot frees when a client closes its stream.",
        "parameters": [SYMBOL.schema()],
        "responses": {
            "200": {"description": "an endless text/event-stream",
                    "content": {"text/event-stream": {"schema": s.obj(candle=CANDLE, price=PRICE, book=ORDER_BOOK)}}},
            **{str(status): {"description": STATUS_TEXT[status], "content": {"application/json": {"schema": s.ERROR}}}
               for status in (404, 422)},
            "503": {"description": "this worker already serves PRICEPIPE_API_STREAMS_MAX streams (then with "
                                   "`Retry-After`), or Cassandra is unavailable",
                    "headers": RETRY_AFTER, "content": {"application/json": {"schema": s.ERROR}}},
        },
    }, STREAM),
}
