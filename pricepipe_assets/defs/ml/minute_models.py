"""The next-minute models of the `ml` group: the SGD model and the LSTM, both learning only the
minutes since their newest version and scored on them before learning them.

The SGD model of `minute_model` learns its own minutes on its own schedule, so its record does not
cover the minutes the LSTM is scored on. To compare the two like with like, each version of the
LSTM keeps a companion SGD model that learns the same minutes, block after block, forecasting each
before learning it; both evaluations then score the same rows beside the same naive forecast.
"""

# No `from __future__ import annotations` here: Dagster reads the context annotation at definition time.
import dataclasses
from typing import Any

import dagster as dg
from dagster import AssetExecutionContext
from pydantic import Field

from pricepipe_assets.contract.utc import utc_iso
from pricepipe_assets.defs.metadata import Materialized
from pricepipe_assets.defs.ml.training import (
    MINUTE_FEATURES_DATASET,
    MINUTE_LSTM_MODEL,
    MINUTE_MODEL,
    PLOTTED_MINUTES,
    Trained,
    baseline_spec,
    train_per_symbol,
)
from pricepipe_assets.defs.resources.lake import LakeResource
from pricepipe_assets.defs.resources.model_rules import ModelRulesResource
from pricepipe_assets.storage import model_store


def _new_minutes(features: Any, trained_to: int | None, warmup: int) -> tuple[Any, int] | str:
    """The minutes a minute model has not learned yet (all of them for a new one, which learns
    ``warmup`` of them before its forecasts are scored) and how many have a target; or why the
    symbol waits for the next run: too few to score at least ten."""
    if trained_to is not None:
        features = features[features["open_time"] > trained_to]
    learnable = int(features["target"].notna().sum())
    if learnable <= warmup + 10:
        return f"{learnable} new minutes with a target; more than {warmup + 10} needed"
    return features, learnable


class MinuteModelConfig(dg.Config):
    warmup_minutes: int = Field(default=1440, description="Minutes a new model learns before its forecasts are scored.")
    batch: int = Field(default=60, description="Minutes forecast, then learned, per update: each is forecast by the "
                       "model as of its block's start, never trained on it (1: strict prequential learning, ~60x slower).")


@dg.asset(
    group_name="ml",
    kinds={"scikitlearn"},
    deps=["minute_features"],
    check_specs=[baseline_spec(MINUTE_MODEL)],
    description="Next-minute model per symbol (`SGDRegressor` learning with `partial_fit`): each run loads the newest "
    "version and learns only the minutes since, forecasting each before learning it (prequential), so its "
    "metrics — MAE, RMSE, MAPE, directional accuracy and 90 % interval coverage beside the naive forecast's — are "
    "out of sample. Saved as `models/minute_model/symbol=.../<version>.skops`.",
)
def minute_model(context: AssetExecutionContext, config: MinuteModelConfig, lake: LakeResource,
                 model_rules: ModelRulesResource) -> Materialized:
    from pricepipe_assets.forecasting.models import MinuteModel
    from pricepipe_assets.forecasting.serving import naive_minute_half_width
    from pricepipe_assets.forecasting.walk_forward import evaluate_minute

    def fit(symbol: str, features: Any, previous: model_store.StoredModel | None) -> Trained | str:
        model: MinuteModel
        model, warmup = (previous.model, 0) if previous else (MinuteModel(), config.warmup_minutes)
        new = _new_minutes(features, model.trained_to if previous else None, warmup)
        if isinstance(new, str):
            return new
        features, learnable = new
        evaluation = evaluate_minute(model, features, warmup=warmup, batch=config.batch)
        assert model.trained_to is not None  # the model has learned the minutes it was evaluated on
        return Trained(model, evaluation,
                       {"naive_half_width": naive_minute_half_width(evaluation, model.calibration_window)},
                       {"minutes_learned": model.n_learned, "trained_to": utc_iso(model.trained_to)},
                       f"learned {learnable} minutes")

    metadata, check = train_per_symbol(context, lake, model_rules.baseline_margin, MINUTE_MODEL,
                                       MINUTE_FEATURES_DATASET, fit, warm_start=True, plot_last=PLOTTED_MINUTES)
    return dg.MaterializeResult(metadata={**metadata, "params": dg.MetadataValue.json(MinuteModel().params)},
                                check_results=[check])


SGD_COMPANION = "sgd_minute"


class MinuteLstmConfig(dg.Config):
    warmup_minutes: int = Field(default=1440, description="Minutes a new model learns before its forecasts are scored.")
    block_minutes: int = Field(default=1440, description="Minutes forecast, then learned, per fit: each is forecast by "
                               "the network as of its block's start, never trained on it.")
    epochs: int = Field(default=2, description="Passes over each block of new minutes (a new model's setting; a "
                        "warm-started one keeps its own).")
    max_train_seconds: float = Field(default=180.0, description="Fitting stops after this long per symbol and run; "
                                     "later minutes are still forecast and scored, and learned by the next run.")


@dg.asset(
    group_name="ml",
    kinds={"keras"},
    deps=["minute_features"],
    check_specs=[baseline_spec(MINUTE_LSTM_MODEL)],
    description="Next-minute LSTM per symbol (Keras 3 on JAX, 16 cells over the last 30 minutes' features): each run "
    "loads the newest version's weights and learns only the minutes since, a day at a time, forecasting each day "
    "before fitting on it, for a bounded number of epochs and seconds. Scored on those out-of-sample minutes against "
    "the naive forecast and an SGD minute model learning the same minutes (MAE, RMSE, MAPE, directional accuracy, "
    "90 % split-conformal interval coverage and width). Saved as `models/minute_lstm_model/symbol=.../<version>.skops`.",
)
def minute_lstm_model(context: AssetExecutionContext, config: MinuteLstmConfig, lake: LakeResource,
                      model_rules: ModelRulesResource) -> Materialized:
    from pricepipe_assets.forecasting.lstm import LstmMinuteModel
    from pricepipe_assets.forecasting.models import MinuteModel
    from pricepipe_assets.forecasting.serving import naive_minute_half_width
    from pricepipe_assets.forecasting.walk_forward import evaluate_minute

    def fit(symbol: str, features: Any, previous: model_store.StoredModel | None) -> Trained | str:
        if previous is not None:
            model, companion, warmup = previous.model, previous.extra[SGD_COMPANION], 0
        else:
            model = LstmMinuteModel(epochs=config.epochs, max_train_seconds=config.max_train_seconds)
            companion, warmup = MinuteModel(), config.warmup_minutes
        model.max_train_seconds = config.max_train_seconds
        new = _new_minutes(features, model.trained_to if previous else None, warmup)
        if isinstance(new, str):
            return new
        features, learnable = new
        trained_before, seconds_before = model.n_trained, model.train_seconds
        evaluation = evaluate_minute(model, features, warmup=warmup, batch=config.block_minutes)
        against = evaluate_minute(companion, features, warmup=warmup, batch=60)
        evaluation = dataclasses.replace(evaluation, metrics={**evaluation.metrics,
                                                              SGD_COMPANION: against.metrics["model"]})
        return Trained(model, evaluation,
                       {"naive_half_width": naive_minute_half_width(evaluation, model.calibration_window),
                        SGD_COMPANION: companion},
                       {"sgd_mae_ratio_to_naive": round(against.mae_ratio, 4), "minutes_learned": model.n_learned,
                        "minutes_fitted_now": model.n_trained - trained_before,
                        "train_seconds": round(model.train_seconds - seconds_before, 1),
                        "trained_to": utc_iso(model.trained_to)},
                       f"learned {learnable} minutes (SGD on the same minutes: MAE ratio {against.mae_ratio:.4f})")

    metadata, check = train_per_symbol(context, lake, model_rules.baseline_margin, MINUTE_LSTM_MODEL,
                                       MINUTE_FEATURES_DATASET, fit, warm_start=True, plot_last=PLOTTED_MINUTES)
    return dg.MaterializeResult(metadata={**metadata, "params": dg.MetadataValue.json(LstmMinuteModel().params)},
                                check_results=[check])
