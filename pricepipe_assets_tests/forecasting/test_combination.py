"""The weight a model earns: only what its known out-of-sample record proves."""

from __future__ import annotations

import numpy as np

from pricepipe_assets.forecasting.combination import MIN_ORIGINS, combination_weight

ORIGINS, STEPS = 30, 15


def _moves(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 0.05, (ORIGINS, STEPS))


def test_a_model_that_predicts_noise_earns_no_weight() -> None:
    noise = np.random.default_rng(1).normal(0, 0.02, (ORIGINS, STEPS))
    assert combination_weight(noise, _moves(0), np.ones((ORIGINS, STEPS), bool)) == 0.0


def test_a_model_with_real_skill_earns_weight_but_never_more_than_one() -> None:
    actual = _moves(0)
    known = np.ones((ORIGINS, STEPS), bool)
    skilled = 0.5 * actual + np.random.default_rng(2).normal(0, 0.01, actual.shape)
    assert 0.5 < combination_weight(skilled, actual, known) <= 1.0
    assert combination_weight(0.1 * actual, actual, known) == 1.0  # a slope of 10 is clipped


def test_only_known_outcomes_count_and_too_few_origins_earn_nothing() -> None:
    actual = _moves(0)
    perfect = actual.copy()
    known = np.zeros((ORIGINS, STEPS), bool)
    known[:MIN_ORIGINS - 1] = True
    assert combination_weight(perfect, actual, known) == 0.0  # 8 known origins are not evidence enough
    known[:MIN_ORIGINS] = True
    assert combination_weight(perfect, actual, known) == 1.0
    garbage = actual.copy()
    garbage[~known] = np.nan
    perfect[~known] = -perfect[~known]  # predictions whose outcomes are unknown do not count either way
    assert combination_weight(perfect, garbage, known) == 1.0
