"""``GET /candles/{symbol}``: candles of a range, read partition by partition."""

from __future__ import annotations

import datetime as dt
from typing import Any

from api import queries
from api import schemas as s
from api.context import ApiContext
from api.endpoint import Endpoint
from api.errors import InvalidParameter
from api.params import Param, finite
from api.routes.symbols import SYMBOL
from api.windows import STEP, buckets, floor, iso

PERIODS = {"day": dt.timedelta(days=1), "week": dt.timedelta(days=7), "month": dt.timedelta(days=30),
           "year": dt.timedelta(days=365)}
DEFAULT_PERIOD = {"1m": "day", "1h": "week", "1d": "year"}
# The longest range one request may ask for: 31 day partitions of 1m, 14 month partitions of 1h.
MAX_SPAN = {"1m": dt.timedelta(days=31), "1h": dt.timedelta(days=400), "1d": dt.timedelta(days=3660)}

INTERVAL = Param("interval", "query", "choice", "candle length", default="1m", choices=tuple(STEP))
TIME_RANGE = (
    Param("start", "query", "time", "first moment wanted (inclusive); default: `end` minus the default period"),
    Param("end", "query", "end", "end of the range (exclusive; a date alone includes that whole day); "
          "default: the symbol's clock"),
)
CANDLE = s.obj(open_time=s.time(), close_time=s.time(), open=s.number(nullable=True), high=s.number(nullable=True),
               low=s.number(nullable=True), close=s.number(nullable=True), volume=s.number(nullable=True),
               quote_volume=s.number(nullable=True), trades=s.integer(nullable=True))


def candle_json(row: Any) -> dict[str, Any]:
    return {"open_time": iso(row.open_time), "close_time": iso(row.close_time), "open": finite(row.open),
            "high": finite(row.high), "low": finite(row.low), "close": finite(row.close),
            "volume": finite(row.volume), "quote_volume": finite(row.quote_volume), "trades": row.trades}


def resolve_range(interval: str, period: str | None, start: dt.datetime | None, end: dt.datetime | None,
                  now: dt.datetime | None) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) from a period or explicit bounds; a period ends with the candle holding ``now``."""
    if period is not None and (start is not None or end is not None):
        raise InvalidParameter("period", "give either period or start/end, not both")
    if end is None:
        clock = now or dt.datetime.now(dt.UTC)
        end = floor(clock, interval) + STEP[interval]
    if start is None:
        start = end - PERIODS[period or DEFAULT_PERIOD[interval]]
    if start >= end:
        raise InvalidParameter("start", f"must be before end: [{iso(start)}, {iso(end)}) is empty "
                                        "(a date alone as end means the end of that day)")
    if end - start > MAX_SPAN[interval]:
        raise InvalidParameter("start", f"the range spans {(end - start).days} days; at most "
                                        f"{MAX_SPAN[interval].days} for interval={interval}, ask in several parts")
    return start, end


async def read_candles(context: ApiContext, symbol: str, interval: str, start: dt.datetime,
                       end: dt.datetime) -> list[dict[str, Any]]:
    rows = await context.store.many([(queries.CANDLES, (symbol, interval, bucket, start, end))
                                     for bucket in buckets(interval, start, end)])
    return [candle_json(row) for row in rows]


async def newest_candle(context: ApiContext, symbol: str, now: dt.datetime | None) -> dict[str, Any] | None:
    """The newest 1m candle at or before the symbol's clock (its day's partition, else the day before)."""
    if now is None:
        return None
    for day in (now.date(), now.date() - dt.timedelta(days=1)):
        rows = await context.store.rows(queries.NEWEST_CANDLE, (symbol, "1m", day))
        if rows:
            return candle_json(rows[0])
    return None


async def candles(context: ApiContext, symbol: str, interval: str, period: str | None, start: dt.datetime | None,
                  end: dt.datetime | None) -> dict[str, Any]:
    info = await context.symbol(symbol)
    start, end = resolve_range(interval, period, start, end, info.latest_event_time)
    return {"symbol": symbol, "interval": interval, "start": iso(start), "end": iso(end),
            "candles": await read_candles(context, symbol, interval, start, end)}


ENDPOINTS = (
    Endpoint(
        "/candles/{symbol}", candles, "market data", "Candles of a symbol over a period or a custom range",
        s.obj(symbol=s.string(), interval=s.string(), start=s.time(), end=s.time(),
              candles=s.array(CANDLE, "ascending by open_time; closed candles only")),
        params=(SYMBOL, INTERVAL,
                Param("period", "query", "choice", "the last day/week/month/year up to the symbol's clock "
                      "(default: day for 1m, week for 1h, year for 1d)", choices=tuple(PERIODS)),
                *TIME_RANGE),
        description="1m candles come from the live feed; 1h and 1d candles from the analytics rollups of the lake "
        f"(`analytics_job`). One request spans at most {MAX_SPAN['1m'].days} days of 1m, "
        f"{MAX_SPAN['1h'].days} days of 1h or {MAX_SPAN['1d'].days} days of 1d candles.",
    ),
)
