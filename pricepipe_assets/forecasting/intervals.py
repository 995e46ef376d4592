"""Split-conformal prediction intervals from out-of-sample residuals.

A model's residuals on data it was not trained on (walk-forward or prequential) are the honest
record of how wrong it is. Split conformal turns them into an interval half-width with a
coverage guarantee that holds for any model, as long as future errors resemble the calibration
errors: with n residuals, the ceil((n + 1) * level)-th smallest absolute residual covers a new
error with probability >= level. Nothing is assumed about the error distribution, which for
crypto returns is far from normal.

Residuals are log returns (actual minus predicted), so an interval is symmetric in log space and
maps to prices as close * exp(prediction +- half-width): always positive, and
lower <= predicted <= upper for any half-width >= 0.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

# (n + 1) * level is computed in floating point: 10 * 0.9 is 9.000000000000002, whose ceiling
# would wrongly ask for a tenth residual out of nine.
_ROUNDING = 1e-9


def min_calibration_size(level: float) -> int:
    """Fewest residuals that give a finite half-width at ``level`` (9 at 0.9, 19 at 0.95)."""
    _check_level(level)
    return math.ceil(level / (1.0 - level) - _ROUNDING)


def conformal_quantile(residuals: ArrayLike, level: float) -> float:
    """Half-width covering a new absolute residual with probability >= ``level``.

    The ceil((n + 1) * level)-th smallest of the n absolute residuals (NaN ignored); infinite when
    there are too few residuals for the guarantee (see :func:`min_calibration_size`).
    """
    _check_level(level)
    scores = np.abs(np.asarray(residuals, dtype=float))
    scores = scores[~np.isnan(scores)]
    rank = math.ceil((scores.size + 1) * level - _ROUNDING)
    if rank > scores.size:
        return math.inf
    return float(np.partition(scores, rank - 1)[rank - 1])


def half_widths(residuals: ArrayLike, level: float) -> np.ndarray:
    """One half-width per horizon from a (cases, horizons) residual matrix; NaN cells are skipped."""
    matrix = np.asarray(residuals, dtype=float)
    if matrix.ndim == 1:
        matrix = matrix[:, None]
    return np.array([conformal_quantile(matrix[:, h], level) for h in range(matrix.shape[1])])


def rolling_half_widths(residuals: ArrayLike, level: float, window: int) -> np.ndarray:
    """For each step i, the half-width from the ``window`` residuals strictly before i.

    This is what an online model knows when it forecasts step i: its errors on the steps it has
    already seen. A recent window (rather than all history) lets the width follow volatility,
    which changes by the hour in crypto markets. Steps with too few earlier residuals get inf.
    """
    values = np.asarray(residuals, dtype=float)
    return np.array([conformal_quantile(values[max(0, i - window):i], level) for i in range(values.size)])


def price_interval(last_close: ArrayLike, predicted_return: ArrayLike,
                   half_width: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(predicted, lower, upper) prices from log-return predictions and half-widths.

    An infinite half-width (uncalibrated) gives NaN bounds rather than 0 and inf, so it can never
    be mistaken for a real, if useless, interval.
    """
    close = np.asarray(last_close, dtype=float)
    center = np.asarray(predicted_return, dtype=float)
    width = np.asarray(half_width, dtype=float)
    if np.any(width < 0):
        raise ValueError("a conformal half-width cannot be negative")
    finite = np.isfinite(width)
    safe = np.where(finite, width, 0.0)
    predicted = close * np.exp(center)
    lower = np.where(finite, close * np.exp(center - safe), np.nan)
    upper = np.where(finite, close * np.exp(center + safe), np.nan)
    return predicted, lower, upper


def _check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"the interval level must be between 0 and 1, got {level}")
