"""The daily model and the 15-day forecast it serves: retrained on all the daily history each
analytics run, and published to `predictions` for `/forecast`, by the model or by the naive
baseline where the model lost to it or the history is too short to train one."""

# No `from __future__ import annotations` here: Dagster reads the context annotation at definition time.
from typing import Any

import dagster as dg
import numpy as np
from dagster import AssetExecutionContext
from pydantic import Field

from pricepipe_assets.contract.records import INTERVAL_MS
from pricepipe_assets.contract.utc import utc_iso
from pricepipe_assets.defs.metadata import Materialized
from pricepipe_assets.defs.ml.training import (
    DAILY_FEATURES_DATASET,
    DAILY_MODEL,
    NAIVE,
    Trained,
    baseline_spec,
    features_frame,
    load_model,
    publish,
    train_per_symbol,
)
from pricepipe_assets.defs.resources.kafka import KafkaResource
from pricepipe_assets.defs.resources.lake import LakeResource
from pricepipe_assets.defs.resources.model_rules import ModelRulesResource
from pricepipe_assets.storage import model_store
from pricepipe_assets.storage.lake_datasets import CURATED_CANDLES


class DailyModelConfig(dg.Config):
    min_train_days: int | None = Field(default=None, description="Days of complete history before the first "
                                       "walk-forward origin; empty: the `model_rules` resource's.")
    origins: int = Field(default=40, description="Walk-forward origins (each a 15-day forecast scored on what followed).")
    step_days: int = Field(default=15, description="Days between two origins.")


@dg.asset(
    group_name="ml",
    kinds={"scikitlearn"},
    deps=["daily_features"],
    check_specs=[baseline_spec(DAILY_MODEL)],
    description="15-day model per symbol (`RandomForestRegressor`, one output per day ahead), scored walk-forward from "
    "expanding windows against the naive forecast on the same origins (MAE, RMSE, MAPE, directional accuracy, "
    "interval coverage, interval score), then refitted on all history. The served forecast is the model's move "
    "weighted by what its walk-forward record earned over the naive one (0: the naive forecast), with intervals from "
    "every earlier 15-day move scaled by the current volatility. Saved as `models/daily_model/symbol=.../<version>.skops`.",
)
def daily_model(context: AssetExecutionContext, config: DailyModelConfig, lake: LakeResource,
                model_rules: ModelRulesResource) -> Materialized:
    from pricepipe_assets.forecasting.models import DailyModel
    from pricepipe_assets.forecasting.serving import naive_daily_half_widths
    from pricepipe_assets.forecasting.walk_forward import evaluate_daily

    def fit(symbol: str, features: Any, previous: model_store.StoredModel | None) -> Trained | str:
        try:
            evaluation = evaluate_daily(DailyModel(), features, n_origins=config.origins, step=config.step_days,
                                        min_train=config.min_train_days or model_rules.daily_min_train_days)
        except ValueError as error:
            return f"{len(features)} days of features: {error}"
        model = DailyModel().fit(features).calibrate(evaluation)
        assert model.trained_from is not None and model.trained_to is not None  # set by fit
        return Trained(model, evaluation,
                       {"naive_half_widths": naive_daily_half_widths(evaluation), "origins": len(evaluation.origins)},
                       {"training_days": model.n_train, "served_weight": round(evaluation.serving_weight, 4),
                        "trained": f"{utc_iso(model.trained_from)} → {utc_iso(model.trained_to)}"},
                       f"{len(evaluation.origins)} origins")

    # Refitted on all history every run: a forest does not learn incrementally.
    metadata, check = train_per_symbol(context, lake, model_rules.baseline_margin, DAILY_MODEL, DAILY_FEATURES_DATASET,
                                       fit, warm_start=False, plot_last=None)
    return dg.MaterializeResult(metadata={**metadata, "params": dg.MetadataValue.json(DailyModel().params),
                                          "origins": config.origins, "step_days": config.step_days},
                                check_results=[check])


def _closed_daily_candles(lake: LakeResource) -> Any:
    """Every symbol's closed daily candles from the curated zone (the still-open current day left out)."""
    import pyarrow as pa

    frame = lake.read_dataset(CURATED_CANDLES, partitioning=pa.schema([("interval", pa.string()), ("symbol", pa.string())]),
                              columns=["symbol", "interval", "open_time", "close", "is_complete"]).to_pandas()
    frame = frame[frame["interval"] == "1d"].sort_values(["symbol", "open_time"])
    newest = frame.groupby("symbol")["open_time"].transform("max")
    return frame[frame["is_complete"] | (frame["open_time"] < newest)].reset_index(drop=True)


@dg.asset(
    group_name="ml",
    kinds={"kafka"},
    deps=["daily_model", "daily_features", "candles_daily"],
    description="The 15-day forecast per symbol with its 90 % prediction interval, published to the `predictions` "
    "topic (horizon `1d`) for `predictions_live` to store for `/forecast`. Made by the newest daily model, or by "
    "the naive baseline where the model lost to it or where the history is still too short to train one (its "
    "interval then comes from the history's own 1–15-day moves); `served_by` says which and why.",
)
def daily_forecast(context: AssetExecutionContext, lake: LakeResource, kafka: KafkaResource,
                   model_rules: ModelRulesResource) -> Materialized:
    from pricepipe_assets.contract.forecasts import FORECAST_LEVEL, HORIZON_DAYS, INTERVAL_METHODS
    from pricepipe_assets.forecasting.serving import naive_forecast, naive_half_widths_from_closes, to_predictions

    published = []
    metadata: dict[str, Any] = {}
    refused: dict[str, str] = {}
    for symbol, candles in _closed_daily_candles(lake).groupby("symbol"):
        latest = load_model(context, lake, DAILY_MODEL, symbol, refused)
        stored = latest.stored
        last = candles.iloc[-1]
        if stored is not None and not stored.serve_baseline:
            name, version, reason = stored.model.name, stored.version, None
            forecast = stored.model.forecast(features_frame(lake, DAILY_FEATURES_DATASET, symbol))
        else:
            widths = (stored.extra["naive_half_widths"] if stored is not None
                      else naive_half_widths_from_closes(candles["close"].to_numpy(), FORECAST_LEVEL, HORIZON_DAYS))
            if not np.all(np.isfinite(widths)):
                metadata[f"{symbol}/skipped"] = f"{len(candles)} closed days: too few to calibrate an interval"
                continue
            name, version = NAIVE, stored.version if stored is not None else "history"
            reason = (_lost_reason(stored) if stored is not None else
                      f"no daily model loaded: {len(latest.refused)} model file(s) refused as unsafe or unreadable"
                      if latest.refused else
                      f"no daily model yet: {len(candles)} closed days of history, and it trains from "
                      f"{model_rules.daily_min_train_days} days before its first walk-forward origin")
            forecast = naive_forecast(last, "1d", widths)
        made_at = int(last["open_time"]) + INTERVAL_MS["1d"]
        published += to_predictions(forecast, str(symbol), name, version, "1d", made_at, reason)
        table = forecast.assign(day=[utc_iso(t)[:10] for t in forecast["target_time"]])[["day", "predicted", "lower", "upper"]]
        metadata[f"{symbol}/forecast"] = dg.MetadataValue.md(table.to_markdown(index=False, floatfmt=".2f"))
        metadata[f"{symbol}/served_by"] = f"{name} (version {version})" + (f": {reason}" if reason else "")
        metadata[f"{symbol}/interval_method"] = INTERVAL_METHODS[name]
    publish(kafka, published)
    return dg.MaterializeResult(metadata={**metadata, "dagster/row_count": len(published),
                                          "topic": kafka.topic("predictions"),
                                          "refused_files": dg.MetadataValue.json(refused)})


def _lost_reason(stored: model_store.StoredModel) -> str:
    """What the daily model scored against the naive forecast it lost to, as served with the fallback."""
    ratio = stored.metrics["model"]["mae"] / stored.metrics["naive"]["mae"]
    origins = stored.extra.get("origins")
    over = f"over {origins} walk-forward origins" if origins else "in walk-forward scoring"
    return f"{stored.model.name} MAE {ratio:.2f} × naive {over}"
