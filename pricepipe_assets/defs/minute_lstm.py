"""The LSTM next-minute model as an asset of the `ml` group, scored against the naive forecast and
the SGD minute model on exactly the same minutes.

The SGD model of `minute_model` learns its own minutes on its own schedule, so its record does not
cover the minutes this model is scored on. To compare the two like with like, each version of the
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
from pricepipe_assets.defs.ml import (
    MINUTE_FEATURES_DATASET,
    MINUTE_LSTM_MODEL,
    PLOTTED_MINUTES,
    _baseline_check,
    _baseline_spec,
    _evaluation_metadata,
    _features_frame,
    _load_model,
    _symbols_in,
)
from pricepipe_assets.defs.resources.lake import LakeResource
from pricepipe_assets.defs.resources.model_rules import ModelRulesResource
from pricepipe_assets.storage import model_store

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
    check_specs=[_baseline_spec(MINUTE_LSTM_MODEL)],
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

    margin = model_rules.baseline_margin
    metadata: dict[str, Any] = {}
    ratios: dict[str, float] = {}
    refused: dict[str, str] = {}
    for symbol in _symbols_in(lake, MINUTE_FEATURES_DATASET):
        features = _features_frame(lake, MINUTE_FEATURES_DATASET, symbol)
        previous = _load_model(context, lake, MINUTE_LSTM_MODEL, symbol, refused).stored
        if previous is not None:
            model, companion, warmup = previous.model, previous.extra[SGD_COMPANION], 0
            features = features[features["open_time"] > model.trained_to]
        else:
            model = LstmMinuteModel(epochs=config.epochs, max_train_seconds=config.max_train_seconds)
            companion, warmup = MinuteModel(), config.warmup_minutes
        model.max_train_seconds = config.max_train_seconds
        learnable = int(features["target"].notna().sum())
        if learnable <= warmup + 10:
            metadata[f"{symbol}/skipped"] = f"{learnable} new minutes with a target; more than {warmup + 10} needed"
            continue
        trained_before, seconds_before = model.n_trained, model.train_seconds
        evaluation = evaluate_minute(model, features, warmup=warmup, batch=config.block_minutes)
        against = evaluate_minute(companion, features, warmup=warmup, batch=60)
        evaluation = dataclasses.replace(evaluation, metrics={**evaluation.metrics,
                                                              SGD_COMPANION: against.metrics["model"]})
        serve_baseline = not evaluation.better_than_baseline(margin)
        stored = model_store.StoredModel(
            MINUTE_LSTM_MODEL, symbol, model_store.new_version(), model, evaluation.metrics, serve_baseline,
            {"naive_half_width": naive_minute_half_width(evaluation, model.calibration_window),
             SGD_COMPANION: companion})
        path = model_store.save(lake, stored)
        ratios[symbol] = evaluation.mae_ratio
        metadata.update({**_evaluation_metadata(symbol, evaluation, serve_baseline, margin, PLOTTED_MINUTES),
                         f"{symbol}/sgd_mae_ratio_to_naive": round(against.mae_ratio, 4),
                         f"{symbol}/version": stored.version, f"{symbol}/file": path,
                         f"{symbol}/minutes_learned": model.n_learned,
                         f"{symbol}/minutes_fitted_now": model.n_trained - trained_before,
                         f"{symbol}/train_seconds": round(model.train_seconds - seconds_before, 1),
                         f"{symbol}/trained_to": utc_iso(model.trained_to)})
        context.log.info(f"{symbol}: learned {learnable} minutes, MAE ratio to naive {evaluation.mae_ratio:.4f} "
                         f"(SGD on the same minutes {against.mae_ratio:.4f})")
    return dg.MaterializeResult(metadata={**metadata, "params": dg.MetadataValue.json(LstmMinuteModel().params),
                                          "refused_files": dg.MetadataValue.json(refused)},
                                check_results=[_baseline_check(MINUTE_LSTM_MODEL, ratios, margin)])
