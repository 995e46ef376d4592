"""The 15-day model on real BTCUSDT daily candles: walk-forward evaluation, forecast, intervals, plot."""

from __future__ import annotations

import base64
import pickle

import numpy as np
import pandas as pd
import pytest

from pricepipe_assets.contract.records import Prediction
from pricepipe_assets.forecasting.feature_names import DAILY_TARGETS
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
    return DailyModel(**SMALL).fit(daily_frame).calibrate(evaluation.residuals)


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
    # intervals exist from the 10th origin on (9 earlier residuals per step at 90 %), and are ordered there
    calibrated = frame["lower"].notna()
    assert calibrated.sum() == (ORIGINS - 9) * 15
    assert (frame.loc[calibrated, "lower"] < frame.loc[calibrated, "predicted"]).all()
    assert (frame.loc[calibrated, "predicted"] < frame.loc[calibrated, "upper"]).all()
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
    expected = evaluation.frame[evaluation.frame["origin"] == origin]["predicted"].to_numpy()
    assert np.allclose(again.frame["predicted"], expected, rtol=1e-12)


def test_forecast_is_fifteen_consecutive_days_with_ordered_intervals(daily_frame: pd.DataFrame,
                                                                     model: DailyModel) -> None:
    forecast = model.forecast(daily_frame)
    last = int(daily_frame["open_time"].iloc[-1])
    assert forecast["step"].tolist() == list(range(1, 16))
    assert forecast["target_time"].tolist() == [last + d * DAY_MS for d in range(1, 16)]
    assert ((forecast["lower"] < forecast["predicted"]) & (forecast["predicted"] < forecast["upper"])).all()
    assert np.all(model.half_widths > 0)
    for row in forecast.itertuples():
        Prediction(symbol="BTCUSDT", model=model.name, model_version="1", horizon=model.interval, made_at=last,
                   target_time=row.target_time, predicted=row.predicted, lower=row.lower, upper=row.upper).check()
    assert model.trained_to == daily_frame["open_time"].iloc[-16]  # the newest row with all 15 days known
    restored = pickle.loads(pickle.dumps(model))
    pd.testing.assert_frame_equal(restored.forecast(daily_frame), forecast)


def test_a_model_without_walk_forward_residuals_refuses_to_forecast(daily_frame: pd.DataFrame) -> None:
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
