"""A live start's history against the local dumps mirror, REST and WebSocket servers fed with real
data: daily candles from the monthly dumps then REST, minutes from the daily dumps then REST, then
the stream, every candle exactly once across the junctions; a second start fetches only what the
lake lacks."""

from __future__ import annotations

import csv
import datetime as dt
import io
import shutil
import threading
import time
import zipfile
from pathlib import Path

import pytest

from pricepipe_assets.contract import topics
from pricepipe_assets.contract.records import Candle
from pricepipe_assets.contract.utc import day_start_ms
from pricepipe_assets.defs.resources import KafkaResource, LakeResource
from pricepipe_assets.sources.binance.dumps import BinanceDumps
from pricepipe_assets.sources.binance.rest import BinanceRestClient
from pricepipe_assets.sources.binance.ws import BinanceKlineStream
from pricepipe_assets.sources.start_history import StartHistory
from pricepipe_assets_tests.support.exchange_servers import binance_rest_server, binance_ws_server
from pricepipe_assets_tests.support.exchange_servers.binance_mirror import BinanceMirror
from pricepipe_assets_tests.support.exchange_servers.binance_rest_server import load_day
from pricepipe_assets_tests.support.exchange_servers.binance_ws_server import BinanceWsServer
from pricepipe_assets_tests.support.kafka_reads import consume
from pricepipe_assets_tests.support.lake_fill import real_minutes, write_raw_candles

SYMBOL = "BTCUSDT"
TODAY = dt.date(2024, 1, 31)
LIVE_FROM_MINUTE = 600  # the stream's clock starts at 10:00 of TODAY
LIVE_MINUTES = 30
DAY_MS = 86_400_000


def _daily_rows(shared_data: Path, first: dt.date, last: dt.date) -> list[list[str]]:
    """The real daily candles of [first, last] in Binance's 12-column kline layout (no quote volume or trades
    in the source file: zeros)."""
    rows = []
    with (shared_data / "daily_candles" / "yanniedog_spot_BTCUSDT_1d.csv").open() as file:
        for line in csv.DictReader(file):
            day = dt.date.fromisoformat(line["timestamp"])
            if first <= day <= last:
                start = day_start_ms(day)
                rows.append([str(start), line["open"], line["high"], line["low"], line["close"], line["volume"],
                             str(start + DAY_MS - 1), "0", "0", "0", "0", "0"])
    return rows


def _mirror(root: Path, shared_data: Path) -> None:
    """Monthly 1d dumps of 2023 and the 1m dumps of 2024-01-28 and -29 (that of the 30th is not out yet)."""
    for month in range(1, 13):
        first = dt.date(2023, month, 1)
        last = (dt.date(2023 + month // 12, month % 12 + 1, 1)) - dt.timedelta(days=1)
        folder = root / "data/spot/monthly/klines/BTCUSDT/1d"
        folder.mkdir(parents=True, exist_ok=True)
        text = io.StringIO()
        csv.writer(text, lineterminator="\n").writerows(_daily_rows(shared_data, first, last))
        name = f"BTCUSDT-1d-{first:%Y-%m}"
        with zipfile.ZipFile(folder / f"{name}.zip", "w") as archive:
            archive.writestr(f"{name}.csv", text.getvalue())
    minutes = root / "data/spot/daily/klines/BTCUSDT/1m"
    minutes.mkdir(parents=True)
    for day in ("2024-01-28", "2024-01-29"):
        source = shared_data / "binance/data/spot/daily/klines/BTCUSDT/1m" / f"BTCUSDT-1m-{day}.zip"
        shutil.copy(source, minutes / source.name)


def _minutes(shared_data: Path, *days: str) -> list[list[str]]:
    return [row for day in days for row in load_day(shared_data, SYMBOL, day)]


def _stream(stream: BinanceKlineStream, ws: BinanceWsServer, give_up_s: float = 60) -> None:
    stop = threading.Event()
    future = stream.start(stop)
    give_up = time.monotonic() + give_up_s
    while not ws.finished and not future.done() and time.monotonic() < give_up:
        time.sleep(0.05)
    time.sleep(0.5)
    stop.set()
    future.result(timeout=30)


@pytest.fixture()
def history_day(kafka: KafkaResource) -> KafkaResource:
    kafka.ensure_topics(topics.ALL_TOPICS)
    return kafka


def test_a_live_start_fetches_daily_and_minute_history_then_streams_with_no_hole_and_no_double(
        history_day: KafkaResource, local_lake: LakeResource, shared_data: Path, tmp_path: Path) -> None:
    kafka = history_day
    _mirror(tmp_path / "mirror", shared_data)
    minutes_rest = _minutes(shared_data, "2024-01-30", "2024-01-31")
    today_rows = load_day(shared_data, SYMBOL, TODAY.isoformat())
    live = {SYMBOL: today_rows[LIVE_FROM_MINUTE:LIVE_FROM_MINUTE + LIVE_MINUTES]}
    daily_rest = _daily_rows(shared_data, dt.date(2024, 1, 1), dt.date(2024, 1, 30))
    publisher = kafka.publisher()
    with (BinanceMirror(tmp_path / "mirror") as mirror,
          binance_rest_server.running({SYMBOL: minutes_rest}, daily={SYMBOL: daily_rest}) as rest,
          binance_ws_server.running(BinanceWsServer(live, open_updates=False)) as ws):
        client = BinanceRestClient(rest.base_url)
        history = StartHistory(publisher, BinanceDumps(tmp_path / "cache", mirror.url), client, local_lake,
                               days=3, daily_years=1, say=lambda line: None)
        newest = history.fetch((SYMBOL,), ws.now_ms())
        assert newest == {SYMBOL: day_start_ms(dt.date(2024, 1, 30)) + DAY_MS - 60_000}
        stream = BinanceKlineStream([SYMBOL], publisher, client, base_url=ws.base_url, clock=ws.now_ms,
                                    last_open_times=newest, stop_poll_s=0.05)
        _stream(stream, ws)

    expected_minutes = (_minutes(shared_data, "2024-01-28", "2024-01-29", "2024-01-30")
                        + today_rows[:LIVE_FROM_MINUTE + LIVE_MINUTES])
    published = [Candle.from_json(m.value()) for m in consume(kafka, topics.CANDLES_1M, len(expected_minutes))]
    assert [c.open_time for c in published] == [int(row[0]) for row in expected_minutes]
    assert [c.close for c in published] == [float(row[4]) for row in expected_minutes]
    days = [Candle.from_json(m.value()) for m in consume(kafka, topics.CANDLES_1D, 365 + 30)]
    assert [c.open_time for c in days] == [day_start_ms(dt.date(2023, 1, 1)) + n * DAY_MS for n in range(365 + 30)]
    assert [c.close for c in days] == [float(row[4]) for row in _daily_rows(shared_data, dt.date(2023, 1, 1),
                                                                            dt.date(2024, 1, 30))]


def test_a_second_start_fetches_only_what_the_lake_lacks(
        history_day: KafkaResource, local_lake: LakeResource, shared_data: Path, tmp_path: Path) -> None:
    kafka = history_day
    _mirror(tmp_path / "mirror", shared_data)
    held_minutes = [c for c in real_minutes(shared_data, tmp_path / "cache", SYMBOL, dt.date(2024, 1, 28),
                                            dt.date(2024, 1, 29))
                    if c.open_time < day_start_ms(dt.date(2024, 1, 29)) + 12 * 3_600_000]
    held_days = [Candle(exchange="binance", symbol=SYMBOL, interval="1d", open_time=int(row[0]),
                        close_time=int(row[6]), open=float(row[1]), high=float(row[2]), low=float(row[3]),
                        close=float(row[4]), volume=float(row[5]), quote_volume=0.0, trades=0, is_closed=True)
                 for row in _daily_rows(shared_data, dt.date(2023, 1, 1), dt.date(2023, 6, 30))]
    write_raw_candles(local_lake, held_minutes)
    write_raw_candles(local_lake, held_days)
    with (BinanceMirror(tmp_path / "mirror") as mirror,
          binance_rest_server.running({SYMBOL: _minutes(shared_data, "2024-01-30")},
                                      daily={SYMBOL: _daily_rows(shared_data, dt.date(2024, 1, 1),
                                                                 dt.date(2024, 1, 30))}) as rest):
        history = StartHistory(kafka.publisher(), BinanceDumps(tmp_path / "cache", mirror.url),
                               BinanceRestClient(rest.base_url), local_lake, days=3, daily_years=1,
                               say=lambda line: None)
        history.fetch((SYMBOL,), day_start_ms(TODAY) + LIVE_FROM_MINUTE * 60_000)
        monthly = [path for path, _ in mirror.requests if "/monthly/" in path and path.endswith(".zip")]

    assert all(not path.endswith(f"2023-0{month}.zip") for path in monthly for month in range(1, 6))
    minutes = [Candle.from_json(m.value()) for m in consume(kafka, topics.CANDLES_1M, 36 * 60)]
    assert minutes[0].open_time == held_minutes[-1].open_time + 60_000 and len({c.open_time for c in minutes}) == 36 * 60
    days = [Candle.from_json(m.value()) for m in consume(kafka, topics.CANDLES_1D, 184 + 30)]
    assert days[0].open_time == day_start_ms(dt.date(2023, 7, 1)) and len({c.open_time for c in days}) == 184 + 30

