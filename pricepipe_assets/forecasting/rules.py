"""When a trained model earns its place: how much worse than the naive forecast it may be before
the naive one is served instead, and how much history the daily model needs first."""

from __future__ import annotations

from pydantic import BaseModel

from pricepipe_assets.settings import Settings


class ModelRules(BaseModel):
    """The rules the ``ml`` assets train and serve by (``PRICEPIPE_MODEL_BASELINE_MARGIN``,
    ``PRICEPIPE_DAILY_MIN_TRAIN_DAYS``)."""

    baseline_margin: float = 0.05
    daily_min_train_days: int = 365


def model_rules(settings: Settings) -> ModelRules:
    """The rules the settings name."""
    return ModelRules(baseline_margin=settings.model_baseline_margin, daily_min_train_days=settings.daily_min_train_days)
