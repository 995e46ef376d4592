"""The forecasting models: a naive baseline, an online next-minute model and a 15-day daily model.

Models take the pandas frames of :mod:`pricepipe_assets.forecasting.features` for one symbol,
predict log returns and answer in prices. They hold only scikit-learn estimators, numpy arrays
and plain values, so a fitted model is stored as a versioned file that loads without running
code (:mod:`pricepipe_assets.storage.model_store`), and each exposes ``name`` and ``params``
(its constructor arguments) for the model's metadata.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from sklearn.ensemble import RandomForestRegressor
from sklearn.linear_model import SGDRegressor
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeRegressor

from pricepipe_assets.contract.records import INTERVAL_MS
from pricepipe_assets.forecasting.evaluation import Evaluation
from pricepipe_assets.forecasting.feature_names import DAILY_FEATURES, DAILY_TARGETS, MINUTE_FEATURES
from pricepipe_assets.forecasting.intervals import conformal_quantile, price_interval
from pricepipe_assets.forecasting.volatility import DAILY_METHOD, MINUTE_METHOD, daily_move_half_widths, minute_scale

TREE_LEAF = -1  # scikit-learn's child index of a leaf
# ``step`` counts intervals ahead (1 for the minute model, 1..15 for the daily one); the
# ``horizon`` of a :class:`~pricepipe_assets.contract.records.Prediction` is the model's ``interval``.
FORECAST_COLUMNS = ["step", "target_time", "predicted", "lower", "upper"]


def _single_symbol(features: pd.DataFrame) -> None:
    symbols = features["symbol"].unique()
    if len(symbols) > 1:
        raise ValueError(f"a model forecasts one symbol at a time, got {', '.join(map(str, symbols))}")


def forecast_frame(last: pd.Series, interval_ms: int, predicted_returns: np.ndarray,
                    widths: np.ndarray) -> pd.DataFrame:
    """Forecast rows from the newest candle. ``target_time`` is the open time of the candle whose
    close is predicted: step s from a candle opened at t targets the candle opened at t + s intervals."""
    steps = np.arange(1, predicted_returns.size + 1)
    predicted, lower, upper = price_interval(float(last["close"]), predicted_returns, widths)
    return pd.DataFrame({
        "step": steps,
        "target_time": int(last["open_time"]) + steps * interval_ms,
        "predicted": predicted,
        "lower": lower,
        "upper": upper,
    }, columns=FORECAST_COLUMNS)


class NotCalibratedError(RuntimeError):
    """A forecast was asked of a model without enough out-of-sample residuals for its intervals."""


class NaiveLastValue:
    """Tomorrow's price is today's: the baseline every model must beat to be worth running.

    For prices that behave close to a random walk it is hard to beat, which is why each model's
    walk-forward metrics are reported next to it.
    """

    name = "naive"

    @property
    def params(self) -> dict[str, Any]:
        """No hyper-parameters; present so every model's metadata has the same shape."""
        return {}

    def predict(self, last_close: np.ndarray | float, steps: int = 1) -> np.ndarray:
        """The last close repeated for each of ``steps`` steps: shape (len(last_close), steps)."""
        close = np.atleast_1d(np.asarray(last_close, dtype=float))
        return np.repeat(close[:, None], steps, axis=1)


class MinuteIntervals:
    """Split-conformal intervals of a next-minute model, shared by every model that forecasts minutes.

    A subclass sets ``name``, ``level`` and ``scores``, the deque of its latest out-of-sample
    residuals, each divided by the volatility scale of its minute (:func:`minute_scale`); the
    half-width is their conformal quantile times the scale of the minute forecast from.
    """

    name: str
    interval = "1m"
    interval_method = MINUTE_METHOD
    level: float
    calibration_window: int
    scores: deque[float]

    def __getstate__(self) -> dict[str, Any]:
        """The residual window as an array: a stored model file holds arrays and plain values, not deques."""
        return {**self.__dict__, "scores": np.fromiter(self.scores, dtype=float)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        """The residual window back as a deque of ``calibration_window`` residuals at most, so learning goes on."""
        self.__dict__.update(state)
        self.scores = deque(np.asarray(state["scores"], dtype=float).tolist(), maxlen=self.calibration_window)

    def half_width(self, scale: float) -> float:
        """Conformal half-width (log return) at ``level`` for a minute of volatility ``scale``."""
        return conformal_quantile(np.fromiter(self.scores, dtype=float), self.level) * scale

    def next_minute(self, features: pd.DataFrame, predicted_return: np.ndarray) -> pd.DataFrame:
        """The forecast row of the minute after the newest row of ``features``, from its predicted
        log return, with the interval its calibration window gives."""
        _single_symbol(features)
        width = self.half_width(float(minute_scale(features.iloc[[-1]])[0]))
        if not np.isfinite(width):
            raise NotCalibratedError(f"{self.name} has {len(self.scores)} residuals, too few for "
                                     f"{self.level:.0%} intervals; let it learn more minutes first")
        return forecast_frame(features.iloc[-1], INTERVAL_MS[self.interval], predicted_return, np.array([width]))

    @staticmethod
    def learnable_rows(features: pd.DataFrame, batch: int) -> tuple[np.ndarray, ...]:
        """The rows a ``learn`` call trains on, those with a target, in time order: which rows they
        are, then their features, targets, open times and volatility scales, after checking the
        rows are one symbol's and ``batch`` is positive."""
        _single_symbol(features)
        if batch < 1:
            raise ValueError(f"batch must be at least 1, got {batch}")
        usable = features["target"].notna().to_numpy()
        return (usable, features[list(MINUTE_FEATURES)].to_numpy(dtype=float)[usable],
                features["target"].to_numpy(dtype=float)[usable],
                features["open_time"].to_numpy(dtype=np.int64)[usable],
                minute_scale(features[usable]))


class MinuteModel(MinuteIntervals):
    """Next-minute log return from :data:`MINUTE_FEATURES`, learned one candle at a time.

    A linear model fitted by stochastic gradient descent (``SGDRegressor.partial_fit``) can keep
    learning from every new minute without refitting on the history, which is what a stream of
    candles needs. Features and target are standardized by ``StandardScaler``s that are also
    updated incrementally, so the learning rate means the same for every symbol and volatility.
    The Huber loss (``epsilon`` in target standard deviations) keeps a flash crash from dragging
    the weights; scaled features are clipped to +-``feature_clip`` and predictions to
    +-``clip_sigma`` standard deviations of the returns seen, so the model never forecasts an
    absurd move. Intervals come from the model's last ``calibration_window`` prequential residuals,
    each divided by the volatility scale of its minute (:func:`minute_scale`), and are scaled
    back by the scale of the minute forecast from. The default step size was picked on BTCUSDT minutes of 2024-02-01..20 (docs/forecasting.md).
    """

    name = "sgd_minute"

    def __init__(self, *, alpha: float = 1e-4, eta0: float = 1e-4, epsilon: float = 1.0,
                 feature_clip: float = 10.0, clip_sigma: float = 3.0, level: float = 0.9,
                 calibration_window: int = 1440, random_state: int = 0) -> None:
        self.params: dict[str, Any] = {
            "alpha": alpha, "eta0": eta0, "epsilon": epsilon, "feature_clip": feature_clip,
            "clip_sigma": clip_sigma, "level": level, "calibration_window": calibration_window,
            "random_state": random_state,
        }
        self.level = level
        self.feature_clip = feature_clip
        self.clip_sigma = clip_sigma
        self.calibration_window = calibration_window
        self.features_scaler = StandardScaler()
        self.target_scaler = StandardScaler()
        self.regressor = SGDRegressor(loss="huber", epsilon=epsilon, penalty="l2", alpha=alpha,
                                      learning_rate="constant", eta0=eta0, random_state=random_state)
        self.scores: deque[float] = deque(maxlen=calibration_window)
        self.n_learned = 0
        self.trained_from: int | None = None
        self.trained_to: int | None = None

    def _scaled(self, x: np.ndarray) -> np.ndarray:
        # StandardScaler.transform's arithmetic, without its per-call input checks, which cost more
        # than the arithmetic itself on the one row a streaming step handles.
        scaled: NDArray[np.float64] = (x - self.features_scaler.mean_) / self.features_scaler.scale_
        return np.clip(scaled, -self.feature_clip, self.feature_clip)

    def _predict_rows(self, x: np.ndarray) -> np.ndarray:
        if self.n_learned == 0:
            return np.zeros(len(x))
        scaled: NDArray[np.float64] = self._scaled(x) @ self.regressor.coef_ + self.regressor.intercept_[0]
        scaled = np.clip(scaled, -self.clip_sigma, self.clip_sigma)
        return scaled * float(self.target_scaler.scale_[0]) + float(self.target_scaler.mean_[0])

    def predict_return(self, features: pd.DataFrame) -> np.ndarray:
        """Predicted next-minute log return of each row (0, the naive forecast, before any learning)."""
        return self._predict_rows(features[list(MINUTE_FEATURES)].to_numpy(dtype=float))

    def learn(self, features: pd.DataFrame, *, batch: int = 1) -> np.ndarray:
        """Learn rows in time order, each block of ``batch`` rows after forecasting it: test, then train.

        Returns the log return predicted for each row *before* it was learned, the honest
        out-of-sample forecast (NaN for rows without a target, which are skipped). ``batch=1`` is
        strict prequential learning, one minute at a time; a larger block forecasts its rows with
        the model as of the block's start, which is still never trained on what it forecasts and
        trains months of minutes about ``batch`` times faster (a one-row update costs ~0.5 ms,
        mostly scikit-learn's input checks). Each residual, divided by its minute's volatility
        scale, joins the calibration window, so intervals always reflect the latest errors.
        """
        usable, x_all, y_all, times, scales = self.learnable_rows(features, batch)
        predicted = np.full(len(x_all), np.nan)
        for start in range(0, len(x_all), batch):
            block = slice(start, start + batch)
            x, y = x_all[block], y_all[block]
            predicted[block] = self._predict_rows(x)
            self.scores.extend((y - predicted[block]) / scales[block])
            self.features_scaler.partial_fit(x)
            self.target_scaler.partial_fit(y[:, None])
            scaled_y = (y - self.target_scaler.mean_[0]) / self.target_scaler.scale_[0]
            self.regressor.partial_fit(self._scaled(x), scaled_y)
            self.n_learned += len(y)
            self.trained_from = int(times[start]) if self.trained_from is None else self.trained_from
            self.trained_to = int(times[block][-1])
        out = np.full(len(features), np.nan)
        out[usable] = predicted
        return out

    def forecast(self, features: pd.DataFrame) -> pd.DataFrame:
        """The next minute after the newest row: one row of ``FORECAST_COLUMNS``."""
        return self.next_minute(features, self.predict_return(features.iloc[[-1]]))


def check_forest(forest: Any, n_features: int) -> None:
    """Refuse a forest whose trees could make ``predict`` read outside their memory or never end.

    scikit-learn follows a tree's stored child and feature indices without bounds checks, and a
    model file loader can check that a tree is a tree but not that its nodes are sound (which is
    why skops does not trust trees by default), so a tampered file could crash or hang a run
    instead of being refused. A tree scikit-learn built passes: its nodes are numbered depth
    first, so every child comes after its parent, and each split reads one of ``n_features`` columns.
    """
    estimators = getattr(forest, "estimators_", [])
    if type(forest) is not RandomForestRegressor or any(type(e) is not DecisionTreeRegressor for e in estimators):
        raise ValueError("the forest is not a RandomForestRegressor of DecisionTreeRegressors")
    for index, tree in enumerate(estimator.tree_ for estimator in estimators):
        if not 0 < tree.node_count <= tree.capacity:
            raise ValueError(f"tree {index} counts {tree.node_count} nodes in room for {tree.capacity}")
        split = np.flatnonzero(tree.children_left != TREE_LEAF)
        children = np.concatenate([tree.children_left[split], tree.children_right[split]])
        features = tree.feature[split]
        if (np.any(children <= np.tile(split, 2)) or np.any(children >= tree.node_count)
                or np.any((features < 0) | (features >= n_features))):
            raise ValueError(f"tree {index} has a split pointing outside its nodes or the {n_features} features")


class DailyModel:
    """Log returns 1 to ``HORIZON_DAYS`` days ahead from :data:`DAILY_FEATURES`, all at once.

    The direct strategy (one output per horizon of a single multi-output random forest) avoids
    feeding a model its own forecasts, whose errors compound over 15 steps. A forest averages
    returns actually seen after similar days, so it cannot forecast an absurd move, and needs no
    feature scaling. Shallow trees with large leaves (each leaf averages at least 50 days) keep
    a leaf's forecast from being one past rally or crash; among the settings tried on the
    origins of 2022-08 to 2024-03 they were the closest to the naive baseline (docs/forecasting.md).

    Still, the forest lost to the naive forecast there, so what is served is its predicted returns
    times the weight its walk-forward record earned (:mod:`~pricepipe_assets.forecasting.combination`),
    set by :meth:`calibrate`. Intervals need no calibration of their own: they come from the
    recent h-day moves in the features, scaled by volatility (:func:`daily_move_half_widths`).
    """

    name = "rf_daily"
    interval = "1d"
    interval_method = DAILY_METHOD

    def __init__(self, *, n_estimators: int = 200, max_depth: int | None = 6, min_samples_leaf: int = 50,
                 max_features: float = 0.5, level: float = 0.9, n_jobs: int = 2, random_state: int = 0) -> None:
        self.params: dict[str, Any] = {
            "n_estimators": n_estimators, "max_depth": max_depth, "min_samples_leaf": min_samples_leaf,
            "max_features": max_features, "level": level, "n_jobs": n_jobs, "random_state": random_state,
        }
        self.level = level
        self.forest = RandomForestRegressor(n_estimators=n_estimators, max_depth=max_depth,
                                            min_samples_leaf=min_samples_leaf, max_features=max_features,
                                            n_jobs=n_jobs, random_state=random_state)
        self.weight: float | None = None
        self.n_calibration = 0
        self.n_train = 0
        self.trained_from: int | None = None
        self.trained_to: int | None = None

    def __setstate__(self, state: dict[str, Any]) -> None:
        """A stored model's trees are checked as it loads, so a tampered file is refused, not predicted with."""
        check_forest(state["forest"], len(DAILY_FEATURES))
        self.__dict__.update(state)

    def fit(self, features: pd.DataFrame) -> DailyModel:
        """Fit on the rows whose 15 targets are all known (the newest 15 days are not yet)."""
        _single_symbol(features)
        rows = features.dropna(subset=list(DAILY_TARGETS))
        if rows.empty:
            raise ValueError("no daily row has all of its targets known; the model needs more history")
        self.forest.fit(rows[list(DAILY_FEATURES)].to_numpy(dtype=float),
                        rows[list(DAILY_TARGETS)].to_numpy(dtype=float))
        self.n_train = len(rows)
        self.trained_from = int(rows["open_time"].iloc[0])
        self.trained_to = int(rows["open_time"].iloc[-1])
        return self

    def predict_returns(self, features: pd.DataFrame) -> np.ndarray:
        """The forest's own predicted log returns, before the weight, shape (rows, ``HORIZON_DAYS``)."""
        predicted: np.ndarray = self.forest.predict(features[list(DAILY_FEATURES)].to_numpy(dtype=float))
        return predicted.reshape(len(features), -1)

    def calibrate(self, evaluation: Evaluation) -> DailyModel:
        """Take the weight its walk-forward ``evaluation`` earned over all of its origins.

        The evaluation must be of this model's kind; its forecasts are all known by the time the
        model, fitted on every row, forecasts from the newest one.
        """
        if evaluation.model_name != self.name:
            raise ValueError(f"{self.name} cannot be calibrated on an evaluation of {evaluation.model_name}")
        self.weight = evaluation.serving_weight
        self.n_calibration = len(evaluation.origins)
        return self

    def forecast(self, features: pd.DataFrame) -> pd.DataFrame:
        """Fifteen rows of ``FORECAST_COLUMNS``, one per day after the newest row of ``features``,
        which must hold the symbol's history (its h-day moves calibrate the intervals)."""
        _single_symbol(features)
        if self.weight is None:
            raise NotCalibratedError(f"{self.name} has no walk-forward evaluation to weigh its forecasts by; "
                                     "calibrate it on one first")
        widths = daily_move_half_widths(features, self.level)
        if not np.all(np.isfinite(widths)):
            raise NotCalibratedError(f"{len(features)} daily rows hold too few 15-day moves for "
                                     f"{self.level:.0%} intervals")
        last = features.iloc[-1]
        predicted = self.weight * self.predict_returns(features.iloc[[-1]])[0]
        return forecast_frame(last, INTERVAL_MS[self.interval], predicted, widths)
