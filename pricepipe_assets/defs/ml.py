"""Features, models and their predictions: the `ml` group.

Features are computed by Spark over the whole lake; models are trained per symbol with
scikit-learn, scored walk-forward against the naive baseline on data they were not trained on,
and saved as versioned files in the lake. Forecasts are published to Kafka's `predictions` topic,
from where `predictions_live` stores them in Cassandra. A model that loses to the baseline by more
than ``PRICEPIPE_MODEL_BASELINE_MARGIN`` fails its check, and its forecasts are made by the
baseline instead, saying so in their model name.
"""

# No `from __future__ import annotations` here: Dagster reads the context annotation at definition time.
from typing import TYPE_CHECKING, Any

import dagster as dg
import numpy as np
from dagster import AssetExecutionContext
from dagster_pyspark import LazyPySparkResource
from pydantic import Field

from pricepipe_assets.contract.records import INTERVAL_MS, Prediction
from pricepipe_assets.contract.utc import utc_iso
from pricepipe_assets.defs.metadata import Materialized, time_range_metadata
from pricepipe_assets.defs.resources.kafka import KafkaResource
from pricepipe_assets.defs.resources.lake import LakeResource
from pricepipe_assets.defs.resources.model_rules import ModelRulesResource
from pricepipe_assets.storage import model_store
from pricepipe_assets.storage.lake_datasets import CURATED_CANDLES
from pricepipe_assets.transforms.lake_frames import raw_candles, write_curated

if TYPE_CHECKING:
    from pricepipe_assets.forecasting.evaluation import Evaluation

MINUTE_FEATURES_DATASET = "features/minute"
DAILY_FEATURES_DATASET = "features/daily"
MINUTE_MODEL = "minute_model"
MINUTE_LSTM_MODEL = "minute_lstm_model"
DAILY_MODEL = "daily_model"
NAIVE = "naive"
PLOTTED_MINUTES = 240
def _features_frame(lake: LakeResource, dataset: str, symbol: str) -> Any:
    """One symbol's features from the lake, in time order (pyarrow: no JVM for training)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    table = lake.read_dataset(dataset, partitioning=pa.schema([("symbol", pa.string())]),
                              filter=pc.field("symbol") == symbol)
    return table.to_pandas().sort_values("open_time", kind="stable").reset_index(drop=True)


def _symbols_in(lake: LakeResource, dataset: str) -> list[str]:
    if not lake.exists(dataset):
        raise FileNotFoundError(f"lake dataset {dataset!r} does not exist yet: materialize its asset first")
    return [name.removeprefix("symbol=") for name in lake.list_folders(dataset) if name.startswith("symbol=")]


def _load_model(context: AssetExecutionContext, lake: LakeResource, name: str, symbol: str,
                refused: dict[str, str]) -> model_store.Latest:
    """The newest model version that loads safely. Each newer file refused (a pickle of an earlier
    pricepipe, a tampered or planted file) is logged as a warning and added to ``refused`` for the
    asset's metadata, so serving an older version or the baseline is never a silent fallback."""
    latest = model_store.load_latest(lake, name, symbol)
    for path, reason in latest.refused.items():
        context.log.warning(f"{symbol}: model file {path} refused, {reason}")
    refused.update(latest.refused)
    return latest


def _metrics_table(metrics: dict[str, dict[str, float]]) -> str:
    """Model and baseline side by side, as markdown for the UI."""
    names = list(next(iter(metrics.values())))
    lines = ["| | " + " | ".join(names) + " |", "| --- |" + " --- |" * len(names)]
    for who, values in metrics.items():
        lines.append(f"| {who} | " + " | ".join(f"{values[n]:.6g}" for n in names) + " |")
    return "\n".join(lines)


def _evaluation_metadata(symbol: str, evaluation: "Evaluation", serve_baseline: bool, margin: float,
                         plot_last: int | None) -> dict[str, Any]:
    from pricepipe_assets.forecasting.plots import forecast_png, markdown_image

    title = f"{symbol}: walk-forward forecasts"
    png = forecast_png(evaluation.frame, title=title, level=evaluation.level, last=plot_last)

    return {
        f"{symbol}/metrics": dg.MetadataValue.md(_metrics_table(evaluation.metrics)),
        f"{symbol}/mae_ratio_to_naive": round(evaluation.mae_ratio, 4),
        f"{symbol}/interval_coverage": round(evaluation.metrics["model"]["interval_coverage"], 4),
        f"{symbol}/interval_score": round(evaluation.metrics["model"]["interval_score"], 4),
        f"{symbol}/interval_method": evaluation.interval_method,
        f"{symbol}/evaluated": f"{evaluation.n_predictions} forecasts, {utc_iso(evaluation.evaluated_from)} → "
                               f"{utc_iso(evaluation.evaluated_to)}",
        f"{symbol}/serves": f"{NAIVE} (model worse than the baseline by more than {margin:.0%})" if serve_baseline
                            else "model",
        f"{symbol}/plot": dg.MetadataValue.md(markdown_image(png, title)),
    }


def _baseline_check(asset: str, verdicts: dict[str, float], margin: float) -> dg.AssetCheckResult:
    worse = {symbol: ratio for symbol, ratio in verdicts.items() if ratio > 1 + margin}
    return dg.AssetCheckResult(
        check_name="not_worse_than_baseline", asset_key=asset, passed=not worse,
        metadata={"mae_ratio_to_naive": dg.MetadataValue.json({s: round(r, 4) for s, r in verdicts.items()}),
                  "margin": margin,
                  "falls_back_to_naive": dg.MetadataValue.json(sorted(worse))})


def _baseline_spec(asset: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec("not_worse_than_baseline", asset=asset, description=(
        "The model's walk-forward MAE is at most the naive forecast's times (1 + PRICEPIPE_MODEL_BASELINE_MARGIN); "
        "for symbols where it is not, forecasts are made by the naive baseline."))


@dg.asset(
    group_name="ml",
    kinds={"spark", "parquet"},
    deps=["candles_lake"],
    description="Next-minute model features per 1m candle (returns over 1–15 minutes, lagged returns, 15/60-minute "
    "volatility, range, volume ratio, trade-count change; target: the next minute's log return), computed by "
    "Spark from the lake's raw candles into `features/minute/`.",
)
def minute_features(context: AssetExecutionContext, spark: LazyPySparkResource,
                    lake: LakeResource) -> Materialized:
    from pricepipe_assets.forecasting.features import minute_features as build

    features = build(raw_candles(spark.spark_session, lake))
    return dg.MaterializeResult(metadata=_write_features(spark, lake, features, MINUTE_FEATURES_DATASET))


def _write_features(spark: LazyPySparkResource, lake: LakeResource, features: Any, dataset: str) -> dict[str, Any]:
    """Write the features and describe the whole dataset. A history shorter than the features'
    warm-up gives no row at all, which is no failure: the models then wait, and the forecast
    falls back to the naive one. Emptiness is read off the lake (no symbol folder), so the
    features are not computed a second time to find out."""
    write_curated(features, lake, dataset, ["symbol"])
    if not _symbols_in(lake, dataset):
        return {"dagster/row_count": 0, "dataset": lake.path(dataset),
                "note": "no feature row yet: the history is shorter than the features' warm-up"}
    frame = spark.spark_session.read.parquet(lake.spark_uri(dataset)).select("symbol", "open_time").toPandas()
    return {**time_range_metadata(frame), "dataset": lake.path(dataset)}


@dg.asset(
    group_name="ml",
    kinds={"spark", "parquet"},
    deps=["candles_daily"],
    description="Daily model features per closed daily candle (returns over 1–30 days, 7/30-day volatility, distance "
    "to the 7/30-day averages, range, volume ratio; targets: log returns 1 to 15 days ahead), computed by Spark "
    "from the curated daily candles into `features/daily/`. The still-open current day is left out.",
)
def daily_features(context: AssetExecutionContext, spark: LazyPySparkResource,
                   lake: LakeResource) -> Materialized:
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from pricepipe_assets.forecasting.features import daily_features as build

    daily = spark.spark_session.read.parquet(lake.spark_uri(CURATED_CANDLES, "interval=1d"))
    newest = F.max("open_time").over(Window.partitionBy("symbol"))
    closed = (daily.withColumn("_newest", newest)
              .where(F.col("is_complete") | (F.col("open_time") < F.col("_newest"))).drop("_newest"))
    features = build(closed)
    return dg.MaterializeResult(metadata=_write_features(spark, lake, features, DAILY_FEATURES_DATASET))


class MinuteModelConfig(dg.Config):
    warmup_minutes: int = Field(default=1440, description="Minutes a new model learns before its forecasts are scored.")
    batch: int = Field(default=60, description="Minutes forecast, then learned, per update: each is forecast by the "
                       "model as of its block's start, never trained on it (1: strict prequential learning, ~60x slower).")


@dg.asset(
    group_name="ml",
    kinds={"scikitlearn"},
    deps=["minute_features"],
    check_specs=[_baseline_spec("minute_model")],
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

    margin = model_rules.baseline_margin
    metadata: dict[str, Any] = {}
    ratios: dict[str, float] = {}
    refused: dict[str, str] = {}
    for symbol in _symbols_in(lake, MINUTE_FEATURES_DATASET):
        features = _features_frame(lake, MINUTE_FEATURES_DATASET, symbol)
        previous = _load_model(context, lake, MINUTE_MODEL, symbol, refused).stored
        model: MinuteModel
        model, warmup = (previous.model, 0) if previous else (MinuteModel(), config.warmup_minutes)
        if previous is not None:
            features = features[features["open_time"] > model.trained_to]
        learnable = int(features["target"].notna().sum())
        if learnable <= warmup + 10:
            metadata[f"{symbol}/skipped"] = f"{learnable} new minutes with a target; more than {warmup + 10} needed"
            continue
        evaluation = evaluate_minute(model, features, warmup=warmup, batch=config.batch)
        serve_baseline = not evaluation.better_than_baseline(margin)
        stored = model_store.StoredModel(
            MINUTE_MODEL, symbol, model_store.new_version(), model, evaluation.metrics, serve_baseline,
            {"naive_half_width": naive_minute_half_width(evaluation, model.calibration_window)})
        path = model_store.save(lake, stored)
        ratios[symbol] = evaluation.mae_ratio
        assert model.trained_to is not None  # the model has learned the minutes it was evaluated on
        metadata.update({**_evaluation_metadata(symbol, evaluation, serve_baseline, margin, PLOTTED_MINUTES),
                         f"{symbol}/version": stored.version, f"{symbol}/file": path,
                         f"{symbol}/minutes_learned": model.n_learned,
                         f"{symbol}/trained_to": utc_iso(model.trained_to)})
        context.log.info(f"{symbol}: learned {learnable} minutes, MAE ratio to naive {evaluation.mae_ratio:.4f}")
    return dg.MaterializeResult(metadata={**metadata, "params": dg.MetadataValue.json(MinuteModel().params),
                                          "refused_files": dg.MetadataValue.json(refused)},
                                check_results=[_baseline_check("minute_model", ratios, margin)])


class DailyModelConfig(dg.Config):
    min_train_days: int | None = Field(default=None, description="Days of complete history before the first "
                                       "walk-forward origin; empty: the `model_rules` resource's.")
    origins: int = Field(default=40, description="Walk-forward origins (each a 15-day forecast scored on what followed).")
    step_days: int = Field(default=15, description="Days between two origins.")


@dg.asset(
    group_name="ml",
    kinds={"scikitlearn"},
    deps=["daily_features"],
    check_specs=[_baseline_spec("daily_model")],
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

    margin = model_rules.baseline_margin
    metadata: dict[str, Any] = {}
    ratios: dict[str, float] = {}
    for symbol in _symbols_in(lake, DAILY_FEATURES_DATASET):
        features = _features_frame(lake, DAILY_FEATURES_DATASET, symbol)
        try:
            evaluation = evaluate_daily(DailyModel(), features, n_origins=config.origins, step=config.step_days,
                                        min_train=config.min_train_days or model_rules.daily_min_train_days)
        except ValueError as error:
            metadata[f"{symbol}/skipped"] = f"{len(features)} days of features: {error}"
            continue
        model = DailyModel().fit(features).calibrate(evaluation)
        serve_baseline = not evaluation.better_than_baseline(margin)
        stored = model_store.StoredModel(DAILY_MODEL, symbol, model_store.new_version(), model, evaluation.metrics,
                                         serve_baseline, {"naive_half_widths": naive_daily_half_widths(evaluation),
                                                          "origins": len(evaluation.origins)})
        path = model_store.save(lake, stored)
        ratios[symbol] = evaluation.mae_ratio
        assert model.trained_from is not None and model.trained_to is not None  # set by fit
        metadata.update({**_evaluation_metadata(symbol, evaluation, serve_baseline, margin, None),
                         f"{symbol}/version": stored.version, f"{symbol}/file": path,
                         f"{symbol}/training_days": model.n_train,
                         f"{symbol}/served_weight": round(evaluation.serving_weight, 4),
                         f"{symbol}/trained": f"{utc_iso(model.trained_from)} → {utc_iso(model.trained_to)}"})
        context.log.info(f"{symbol}: {len(evaluation.origins)} origins, MAE ratio to naive {evaluation.mae_ratio:.4f}")
    return dg.MaterializeResult(metadata={**metadata, "params": dg.MetadataValue.json(DailyModel().params),
                                          "origins": config.origins, "step_days": config.step_days},
                                check_results=[_baseline_check("daily_model", ratios, margin)])


def _publish(kafka: KafkaResource, predictions: list[Prediction]) -> None:
    publisher = kafka.publisher()
    for prediction in predictions:
        publisher.publish(prediction)
    publisher.flush()


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
        latest = _load_model(context, lake, DAILY_MODEL, symbol, refused)
        stored = latest.stored
        last = candles.iloc[-1]
        if stored is not None and not stored.serve_baseline:
            name, version, reason = stored.model.name, stored.version, None
            forecast = stored.model.forecast(_features_frame(lake, DAILY_FEATURES_DATASET, symbol))
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
    _publish(kafka, published)
    return dg.MaterializeResult(metadata={**metadata, "dagster/row_count": len(published),
                                          "topic": kafka.topic("predictions"),
                                          "refused_files": dg.MetadataValue.json(refused)})


def _lost_reason(stored: model_store.StoredModel) -> str:
    """What the daily model scored against the naive forecast it lost to, as served with the fallback."""
    ratio = stored.metrics["model"]["mae"] / stored.metrics["naive"]["mae"]
    origins = stored.extra.get("origins")
    over = f"over {origins} walk-forward origins" if origins else "in walk-forward scoring"
    return f"{stored.model.name} MAE {ratio:.2f} × naive {over}"
