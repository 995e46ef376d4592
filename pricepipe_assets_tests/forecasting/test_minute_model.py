"""The next-minute model, evaluated prequentially on three real days of BTCUSDT minutes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest

from pricepipe_assets.contract.records import Prediction
from pricepipe_assets.forecasting.feature_names import MINUTE_FEATURES
from pricepipe_assets.forecasting.models import MinuteModel, NotCalibratedError
from pricepipe_assets.forecasting.walk_forward import Evaluation, evaluate_minute

METRICS = {"mae", "rmse", "mape", "directional_accuracy", "interval_coverage", "interval_width", "interval_score"}


@pytest.fixture(scope="module")
def evaluated(minute_frame: pd.DataFrame) -> tuple[MinuteModel, Evaluation]:
    model = MinuteModel()
    return model, evaluate_minute(model, minute_frame, warmup=1440)


def test_prequential_metrics_for_model_and_naive(evaluated: tuple[MinuteModel, Evaluation]) -> None:
    model, evaluation = evaluated
    assert set(evaluation.metrics) == {"model", "naive"}
    assert all(set(m) == METRICS for m in evaluation.metrics.values())
    assert evaluation.n_predictions == len(evaluation.frame) == 4259 - 1440  # rows with a target after warm-up
    assert model.n_learned == 4259
    # minute returns are close to unpredictable: a sound model stays near the naive error, a broken one does not
    assert 0.95 < evaluation.mae_ratio < 1.05
    assert 0.45 < evaluation.metrics["model"]["directional_accuracy"] < 0.6
    # 0.86 on these days: the 1,440-minute window trails the volatility bursts of 2024-01-03;
    # intervals built wrongly (too narrow, or from the future) land far from 0.9
    assert 0.8 < evaluation.metrics["model"]["interval_coverage"] < 0.97
    frame = evaluation.frame
    assert (frame["lower"] <= frame["predicted"]).all() and (frame["predicted"] <= frame["upper"]).all()
    assert (np.diff(frame["time"]) == 60_000).all()
    assert np.allclose(frame["actual"].iloc[:-1].to_numpy(), frame["last_known"].iloc[1:].to_numpy())


def test_each_minute_is_forecast_before_it_is_learned(minute_frame: pd.DataFrame) -> None:
    block, later = minute_frame.iloc[1000:1060], minute_frame.iloc[1060:1100]
    model = MinuteModel()
    model.learn(minute_frame.iloc[:1000])
    before_block, before_later = model.predict_return(block), model.predict_return(later)
    # a block is forecast by the model as it was before the block ...
    assert np.allclose(model.learn(block, batch=60), before_block, rtol=1e-12, atol=0)
    # ... and then learned, which changes what comes after
    assert not np.allclose(model.predict_return(later), before_later, rtol=1e-6, atol=0)

    one_by_one = MinuteModel()
    one_by_one.learn(minute_frame.iloc[:1000])
    predicted = one_by_one.learn(block)
    assert predicted[0] == pytest.approx(before_block[0], rel=1e-12)
    assert not np.allclose(predicted[1:], before_block[1:], rtol=1e-6, atol=0)  # later minutes saw earlier ones


def test_extreme_inputs_are_clipped_to_a_sane_return(minute_frame: pd.DataFrame) -> None:
    crash = minute_frame.iloc[[2000]].copy()
    crash[list(MINUTE_FEATURES)] = -50.0  # a move no market makes in a minute
    for model in (MinuteModel(), MinuteModel(feature_clip=1e9)):  # with and without the feature clip
        model.learn(minute_frame.iloc[:2000])
        limit = model.clip_sigma * model.target_scaler.scale_[0] + abs(model.target_scaler.mean_[0])
        assert abs(model.predict_return(crash)[0]) <= limit
        assert limit < 0.01


def test_forecast_of_the_next_minute_fits_the_prediction_record_and_survives_storing(
        evaluated: tuple[MinuteModel, Evaluation], minute_frame: pd.DataFrame,
        through_the_store: Callable[[Any], Any]) -> None:
    model, _ = evaluated
    forecast = model.forecast(minute_frame)
    assert forecast.to_dict("list")["step"] == [1]
    row = forecast.iloc[0]
    assert row["target_time"] == minute_frame["open_time"].iloc[-1] + 60_000
    Prediction(symbol="BTCUSDT", model=model.name, model_version="1", horizon=model.interval,
               made_at=int(row["target_time"]), target_time=int(row["target_time"]), predicted=float(row["predicted"]),
               lower=float(row["lower"]), upper=float(row["upper"])).check()
    restored = through_the_store(model)
    pd.testing.assert_frame_equal(restored.forecast(minute_frame), forecast)
    assert restored.params == model.params and model.params["random_state"] == 0


def test_an_unlearned_model_refuses_to_forecast_intervals(minute_frame: pd.DataFrame) -> None:
    with pytest.raises(NotCalibratedError, match="residuals"):
        MinuteModel().forecast(minute_frame)


def test_the_band_scales_with_the_volatility_of_the_minute_it_is_forecast_from(
        evaluated: tuple[MinuteModel, Evaluation], minute_frame: pd.DataFrame) -> None:
    model, _ = evaluated
    calm = minute_frame.iloc[[-1]].copy()
    stormy = calm.copy()
    stormy[["vol_15", "vol_60", "range"]] *= 4.0  # four times the volatility: twice the scale (its square root)
    widths = [float(np.log(f["upper"] / f["predicted"]).iloc[0]) for f in (model.forecast(calm), model.forecast(stormy))]
    assert widths[1] == pytest.approx(2.0 * widths[0], rel=1e-9)


def test_a_minutes_band_is_fixed_before_the_minutes_after_it_are_seen(minute_frame: pd.DataFrame) -> None:
    full = evaluate_minute(MinuteModel(), minute_frame, warmup=1440, batch=60).frame
    prefix = evaluate_minute(MinuteModel(), minute_frame.iloc[:3000], warmup=1440, batch=60).frame
    columns = ["predicted", "lower", "upper", "naive_lower", "naive_upper"]
    pd.testing.assert_frame_equal(prefix[columns], full[columns].iloc[:len(prefix)])
