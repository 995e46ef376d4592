"""Model versions in the lake: every training keeps its own file, the newest that loads safely is the
latest, and no file in the lake can run code when the runs load a model."""

from __future__ import annotations

import datetime as dt
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from pricepipe_assets.defs.resources import LakeResource
from pricepipe_assets.forecasting.feature_names import DAILY_FEATURES, DAILY_TARGETS, MINUTE_FEATURES
from pricepipe_assets.forecasting.lstm import LstmMinuteModel
from pricepipe_assets.forecasting.models import DailyModel, MinuteModel
from pricepipe_assets.storage import model_store

SECOND = dt.datetime(2026, 12, 3, 1, 39, 28, tzinfo=dt.UTC)
GOOD, NEWER = (model_store.new_version(SECOND + dt.timedelta(seconds=s)) for s in (0, 60))
FOLDER = "models/minute_model/symbol=BTCUSDT"


class Payload:
    """What a planted file would build: its ``__setstate__`` is code that runs as it is built."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __setstate__(self, state: dict[str, Any]) -> None:
        Path(state["marker"]).touch()

    def __reduce__(self) -> tuple[Any, ...]:
        return Path.touch, (Path(self.marker),)


def _stored(version: str, model: Any = None, extra: dict[str, Any] | None = None,
            name: str = "minute_model") -> model_store.StoredModel:
    return model_store.StoredModel(name, "BTCUSDT", version, {"weights": version} if model is None else model,
                                   {"model": {"mae": 1.0}, "naive": {"mae": 1.1}}, False, extra or {})


def _minutes(rows: int = 400) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(0, 1e-3, (rows, len(MINUTE_FEATURES))), columns=list(MINUTE_FEATURES))
    frame[["vol_15", "vol_60", "range"]] = np.abs(frame[["vol_15", "vol_60", "range"]]) + 1e-3
    return frame.assign(target=rng.normal(0, 1e-3, rows), open_time=np.arange(rows) * 60_000, symbol="BTCUSDT",
                        close=42_000 * np.exp(np.cumsum(rng.normal(0, 1e-3, rows))))


def _days(rows: int = 300) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(rng.normal(0, 1e-2, (rows, len(DAILY_FEATURES) + len(DAILY_TARGETS))),
                         columns=[*DAILY_FEATURES, *DAILY_TARGETS])
    return frame.assign(open_time=np.arange(rows) * 86_400_000, symbol="BTCUSDT")


def _lstm(minutes: pd.DataFrame) -> LstmMinuteModel:
    """An LSTM with set weights that has learned the minutes without fitting (no Keras): what is stored
    of a trained one, its weights, standardization, kept minutes and residuals, is all there."""
    rng = np.random.default_rng(2)
    model = LstmMinuteModel(window=5, units=4, max_train_seconds=0.0)
    features, gates = len(MINUTE_FEATURES), 4 * model.units
    model.weights = [rng.normal(0, 0.3, shape) for shape in
                     ((features, gates), (model.units, gates), (gates,), (model.units, 1), (1,))]
    model.learn(minutes, batch=100)
    return model


def test_two_trainings_in_the_same_second_keep_two_versions_and_the_later_is_latest(
        local_lake: LakeResource) -> None:
    first, then = (model_store.new_version(SECOND + dt.timedelta(microseconds=us)) for us in (1000, 900_000))
    model_store.save(local_lake, _stored(first))
    model_store.save(local_lake, _stored(then))

    assert model_store.versions(local_lake, "minute_model", "BTCUSDT") == [first, then]
    latest = model_store.load_latest(local_lake, "minute_model", "BTCUSDT")
    assert latest.stored is not None and latest.stored.model == {"weights": then} and latest.refused == {}


def test_a_stored_minute_model_forecasts_and_keeps_learning_as_the_saved_one(local_lake: LakeResource) -> None:
    minutes = _minutes()
    model = MinuteModel(calibration_window=200)
    model.learn(minutes.iloc[:300], batch=10)
    model_store.save(local_lake, _stored(GOOD, model))

    loaded = model_store.load_latest(local_lake, "minute_model", "BTCUSDT").stored
    assert loaded is not None and loaded.metrics == {"model": {"mae": 1.0}, "naive": {"mae": 1.1}}
    pd.testing.assert_frame_equal(loaded.model.forecast(minutes.iloc[:300]), model.forecast(minutes.iloc[:300]))
    assert loaded.model.scores.maxlen == 200 and list(loaded.model.scores) == list(model.scores)
    np.testing.assert_array_equal(loaded.model.learn(minutes.iloc[300:], batch=10), model.learn(minutes.iloc[300:],
                                                                                                batch=10))


def test_a_stored_daily_model_predicts_as_the_saved_one(local_lake: LakeResource) -> None:
    days = _days()
    model = DailyModel(n_estimators=5, n_jobs=1).fit(days)
    model.weight = 0.25
    model_store.save(local_lake, _stored(GOOD, model, {"naive_half_widths": np.linspace(0.01, 0.1, 15),
                                                       "origins": 40}, name="daily_model"))

    loaded = model_store.load_latest(local_lake, "daily_model", "BTCUSDT").stored
    assert loaded is not None and loaded.model.weight == 0.25 and loaded.extra["origins"] == 40
    np.testing.assert_array_equal(loaded.model.predict_returns(days), model.predict_returns(days))
    np.testing.assert_array_equal(loaded.extra["naive_half_widths"], np.linspace(0.01, 0.1, 15))


def test_a_stored_lstm_and_its_sgd_companion_forecast_as_the_saved_ones(local_lake: LakeResource) -> None:
    minutes = _minutes()
    model, companion = _lstm(minutes), MinuteModel()
    companion.learn(minutes, batch=10)
    model_store.save(local_lake, _stored(GOOD, model, {"naive_half_width": 0.002, "sgd_minute": companion},
                                         name="minute_lstm_model"))

    loaded = model_store.load_latest(local_lake, "minute_lstm_model", "BTCUSDT").stored
    assert loaded is not None and loaded.model._net is None
    pd.testing.assert_frame_equal(loaded.model.forecast(minutes), model.forecast(minutes))
    pd.testing.assert_frame_equal(loaded.extra["sgd_minute"].forecast(minutes), companion.forecast(minutes))
    np.testing.assert_array_equal(loaded.model.context_x, model.context_x)


@pytest.mark.parametrize(("field", "value", "why"), [
    ("children_left", 10**6, "pointing outside its nodes"),
    ("children_right", 0, "pointing outside its nodes"),  # back to the root: predict would never end
    ("feature", len(DAILY_FEATURES), f"the {len(DAILY_FEATURES)} features"),
], ids=["child_out_of_range", "cycle", "feature_out_of_range"])
def test_a_daily_model_whose_tree_was_tampered_with_is_refused_before_it_predicts(
        local_lake: LakeResource, field: str, value: int, why: str) -> None:
    model = DailyModel(n_estimators=2, n_jobs=1).fit(_days())
    getattr(model.forest.estimators_[1].tree_, field)[0] = value
    model_store.save(local_lake, _stored(GOOD, model, name="daily_model"))

    latest = model_store.load_latest(local_lake, "daily_model", "BTCUSDT")

    assert latest.stored is None
    reason = latest.refused[f"models/daily_model/symbol=BTCUSDT/{GOOD}.skops"]
    assert reason.startswith("not loaded: ValueError: tree 1 has a split") and why in reason


def test_a_planted_pickle_newer_than_the_good_version_is_never_unpickled_and_the_good_one_is_served(
        local_lake: LakeResource, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    model_store.save(local_lake, _stored(GOOD))
    local_lake.write_bytes(pickle.dumps(Payload(marker)), FOLDER, NEWER + ".pkl")

    latest = model_store.load_latest(local_lake, "minute_model", "BTCUSDT")

    assert not marker.exists()
    assert latest.stored is not None and latest.stored.version == GOOD
    assert latest.refused == {f"{FOLDER}/{NEWER}.pkl": model_store.PICKLE_REFUSED}
    assert model_store.versions(local_lake, "minute_model", "BTCUSDT") == [GOOD]
    pickle.loads(local_lake.read_bytes(FOLDER, NEWER + ".pkl"))  # the plant was armed: unpickled, it runs
    assert marker.exists()


def test_after_an_upgrade_the_old_pickle_is_passed_over_and_no_model_is_loaded_until_the_next_training(
        local_lake: LakeResource) -> None:
    local_lake.write_bytes(pickle.dumps(_stored(GOOD)), FOLDER, GOOD + ".pkl")

    latest = model_store.load_latest(local_lake, "minute_model", "BTCUSDT")

    assert latest.stored is None and "earlier pricepipe" in latest.refused[f"{FOLDER}/{GOOD}.pkl"]
    model_store.save(local_lake, _stored(NEWER))
    assert model_store.load_latest(local_lake, "minute_model", "BTCUSDT") == model_store.Latest(_stored(NEWER))


def test_a_file_in_the_new_format_naming_an_untrusted_type_is_refused_before_anything_is_built(
        local_lake: LakeResource, tmp_path: Path) -> None:
    import skops.io as sio

    marker = tmp_path / "pwned"
    model_store.save(local_lake, _stored(GOOD))
    planted = {**_stored(NEWER).__dict__, "model": Payload(marker)}
    local_lake.write_bytes(sio.dumps(planted), FOLDER, NEWER + ".skops")
    sio.loads(sio.dumps(Payload(tmp_path / "armed")), trusted=[f"{__name__}.Payload"])
    assert (tmp_path / "armed").exists()  # trusted, the plant's type would run its code as it is built

    latest = model_store.load_latest(local_lake, "minute_model", "BTCUSDT")

    assert not marker.exists()
    assert latest.stored is not None and latest.stored.version == GOOD
    reason = latest.refused[f"{FOLDER}/{NEWER}.skops"]
    assert "UntrustedTypesFoundException" in reason and f"{__name__}.Payload" in reason


@pytest.mark.parametrize(("content", "why"), [
    (b"garbage that is no model archive", "BadZipFile"),
    (pickle.dumps({"weights": NEWER}), "BadZipFile"),
], ids=["garbage", "pickle_renamed"])
def test_a_file_in_the_new_format_that_is_no_archive_is_refused_with_the_reason(
        local_lake: LakeResource, content: bytes, why: str) -> None:
    local_lake.write_bytes(content, FOLDER, NEWER + ".skops")

    latest = model_store.load_latest(local_lake, "minute_model", "BTCUSDT")

    assert latest.stored is None and why in latest.refused[f"{FOLDER}/{NEWER}.skops"]


def test_a_copy_of_another_symbols_model_is_refused(local_lake: LakeResource) -> None:
    model_store.save(local_lake, _stored(GOOD))
    local_lake.write_bytes(local_lake.read_bytes(FOLDER, GOOD + ".skops"), "models/minute_model/symbol=ETHUSDT",
                           GOOD + ".skops")

    latest = model_store.load_latest(local_lake, "minute_model", "ETHUSDT")

    assert latest.stored is None
    reason = latest.refused[f"models/minute_model/symbol=ETHUSDT/{GOOD}.skops"]
    assert reason.endswith("for BTCUSDT, not the model its path names")


def test_a_model_holding_a_type_the_loader_would_refuse_is_not_written(local_lake: LakeResource,
                                                                       tmp_path: Path) -> None:
    with pytest.raises(model_store.UnsafeModelError, match="Payload"):
        model_store.save(local_lake, _stored(GOOD, Payload(tmp_path / "never")))
    assert model_store.versions(local_lake, "minute_model", "BTCUSDT") == []
