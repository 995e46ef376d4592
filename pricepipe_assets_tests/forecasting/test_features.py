"""Spark features on real candles, checked against an independent pandas computation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pricepipe_assets.forecasting.feature_names import (
    DAILY_FEATURES,
    DAILY_TARGETS,
    DAILY_WARMUP,
    MINUTE_FEATURES,
    MINUTE_WARMUP,
    VOLUME_FLOOR,
)
from pricepipe_assets.forecasting.features import minute_features, to_pandas
from pricepipe_assets.forecasting.online import MINUTE_HISTORY, minute_features_tail

from .conftest import read_minutes


def test_minute_features_match_pandas_on_real_candles(btc_minutes: pd.DataFrame, minute_frame: pd.DataFrame) -> None:
    closes = btc_minutes["close"]
    returns = np.log(closes / closes.shift(1))
    mean_volume = btc_minutes["volume"].rolling(60).mean()
    expected = pd.DataFrame({
        "open_time": btc_minutes["open_time"],
        "ret_5": np.log(closes / closes.shift(5)),
        "ret_1_lag_2": returns.shift(2),
        "vol_15": returns.rolling(15).std(),
        "volume_ratio_60": np.log(btc_minutes["volume"] / mean_volume),
        "target": np.log(closes.shift(-1) / closes),
    }).iloc[MINUTE_WARMUP:].reset_index(drop=True)

    assert len(minute_frame) == len(btc_minutes) - MINUTE_WARMUP == 4260
    assert list(minute_frame.columns) == ["symbol", "open_time", "close", *MINUTE_FEATURES, "target"]
    assert (minute_frame["open_time"] == expected["open_time"]).all()
    for column in ("ret_5", "ret_1_lag_2", "vol_15", "volume_ratio_60", "target"):
        assert np.allclose(minute_frame[column], expected[column], rtol=1e-9, atol=1e-12, equal_nan=True), column
    assert np.isfinite(minute_frame[list(MINUTE_FEATURES)].to_numpy()).all()
    # only the newest candle lacks a target, and it is kept: forecasts start from it
    assert minute_frame["target"].isna().tolist() == [False] * 4259 + [True]


def test_zero_volumes_give_finite_volume_ratios(spark: Any, btc_minutes: pd.DataFrame) -> None:
    candles = btc_minutes.iloc[:200].copy()
    candles.loc[:129, "volume"] = 0.0  # 130 silent minutes, so some 60-minute windows are all silent
    candles.loc[:129, "trades"] = 0
    frame = to_pandas(minute_features(spark.createDataFrame(candles)))

    assert np.isfinite(frame[list(MINUTE_FEATURES)].to_numpy()).all()
    ratio = frame.set_index("open_time")["volume_ratio_60"]
    times = candles["open_time"]
    assert ratio[times[100]] == 0.0  # silent window: the minute is as quiet as its past
    assert ratio[times[129]] == 0.0
    assert ratio[times[130]] > 0  # first trading minute after the silence: far above a near-silent mean
    # a silent minute in a window that traded is floored at VOLUME_FLOOR of the mean, not log(0)
    candles.loc[150, "volume"] = 0.0
    floored = to_pandas(minute_features(spark.createDataFrame(candles))).set_index("open_time")["volume_ratio_60"]
    assert np.isclose(floored[times[150]], np.log(VOLUME_FLOOR))


def test_a_missing_minute_leaves_the_target_before_it_unknown(spark: Any, btc_minutes: pd.DataFrame) -> None:
    candles = btc_minutes.iloc[:300].drop(index=200)
    frame = to_pandas(minute_features(spark.createDataFrame(candles))).set_index("open_time")
    times = btc_minutes["open_time"]
    assert np.isnan(frame.loc[times[199], "target"])  # the next candle is two minutes later
    assert not np.isnan(frame.loc[times[198], "target"])
    assert not np.isnan(frame.loc[times[201], "target"])


def test_symbols_are_computed_separately(spark: Any, shared_data: Path, btc_minutes: pd.DataFrame,
                                         minute_frame: pd.DataFrame) -> None:
    eth = read_minutes(shared_data, "ETHUSDT", ("2024-01-01",))
    both = to_pandas(minute_features(spark.createDataFrame(pd.concat([btc_minutes.iloc[:1440], eth]))))
    btc = both[both["symbol"] == "BTCUSDT"].reset_index(drop=True)
    assert (both["symbol"] == "ETHUSDT").sum() == 1440 - MINUTE_WARMUP
    # the same BTC values as from BTC alone, except the target of its last candle (the day ends there)
    alone = minute_frame.iloc[:len(btc)]
    assert np.allclose(btc[list(MINUTE_FEATURES)], alone[list(MINUTE_FEATURES)])
    assert np.allclose(btc["target"].iloc[:-1], alone["target"].iloc[:len(btc) - 1])
    assert np.isnan(btc["target"].iloc[-1])


def test_daily_features_match_pandas_and_targets_end_with_the_data(btc_days: pd.DataFrame,
                                                                    daily_frame: pd.DataFrame) -> None:
    closes = btc_days["close"]
    expected = pd.DataFrame({
        "open_time": btc_days["open_time"],
        "ret_30": np.log(closes / closes.shift(30)),
        "vol_7": np.log(closes / closes.shift(1)).rolling(7).std(),
        "sma_gap_30": np.log(closes / closes.rolling(30).mean()),
        "target_15": np.log(closes.shift(-15) / closes),
    }).iloc[DAILY_WARMUP:].reset_index(drop=True)

    assert len(daily_frame) == len(btc_days) - DAILY_WARMUP
    assert list(daily_frame.columns) == ["symbol", "open_time", "close", *DAILY_FEATURES, *DAILY_TARGETS]
    for column in ("ret_30", "vol_7", "sma_gap_30", "target_15"):
        assert np.allclose(daily_frame[column], expected[column], rtol=1e-9, atol=1e-12, equal_nan=True), column
    assert np.isfinite(daily_frame[list(DAILY_FEATURES)].to_numpy()).all()
    # target_h is unknown on exactly the last h days
    unknown = daily_frame[list(DAILY_TARGETS)].isna().sum().tolist()
    assert unknown == list(range(1, 16))
    assert daily_frame[list(DAILY_TARGETS)].iloc[:-15].notna().all().all()


def test_the_serving_path_computes_the_same_minute_features_as_spark(
        btc_minutes: pd.DataFrame, minute_frame: pd.DataFrame) -> None:
    served = minute_features_tail(btc_minutes)
    trained = minute_frame.drop(columns="target")
    assert len(served) == len(trained)
    pd.testing.assert_frame_equal(served[list(trained.columns)], trained, check_dtype=False, rtol=1e-9, atol=1e-12)

    window = btc_minutes.tail(MINUTE_HISTORY)
    newest = minute_features_tail(window).iloc[-1]
    pd.testing.assert_series_equal(newest[list(MINUTE_FEATURES)], trained.iloc[-1][list(MINUTE_FEATURES)],
                                   check_names=False, check_dtype=False, rtol=1e-9, atol=1e-12)
