"""Split-conformal intervals: the finite-sample quantile, the coverage it promises, and ordering."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pricepipe_assets.forecasting import intervals


def test_conformal_quantile_is_the_ceil_n_plus_one_level_th_smallest_absolute_residual() -> None:
    residuals = [-1.0, 2.0, -3.0, 4.0, -5.0, 6.0, -7.0, 8.0, -9.0]
    # n = 9 at 0.9: rank ceil(10 * 0.9) = 9 (not 10, whatever floating point says), the largest
    assert intervals.conformal_quantile(residuals, 0.9) == 9.0
    # at 0.5: rank ceil(10 * 0.5) = 5
    assert intervals.conformal_quantile(residuals, 0.5) == 5.0
    # NaN residuals are not evidence and are skipped
    assert intervals.conformal_quantile([*residuals, math.nan], 0.5) == 5.0


def test_too_few_residuals_give_an_infinite_width() -> None:
    assert intervals.min_calibration_size(0.9) == 9
    assert intervals.min_calibration_size(0.95) == 19
    assert intervals.conformal_quantile(np.arange(8.0), 0.9) == math.inf
    assert math.isfinite(intervals.conformal_quantile(np.arange(9.0), 0.9))
    with pytest.raises(ValueError, match="level"):
        intervals.conformal_quantile([1.0], 1.0)


def test_half_widths_reach_the_level_on_fresh_heavy_tailed_errors() -> None:
    rng = np.random.default_rng(7)
    scale = np.array([0.01, 0.03, 0.05])  # three horizons, errors growing with the horizon
    calibration = rng.standard_t(3, size=(2000, 3)) * scale
    fresh = rng.standard_t(3, size=(20_000, 3)) * scale
    widths = intervals.half_widths(calibration, 0.9)
    assert np.all(np.diff(widths) > 0)
    covered = (np.abs(fresh) <= widths).mean(axis=0)
    assert np.all((covered > 0.88) & (covered < 0.92)), covered  # 3 standard deviations


def test_rolling_half_widths_use_only_earlier_residuals() -> None:
    residuals = np.full(30, 0.01)
    residuals[20] = 5.0  # a shock at step 20
    widths = intervals.rolling_half_widths(residuals, 0.9, window=10)
    assert np.all(np.isinf(widths[:9]))  # fewer than 9 earlier residuals
    assert np.all(widths[9:21] == 0.01)  # step 20 itself does not know its own residual
    assert np.all(widths[21:30] == 5.0)  # the shock is the 0.9 quantile of the next 10 windows
    assert intervals.rolling_half_widths(np.append(residuals, [0.01, 0.01]), 0.9, window=10)[-1] == 0.01  # then gone


def test_price_intervals_are_ordered_positive_and_nan_when_uncalibrated() -> None:
    rng = np.random.default_rng(3)
    close = rng.uniform(0.01, 100_000, 1000)
    predicted_return = rng.normal(0, 0.2, 1000)
    width = np.abs(rng.normal(0, 0.3, 1000))
    width[:10] = 0.0
    predicted, lower, upper = intervals.price_interval(close, predicted_return, width)
    assert np.all((0 < lower) & (lower <= predicted) & (predicted <= upper))
    assert np.allclose(np.log(upper / predicted), width) and np.allclose(np.log(predicted / lower), width)

    _, lower, upper = intervals.price_interval(100.0, 0.01, math.inf)
    assert np.isnan(lower) and np.isnan(upper)
    with pytest.raises(ValueError, match="negative"):
        intervals.price_interval(100.0, 0.0, -0.1)
