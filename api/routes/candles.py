"""``GET /candles/{symbol}``: candles of a range, read partition by partition.

A 1m candle that closed before the symbol's clock no longer changes: it is a closed candle of the
exchange, upserted by its open time. So the leading run of a 1m range's candles that is complete
(no minute missing) and closed is kept encoded in memory, and each request reads from Cassandra
only the candles after it, which for the day still open is the newest minute or two. A missing
minute ends the run, since a backfill or a gap fill after a reconnect may still add it. When the
run covers the whole range, the range ended before the clock and the answer is
:class:`~api.endpoint.Final`: served from memory as it is, with an ETag.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from api import queries
from api import schemas as s
from api.answers import encode
from api.context import ApiContext
from api.endpoint import Endpoint, Final
from api.errors import InvalidParameter
from api.params import Param, finite
from api.routes.symbols import SYMBOL
from api.windows import STEP, buckets, floor, iso, to_ms, utc

PERIODS = {"day": dt.timedelta(days=1), "week": dt.timedelta(days=7), "month": dt.timedelta(days=30),
           "year": dt.timedelta(days=365)}
MINUTE_MS = 60_000
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
                       end: dt.datetime) -> list[Any]:
    return await context.store.many([(queries.CANDLES, (symbol, interval, bucket, start, end))
                                     for bucket in buckets(interval, start, end)])


@dataclass(frozen=True, slots=True)
class ClosedRun:
    """The encoded 1m candles of [start, through): every minute there, each closed before the clock."""

    through: dt.datetime
    body: bytes  # the candles' JSON objects, comma-separated
    count: int


def _items(candles: list[dict[str, Any]]) -> bytes:
    return encode(candles)[1:-1]


def _joined(*parts: bytes) -> bytes:
    return b",".join(part for part in parts if part)


async def read_minutes(context: ApiContext, symbol: str, start: dt.datetime, end: dt.datetime,
                       clock: dt.datetime | None) -> tuple[bytes, int]:
    """The 1m candles of [start, end) as comma-separated JSON objects, and how many there are."""
    key = ("closed run", symbol, start)
    held = context.final.get(key)
    if held is None or held.through > end:
        held = ClosedRun(start, b"", 0)
    fresh = await read_candles(context, symbol, "1m", held.through, end)
    closed, expected = 0, held.through
    for row in fresh:
        if clock is None or utc(row.open_time) != expected or expected + STEP["1m"] > clock:
            break
        closed, expected = closed + 1, expected + STEP["1m"]
    candles = [candle_json(row) for row in fresh]
    if closed:
        run = ClosedRun(expected, _joined(held.body, _items(candles[:closed])), held.count + closed)
        context.final.put(key, run, len(run.body))
        held = run
    return _joined(held.body, _items(candles[closed:])), held.count + len(fresh) - closed


async def newest_candle(context: ApiContext, symbol: str, now: dt.datetime | None) -> dict[str, Any] | None:
    """The newest 1m candle at or before the symbol's clock (its day's partition, else the day before)."""
    if now is None:
        return None
    for day in (now.date(), now.date() - dt.timedelta(days=1)):
        rows = await context.store.rows(queries.NEWEST_CANDLE, (symbol, "1m", day))
        if rows:
            return candle_json(rows[0])
    return None


def minutes_in(start: dt.datetime, end: dt.datetime) -> int:
    """How many 1m candles open in [start, end)."""
    first = -(-to_ms(start) // MINUTE_MS) * MINUTE_MS
    return max(0, -(-(to_ms(end) - first) // MINUTE_MS))


def is_closed(interval: str, start: dt.datetime, end: dt.datetime, clock: dt.datetime | None, count: int) -> bool:
    """Whether an answer of ``count`` candles over [start, end) can never change (see the module's docstring)."""
    return interval == "1m" and clock is not None and end <= clock and count == minutes_in(start, end)


async def candles(context: ApiContext, symbol: str, interval: str, period: str | None, start: dt.datetime | None,
                  end: dt.datetime | None) -> dict[str, Any] | bytes | Final:
    clock = (await context.symbol(symbol)).latest_event_time
    start, end = resolve_range(interval, period, start, end, clock)
    head = {"symbol": symbol, "interval": interval, "start": iso(start), "end": iso(end)}
    if interval != "1m":
        return {**head, "candles": [candle_json(row) for row in await read_candles(context, symbol, interval, start, end)]}
    items, count = await read_minutes(context, symbol, start, end, clock)
    # The bytes encode({**head, "candles": [...]}) would give: orjson keeps the order and adds no spaces.
    body = encode(head)[:-1] + b',"candles":[' + items + b"]}"
    return Final(body) if is_closed(interval, start, end, clock, count) else body


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
