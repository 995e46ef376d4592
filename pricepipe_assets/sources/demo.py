"""The feed ``pricepipe run`` starts: live exchanges when they answer, real history replayed when not.

Offline (as on a machine without internet access), the platform still has to come alive with
real data: a stretch of history is published at once, so the models have something to learn
from within minutes, then the following days are replayed at a pace that makes the charts move,
with a day of real trades beside them. Nothing is generated: every record comes from the Binance
dumps at ``PRICEPIPE_BINANCE_DUMPS_URL``, a mirror of which may be a local folder.
"""

from __future__ import annotations

import datetime as dt
import sys
import threading
from dataclasses import dataclass

from pricepipe_assets.contract.utc import day_start_ms
from pricepipe_assets.kafka.client import kafka_cluster
from pricepipe_assets.settings import Settings
from pricepipe_assets.sources.binance.dump_files import Dataset
from pricepipe_assets.sources.binance.endpoints import binance_endpoints
from pricepipe_assets.sources.feed import (
    ReplayOptions,
    binance_runners,
    bitmex_runner,
    replay_runner,
    run_runners,
)

PROBE_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class TradesReplay:
    """One market's aggTrades over a few days: ``<market>/<SYMBOL>@<first>[..<last>]``."""

    market: str
    symbol: str
    start: dt.date
    end: dt.date

    @classmethod
    def parse(cls, text: str) -> TradesReplay:
        path, _, days = text.partition("@")
        market, _, symbol = path.rpartition("/")
        first, _, last = days.partition("..")
        start = dt.date.fromisoformat(first)
        return cls(market, symbol, start, dt.date.fromisoformat(last) if last else start)


def unreachable_reason(settings: Settings, timeout_s: float = PROBE_TIMEOUT_S) -> str | None:
    """Why Binance's REST API cannot be used right now, or None when it answers."""
    import requests

    url = f"{settings.binance_rest_url}/api/v3/ping"
    try:
        response = requests.get(url, timeout=timeout_s)
    except requests.RequestException as error:
        return f"{url}: {type(error).__name__}"
    return None if response.ok else f"{url}: HTTP {response.status_code}"


def publish_history(settings: Settings, start: dt.date, end: dt.date) -> None:
    """The configured symbols' 1m candles of [start, end] into Kafka as fast as Kafka takes them, with progress bars."""
    dumps = binance_endpoints(settings).dumps(progress=True)
    publisher = kafka_cluster(settings).publisher()
    for symbol in settings.symbols:
        result = dumps.backfill(publisher, Dataset.klines(symbol, "1m"), start, end)
        print(f"[feed] history: {symbol} {start} .. {end}: {result.records_published:,} candles", file=sys.stderr)


def publish_daily_history(settings: Settings) -> int:
    """Each configured symbol's daily candles from ``PRICEPIPE_DAILY_HISTORY_DIR`` that open before the
    replay starts, so the daily model has the years it trains on and no daily candle is later than
    the replay's clock; returns how many were published."""
    from pricepipe_assets.sources.candle_files import daily_history_file, import_candles

    folder = settings.daily_history_dir
    if folder is None:
        return 0
    publisher = kafka_cluster(settings).publisher()
    before_ms = day_start_ms(settings.replay_start)
    published = 0
    for symbol in settings.symbols:
        path = daily_history_file(folder, symbol)
        if path is None:
            print(f"[feed] daily history: no {symbol} file in {folder}", file=sys.stderr)
            continue
        result = import_candles(publisher, path, symbol, "1d", before_ms=before_ms, progress=True)
        published += result.published
        print(f"[feed] daily history: {symbol} from {path.name}: {result.published:,} daily candles before "
              f"{settings.replay_start}, {result.dead_letters:,} rows to deadletter", file=sys.stderr)
    return published


def run_demo_feed(settings: Settings) -> int:
    """Stream live data if an exchange answers; otherwise publish the history, then replay the rest."""
    reason = unreachable_reason(settings)
    publisher = kafka_cluster(settings).publisher()
    stop = threading.Event()
    if reason is None:
        print("[feed] Binance answers: fetching the history the lake lacks, then streaming live 1m klines and order "
              "books, and BitMEX trades, quotes and order books", file=sys.stderr)
        return run_runners(publisher, {**binance_runners(settings, publisher, history=True),
                                       "bitmex": bitmex_runner(settings, publisher)}, stop)
    paced_from = settings.replay_start + dt.timedelta(days=settings.replay_history_days)
    history = (f"{settings.replay_start} .. {paced_from - dt.timedelta(days=1)} at once, then "
               if settings.replay_history_days else "")
    print(f"[feed] exchanges unreachable ({reason}): replaying real history from {settings.binance_dumps_url} "
          f"instead, {history}up to {settings.replay_end} at {settings.replay_speed:g}x", file=sys.stderr)
    publish_daily_history(settings)
    if settings.replay_history_days:
        publish_history(settings, settings.replay_start, paced_from - dt.timedelta(days=1))
    runners = {}
    if paced_from <= settings.replay_end:
        runners["candles"] = replay_runner(settings, publisher, ReplayOptions(
            start=paced_from, end=settings.replay_end, speed=settings.replay_speed, symbols=settings.symbols), stop)
    if settings.replay_trades:
        trades = TradesReplay.parse(settings.replay_trades)
        runners["trades"] = replay_runner(settings, publisher, ReplayOptions(
            start=trades.start, end=trades.end, speed=settings.replay_speed, symbols=(),
            trades_symbol=trades.symbol, trades_market=trades.market), stop)
    if not runners:
        return 0
    return run_runners(publisher, runners, stop)
