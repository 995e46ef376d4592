"""Turning a stored model into published forecasts, falling back to the baseline when it is better.

A model that lost to the naive forecast in its walk-forward evaluation (by more than the
configured margin) would make every published number worse, so the forecast is then made by
the naive baseline, with intervals calibrated on the same walk-forward cases, and the model
name on each prediction says which of the two answered.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pricepipe_assets.contract.records import INTERVAL_MS, Prediction
from pricepipe_assets.forecasting.evaluation import Evaluation
from pricepipe_assets.forecasting.intervals import conformal_quantile, half_widths
from pricepipe_assets.forecasting.models import FORECAST_COLUMNS, NaiveLastValue, forecast_frame


def naive_daily_half_widths(evaluation: Evaluation) -> np.ndarray:
    """The naive forecast's half-width per horizon from the walk-forward cases' actual log returns."""
    frame = evaluation.frame
    moves = np.log(frame["actual"] / frame["last_known"]).to_numpy()
    matrix = pd.DataFrame({"origin": frame["origin"], "step": frame["step"], "move": moves}).pivot(
        index="origin", columns="step", values="move")
    return half_widths(matrix.to_numpy(), evaluation.level)


def naive_half_widths_from_closes(closes: np.ndarray, level: float, steps: int) -> np.ndarray:
    """The naive forecast's half-width per step from a history alone: every h-day move the
    closes made, for h = 1..``steps``. Before a model has been trained (a short history), this is
    how wrong "no change" has been, which is what its interval must cover."""
    logs = np.log(np.asarray(closes, dtype=float))
    moves = np.full((max(len(logs) - 1, 0), steps), np.nan)
    for h in range(1, min(steps, len(logs) - 1) + 1):
        moves[: len(logs) - h, h - 1] = logs[h:] - logs[:-h]
    return half_widths(moves, level)


def naive_minute_half_width(evaluation: Evaluation, window: int) -> float:
    """The naive forecast's half-width from the last ``window`` scored minutes' actual log returns."""
    frame = evaluation.frame.tail(window)
    return conformal_quantile(np.log(frame["actual"] / frame["last_known"]).to_numpy(), evaluation.level)


def naive_forecast(last: pd.Series, interval: str, widths: np.ndarray) -> pd.DataFrame:
    """The last close for every horizon, with the baseline's own intervals."""
    returns = np.log(NaiveLastValue().predict(float(last["close"]), len(widths))[0] / float(last["close"]))
    return forecast_frame(last, INTERVAL_MS[interval], returns, widths)[FORECAST_COLUMNS]


def to_predictions(forecast: pd.DataFrame, symbol: str, model: str, version: str, interval: str,
                   made_at: int, reason: str | None = None) -> list[Prediction]:
    """Contract records of a forecast frame (``FORECAST_COLUMNS``), validated."""
    predictions = [
        Prediction(symbol, model, version, interval, made_at, int(row.target_time), float(row.predicted),
                   float(row.lower), float(row.upper), reason)
        for row in forecast.itertuples()
    ]
    for prediction in predictions:
        prediction.check()
    return predictions
