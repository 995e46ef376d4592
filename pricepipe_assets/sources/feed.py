"""``pricepipe feed``: run one source until Ctrl-C, with a single status line of counts and rates."""

from __future__ import annotations

import datetime as dt
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TextIO

from pricepipe_assets.kafka.client import kafka_cluster
from pricepipe_assets.kafka.publisher import Publisher
from pricepipe_assets.settings import Settings
from pricepipe_assets.sources.binance.dump_files import Dataset
from pricepipe_assets.sources.binance.endpoints import binance_endpoints
from pricepipe_assets.storage.lake import data_lake

if TYPE_CHECKING:
    from pricepipe_assets.sources.replay import Item

SOURCES = ("binance", "bitmex", "replay", "ccxt")


@dataclass(frozen=True)
class ReplayOptions:
    """What to replay: 1m candles of ``symbols`` and, optionally, one symbol's trades, over whole days,
    from the Binance dumps (``origin="dumps"``) or from the lake's raw zone (``origin="lake"``)."""

    start: dt.date
    end: dt.date
    speed: float | None
    symbols: tuple[str, ...]
    trades_symbol: str | None = None
    trades_market: str = "futures/cm"
    origin: str = "dumps"


class StatusLine:
    """Per-topic message counts and rates, then what the source itself reports (reconnects, gap fills,
    market time), rewritten in place on a terminal (a line every 10 s otherwise)."""

    def __init__(self, publisher: Publisher, detail: Callable[[], str], stream: TextIO = sys.stderr) -> None:
        self._publisher = publisher
        self._detail = detail
        self._stream = stream
        self._last: dict[str, int] = {}
        self._last_at = time.monotonic()

    def render(self) -> str:
        now = time.monotonic()
        elapsed = max(now - self._last_at, 1e-9)
        counts = dict(self._publisher.sent)
        parts = [f"{topic} {count:,} ({(count - self._last.get(topic, 0)) / elapsed:,.0f}/s)"
                 for topic, count in sorted(counts.items())]
        self._last, self._last_at = counts, now
        if self._publisher.undelivered:
            parts.append(f"NOT DELIVERED {self._publisher.undelivered:,}")
        return " | ".join([*(parts or ["waiting for data ..."]), self._detail()])

    def run(self, stop: threading.Event) -> None:
        interactive = self._stream.isatty()
        while not stop.wait(1.0 if interactive else 10.0):
            line = self.render()
            self._stream.write(f"\r\033[K{line}" if interactive else f"{line}\n")
            self._stream.flush()
        if interactive:
            self._stream.write("\n")


Runner = tuple[Callable[[threading.Event], object], Callable[[], str]]
"""A source's thread target (what it returns is not used) and its own status text."""


def replay_runner(settings: Settings, publisher: Publisher, options: ReplayOptions, stop: threading.Event) -> Runner:
    from pricepipe_assets.sources.replay import Replayer

    streams: Sequence[Iterable[Item]]
    if options.origin == "lake":
        from pricepipe_assets.sources.lake_history import lake_streams

        streams = lake_streams(data_lake(settings), options.symbols, options.start, options.end, options.trades_symbol)
    else:
        dumps = binance_endpoints(settings).dumps(progress=True)
        datasets = [Dataset.klines(s, "1m") for s in options.symbols]
        if options.trades_symbol:
            datasets.append(Dataset.agg_trades(options.trades_symbol, options.trades_market))
        streams = [dumps.records(dataset, options.start, options.end) for dataset in datasets]

    replayer = Replayer(publisher, speed=options.speed, stop=stop)
    return (lambda _: replayer.run(*streams)), (lambda: replayer.status().clock())


def bitmex_runner(settings: Settings, publisher: Publisher) -> Runner:
    from pricepipe_assets.sources.bitmex.ws import BitmexClient
    from pricepipe_assets.sources.book_throttle import BookThrottle

    client = BitmexClient(publisher, url=settings.bitmex_ws_url, symbols=settings.bitmex_symbols,
                          books=BookThrottle(publisher, settings.book_publish_s), book_depth=settings.book_depth)
    return client.run, client.status_line


def ccxt_runners(settings: Settings, publisher: Publisher) -> dict[str, Runner]:
    """The markets of ``PRICEPIPE_CCXT_MARKETS``, one runner per venue: ccxt.pro keeps one connection
    per venue, so its markets share it."""
    from pricepipe_assets.sources.book_throttle import BookThrottle
    from pricepipe_assets.sources.ccxt.live import CcxtLiveFeed
    from pricepipe_assets.sources.ccxt.markets import open_exchange, parse_markets, parse_url_overrides

    markets = parse_markets(settings.ccxt_markets)
    if not markets:
        raise ValueError("pricepipe feed --source ccxt follows PRICEPIPE_CCXT_MARKETS, which is not set "
                         "(for example kraken:BTC/USD,okx:BTC/USDT)")
    overrides = parse_url_overrides(settings.ccxt_urls)
    runners: dict[str, Runner] = {}
    for venue in dict.fromkeys(market.exchange for market in markets):
        feed = CcxtLiveFeed(publisher, open_exchange(venue, overrides, live=True),
                            [market.symbol for market in markets if market.exchange == venue],
                            books=BookThrottle(publisher, settings.book_publish_s), book_depth=settings.book_depth)
        runners[f"ccxt-{venue}"] = (feed.run, feed.status_line)
    return runners


def binance_runner(settings: Settings, publisher: Publisher, *, history: bool = False) -> Runner:
    """Binance's live klines; with ``history``, each symbol's history first (see ``start_history``),
    which the stream's first gap fill continues from without a hole or a double."""
    from pricepipe_assets.sources.binance.rest import BinanceRestClient
    from pricepipe_assets.sources.binance.ws import BinanceKlineStream

    last_open_times = None
    if history:
        from pricepipe_assets.sources.start_history import fetch_start_history

        last_open_times = fetch_start_history(settings, publisher)
    rest = BinanceRestClient(settings.binance_rest_url)
    stream = BinanceKlineStream(settings.symbols, publisher, rest, base_url=settings.binance_ws_url,
                                last_open_times=last_open_times)
    return stream.run, stream.counts.status_line


def binance_depth_runner(settings: Settings, publisher: Publisher) -> Runner:
    """Binance's order books of the followed symbols: the diff depth stream kept in sync with REST snapshots."""
    from pricepipe_assets.sources.binance.depth_stream import BinanceDepthStream
    from pricepipe_assets.sources.binance.rest import BinanceRestClient
    from pricepipe_assets.sources.book_throttle import BookThrottle

    stream = BinanceDepthStream(settings.symbols, publisher, BinanceRestClient(settings.binance_rest_url),
                                depth=settings.book_depth, throttle=BookThrottle(publisher, settings.book_publish_s),
                                base_url=settings.binance_ws_url)
    return stream.run, stream.counts.status_line


def binance_runners(settings: Settings, publisher: Publisher, *, history: bool = False) -> dict[str, Runner]:
    """Binance's klines and order books, side by side."""
    return {"binance": binance_runner(settings, publisher, history=history),
            "binance-depth": binance_depth_runner(settings, publisher)}


def run_feed(source: str, settings: Settings, replay: ReplayOptions | None = None, *, history: bool = False) -> int:
    """Run ``source`` until it ends (a replay) or Ctrl-C; everything sent is confirmed by Kafka before returning."""
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}: choose from {', '.join(SOURCES)}")
    if source == "replay" and replay is None:
        raise ValueError("a replay needs its options (dates, speed, symbols)")
    publisher = kafka_cluster(settings).publisher()
    stop = threading.Event()
    if source == "replay" and replay is not None:
        runners = {source: replay_runner(settings, publisher, replay, stop)}
    elif source == "bitmex":
        runners = {source: bitmex_runner(settings, publisher)}
    elif source == "ccxt":
        runners = ccxt_runners(settings, publisher)
    else:
        runners = binance_runners(settings, publisher, history=history)
    return run_runners(publisher, runners, stop)


def run_runners(publisher: Publisher, runners: dict[str, Runner], stop: threading.Event) -> int:
    """Run sources side by side, each in its thread, until all have ended or Ctrl-C, with one
    status line; everything sent is confirmed by Kafka before returning. A failing source stops all."""
    failure: list[BaseException] = []
    running = threading.Semaphore(0)

    def work(runner: Callable[[threading.Event], object]) -> None:
        try:
            runner(stop)
        except BaseException as error:  # noqa: BLE001 - reported in the main thread
            failure.append(error)
            stop.set()
        finally:
            running.release()

    def all_ended() -> None:
        for _ in runners:
            running.acquire()
        stop.set()

    previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    workers = [threading.Thread(target=work, args=(runner,), name=f"feed-{name}", daemon=True)
               for name, (runner, _) in runners.items()]
    for worker in workers:
        worker.start()
    threading.Thread(target=all_ended, name="feed-ended", daemon=True).start()
    try:
        StatusLine(publisher, lambda: " | ".join(detail() for _, detail in runners.values())).run(stop)
        for worker in workers:
            worker.join()
    finally:
        signal.signal(signal.SIGINT, previous)
    publisher.flush()
    if failure:
        raise failure[0]
    print(f"[feed] {', '.join(runners)} stopped; sent {dict(publisher.sent)}", file=sys.stderr)
    return 0
