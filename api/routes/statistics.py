"""Trade statistics over the last complete hours and minutes.

Per-symbol answers measure each symbol's window from its own clock (replays of different eras may
run side by side); answers that add or rank symbols together use the platform clock, the newest
of all, so their hours line up. Symbols with no trades in the window are left out.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import defaultdict
from typing import Any

from api import queries
from api import schemas as s
from api.context import ApiContext
from api.endpoint import Endpoint
from api.params import Param, finite
from api.routes.symbols import SYMBOL
from api.windows import buckets, complete, iso, utc

HOURS_6 = 6
HOURS_12 = 12


async def _hours(context: ApiContext, symbol: str, start: dt.datetime, end: dt.datetime) -> list[Any]:
    return await context.store.many([(queries.TRADE_HOURS, (symbol, bucket, start, end))
                                     for bucket in buckets("1h", start, end)])


async def _hours_by_symbol(context: ApiContext, count: int, common_clock: bool
                           ) -> list[tuple[str, dt.datetime, dt.datetime, list[Any]]]:
    """(symbol, start, end, hour rows) for every symbol with trades in its last ``count`` complete hours."""
    platform_now = await context.now()

    async def window(info: Any) -> tuple[str, dt.datetime, dt.datetime, list[Any]] | None:
        now = platform_now if common_clock else info.latest_event_time
        if now is None:
            return None
        start, end = complete(now, "1h", count)
        rows = await _hours(context, info.symbol, start, end)
        return (info.symbol, start, end, rows) if rows else None

    infos = sorted((await context.symbols()).values(), key=lambda i: i.symbol)
    return [found for found in await asyncio.gather(*(window(info) for info in infos)) if found]


async def transactions_6_hours(context: ApiContext) -> dict[str, Any]:
    result = []
    for symbol, start, end, rows in await _hours_by_symbol(context, HOURS_6, common_clock=False):
        counts = {utc(row.hour): row.trades for row in rows}
        hours = [start + dt.timedelta(hours=i) for i in range(HOURS_6)]
        result.append({"symbol": symbol, "start": iso(start), "end": iso(end),
                       "hours": [{"hour": iso(hour), "trades": counts.get(hour, 0)} for hour in hours]})
    return {"symbols": result}


async def volume_6_hours(context: ApiContext) -> dict[str, Any]:
    return {"symbols": [
        {"symbol": symbol, "start": iso(start), "end": iso(end), "trades": sum(r.trades for r in rows),
         "volume": sum(r.volume for r in rows), "quote_volume": sum(r.quote_volume for r in rows)}
        for symbol, start, end, rows in await _hours_by_symbol(context, HOURS_6, common_clock=False)]}


async def total_12_hours(context: ApiContext) -> dict[str, Any]:
    now = await context.now()
    if now is None:
        return {"start": None, "end": None, "hours": []}
    start, end = complete(now, "1h", HOURS_12)
    trades: dict[dt.datetime, int] = defaultdict(int)
    volume: dict[dt.datetime, float] = defaultdict(float)
    quote_volume: dict[dt.datetime, float] = defaultdict(float)
    for _, _, _, rows in await _hours_by_symbol(context, HOURS_12, common_clock=True):
        for row in rows:
            hour = utc(row.hour)
            trades[hour] += row.trades
            volume[hour] += row.volume
            quote_volume[hour] += row.quote_volume
    hours = [start + dt.timedelta(hours=i) for i in range(HOURS_12)]
    return {"start": iso(start), "end": iso(end), "hours": [
        {"hour": iso(h), "trades": trades.get(h, 0), "volume": volume.get(h, 0.0),
         "quote_volume": quote_volume.get(h, 0.0)} for h in hours]}


async def top_symbols_last_hour(context: ApiContext, n: int) -> dict[str, Any]:
    ranked = sorted(await _hours_by_symbol(context, 1, common_clock=True),
                    key=lambda found: -sum(r.quote_volume for r in found[3]))[:n]
    now = await context.now()
    start, end = complete(now, "1h", 1) if now else (None, None)
    return {"start": iso(start), "end": iso(end), "symbols": [
        {"rank": rank, "symbol": symbol, "trades": sum(r.trades for r in rows),
         "volume": sum(r.volume for r in rows), "quote_volume": sum(r.quote_volume for r in rows)}
        for rank, (symbol, _, _, rows) in enumerate(ranked, start=1)]}


async def symbol_trades(context: ApiContext, symbol: str, n: int) -> dict[str, Any]:
    now = (await context.symbol(symbol)).latest_event_time
    if now is None:
        return {"symbol": symbol, "start": None, "end": None, "count": 0, "trades": []}
    start, end = complete(now, "1m", n)
    rows = await context.store.many([(queries.TRADES, (symbol, bucket, start, end))
                                     for bucket in buckets("1m", start, end)])
    trades = [{"ts": iso(r.ts), "trade_id": r.trade_id, "side": r.side, "size": finite(r.size),
               "price": finite(r.price)} for r in rows]
    return {"symbol": symbol, "start": iso(start), "end": iso(end), "count": len(trades), "trades": trades}


WINDOW = {"start": s.time("first hour of the window"), "end": s.time("end of the window (exclusive)")}
TOTALS = {"trades": s.integer(), "volume": s.number("base volume, in the symbol's size unit"),
          "quote_volume": s.number("notional: sum of size x price")}
NULLABLE_WINDOW = {"start": s.time(nullable=True), "end": s.time(nullable=True)}
ENDPOINTS = (
    Endpoint(
        "/transactions/6-hours", transactions_6_hours, "statistics",
        "Per symbol, trades in each of the last 6 complete hours",
        s.obj(symbols=s.array(s.obj(symbol=s.string(), **WINDOW, hours=s.array(s.obj(hour=s.time(),
                                                                                  trades=s.integer()))))),
        description="Each symbol's hours end where the hour of its clock begins.", cached=True,
    ),
    Endpoint(
        "/volume/6-hours", volume_6_hours, "statistics", "Per symbol, traded volume over the last 6 complete hours",
        s.obj(symbols=s.array(s.obj(symbol=s.string(), **WINDOW, **TOTALS))), cached=True,
    ),
    Endpoint(
        "/total/12-hours", total_12_hours, "statistics",
        "Per hour, trades and volume of all symbols together over the last 12 complete hours",
        s.obj(**NULLABLE_WINDOW, hours=s.array(s.obj(hour=s.time(), **TOTALS))),
        description="Hours are measured from the platform clock (the newest event of any symbol).",
        cached=True,
    ),
    Endpoint(
        "/trades/hour/{n}", top_symbols_last_hour, "statistics",
        "Top n symbols by traded volume (notional) in the last complete hour",
        s.obj(**NULLABLE_WINDOW, symbols=s.array(s.obj(rank=s.integer(), symbol=s.string(), **TOTALS))),
        params=(Param("n", "path", "integer", "how many symbols", minimum=1, maximum=100),),
        description="Ranked by quote volume (size x price), comparable across symbols quoted in the same "
        "currency; the hour is the platform clock's last complete one.",
        cached=True,
    ),
    Endpoint(
        "/{symbol}/trades/{n}", symbol_trades, "statistics", "The symbol's trades in its last n complete minutes",
        s.obj(symbol=s.string(), **NULLABLE_WINDOW, count=s.integer(), trades=s.array(s.obj(
            ts=s.time(), trade_id=s.string(), side=s.string("taker side: buy or sell"), size=s.number(nullable=True),
            price=s.number(nullable=True)), "ascending by time")),
        params=(SYMBOL, Param("n", "path", "integer", "complete minutes", minimum=1, maximum=60)),
        cached=True,
    ),
)
