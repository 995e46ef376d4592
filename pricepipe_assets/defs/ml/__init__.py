"""The `ml` group: features, models and their predictions.

Features are computed by Spark over the whole lake (`features.py`); models are trained per symbol
(`training.py` holds the loop they share), scored walk-forward against the naive baseline on data
they were not trained on, and saved as versioned files in the lake. Forecasts are published to
Kafka's `predictions` topic, from where `predictions_live` stores them in Cassandra. A model that
loses to the baseline by more than ``PRICEPIPE_MODEL_BASELINE_MARGIN`` fails its check, and its
forecasts are made by the baseline instead, saying so in their model name.

Training runs in `analytics_job`; `minute_predictions` runs in every `candles_1m_job` run.
"""

from __future__ import annotations

import dagster as dg

from pricepipe_assets.defs.ml.daily import daily_forecast, daily_model
from pricepipe_assets.defs.ml.features import daily_features, minute_features
from pricepipe_assets.defs.ml.minute_models import minute_lstm_model, minute_model
from pricepipe_assets.defs.ml.minute_predictions import minute_predictions
from pricepipe_assets.settings import Settings


def definitions(settings: Settings) -> dg.Definitions:
    return dg.Definitions(assets=[minute_features, daily_features, minute_model, minute_lstm_model, daily_model,
                                  daily_forecast, minute_predictions])
