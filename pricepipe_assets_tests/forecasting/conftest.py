"""Shared fixtures of the forecasting tests: the real candles, read once (Spark is the session-wide `spark`).

Candles are parsed here with plain pandas, independently of the project's own parsers, so the
feature tests compare Spark's output with a computation that shares no code with it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from pricepipe_assets.defs.resources import LakeResource
from pricepipe_assets.forecasting.features import daily_features, minute_features, to_pandas
from pricepipe_assets.storage import model_store
from pricepipe_assets_tests.support.kline_files import read_minutes

MINUTE_DAYS = ("2024-01-01", "2024-01-02", "2024-01-03")


@pytest.fixture(scope="session")
def btc_minutes(shared_data: Path) -> pd.DataFrame:
    """Three real days of BTCUSDT 1m candles, 4,320 rows without gaps."""
    return read_minutes(shared_data, "BTCUSDT", MINUTE_DAYS)


@pytest.fixture(scope="session")
def minute_frame(spark: Any, btc_minutes: pd.DataFrame) -> pd.DataFrame:
    return to_pandas(minute_features(spark.createDataFrame(btc_minutes)))


@pytest.fixture(scope="session")
def btc_days(shared_data: Path) -> pd.DataFrame:
    """BTCUSDT daily candles 2017-08-17 .. 2026-01-05 from the multi-year file.

    ``timestamp`` holds the UTC day as ``YYYY-MM-DD``; the file's last row is a candle that was
    still open when it was saved, so it is dropped.
    """
    raw = pd.read_csv(shared_data / "daily_candles" / "yanniedog_spot_BTCUSDT_1d.csv").iloc[:-1]
    days = pd.to_datetime(raw["timestamp"], format="%Y-%m-%d", utc=True)
    candles = raw.drop(columns="timestamp")
    candles.insert(0, "open_time", days.astype("int64") // 1_000_000)
    candles.insert(0, "symbol", "BTCUSDT")
    return candles


@pytest.fixture()
def through_the_store(local_lake: LakeResource) -> Callable[[Any], Any]:
    """Saves a model as a training saves a version, and loads it back as the next run does."""

    def round_trip(model: Any) -> Any:
        model_store.save(local_lake, model_store.StoredModel(model.name, "BTCUSDT", model_store.new_version(), model,
                                                             {}, False, {}))
        latest = model_store.load_latest(local_lake, model.name, "BTCUSDT")
        assert latest.stored is not None and latest.refused == {}
        return latest.stored.model

    return round_trip


@pytest.fixture(scope="session")
def daily_frame(spark: Any, btc_days: pd.DataFrame) -> pd.DataFrame:
    return to_pandas(daily_features(spark.createDataFrame(btc_days)))
