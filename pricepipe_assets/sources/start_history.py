"""History before going live: what a live start fetches so the models have something to learn from.

A live stream gives only what happens from now on, while the daily model trains on a year or more
of daily candles and the minute model on weeks of minutes. So before the stream starts, each
symbol gets, from oldest to newest:

1. its daily candles since listing (or ``PRICEPIPE_HISTORY_DAILY_YEARS``): Binance's monthly 1d
   dumps for the complete months, REST for the days of the current month;
2. the last ``PRICEPIPE_HISTORY_DAYS`` of 1m candles: the daily 1m dumps up to the newest one
   published (a day's dump appears the day after), REST for any day the dumps lack;
3. the minutes since then up to now: the kline stream's own gap fill over REST on its first
   connect, given the newest minute published here, so the junction has no hole and no double.

Each step starts after the newest candle the lake's raw zone already holds, so a second start
fetches only what is missing. Candles are published to their topics like any others; the
sensor-driven runs store them.
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Callable

from pricepipe_assets.contract.record_values import now_ms as wall_ms
from pricepipe_assets.contract.records import INTERVAL_MS
from pricepipe_assets.contract.utc import day_start_ms, utc_day
from pricepipe_assets.kafka.publisher import Publisher
from pricepipe_assets.settings import Settings
from pricepipe_assets.sources.binance.dump_files import Dataset
from pricepipe_assets.sources.binance.dumps import BinanceDumps
from pricepipe_assets.sources.binance.endpoints import binance_endpoints
from pricepipe_assets.sources.binance.rest import BinanceRestClient
from pricepipe_assets.sources.binance.rest import backfill as rest_backfill
from pricepipe_assets.storage.lake import Lake, data_lake
from pricepipe_assets.storage.lake_datasets import RAW_CANDLES

DAY_MS = INTERVAL_MS["1d"]
MINUTE_MS = INTERVAL_MS["1m"]


def newest_in_lake(lake: Lake, symbol: str, interval: str) -> int | None:
    """The open time of the newest ``interval`` candle of ``symbol`` in the raw zone, or None."""
    import pyarrow.compute as pc

    days = lake.list_folders(RAW_CANDLES, f"interval={interval}", f"symbol={symbol}")
    if not days:
        return None
    table = lake.read_dataset(f"{RAW_CANDLES}/interval={interval}/symbol={symbol}/{days[-1]}", columns=["open_time"])
    return int(pc.max(table["open_time"]).as_py()) if table.num_rows else None


def _month_start(day: dt.date) -> dt.date:
    return day.replace(day=1)


class StartHistory:
    """One start's history fetch; ``say`` prints a line per step (the CLI passes stderr's)."""

    def __init__(self, publisher: Publisher, dumps: BinanceDumps, rest: BinanceRestClient, lake: Lake, *,
                 days: int, daily_years: int, say: Callable[[str], None] = lambda line: print(line, file=sys.stderr)
                 ) -> None:
        self.publisher = publisher
        self.dumps = dumps
        self.rest = rest
        self.lake = lake
        self.days = days
        self.daily_years = daily_years
        self.say = say

    def fetch(self, symbols: tuple[str, ...], now_ms: int) -> dict[str, int]:
        """Fetch every symbol's history; returns the newest 1m open time published or held per symbol,
        from which the live stream's first gap fill continues."""
        newest: dict[str, int] = {}
        for symbol in symbols:
            if self.daily_years:
                self._daily(symbol, now_ms)
            if self.days:
                last = self._minutes(symbol, now_ms)
                if last is not None:
                    newest[symbol] = last
        return newest

    def _daily(self, symbol: str, now_ms: int) -> None:
        today = dt.datetime.fromtimestamp(now_ms / 1000, dt.UTC).date()
        held = newest_in_lake(self.lake, symbol, "1d")
        first = today.replace(year=today.year - self.daily_years, day=1)
        start = max(first, dt.datetime.fromtimestamp(held / 1000, dt.UTC).date()) if held is not None else first
        last_month_end = _month_start(today) - dt.timedelta(days=1)
        published, last = 0, held
        if start <= last_month_end:
            result = self.dumps.backfill(self.publisher, Dataset.klines(symbol, "1d", period="monthly"),
                                         _month_start(start), last_month_end, skip_missing=True, after=held)
            published += result.records_published
            if result.last_event_ms is not None:
                last = result.last_event_ms - result.last_event_ms % DAY_MS
        yesterday = day_start_ms(today) - DAY_MS
        if last is None or last < yesterday:  # the current month, and any month the dumps do not have yet
            fill = rest_backfill(self.rest, self.publisher, symbol, "1d", day_start_ms(start), yesterday, after_open_time=last)
            published += fill.candles
        self.say(f"[history] {symbol} 1d: {published:,} daily candles published"
                 + (f" after the lake's newest of {utc_day(held)}" if held is not None else ""))

    def _minutes(self, symbol: str, now_ms: int) -> int | None:
        today = dt.datetime.fromtimestamp(now_ms / 1000, dt.UTC).date()
        held = newest_in_lake(self.lake, symbol, "1m")
        first = today - dt.timedelta(days=self.days)
        if held is not None and held >= day_start_ms(first):
            first = dt.datetime.fromtimestamp(held / 1000, dt.UTC).date()
        else:
            held = None
        published, last = 0, held
        yesterday = today - dt.timedelta(days=1)
        if first <= yesterday:
            result = self.dumps.backfill(self.publisher, Dataset.klines(symbol, "1m"), first, yesterday,
                                         skip_missing=True, after=held)
            published += result.records_published
            if result.last_event_ms is not None:
                last = max(last or 0, result.last_event_ms - result.last_event_ms % MINUTE_MS)
            for day in result.missing_days:  # not (yet) in the dumps: the same minutes over REST
                fill = rest_backfill(self.rest, self.publisher, symbol, "1m", day_start_ms(day),
                                     day_start_ms(day) + DAY_MS - MINUTE_MS, after_open_time=held)
                published += fill.candles
                if fill.last_open_time is not None:
                    last = max(last or 0, fill.last_open_time)
        self.say(f"[history] {symbol} 1m: {published:,} candles published from {first} to {yesterday}; "
                 "the live stream continues from there over REST")
        return last


def fetch_start_history(settings: Settings, publisher: Publisher) -> dict[str, int]:
    """The history of every configured symbol, as the settings ask; see :class:`StartHistory`."""
    endpoints = binance_endpoints(settings)
    history = StartHistory(publisher, endpoints.dumps(progress=True), BinanceRestClient(settings.binance_rest_url),
                           data_lake(settings), days=settings.history_days, daily_years=settings.history_daily_years)
    return history.fetch(settings.symbols, wall_ms())

