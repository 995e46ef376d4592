"""The LSTM next-minute model, trained on three real days of BTCUSDT minutes."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from pricepipe_assets.contract.records import Prediction
from pricepipe_assets.defs.resources import LakeResource
from pricepipe_assets.forecasting.feature_names import MINUTE_FEATURES
from pricepipe_assets.forecasting.lstm import LstmMinuteModel, lstm_forward
from pricepipe_assets.forecasting.models import MinuteModel
from pricepipe_assets.forecasting.walk_forward import Evaluation, evaluate_minute
from pricepipe_assets.storage import model_store


@pytest.fixture(scope="module")
def evaluated(minute_frame: pd.DataFrame) -> tuple[LstmMinuteModel, Evaluation]:
    model = LstmMinuteModel()
    return model, evaluate_minute(model, minute_frame, warmup=1440, batch=1440)


def test_a_recurrent_network_is_scored_on_minutes_it_had_not_learned(
        evaluated: tuple[LstmMinuteModel, Evaluation], minute_frame: pd.DataFrame) -> None:
    model, evaluation = evaluated
    assert any(layer.__class__.__name__ == "LSTM" for layer in model._network().layers)
    assert model.n_learned == 4259 and evaluation.n_predictions == 4259 - 1440
    assert model.n_trained == 4259 - (model.window - 1)  # the first minutes have no full window yet
    # next-minute returns are close to unpredictable: a sound model stays near the naive error
    assert 0.95 < evaluation.mae_ratio < 1.05
    assert 0.4 < evaluation.metrics["model"]["directional_accuracy"] < 0.6
    assert 0.8 < evaluation.metrics["model"]["interval_coverage"] < 0.97
    frame = evaluation.frame
    assert (frame["lower"] <= frame["predicted"]).all() and (frame["predicted"] <= frame["upper"]).all()
    assert (np.diff(frame["time"]) == 60_000).all()
    # the same minutes as the SGD model's prequential evaluation, so the two compare like with like
    sgd = evaluate_minute(MinuteModel(), minute_frame, warmup=1440, batch=60)
    assert frame["time"].tolist() == sgd.frame["time"].tolist()


def test_the_forecast_fits_the_prediction_record_and_survives_storing(
        evaluated: tuple[LstmMinuteModel, Evaluation], minute_frame: pd.DataFrame,
        through_the_store: Callable[[Any], Any]) -> None:
    model, _ = evaluated
    forecast = model.forecast(minute_frame)
    row = forecast.iloc[0]
    assert row["target_time"] == minute_frame["open_time"].iloc[-1] + 60_000
    Prediction(symbol="BTCUSDT", model=model.name, model_version="1", horizon=model.interval,
               made_at=int(row["target_time"]), target_time=int(row["target_time"]), predicted=float(row["predicted"]),
               lower=float(row["lower"]), upper=float(row["upper"])).check()
    restored = through_the_store(model)
    assert restored._net is None and restored.weights is not None
    pd.testing.assert_frame_equal(restored.forecast(minute_frame), forecast)
    with pytest.raises(ValueError, match="consecutive minutes"):
        model.forecast(minute_frame.drop(index=minute_frame.index[-5]))


def test_the_numpy_forward_pass_gives_the_keras_networks_own_output(
        evaluated: tuple[LstmMinuteModel, Evaluation], minute_frame: pd.DataFrame) -> None:
    model, _ = evaluated
    x = minute_frame.iloc[-500:]
    windows, valid = model._sequences(x[list(MINUTE_FEATURES)].to_numpy(dtype=float),
                                      x["open_time"].to_numpy(dtype=np.int64))
    net = model._network()
    keras_output = np.asarray(net.predict(windows[valid], verbose=0))[:, 0]
    assert valid.sum() == 500 - (model.window - 1) and np.abs(keras_output).max() > 0.01  # trained, not zeros
    np.testing.assert_allclose(lstm_forward(windows[valid], net.get_weights()), keras_output, rtol=1e-4, atol=1e-6)


def test_serving_a_stored_model_imports_neither_keras_nor_jax(
        evaluated: tuple[LstmMinuteModel, Evaluation], minute_frame: pd.DataFrame, local_lake: LakeResource,
        tmp_path: Path) -> None:
    """Every candles run serves the newest LSTM from a fresh process: Keras and JAX would cost it seconds."""
    model, _ = evaluated
    model_store.save(local_lake, model_store.StoredModel("lstm", "BTCUSDT", "1", model, {}, False, {}))
    minute_frame.iloc[-60:].to_parquet(tmp_path / "features.parquet")
    expected = model.forecast(minute_frame.iloc[-60:])
    serve = ("import sys; import pandas as pd; from pricepipe_assets.storage import model_store; "
             "from pricepipe_assets.storage.lake import Lake; "
             f"model = model_store.load_latest(Lake(uri={local_lake.uri!r}), 'lstm', 'BTCUSDT').stored.model; "
             f"print(model.forecast(pd.read_parquet({str(tmp_path / 'features.parquet')!r}))['predicted'].iloc[0]); "
             "print(sorted({'keras', 'jax'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", serve], capture_output=True, text=True, check=True).stdout.split("\n")
    assert float(out[0]) == pytest.approx(float(expected["predicted"].iloc[0]), rel=1e-12)
    assert out[1] == "[]"


def test_the_same_seed_trains_the_same_network(minute_frame: pd.DataFrame) -> None:
    rows = minute_frame.iloc[:640]  # one fit of a smaller network: compiling it is most of the time
    first, second = (LstmMinuteModel(window=10, units=8, epochs=1, batch_size=64) for _ in range(2))
    first.learn(rows, batch=640)
    second.learn(rows, batch=640)
    assert first.n_fits == second.n_fits == 1
    assert all(np.array_equal(a, b) for a, b in zip(first._network().get_weights(), second._network().get_weights(),
                                                     strict=True))
    assert np.array_equal(first.predict_last(minute_frame.iloc[:700]), second.predict_last(minute_frame.iloc[:700]))


def test_a_new_version_starts_from_the_previous_weights_and_learns_only_later_minutes(
        minute_frame: pd.DataFrame, through_the_store: Callable[[Any], Any]) -> None:
    old, new = minute_frame.iloc[:1500], minute_frame.iloc[1500:2200]
    previous = LstmMinuteModel(epochs=1)
    previous.learn(old, batch=750)
    warm = through_the_store(previous)
    assert all(np.array_equal(a, b) for a, b in zip(warm._network().get_weights(), previous._network().get_weights(),
                                                     strict=True))
    predicted = warm.learn(new, batch=700)
    # the kept context gives the first new minute its full window, forecast by the old weights
    assert predicted[0] == pytest.approx(previous.predict_last(minute_frame.iloc[1471:1501]), rel=1e-5)
    assert warm.n_learned == 2200 and warm.trained_to == int(new["open_time"].iloc[-1])
    with pytest.raises(ValueError, match="pass only later minutes"):
        warm.learn(new)


def test_training_stops_at_its_time_budget(minute_frame: pd.DataFrame) -> None:
    model = LstmMinuteModel(max_train_seconds=0.0)
    predicted = model.learn(minute_frame.iloc[:1000], batch=500)
    assert model.n_trained == 0 and model.n_learned == 1000
    assert np.allclose(predicted[~np.isnan(predicted)], 0.0)  # never fitted: the naive "no change"
