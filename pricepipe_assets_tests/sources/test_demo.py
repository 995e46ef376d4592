"""The offline demo's daily history: years of real daily candles go in first, every one of them
before the replay's first day, so the replay clock is never behind a published candle."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import pandas as pd

from pricepipe_assets.contract.records import Candle
from pricepipe_assets.contract.topics import CANDLES_1D
from pricepipe_assets.defs.resources import KafkaResource
from pricepipe_assets.settings import Settings
from pricepipe_assets.sources.demo import publish_daily_history
from pricepipe_assets_tests.support.kafka_reads import consume

REPLAY_START = dt.date(2024, 1, 1)


def test_the_daily_history_of_each_symbol_ends_the_day_before_the_replay_starts(
        kafka: KafkaResource, settings: Settings, shared_data: Path) -> None:
    demo = dataclasses.replace(settings, kafka_bootstrap=kafka.bootstrap_servers, topic_prefix=kafka.topic_prefix,
                               symbols=("BTCUSDT", "ETHUSDT"), daily_history_dir=shared_data / "daily_candles",
                               replay_start=REPLAY_START)
    expected = {symbol: pd.read_csv(shared_data / "daily_candles" / f"yanniedog_spot_{symbol}_1d.csv")
                for symbol in demo.symbols}
    before = {symbol: int((frame["timestamp"] < REPLAY_START.isoformat()).sum()) for symbol, frame in expected.items()}

    published = publish_daily_history(demo)

    assert published == sum(before.values()) and before["BTCUSDT"] > 365 * 6
    candles = [Candle.from_json(m.value()) for m in consume(kafka, CANDLES_1D, published)]
    start_ms = int(dt.datetime.combine(REPLAY_START, dt.time(), dt.UTC).timestamp() * 1000)
    assert max(c.open_time for c in candles) == start_ms - 86_400_000
    for symbol, frame in expected.items():
        mine = sorted((c for c in candles if c.symbol == symbol), key=lambda c: c.open_time)
        assert len(mine) == before[symbol]
        assert [c.close for c in mine] == frame["close"].head(before[symbol]).tolist()


def test_no_daily_history_folder_publishes_nothing(settings: Settings) -> None:
    assert publish_daily_history(dataclasses.replace(settings, daily_history_dir=None)) == 0
