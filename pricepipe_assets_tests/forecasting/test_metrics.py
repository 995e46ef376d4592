"""Forecast metrics on a four-case example whose values are worked out by hand below."""

from __future__ import annotations

import math

import pytest

from pricepipe_assets.forecasting import metrics

# Four forecasts from a last known price of 100.
LAST = [100.0, 100.0, 100.0, 100.0]
ACTUAL = [102.0, 97.0, 100.0, 105.0]
PREDICTED = [101.0, 99.0, 103.0, 100.0]
LOWER = [100.0, 98.0, 99.0, 101.0]
UPPER = [103.0, 100.0, 101.0, 104.0]


def test_mae_rmse_and_mape_match_the_hand_computation() -> None:
    # errors: |102-101| = 1, |97-99| = 2, |100-103| = 3, |105-100| = 5
    assert metrics.mae(ACTUAL, PREDICTED) == pytest.approx((1 + 2 + 3 + 5) / 4)  # 2.75
    assert metrics.rmse(ACTUAL, PREDICTED) == pytest.approx(math.sqrt((1 + 4 + 9 + 25) / 4))  # 3.1225
    assert metrics.mape(ACTUAL, PREDICTED) == pytest.approx(100 * (1 / 102 + 2 / 97 + 3 / 100 + 5 / 105) / 4)  # 2.68 %


def test_directional_accuracy_skips_unmoved_prices_and_counts_flat_forecasts_as_wrong() -> None:
    # moves:    up, down, none (left out), up
    # forecast: up, down, up,              flat (wrong)
    assert metrics.directional_accuracy(ACTUAL, PREDICTED, LAST) == pytest.approx(2 / 3)
    assert metrics.directional_accuracy(ACTUAL, LAST, LAST) == 0.0  # the naive forecast never calls a direction
    assert math.isnan(metrics.directional_accuracy(LAST, PREDICTED, LAST))  # nothing moved: nothing to score


def test_interval_coverage_and_width() -> None:
    # 102 in [100, 103] yes; 97 in [98, 100] no; 100 in [99, 101] yes; 105 in [101, 104] no
    assert metrics.interval_coverage(ACTUAL, LOWER, UPPER) == 0.5
    assert metrics.interval_width(LOWER, UPPER, LAST) == pytest.approx((3 + 2 + 2 + 3) / 4 / 100)


def test_cases_without_an_interval_are_left_out_of_coverage() -> None:
    lower = [math.nan, 98.0, 99.0, math.nan]
    assert metrics.interval_coverage(ACTUAL, lower, UPPER) == 0.5  # only the middle two: one of two covered
    assert math.isnan(metrics.interval_coverage(ACTUAL, [math.nan] * 4, UPPER))


def test_interval_score_charges_the_width_and_twenty_times_each_miss_at_ninety_percent() -> None:
    # widths 3 + 2 + 2 + 3; misses: 97 is 1 below 98, 105 is 1 above 104, each charged 2 / (1 - 0.9) = 20
    assert metrics.interval_score(ACTUAL, LOWER, UPPER, 0.9) == pytest.approx((10 + 20 + 20) / 4)
    # at 0.5 a miss costs only 4 per unit
    assert metrics.interval_score(ACTUAL, LOWER, UPPER, 0.5) == pytest.approx((10 + 4 + 4) / 4)
    # a band that covers everything by being huge scores worse than the honest one
    assert metrics.interval_score(ACTUAL, [0.0] * 4, [200.0] * 4, 0.9) > metrics.interval_score(ACTUAL, LOWER, UPPER, 0.9)
    assert math.isnan(metrics.interval_score(ACTUAL, [math.nan] * 4, UPPER, 0.9))


def test_all_metrics_names_every_measure() -> None:
    result = metrics.all_metrics(ACTUAL, PREDICTED, LAST, LOWER, UPPER, level=0.9)
    assert result == {
        "mae": pytest.approx(2.75), "rmse": pytest.approx(math.sqrt(9.75)),
        "mape": pytest.approx(metrics.mape(ACTUAL, PREDICTED)), "directional_accuracy": pytest.approx(2 / 3),
        "interval_coverage": 0.5, "interval_width": pytest.approx(0.025), "interval_score": pytest.approx(12.5),
    }
