"""The record of a walk-forward evaluation: what it measured, for asset metadata, checks and serving.

Kept apart from :mod:`~pricepipe_assets.forecasting.walk_forward`, which makes these records by
running the models, because a model reads one too (:meth:`DailyModel.calibrate` takes the weight
its evaluation earned): with the record here, the models and the evaluation import it, not each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from pricepipe_assets.contract.forecasts import HORIZON_DAYS


@dataclass(frozen=True)
class Evaluation:
    """What a walk-forward evaluation measured, ready for asset metadata and checks.

    ``metrics`` maps ``"model"`` and ``"naive"`` to
    :func:`~pricepipe_assets.forecasting.metrics.all_metrics` dicts over the same cases.
    ``frame`` has one row per scored forecast: ``time`` (open time of the predicted candle, ms),
    ``last_known``, ``actual``, ``predicted``, ``lower``, ``upper``, ``naive``, ``naive_lower``,
    ``naive_upper``, and for the daily evaluation ``origin`` and ``step`` (days ahead). ``origins`` are the
    daily origins' open times (empty for the prequential minute evaluation, where every scored
    minute is an origin). ``residuals`` are the served forecasts' log residuals, shape (forecasts,
    steps). For the daily evaluation, ``raw_returns`` are the model's own predicted log returns
    (origins, steps), ``weights`` the weight each origin's forecast was served with, and
    ``serving_weight`` the weight earned over all origins, for the model that goes on to serve.
    ``interval_method`` says how the model's intervals were made.
    """

    model_name: str
    level: float
    metrics: dict[str, dict[str, float]]
    frame: pd.DataFrame
    n_predictions: int
    evaluated_from: int
    evaluated_to: int
    residuals: np.ndarray
    interval_method: str
    origins: list[int] = field(default_factory=list)
    raw_returns: np.ndarray = field(default_factory=lambda: np.empty((0, HORIZON_DAYS)))
    weights: list[float] = field(default_factory=list)
    serving_weight: float = 1.0

    @property
    def mae_ratio(self) -> float:
        """Model MAE over naive MAE: below 1 means the model beat the baseline."""
        return self.metrics["model"]["mae"] / self.metrics["naive"]["mae"]

    def better_than_baseline(self, margin: float = 0.0) -> bool:
        """True when the model's MAE is at most the naive MAE times (1 + ``margin``)."""
        return self.metrics["model"]["mae"] <= self.metrics["naive"]["mae"] * (1.0 + margin)
