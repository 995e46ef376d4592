"""The 15-day model on real BTCUSDT daily candles: walk-forward evaluation, forecast, intervals, plot."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest

from pricepipe_assets.contract.records import Prediction
from pricepipe_assets.forecasting.feature_names import DAILY_FEATURES, DAILY_TARGETS
from pricepipe_assets.forecasting.models import DailyModel, NotCalibratedError
from pricepipe_assets.forecasting.plots import MAX_MARKDOWN_BYTES, forecast_png, markdown_image
from pricepipe_assets.forecasting.walk_forward import DAY_MS, Evaluation, evaluate_daily

SMALL = {"n_estimators": 30}  # fewer trees than production: the same code, a fraction of the time
ORIGINS, STEP = 12, 30


@pytest.fixture(scope="module")
def evaluation(daily_frame: pd.DataFrame) -> Evaluation:
    return evaluate_daily(DailyModel(**SMALL), daily_frame, n_origins=ORIGINS, step=STEP)


@pytest.fixture(scope="module")
def model(daily_frame: pd.DataFrame, evaluation: Evaluation) -> DailyModel:
    return DailyModel(**SMALL).fit(daily_frame).calibrate(evaluation)


def test_walk_forward_scores_model_and_naive_on_the_same_unseen_days(daily_frame: pd.DataFrame,
                                                                      evaluation: Evaluation) -> None:
    frame = evaluation.frame
    assert len(evaluation.origins) == ORIGINS and evaluation.n_predictions == ORIGINS * 15 == len(frame)
    assert np.all(np.diff(evaluation.origins) == STEP * DAY_MS)
    # the newest origin is the newest day whose 15 following days are known
    assert evaluation.origins[-1] == daily_frame["open_time"].iloc[-16]
    assert evaluation.evaluated_to == daily_frame["open_time"].iloc[-1]
    for name in ("model", "naive"):
        assert np.isfinite(list(evaluation.metrics[name].values())).all(), name
    assert (frame["time"] == frame["origin"] + frame["step"] * DAY_MS).all()
    assert (frame["naive"] == frame["last_known"]).all()
    assert evaluation.metrics["naive"]["directional_accuracy"] == 0.0
    # the model's bands come from all earlier daily moves, so every origin has one; the naive band
    # from earlier origins only, so it starts at the 10th (9 earlier moves per step at 90 %)
    assert frame["lower"].notna().all()
    assert frame["naive_lower"].notna().sum() == (ORIGINS - 9) * 15
    assert ((frame["lower"] < frame["predicted"]) & (frame["predicted"] < frame["upper"])).all()
    assert len(evaluation.weights) == ORIGINS and all(0.0 <= w <= 1.0 for w in evaluation.weights)
    assert evaluation.weights[:9] == [0.0] * 9  # no evidence yet: the naive forecast is served
    assert evaluation.interval_method == DailyModel.interval_method
    assert 0.0 < evaluation.metrics["model"]["mae"] < 0.2 * frame["last_known"].mean()


def test_walk_forward_never_trains_on_what_was_unknown_at_the_origin(daily_frame: pd.DataFrame,
                                                                      evaluation: Evaluation) -> None:
    origin = evaluation.origins[-1]
    future = daily_frame["open_time"] > origin - 15 * DAY_MS  # rows whose targets reach past the origin
    scrambled = daily_frame.copy()
    scrambled.loc[future, list(DAILY_TARGETS)] = np.random.default_rng(0).normal(0, 0.5, (future.sum(), 15))
    scrambled = scrambled[scrambled["open_time"] <= origin]
    again = evaluate_daily(DailyModel(**SMALL), scrambled, n_origins=1, step=STEP)
    assert again.origins == [origin]
    assert np.allclose(again.raw_returns[0], evaluation.raw_returns[-1], rtol=1e-12)


class HalfOracle(DailyModel):
    """Predicts half of each true move by reading the targets of the row it forecasts from: a
    model with real (if impossible) skill, so the combination has a weight to earn."""

    def fit(self, features: pd.DataFrame) -> HalfOracle:
        return self

    def predict_returns(self, features: pd.DataFrame) -> np.ndarray:
        return 0.5 * features[list(DAILY_TARGETS)].fillna(0.0).to_numpy(dtype=float)


def test_every_weight_scale_and_band_at_an_origin_comes_from_data_before_it(daily_frame: pd.DataFrame) -> None:
    honest = evaluate_daily(HalfOracle(), daily_frame, n_origins=ORIGINS, step=STEP)
    k = 10
    origin = honest.origins[k]
    # Everything after the origin becomes noise: the later rows' features and closes, and every
    # target whose day is after the origin (the origin's own outcome included).
    rng = np.random.default_rng(1)
    times = daily_frame["open_time"].to_numpy()
    scrambled = daily_frame.copy()
    later = times > origin
    scrambled.loc[later, list(DAILY_FEATURES)] = rng.normal(0, 1, (later.sum(), len(DAILY_FEATURES)))
    scrambled.loc[later, "close"] = rng.uniform(1, 1e6, later.sum())
    targets = scrambled[list(DAILY_TARGETS)].to_numpy(dtype=float)
    # (an outcome the data do not have stays missing, so the origins stay where they were)
    reaches_past = (times[:, None] + np.arange(1, 16)[None, :] * DAY_MS > origin) & ~np.isnan(targets)
    targets[reaches_past] = rng.normal(0, 0.5, reaches_past.sum())
    scrambled[list(DAILY_TARGETS)] = targets
    again = evaluate_daily(HalfOracle(), scrambled, n_origins=ORIGINS, step=STEP)

    assert again.origins == honest.origins
    assert honest.weights[k] == 1.0  # the oracle earned its weight, so the comparison below can bite
    assert again.weights[:k + 1] == honest.weights[:k + 1]
    before = honest.frame["origin"] < origin
    columns = ["predicted", "lower", "upper", "naive_lower", "naive_upper"]
    pd.testing.assert_frame_equal(again.frame.loc[before, columns], honest.frame.loc[before, columns])
    # at the origin itself the oracle's raw forecast reads the scrambled future, but its weight,
    # its volatility scale and both bands' half-widths were fixed before it
    at = honest.frame["origin"] == origin
    for frame in (honest.frame, again.frame):
        frame["half_width"] = np.log(frame["upper"] / frame["predicted"])
        frame["naive_half_width"] = np.log(frame["naive_upper"] / frame["naive"])
    np.testing.assert_allclose(again.frame.loc[at, "half_width"], honest.frame.loc[at, "half_width"], rtol=1e-9)
    np.testing.assert_allclose(again.frame.loc[at, "naive_half_width"], honest.frame.loc[at, "naive_half_width"],
                               rtol=1e-12)
    assert honest.serving_weight == 1.0


def test_forecast_is_fifteen_consecutive_days_with_ordered_intervals_and_survives_storing(
        daily_frame: pd.DataFrame, model: DailyModel, evaluation: Evaluation,
        through_the_store: Callable[[Any], Any]) -> None:
    forecast = model.forecast(daily_frame)
    last = int(daily_frame["open_time"].iloc[-1])
    assert forecast["step"].tolist() == list(range(1, 16))
    assert forecast["target_time"].tolist() == [last + d * DAY_MS for d in range(1, 16)]
    assert ((forecast["lower"] < forecast["predicted"]) & (forecast["predicted"] < forecast["upper"])).all()
    assert model.weight == evaluation.serving_weight
    for row in forecast.itertuples():
        Prediction(symbol="BTCUSDT", model=model.name, model_version="1", horizon=model.interval, made_at=last,
                   target_time=row.target_time, predicted=row.predicted, lower=row.lower, upper=row.upper).check()
    assert model.trained_to == daily_frame["open_time"].iloc[-16]  # the newest row with all 15 days known
    restored = through_the_store(model)
    pd.testing.assert_frame_equal(restored.forecast(daily_frame), forecast)


def test_a_model_without_a_walk_forward_evaluation_refuses_to_forecast(daily_frame: pd.DataFrame) -> None:
    uncalibrated = DailyModel(n_estimators=5).fit(daily_frame.iloc[:400])
    with pytest.raises(NotCalibratedError, match="walk-forward"):
        uncalibrated.forecast(daily_frame.iloc[:400])


def test_better_than_baseline_allows_the_margin(evaluation: Evaluation) -> None:
    naive_mae = evaluation.metrics["naive"]["mae"]
    ratio = evaluation.mae_ratio
    assert ratio == pytest.approx(evaluation.metrics["model"]["mae"] / naive_mae)
    assert evaluation.better_than_baseline(margin=max(ratio - 1, 0) + 1e-9)
    assert not evaluation.better_than_baseline(margin=ratio - 1 - 1e-6)


def test_plot_is_a_small_png_fit_for_markdown_metadata(evaluation: Evaluation) -> None:
    png = forecast_png(evaluation.frame, title="BTCUSDT 15-day walk-forward", level=evaluation.level)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    text = markdown_image(png, "walk-forward")
    assert text.startswith("![walk-forward](data:image/png;base64,") and len(text) < MAX_MARKDOWN_BYTES
    assert base64.b64decode(text[len("![walk-forward](data:image/png;base64,"):-1]) == png
    with pytest.raises(ValueError, match="bytes as markdown"):
        markdown_image(b"x" * MAX_MARKDOWN_BYTES, "too big")
