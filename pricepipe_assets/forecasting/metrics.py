"""Forecast error measures on price arrays, shared by the walk-forward evaluation and the benchmark.

Every model, the naive baseline and the benchmark's statsforecast models are scored by these
same functions on the same rows, so their numbers can be put side by side.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def _floats(values: ArrayLike) -> np.ndarray:
    return np.asarray(values, dtype=float)


def mae(actual: ArrayLike, predicted: ArrayLike) -> float:
    """Mean absolute error, in price units: the headline number compared with the baseline."""
    return float(np.mean(np.abs(_floats(actual) - _floats(predicted))))


def rmse(actual: ArrayLike, predicted: ArrayLike) -> float:
    """Root mean squared error: like MAE but weighs the large misses more."""
    return float(np.sqrt(np.mean((_floats(actual) - _floats(predicted)) ** 2)))


def mape(actual: ArrayLike, predicted: ArrayLike) -> float:
    """Mean absolute percentage error, in percent, so symbols at different prices compare.

    Prices are positive (the records refuse others), so the division is safe.
    """
    a = _floats(actual)
    return float(100.0 * np.mean(np.abs(a - _floats(predicted)) / np.abs(a)))


def directional_accuracy(actual: ArrayLike, predicted: ArrayLike, last_known: ArrayLike) -> float:
    """Share of cases where the forecast moved from the last known price the way the price did.

    A case counts as right when sign(predicted - last_known) == sign(actual - last_known).
    Cases where the actual price did not move are left out (there was no direction to call);
    a forecast that stays flat when the price moved counts as wrong, so a flat forecast such as
    the naive baseline scores 0 and the reference for a useful model is a coin's 0.5.
    NaN when the price never moved.
    """
    base = _floats(last_known)
    moved = np.sign(_floats(actual) - base)
    called = np.sign(_floats(predicted) - base)
    scored = moved != 0
    if not scored.any():
        return float("nan")
    return float(np.mean(called[scored] == moved[scored]))


def interval_coverage(actual: ArrayLike, lower: ArrayLike, upper: ArrayLike) -> float:
    """Share of actual prices inside [lower, upper], over the cases that have an interval.

    Cases with a NaN bound (a walk-forward step before enough residuals existed to calibrate)
    are left out; NaN when no case has an interval.
    """
    a, lo, hi = _floats(actual), _floats(lower), _floats(upper)
    known = ~(np.isnan(lo) | np.isnan(hi))
    if not known.any():
        return float("nan")
    return float(np.mean((a[known] >= lo[known]) & (a[known] <= hi[known])))


def interval_width(lower: ArrayLike, upper: ArrayLike, last_known: ArrayLike) -> float:
    """Mean width of the intervals as a share of the last known price.

    Coverage alone rewards wide intervals; the width says what the coverage cost.
    """
    lo, hi, base = _floats(lower), _floats(upper), _floats(last_known)
    known = ~(np.isnan(lo) | np.isnan(hi))
    if not known.any():
        return float("nan")
    return float(np.mean((hi[known] - lo[known]) / base[known]))


def interval_score(actual: ArrayLike, lower: ArrayLike, upper: ArrayLike, level: float) -> float:
    """Mean interval (Winkler) score, in price units: lower is better.

    Width and coverage each reward what the other punishes, so neither ranks two interval
    methods on its own. The score charges the width plus, for every miss, 2 / (1 - level) times
    the distance to the bound it crossed: a proper scoring rule, minimized in expectation by the
    true (1 - level) / 2 and (1 + level) / 2 quantiles, so a band can only win it by being both
    sharp and honest. Cases with a NaN bound are left out, as for coverage.
    """
    a, lo, hi = _floats(actual), _floats(lower), _floats(upper)
    known = ~(np.isnan(lo) | np.isnan(hi))
    if not known.any():
        return float("nan")
    a, lo, hi = a[known], lo[known], hi[known]
    penalty = 2.0 / (1.0 - level)
    return float(np.mean(hi - lo + penalty * (np.maximum(lo - a, 0.0) + np.maximum(a - hi, 0.0))))


def all_metrics(actual: ArrayLike, predicted: ArrayLike, last_known: ArrayLike,
                lower: ArrayLike, upper: ArrayLike, *, level: float) -> dict[str, float]:
    """Every measure above for one model, keyed by name, as they go into asset metadata.

    ``level`` is the intervals' promised coverage, which the interval score needs.
    """
    return {
        "mae": mae(actual, predicted),
        "rmse": rmse(actual, predicted),
        "mape": mape(actual, predicted),
        "directional_accuracy": directional_accuracy(actual, predicted, last_known),
        "interval_coverage": interval_coverage(actual, lower, upper),
        "interval_width": interval_width(lower, upper, last_known),
        "interval_score": interval_score(actual, lower, upper, level),
    }
