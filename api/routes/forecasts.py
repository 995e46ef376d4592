"""Moving averages, the 15-day forecast and the next-minute predictions of a symbol."""

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
from api.windows import STEP, iso, to_ms
from pricepipe_assets.contract.forecasts import FORECAST_LEVEL, HORIZON_DAYS, INTERVAL_METHODS
from pricepipe_assets.storage.api_keys import FORECASTS
from pricepipe_assets.storage.cassandra_schema import MOVING_AVERAGE_WINDOWS, candle_bucket

DEFAULT_MA_DAYS = 90
NAIVE = "naive"
MAX_MA_DAYS = 3660


def _day(value: Any) -> dt.date:
    """A driver ``date`` (cassandra.util.Date) or a datetime.date as a datetime.date."""
    day: dt.date = value.date() if hasattr(value, "date") and not isinstance(value, dt.date) else value
    return day


async def moving_average(context: ApiContext, symbol: str, window: int, start: dt.datetime | None,
                         end: dt.datetime | None) -> dict[str, Any]:
    info = await context.symbol(symbol)
    last = (end - dt.timedelta(microseconds=1)).date() if end else (info.latest_event_time
                                                                      or dt.datetime.now(dt.UTC)).date()
    first = start.date() if start else last - dt.timedelta(days=DEFAULT_MA_DAYS - 1)
    if first > last:
        raise InvalidParameter("start", f"must be before end ({first} is after {last})")
    if (last - first).days >= MAX_MA_DAYS:
        raise InvalidParameter("start", f"the range spans {(last - first).days + 1} days; at most {MAX_MA_DAYS}")
    years = range(first.year, last.year + 1)
    rows = await context.store.many([(queries.MOVING_AVERAGES, (symbol, window, dt.date(year, 1, 1), first, last))
                                     for year in years])
    return {"symbol": symbol, "window": window, "start": first.isoformat(), "end": last.isoformat(),
            "points": [{"day": _day(row.day).isoformat(), "sma": finite(row.sma)} for row in rows]}


async def forecast(context: ApiContext, symbol: str, days: int) -> dict[str, Any]:
    """The newest daily forecast: looked up in the year of the symbol's clock, then the year before."""
    info = await context.symbol(symbol)
    now = info.latest_event_time or dt.datetime.now(dt.UTC)
    for year in (now.year, now.year - 1):
        bucket = dt.date(year, 1, 1)
        newest = await context.store.rows(queries.NEWEST_FORECAST, (symbol, bucket))
        if newest:
            made_at = newest[0].made_at
            rows = (await context.store.rows(queries.FORECAST, (symbol, bucket, made_at)))[:days]
            return {"symbol": symbol, "model": rows[0].model, "model_version": rows[0].model_version,
                    "made_at": iso(made_at), "level": FORECAST_LEVEL,
                    "interval_method": INTERVAL_METHODS.get(rows[0].model), "reason": rows[0].reason,
                    "forecast": [{"target_time": iso(r.target_time), "predicted": finite(r.predicted),
                                  "lower": finite(r.lower), "upper": finite(r.upper)} for r in rows]}
    return {"symbol": symbol, "model": None, "model_version": None, "made_at": None, "level": FORECAST_LEVEL,
            "interval_method": None, "reason": None, "forecast": []}


async def best_model(context: ApiContext, symbol: str, horizon: str) -> str | None:
    """The model with the lowest walk-forward MAE over naive among those that passed their check;
    ``naive`` when every model failed it (the baseline answers for them); None before any score."""
    scores = await context.store.rows(queries.MODEL_SCORES, (symbol, horizon))
    passed = [row for row in scores if row.passed]
    if not passed:
        return NAIVE if scores else None
    best: str = min(passed, key=lambda row: row.mae_ratio).model
    return best


async def predictions(context: ApiContext, symbol: str, horizon: str, limit: int, model: str | None) -> dict[str, Any]:
    """The newest predictions of one model (by default the best that passed its check), from the
    partition of the candle after the symbol's clock backwards."""
    info = await context.symbol(symbol)
    now = info.latest_event_time or dt.datetime.now(dt.UTC)
    newest_target = now + (STEP[horizon] if horizon == "1m" else dt.timedelta(days=HORIZON_DAYS))
    bucket = candle_bucket(horizon, to_ms(newest_target))
    previous = bucket - dt.timedelta(days=1) if horizon == "1m" else bucket.replace(year=bucket.year - 1)
    chosen = model or await best_model(context, symbol, horizon)
    # Before any model has a score (or for a daily forecast), the newest prediction of each candle.
    query, key = (queries.MODEL_PREDICTIONS, (chosen,)) if chosen else (queries.PREDICTIONS, ())
    found: list[Any] = []
    for partition in (bucket, previous):
        found += await context.store.rows(query, (symbol, horizon, partition, *key, limit - len(found)))
        if len(found) >= limit:
            break
    return {"symbol": symbol, "horizon": horizon, "model": chosen, "level": FORECAST_LEVEL, "predictions": [
        {"target_time": iso(r.target_time), "made_at": iso(r.made_at), "model": r.model,
         "model_version": r.model_version, "predicted": finite(r.predicted), "lower": finite(r.lower),
         "upper": finite(r.upper), "actual": finite(r.actual)} for r in found]}


FORECAST_POINT = s.obj(target_time=s.time("the forecast day's candle open"), predicted=s.number(nullable=True),
                       lower=s.number(nullable=True), upper=s.number(nullable=True))
ENDPOINTS = (
    Endpoint(
        "/moving-average/{symbol}", moving_average, "analytics", "Trailing N-day moving average of the daily close",
        s.obj(symbol=s.string(), window=s.integer(), start=s.day(), end=s.day(),
              points=s.array(s.obj(day=s.day(), sma=s.number("mean close of the N days ending on `day`",
                                                               nullable=True)))),
        params=(SYMBOL,
                Param("window", "query", "integer", "days in the trailing window", default=7,
                      choices=MOVING_AVERAGE_WINDOWS),
                Param("start", "query", "time", f"first day (default: {DEFAULT_MA_DAYS} days before end)"),
                Param("end", "query", "end", "last day, included (default: the symbol's clock)")),
        description="A day has a value only once its window is full. Computed by `moving_averages_daily` "
        "(analytics group) from the lake's daily candles.",
    ),
    Endpoint(
        "/forecast/{symbol}", forecast, "forecasts", "The newest daily forecast with its prediction interval",
        s.obj(symbol=s.string(), model=s.string("the model that answered; `naive` when the daily model lost to "
                                                "the naive baseline", nullable=True),
              model_version=s.string(nullable=True), made_at=s.time(nullable=True),
              level=s.number("coverage the intervals are calibrated for"),
              interval_method=s.string("how the intervals were made", nullable=True),
              reason=s.string("why the naive fallback answers instead of the daily model, e.g. `rf_daily MAE 1.05 × "
                              "naive over 40 walk-forward origins`; null when the model answered", nullable=True),
              forecast=s.array(FORECAST_POINT)),
        params=(SYMBOL, Param("days", "query", "integer", "days of forecast wanted", default=HORIZON_DAYS,
                              minimum=1, maximum=HORIZON_DAYS)),
        description="Empty (`forecast: []`) until `daily_forecast` has run for the symbol.", scope=FORECASTS,
    ),
    Endpoint(
        "/predictions/{symbol}", predictions, "forecasts", "Latest predictions beside the actual closes once known",
        s.obj(symbol=s.string(), horizon=s.string(),
              model=s.string("the model answering: the one asked for, else the best-scoring that passed its check "
                             "(`naive` when none did); null before any model was scored", nullable=True),
              level=s.number(), predictions=s.array(s.obj(
            target_time=s.time("open time of the predicted candle"), made_at=s.time(), model=s.string(),
            model_version=s.string(), predicted=s.number(nullable=True), lower=s.number(nullable=True),
            upper=s.number(nullable=True), actual=s.number("the candle's close; null until it closed",
                                                           nullable=True)),
            "newest target first")),
        params=(SYMBOL,
                Param("horizon", "query", "choice", "1m: next-minute predictions; 1d: the daily forecasts' days",
                      default="1m", choices=("1m", "1d")),
                Param("limit", "query", "integer", "predictions wanted", default=60, minimum=1, maximum=1440),
                Param("model", "query", "choice", "whose predictions: `sgd_minute`, `lstm_minute`, `rf_daily` or "
                      "`naive` (default: the best walk-forward MAE among the models that passed their check)",
                      choices=tuple(INTERVAL_METHODS))), scope=FORECASTS,
    ),
)
