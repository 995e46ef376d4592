"""Walk-forward evaluation: every forecast is scored on data its model had not been trained on.

A model scored on its own training rows looks better than it will ever be. Here each forecast is
made as it would have been in production, from the data known at that moment, and compared with
what then happened; the naive last-value baseline is scored on exactly the same cases, and so are
the conformal intervals, whose residuals also come only from earlier forecasts.

- minute (prequential): each minute is forecast, then learned (see :meth:`MinuteModel.learn`);
  the first ``warmup`` minutes are learned but not scored.
- daily (expanding window): at each origin a fresh model is fitted on the rows whose 15 targets
  were all known at the origin, then forecasts the 15 days after it; the weight of its forecast
  comes from the earlier origins' forecasts whose outcome was known by then.

The naive baseline's intervals are the plain split-conformal band on its own earlier errors;
the model's are scaled by volatility (:mod:`~pricepipe_assets.forecasting.volatility`). Interval
measures are taken over the cases where both have a band, so they compare like with like.
"""

from __future__ import annotations

from collections import deque
from typing import Protocol

import numpy as np
import pandas as pd

from pricepipe_assets.contract.forecasts import HORIZON_DAYS
from pricepipe_assets.contract.records import INTERVAL_MS
from pricepipe_assets.forecasting.combination import combination_weight
from pricepipe_assets.forecasting.evaluation import Evaluation
from pricepipe_assets.forecasting.feature_names import DAILY_TARGETS
from pricepipe_assets.forecasting.intervals import half_widths, price_interval, rolling_half_widths
from pricepipe_assets.forecasting.metrics import all_metrics
from pricepipe_assets.forecasting.models import DailyModel, NaiveLastValue
from pricepipe_assets.forecasting.volatility import daily_move_half_widths, minute_scale

DAY_MS = INTERVAL_MS["1d"]
MINUTE_MS = INTERVAL_MS["1m"]


def _metrics(frame: pd.DataFrame, level: float) -> dict[str, dict[str, float]]:
    both = frame["lower"].notna() & frame["naive_lower"].notna()

    def scored(center: str, lower: str, upper: str) -> dict[str, float]:
        return all_metrics(frame["actual"], frame[center], frame["last_known"], frame[lower].where(both),
                           frame[upper].where(both), level=level)

    return {"model": scored("predicted", "lower", "upper"), "naive": scored("naive", "naive_lower", "naive_upper")}


def _one_symbol(features: pd.DataFrame) -> pd.DataFrame:
    if features["symbol"].nunique() != 1:
        raise ValueError("a walk-forward evaluation covers exactly one symbol")
    return features.sort_values("open_time", kind="stable").reset_index(drop=True)


class MinuteLearner(Protocol):
    """What the prequential evaluation needs of a next-minute model (the SGD and the LSTM one)."""

    name: str
    level: float
    calibration_window: int
    interval_method: str
    scores: deque[float]

    def learn(self, features: pd.DataFrame, *, batch: int = 1) -> np.ndarray: ...


def evaluate_minute(model: MinuteLearner, features: pd.DataFrame, *, warmup: int = 1440, batch: int = 1) -> Evaluation:
    """Prequential evaluation of ``model`` on ``minute_features`` rows of one symbol.

    The model learns every row with a target as it goes (``batch`` as in :meth:`MinuteModel.learn`),
    so afterwards it is trained on all of them and its calibration window holds its latest
    scores: ready to forecast the next minute. Intervals for minute i use only the scores of the
    minutes before i (all known by then) from the model's calibration window, times minute i's
    own volatility scale, as :meth:`MinuteModel.forecast` does when learning minute by minute;
    coverage is measured on all scored minutes.
    """
    rows = _one_symbol(features).dropna(subset=["target"]).reset_index(drop=True)
    if len(rows) <= warmup:
        raise ValueError(f"{len(rows)} minutes with a target: more than the {warmup} warm-up minutes are needed")
    earlier = np.fromiter(model.scores, dtype=float)
    predicted_return = model.learn(rows, batch=batch)
    target = rows["target"].to_numpy(dtype=float)
    residual = target - predicted_return
    scale = minute_scale(rows)
    # The model's own window decides its intervals; replay it over the scores it saw, in order.
    model_widths = rolling_half_widths(np.concatenate([earlier, residual / scale]), model.level,
                                       model.calibration_window)[earlier.size:] * scale
    naive_widths = rolling_half_widths(target, model.level, model.calibration_window)

    scored = slice(warmup, None)
    close = rows["close"].to_numpy(dtype=float)[scored]
    predicted, lower, upper = price_interval(close, predicted_return[scored], model_widths[scored])
    naive = NaiveLastValue().predict(close)[:, 0]
    _, naive_lower, naive_upper = price_interval(close, np.zeros_like(close), naive_widths[scored])
    frame = pd.DataFrame({
        "time": rows["open_time"].to_numpy()[scored] + MINUTE_MS,
        "last_known": close,
        "actual": close * np.exp(target[scored]),
        "predicted": predicted, "lower": lower, "upper": upper,
        "naive": naive, "naive_lower": naive_lower, "naive_upper": naive_upper,
    })
    return Evaluation(model_name=model.name, level=model.level, metrics=_metrics(frame, model.level), frame=frame,
                      n_predictions=len(frame), evaluated_from=int(frame["time"].iloc[0]),
                      evaluated_to=int(frame["time"].iloc[-1]), residuals=residual[scored][:, None],
                      interval_method=model.interval_method)


def daily_origins(rows: pd.DataFrame, n_origins: int, step: int, min_train: int) -> list[int]:
    """Row indices of the (at most ``n_origins``) origins in one symbol's time-ordered ``rows``:
    every ``step`` rows back from the newest row whose 15 days are known, keeping only rows whose
    own 15 days are known (a gap can leave them unknown) and that have ``min_train`` complete
    training rows before them."""
    complete = rows[list(DAILY_TARGETS)].notna().all(axis=1).to_numpy()
    times = rows["open_time"].to_numpy()
    known = np.flatnonzero(complete)
    if known.size == 0:
        return []
    candidates = range(int(known[-1]), -1, -step)
    chosen = [i for i in candidates
              if complete[i] and np.count_nonzero(complete & (times <= times[i] - HORIZON_DAYS * DAY_MS)) >= min_train]
    return sorted(chosen[:n_origins])


def known_by(origin_times: np.ndarray, k: int) -> np.ndarray:
    """Which (earlier origin, step) forecasts had their outcome known at origin k: step h of
    origin j counts only if its day (times[j] + h days) is not after times[k]."""
    steps = np.arange(1, HORIZON_DAYS + 1)
    known: np.ndarray = origin_times[:k, None] + steps[None, :] * DAY_MS <= origin_times[k]
    return known


def naive_origin_half_widths(origin_times: np.ndarray, actual_returns: np.ndarray, k: int, level: float) -> np.ndarray:
    """The naive band's half-width per step at origin k: the plain conformal quantile of the
    moves after the earlier origins that were known by then (``actual_returns``: origins, steps)."""
    return half_widths(np.where(known_by(origin_times, k), actual_returns[:k], np.nan), level)


def evaluate_daily(model: DailyModel, features: pd.DataFrame, *, n_origins: int = 40, step: int = 15,
                   min_train: int = 365) -> Evaluation:
    """Expanding-window evaluation of 15-day forecasts on ``daily_features`` rows of one symbol.

    Origins are every ``step`` days, ending at the newest row whose 15 days are known; at each
    one, a fresh copy of ``model`` (same ``params``; ``model`` itself is not touched) is fitted on
    the rows whose 15 targets were all known at the origin. What each origin serves is its
    forecast times the weight earned by the earlier origins' forecasts known by then, with the
    intervals :meth:`DailyModel.forecast` would give from the rows up to the origin. The naive
    baseline's intervals are calibrated only on the moves after earlier origins that were known
    by then, so its first origins (fewer than
    :func:`~pricepipe_assets.forecasting.intervals.min_calibration_size` moves per step: 9 at 0.9)
    have none, and interval measures are taken over the origins that do.
    Pass the result to :meth:`DailyModel.calibrate` after fitting ``model`` on all rows.
    """
    rows = _one_symbol(features)
    chosen = daily_origins(rows, n_origins, step, min_train)
    if not chosen:
        raise ValueError(f"no origin has {min_train} complete training rows before it; the daily history is too short")
    times = rows["open_time"].to_numpy()
    targets = rows[list(DAILY_TARGETS)].to_numpy(dtype=float)
    origin_times = times[chosen]

    raw_returns = np.empty((len(chosen), HORIZON_DAYS))
    for k, i in enumerate(chosen):
        train = rows[times <= times[i] - HORIZON_DAYS * DAY_MS]
        fitted = type(model)(**model.params).fit(train)
        raw_returns[k] = fitted.predict_returns(rows.iloc[[i]])[0]
    actual_returns = targets[chosen]
    weights = [combination_weight(raw_returns[:k], actual_returns[:k], known_by(origin_times, k))
               for k in range(len(chosen))]
    predicted_returns = np.asarray(weights)[:, None] * raw_returns

    parts = []
    steps = np.arange(1, HORIZON_DAYS + 1)
    naive_model = NaiveLastValue()
    for k, i in enumerate(chosen):
        close = float(rows["close"].iloc[i])
        model_widths = daily_move_half_widths(rows.iloc[:i + 1], model.level)
        naive_widths = naive_origin_half_widths(origin_times, actual_returns, k, model.level)
        predicted, lower, upper = price_interval(close, predicted_returns[k], model_widths)
        naive = naive_model.predict(close, HORIZON_DAYS)[0]
        _, naive_lower, naive_upper = price_interval(close, np.zeros(HORIZON_DAYS), naive_widths)
        parts.append(pd.DataFrame({
            "origin": int(times[i]), "step": steps, "time": int(times[i]) + steps * DAY_MS,
            "last_known": close, "actual": close * np.exp(actual_returns[k]),
            "predicted": predicted, "lower": lower, "upper": upper,
            "naive": naive, "naive_lower": naive_lower, "naive_upper": naive_upper,
        }))
    frame = pd.concat(parts, ignore_index=True)
    serving = combination_weight(raw_returns, actual_returns, np.ones_like(raw_returns, dtype=bool))
    return Evaluation(model_name=model.name, level=model.level, metrics=_metrics(frame, model.level), frame=frame,
                      n_predictions=len(frame), evaluated_from=int(frame["time"].min()),
                      evaluated_to=int(frame["time"].max()), residuals=actual_returns - predicted_returns,
                      interval_method=model.interval_method, origins=[int(t) for t in origin_times],
                      raw_returns=raw_returns, weights=weights, serving_weight=serving)
