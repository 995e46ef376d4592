"""``GET /symbols``: what can be asked for, and how current each symbol is."""

from __future__ import annotations

from typing import Any

from api import schemas as s
from api.context import ApiContext
from api.endpoint import Endpoint
from api.params import Param
from api.windows import iso

SYMBOL = Param("symbol", "path", "symbol", "a symbol of GET /symbols, e.g. BTCUSDT (case does not matter)")


async def list_symbols(context: ApiContext) -> dict[str, Any]:
    found = await context.symbols()
    return {
        "now": iso(await context.now()),
        "symbols": [{"symbol": info.symbol, "exchange": info.exchange, "latest_event_time": iso(info.latest_event_time),
                     "configured": info.configured} for info in sorted(found.values(), key=lambda i: i.symbol)],
    }


ENDPOINTS = (
    Endpoint(
        "/symbols", list_symbols, "symbols", "Configured symbols and every symbol data arrived for",
        s.obj(now=s.time("the platform clock: the newest event time of any symbol", nullable=True),
              symbols=s.array(s.obj(symbol=s.string(), exchange=s.string(nullable=True),
                                    latest_event_time=s.time("the symbol's clock", nullable=True),
                                    configured=s.boolean("whether PRICEPIPE_SYMBOLS or PRICEPIPE_BITMEX_SYMBOLS names it")))),
        description="Each symbol's `latest_event_time` is its clock: wall time when live, the replayed moment when "
        "replaying history. Windows such as 'the last 6 complete hours' are measured from it.",
    ),
)
