"""The models' features, computed by Spark over the whole lake into `features/minute/` and
`features/daily/`, where training reads them per symbol without a JVM."""

# No `from __future__ import annotations` here: Dagster reads the context annotation at definition time.
from typing import Any

import dagster as dg
from dagster import AssetExecutionContext
from dagster_pyspark import LazyPySparkResource

from pricepipe_assets.defs.metadata import Materialized, time_range_metadata
from pricepipe_assets.defs.ml.training import DAILY_FEATURES_DATASET, MINUTE_FEATURES_DATASET, symbols_in
from pricepipe_assets.defs.resources.lake import LakeResource
from pricepipe_assets.storage.lake_datasets import CURATED_CANDLES
from pricepipe_assets.transforms.lake_frames import raw_candles, write_curated


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
    if not symbols_in(lake, dataset):
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
