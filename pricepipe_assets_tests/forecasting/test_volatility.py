"""Volatility scales and the scaled conformal bands: causal, and sharper where volatility clusters."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pricepipe_assets.forecasting import volatility
from pricepipe_assets.forecasting.feature_names import DAILY_TARGETS
from pricepipe_assets.forecasting.intervals import conformal_quantile, rolling_half_widths
from pricepipe_assets.forecasting.metrics import interval_score

DAY_MS = 86_400_000


def test_ewma_variance_averages_only_the_returns_seen_so_far() -> None:
    # decay 0.5: (1) -> 1; (0.5 * 1 + 4) / (0.5 + 1) = 3
    assert volatility.ewma_variance([1.0, 2.0], 0.5) == pytest.approx([1.0, 3.0])
    returns = np.random.default_rng(0).normal(0, 0.02, 200)
    shocked = returns.copy()
    shocked[150:] *= 50
    np.testing.assert_array_equal(volatility.ewma_variance(shocked, 0.94)[:150],
                                  volatility.ewma_variance(returns, 0.94)[:150])


def _daily(days: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    returns = rng.normal(0, 0.03, days)
    log_close = np.cumsum(returns)
    frame = pd.DataFrame({"open_time": np.arange(days) * DAY_MS, "ret_1": returns})
    for h, name in enumerate(DAILY_TARGETS, start=1):
        frame[name] = pd.Series(log_close).shift(-h) - log_close
    return frame


def test_daily_half_widths_ignore_the_moves_that_had_not_ended_by_the_newest_row() -> None:
    frame = _daily(400, 1)
    up_to = frame.iloc[:300].copy()
    widths = volatility.daily_move_half_widths(up_to, 0.9)
    assert np.all(np.isfinite(widths))
    np.testing.assert_allclose(widths / widths[0], np.sqrt(np.arange(1, 16)), rtol=1e-12)  # one quantile, times √h
    # the frame still holds the later outcomes of its last 15 rows; making them absurd changes nothing
    reaches_past = up_to["open_time"].to_numpy()[:, None] + np.arange(1, 16) * DAY_MS > up_to["open_time"].iloc[-1]
    targets = up_to[list(DAILY_TARGETS)].to_numpy()
    targets[reaches_past] = 10.0
    up_to[list(DAILY_TARGETS)] = targets
    np.testing.assert_array_equal(volatility.daily_move_half_widths(up_to, 0.9), widths)
    # a wild newest day widens every step by exactly the ratio of today's scales
    wild = frame.iloc[:300].copy()
    wild.loc[wild.index[-1], "ret_1"] = 0.3
    ratio = volatility.daily_scale(wild)[-1] / volatility.daily_scale(frame.iloc[:300])[-1]
    assert ratio > 1.5
    np.testing.assert_allclose(volatility.daily_move_half_widths(wild, 0.9) / widths, ratio, rtol=1e-12)


def test_daily_half_widths_are_calibrated_on_the_recent_window_of_moves_only() -> None:
    frame = _daily(600, 4)
    up_to = frame.iloc[:500].copy()
    widths = volatility.daily_move_half_widths(up_to, 0.9)
    start = up_to["open_time"].to_numpy()
    inside = start > start[-1] - volatility.DAILY_WINDOW_DAYS * DAY_MS
    # moves that started before the window do not count, however large
    old = up_to.copy()
    old.loc[~inside, list(DAILY_TARGETS)] = 5.0
    np.testing.assert_array_equal(volatility.daily_move_half_widths(old, 0.9), widths)
    # moves inside it do: tripling them all (the volatility scale untouched) triples the band
    tripled = up_to.copy()
    tripled.loc[inside, list(DAILY_TARGETS)] *= 3.0
    np.testing.assert_allclose(volatility.daily_move_half_widths(tripled, 0.9), 3.0 * widths, rtol=1e-12)


def test_per_step_bands_take_each_steps_own_quantile_of_all_earlier_moves() -> None:
    frame = _daily(400, 6)
    widths = volatility.daily_move_half_widths(frame.iloc[:300], 0.9, window_days=None, pooled=False)
    scale = volatility.daily_scale(frame.iloc[:300])
    for h in (1, 7, 15):
        ended = frame.iloc[:300 - h]  # the moves of step h that had ended by row 299
        scores = ended[f"target_{h}"].to_numpy() / scale[:300 - h]
        assert widths[h - 1] == pytest.approx(conformal_quantile(scores, 0.9) * scale[-1], rel=1e-12)


def test_a_daily_band_needs_nine_pooled_moves_at_90_percent() -> None:
    # 10 days hold 9 one-day moves and fewer of every longer one: enough pooled scores for 90 %,
    # while 2 days hold a single move
    assert np.all(np.isfinite(volatility.daily_move_half_widths(_daily(10, 5), 0.9)))
    assert np.all(np.isinf(volatility.daily_move_half_widths(_daily(2, 5), 0.9)))


def test_the_minute_scale_of_a_row_needs_only_that_row() -> None:
    rng = np.random.default_rng(2)
    frame = pd.DataFrame(rng.uniform(1e-4, 1e-3, (50, 3)), columns=["vol_15", "vol_60", "range"])
    frame.loc[7, ["vol_15", "vol_60", "range"]] = 0.0  # a market that did not move still gets a positive scale
    scales = volatility.minute_scale(frame)
    assert np.all(scales > 0)
    assert volatility.minute_scale(frame.iloc[[20]])[0] == scales[20]


def test_scaled_bands_keep_their_coverage_and_score_better_when_volatility_clusters() -> None:
    rng = np.random.default_rng(3)
    regime = np.repeat(rng.choice([0.5, 1.0, 3.0], size=200), 100)  # volatility that persists for a while
    returns = regime * rng.standard_t(4, regime.size) * 0.001
    scale = regime * 0.001  # a volatility estimate that knows the regime, as a good one nearly does
    static = rolling_half_widths(returns, 0.9, 1440)
    scaled = rolling_half_widths(returns / scale, 0.9, 1440) * scale
    scored = slice(1440, None)
    for widths in (static, scaled):
        covered = np.mean(np.abs(returns[scored]) <= widths[scored])
        assert 0.88 < covered < 0.92
    score = {name: interval_score(returns[scored], -w[scored], w[scored], 0.9)
             for name, w in (("static", static), ("scaled", scaled))}
    assert score["scaled"] < 0.85 * score["static"]
    assert np.mean(scaled[scored]) < np.mean(static[scored])
