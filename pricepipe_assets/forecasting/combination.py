"""How much of a model's predicted move to serve, from its own out-of-sample record.

The served forecast is naive + weight x (model - naive) in log space: the model's predicted
returns shrunk towards the last close. The weight is what the model has proved, not what it
promises: the regression slope of the actual moves on the predicted moves over the forecasts
whose outcome is known, minus two standard errors, clipped to [0, 1]. On prices this close to a
random walk a forest's predicted moves are mostly noise, and a weight fitted to minimize past
error (picked on a grid, or the slope itself) still lost to the naive forecast out of sample on
both periods it was tried on (docs/forecasting.md); the lower bound stays at 0 until the evidence
is strong, so the combination is the naive forecast until the model earns more.

The standard error treats each origin's 15 steps as one cluster, since they share one forecast
and overlapping moves; counting them as 15 independent cases would claim evidence the data do
not hold.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

# Origins whose forecasts must all be known before the model can earn any weight: fewer clusters
# make the standard error itself unreliable. The same 9 a 90 % conformal band needs.
MIN_ORIGINS = 9
STANDARD_ERRORS = 2.0


def combination_weight(predicted: ArrayLike, actual: ArrayLike, known: ArrayLike) -> float:
    """The weight of the model's predicted log returns, from (origins, steps) arrays.

    ``known`` marks the cells whose outcome was known when the weight is used; the rest are left
    out. 0 when fewer than ``MIN_ORIGINS`` origins are fully known or the model never moved.
    """
    x = np.asarray(predicted, dtype=float)
    y = np.asarray(actual, dtype=float)
    mask = np.asarray(known, dtype=bool) & np.isfinite(x) & np.isfinite(y)
    if np.count_nonzero(mask.all(axis=1)) < MIN_ORIGINS:
        return 0.0
    x, y = np.where(mask, x, 0.0), np.where(mask, y, 0.0)
    sxx = float(np.sum(x * x))
    if sxx == 0.0:
        return 0.0
    slope = float(np.sum(x * y)) / sxx
    per_origin = np.sum(x * (y - slope * x), axis=1)
    standard_error = float(np.sqrt(np.sum(per_origin ** 2))) / sxx
    return float(np.clip(slope - STANDARD_ERRORS * standard_error, 0.0, 1.0))
