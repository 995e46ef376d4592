"""A recurrent next-minute model: an LSTM over the last 30 minutes of features.

The SGD minute model (:class:`~pricepipe_assets.forecasting.models.MinuteModel`) sees one
minute's features at a time; a recurrent network reads the sequence of the last ``window``
minutes and can pick up patterns across them (a burst of volume building up, a run of returns
of one sign). It predicts the next minute's log return, like the SGD model, and is served the same
way: answers in prices, split-conformal 90 % intervals from its own out-of-sample residuals
scaled by the minute's volatility (:class:`~pricepipe_assets.forecasting.models.MinuteIntervals`).

Keras 3 on the JAX CPU backend trains it: it installs as plain wheels about a seventh the size of
the default PyTorch wheels and needs no GPU (docs/forecasting.md, "The LSTM minute model"). The
backend is chosen here, before Keras is first imported, so nothing else has to set it. Forecasts
are the network's forward pass in numpy (:func:`lstm_forward`): every candles run serves the
newest model from a fresh process, where importing Keras and JAX and compiling a prediction
would cost about 2.5 s of the run (docs/forecasting.md); Keras is imported only to fit.

Training is bounded and reproducible: each block of new minutes is learned for at most
``epochs`` passes, the whole call stops fitting after ``max_train_seconds``, and the seed is set
before the network is built and before each fit. A new version starts from the previous
version's weights (warm start), so a run learns only the minutes since. The network is stored
as its weights (numpy arrays), not as a Keras object, and rebuilt by :meth:`LstmMinuteModel._network`,
so a stored model loads without Keras and its file cannot carry code (``model_store``).
"""

from __future__ import annotations

import os
import time
from collections import deque
from typing import Any

import numpy as np
import pandas as pd

from pricepipe_assets.contract.records import INTERVAL_MS
from pricepipe_assets.forecasting.feature_names import MINUTE_FEATURES
from pricepipe_assets.forecasting.models import MinuteIntervals, _single_symbol

os.environ["KERAS_BACKEND"] = "jax"

MINUTE_MS = INTERVAL_MS["1m"]


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (np.tanh(0.5 * z) + 1.0)


def lstm_forward(windows: np.ndarray, weights: list[np.ndarray]) -> np.ndarray:
    """The output of ``keras.Sequential([LSTM(units), Dense(1)])`` for ``windows`` (rows, steps,
    features), from its ``get_weights()``: Keras's default LSTM (gates in the order input, forget,
    cell, output; sigmoid gates, tanh activations), so the numbers are the network's own."""
    kernel, recurrent, bias, dense, dense_bias = (np.asarray(w, dtype=np.float64) for w in weights)
    units = recurrent.shape[0]
    inputs = windows.astype(np.float64) @ kernel + bias
    h = np.zeros((len(windows), units))
    c = np.zeros((len(windows), units))
    for step in range(windows.shape[1]):
        z = inputs[:, step] + h @ recurrent
        i, f, g, o = (z[:, k * units:(k + 1) * units] for k in range(4))
        c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
        h = _sigmoid(o) * np.tanh(c)
    return (h @ dense + dense_bias)[:, 0]


class LstmMinuteModel(MinuteIntervals):
    """Next-minute log return from the sequence of the last ``window`` minutes' :data:`MINUTE_FEATURES`.

    One LSTM layer of ``units`` cells and a linear output, trained on the Huber loss of the
    standardized target (a flash crash does not drag the weights). Features and target are
    standardized by the mean and deviation of the first block the model learned, then fixed, so
    a warm-started version sees its inputs on the same scale; scaled features are clipped to
    +-``feature_clip`` and predictions to +-``clip_sigma`` deviations. A minute whose window is
    not ``window`` consecutive minutes (the start of the history, a gap) is forecast by the naive
    "no change" and not trained on. The model keeps its last ``window - 1`` minutes, so the next
    run's first minutes have their full window.
    """

    name = "lstm_minute"

    def __init__(self, *, window: int = 30, units: int = 16, epochs: int = 2, batch_size: int = 128,
                 learning_rate: float = 1e-3, feature_clip: float = 10.0, clip_sigma: float = 3.0,
                 level: float = 0.9, calibration_window: int = 1440, max_train_seconds: float = 180.0,
                 seed: int = 0) -> None:
        self.params: dict[str, Any] = {
            "window": window, "units": units, "epochs": epochs, "batch_size": batch_size,
            "learning_rate": learning_rate, "feature_clip": feature_clip, "clip_sigma": clip_sigma, "level": level,
            "calibration_window": calibration_window, "max_train_seconds": max_train_seconds, "seed": seed,
        }
        self.window, self.units, self.epochs, self.batch_size = window, units, epochs, batch_size
        self.learning_rate, self.feature_clip, self.clip_sigma = learning_rate, feature_clip, clip_sigma
        self.level, self.calibration_window = level, calibration_window
        self.max_train_seconds, self.seed = max_train_seconds, seed
        self.scores: deque[float] = deque(maxlen=calibration_window)
        self.weights: list[np.ndarray] | None = None
        self.feature_mean: np.ndarray | None = None
        self.feature_std: np.ndarray | None = None
        self.target_mean = 0.0
        self.target_std = 1.0
        self.context_x = np.empty((0, len(MINUTE_FEATURES)))
        self.context_t = np.empty(0, dtype=np.int64)
        self.n_learned = 0
        self.n_trained = 0
        self.n_fits = 0
        self.train_seconds = 0.0
        self.trained_from: int | None = None
        self.trained_to: int | None = None
        self._net: Any = None

    def __getstate__(self) -> dict[str, Any]:
        """The network as its weights: a stored model file holds arrays, not Keras objects."""
        state = super().__getstate__()
        if self._net is not None:
            state["weights"] = [np.asarray(w) for w in self._net.get_weights()]
        state["_net"] = None
        return state

    def _network(self) -> Any:
        """The Keras network, built on first use and loaded with the stored weights if there are any."""
        import keras

        if self._net is None:
            keras.utils.set_random_seed(self.seed)
            net = keras.Sequential([keras.Input((self.window, len(MINUTE_FEATURES))),
                                    keras.layers.LSTM(self.units), keras.layers.Dense(1)])
            net.compile(optimizer=keras.optimizers.Adam(self.learning_rate), loss=keras.losses.Huber(delta=1.0))
            if self.weights is not None:
                net.set_weights(self.weights)
            self._net = net
        return self._net

    def _sequences(self, x: np.ndarray, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Scaled windows ending at each row of ``x`` (after the stored context) and whether each is
        ``window`` consecutive minutes; rows without one get a window of zeros."""
        all_x = np.concatenate([self.context_x, x])
        all_t = np.concatenate([self.context_t, times])
        ends = np.arange(len(self.context_x), len(all_x))
        starts = ends - (self.window - 1)
        valid = starts >= 0
        valid[valid] = all_t[ends[valid]] - all_t[starts[valid]] == (self.window - 1) * MINUTE_MS
        scaled = np.clip((all_x - self.feature_mean) / self.feature_std, -self.feature_clip, self.feature_clip)
        windows = np.zeros((len(x), self.window, all_x.shape[1]), dtype="float32")
        if valid.any():
            view = np.lib.stride_tricks.sliding_window_view(scaled, self.window, axis=0).transpose(0, 2, 1)
            windows[valid] = view[starts[valid]]
        return windows, valid

    def _predict(self, windows: np.ndarray, valid: np.ndarray) -> np.ndarray:
        weights = self.weights if self._net is None else self._net.get_weights()
        out = np.zeros(len(windows))
        if weights is None or not valid.any():
            return out
        scaled = lstm_forward(windows[valid], weights)
        out[valid] = np.clip(scaled, -self.clip_sigma, self.clip_sigma) * self.target_std + self.target_mean
        return out

    def _fit(self, windows: np.ndarray, y: np.ndarray) -> None:
        import keras

        started = time.monotonic()
        keras.utils.set_random_seed(self.seed + self.n_fits)
        scaled_y = ((y - self.target_mean) / self.target_std).astype("float32")
        self._network().fit(windows, scaled_y, epochs=self.epochs, batch_size=self.batch_size, shuffle=True, verbose=0)
        self.n_fits += 1
        self.n_trained += len(y)
        self.train_seconds += time.monotonic() - started

    def _standardize_on(self, x: np.ndarray, y: np.ndarray) -> None:
        self.feature_mean = x.mean(axis=0)
        self.feature_std = np.where(x.std(axis=0) > 0, x.std(axis=0), 1.0)
        self.target_mean = float(y.mean())
        self.target_std = float(y.std()) if y.std() > 0 else 1.0

    def learn(self, features: pd.DataFrame, *, batch: int = 1440) -> np.ndarray:
        """Learn rows in time order, each block of ``batch`` rows after forecasting it: test, then train.

        Returns the log return predicted for each row before it was learned (NaN for rows
        without a target, which are skipped), as :meth:`MinuteModel.learn` does; each residual,
        divided by its minute's volatility scale, joins the calibration window. A block is
        fitted for ``epochs`` passes; once ``max_train_seconds`` have gone by in this call, later
        blocks are forecast and scored but not fitted.
        """
        usable, x_all, y_all, times, scales = self.learnable_rows(features, batch)
        if self.trained_to is not None and times.size and times[0] <= self.trained_to:
            raise ValueError(f"{self.name} has learned up to {self.trained_to}; pass only later minutes")
        predicted = np.full(len(x_all), np.nan)
        deadline = time.monotonic() + self.max_train_seconds
        for start in range(0, len(x_all), batch):
            block = slice(start, start + batch)
            x, y, t = x_all[block], y_all[block], times[block]
            if self.feature_mean is None:
                self._standardize_on(x, y)
            windows, valid = self._sequences(x, t)
            predicted[block] = self._predict(windows, valid)
            self.scores.extend((y - predicted[block]) / scales[block])
            if valid.any() and time.monotonic() < deadline:
                self._fit(windows[valid], y[valid])
            self.context_x = np.concatenate([self.context_x, x])[-(self.window - 1):]
            self.context_t = np.concatenate([self.context_t, t])[-(self.window - 1):]
            self.n_learned += len(y)
            self.trained_from = int(t[0]) if self.trained_from is None else self.trained_from
            self.trained_to = int(t[-1])
        out = np.full(len(features), np.nan)
        out[usable] = predicted
        return out

    def predict_last(self, features: pd.DataFrame) -> np.ndarray:
        """Predicted log return of the minute after the newest row, from the last ``window`` rows,
        which must be consecutive minutes (the serving path reads that many candles)."""
        _single_symbol(features)
        if self.feature_mean is None:
            return np.zeros(1)
        rows = features.sort_values("open_time").tail(self.window)
        times = rows["open_time"].to_numpy(dtype=np.int64)
        if len(rows) < self.window or times[-1] - times[0] != (self.window - 1) * MINUTE_MS:
            raise ValueError(f"{self.name} needs the features of {self.window} consecutive minutes, "
                             f"got {len(rows)} rows spanning {(times[-1] - times[0]) // MINUTE_MS + 1 if len(rows) else 0}")
        x = np.clip((rows[list(MINUTE_FEATURES)].to_numpy(dtype=float) - self.feature_mean) / self.feature_std,
                    -self.feature_clip, self.feature_clip)
        return self._predict(x[None].astype("float32"), np.array([True]))

    def forecast(self, features: pd.DataFrame) -> pd.DataFrame:
        """The next minute after the newest row: one row of ``FORECAST_COLUMNS``."""
        return self.next_minute(features, self.predict_last(features))
