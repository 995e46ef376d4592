"""Volatility scales for the prediction intervals, and the conformal half-widths they scale.

Crypto volatility clusters: a quiet week tends to follow a quiet week and a crash is followed by
large moves either way. A band calibrated on raw errors has one width for both, too wide in the
calm and too narrow in the storm. Dividing each past error by the volatility estimate of its own
time gives scores that resemble each other across regimes; their split-conformal quantile times
the volatility estimate of now is a band that breathes with the market and keeps the coverage
guarantee for the scores (docs/forecasting.md, "Prediction intervals").

Every scale at a row uses that row and earlier rows only (its features are known at the row's
close), so a band built from it never looks ahead. The constants were chosen on data before the
benchmark's periods (docs/forecasting.md, "How the defaults were chosen").
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy.signal import lfilter

from pricepipe_assets.contract.records import INTERVAL_MS
from pricepipe_assets.forecasting.feature_names import DAILY_TARGETS
from pricepipe_assets.forecasting.intervals import conformal_quantile, half_widths

# A half-life of 46 days: volatility mean-reverts within the 15 days a daily forecast spans, so
# the one-day RiskMetrics decay (0.94, a half-life of 11 days) chases moves that will not last.
DAILY_DECAY = 0.985
# The daily band is calibrated on the moves of the last 120 days only: how far an h-day move runs
# relative to the daily volatility changes from one market regime to the next, and a band
# calibrated on all history keeps the width of regimes long gone. Pooled over the 15 steps,
# 120 days still give about 1,700 scores. Chosen on the periods before the benchmark's
# (docs/forecasting.md, "How the defaults were chosen").
DAILY_WINDOW_DAYS = 120
# The minute scale enters as its square root: a one-hour volatility estimate is noisy, and
# trusting it fully narrows calm minutes less than it widens busy ones.
MINUTE_SCALE_POWER = 0.5
# Keeps a scale positive on a market that did not move at all (a zero would divide a score by 0).
SCALE_FLOOR = 1e-6
# Parkinson: E[log(high / low) ** 2] = 4 ln 2 * variance for a random walk within the candle.
_PARKINSON = 4.0 * math.log(2.0)

DAILY_METHOD = (f"split conformal on the h-day moves of the last {DAILY_WINDOW_DAYS} days, each divided by √h times "
                f"the volatility at its start (EWMA λ={DAILY_DECAY} of daily returns), one quantile for all steps, "
                "centred on the forecast")
MINUTE_METHOD = (f"split conformal on the last residuals scaled by volatility (15/60-minute and high-low range, "
                 f"to the power {MINUTE_SCALE_POWER:g})")


def ewma_variance(returns: ArrayLike, decay: float) -> NDArray[np.float64]:
    """Exponentially weighted mean of the squared returns up to and including each row.

    Normalized by the weights actually present, so the first rows average the few returns seen
    rather than being pulled towards an invented starting value.
    """
    squares = np.square(np.asarray(returns, dtype=float))
    weighted: NDArray[np.float64] = lfilter([1.0], [1.0, -decay], squares)
    weights: NDArray[np.float64] = lfilter([1.0], [1.0, -decay], np.ones_like(squares))
    return weighted / weights


def daily_scale(features: pd.DataFrame, decay: float = DAILY_DECAY) -> np.ndarray:
    """Volatility of each daily row from ``ret_1`` of that row and the rows before it.

    The features' rows must be one symbol's, in time order: the estimate runs along them.
    """
    variance = ewma_variance(features["ret_1"].to_numpy(dtype=float), decay)
    return np.maximum(np.sqrt(variance), SCALE_FLOOR)


def minute_scale(features: pd.DataFrame) -> np.ndarray:
    """Volatility scale of each minute row from its own features (``vol_15``, ``vol_60``, ``range``).

    Built from one row's columns only, so the serving path, which has the features of the newest
    candles alone, computes exactly the scale the model was calibrated with.
    """
    variance: NDArray[np.float64] = (features["vol_15"].to_numpy(dtype=float) ** 2
                                     + features["vol_60"].to_numpy(dtype=float) ** 2
                                     + features["range"].to_numpy(dtype=float) ** 2 / _PARKINSON) / 3.0
    return np.maximum(np.sqrt(variance), SCALE_FLOOR) ** MINUTE_SCALE_POWER


def daily_move_half_widths(features: pd.DataFrame, level: float, *, window_days: int | None = DAILY_WINDOW_DAYS,
                           pooled: bool = True, decay: float = DAILY_DECAY) -> np.ndarray:
    """Half-widths per day ahead for a forecast from the newest row of ``features``.

    Every h-day move that started in the last ``window_days`` days (``None``: at any time) and had
    ended by the newest row's day is a score once divided by √h times the volatility at its
    start. Under a random walk the scores of all 15 steps share one distribution, so they are
    pooled into one conformal quantile q (fifteen times the scores a single step has, a steadier
    quantile from a short window); ``pooled=False`` takes one quantile per step instead. The
    half-width for step h is q·√h times the newest row's volatility. Moves ending later are
    ignored even where the frame holds them, so a walk-forward origin can pass the rows up to it
    as they are. The keyword arguments exist so that ``benchmarks/daily_bands.py`` can compare
    the alternatives; the model uses the defaults.
    """
    scale = daily_scale(features, decay)
    times = features["open_time"].to_numpy()
    steps = np.arange(1, len(DAILY_TARGETS) + 1)
    moves = features[list(DAILY_TARGETS)].to_numpy(dtype=float)
    counted = times[:, None] + steps[None, :] * INTERVAL_MS["1d"] <= times[-1]
    if window_days is not None:
        counted &= (times > times[-1] - window_days * INTERVAL_MS["1d"])[:, None]
    horizon = np.sqrt(steps)
    scores = np.where(counted, moves, np.nan) / (scale[:, None] * horizon[None, :])
    quantile = conformal_quantile(scores.ravel(), level) if pooled else half_widths(scores, level)
    widths: np.ndarray = quantile * horizon * scale[-1]
    return widths
