"""Spark DataFrames over the lake: the raw zone's candles in, curated partitions out."""

from __future__ import annotations

from typing import Any

from pricepipe_assets.storage.lake import Lake
from pricepipe_assets.storage.lake_datasets import RAW_CANDLES
from pricepipe_assets.transforms.rollups import newest_delivery


class NoHistoryError(RuntimeError):
    """The lake holds nothing to roll up yet; the message says what to run first."""


def raw_candles(spark: Any, lake: Lake, interval: str = "1m") -> Any:
    """The newest delivery of every ``interval`` candle in the raw zone, as a Spark DataFrame (empty
    when none of that interval arrived: the daily and hourly topics carry only imported history)."""
    from pyspark.sql import functions as F

    if not lake.exists(RAW_CANDLES):
        raise NoHistoryError(f"no raw candles under {lake.path(RAW_CANDLES)} yet: materialize `candles_lake` "
                             "(its sensor does so once candles reach Kafka) or backfill `binance_history`")
    raw = spark.read.parquet(lake.spark_uri(RAW_CANDLES)).filter(F.col("interval") == interval)
    return newest_delivery(raw, ["symbol", "open_time"])


def write_curated(frame: Any, lake: Lake, dataset: str, partition_cols: list[str]) -> None:
    """Replace the curated partitions present in ``frame``, leaving the others alone."""
    (frame.write.mode("overwrite").option("partitionOverwriteMode", "dynamic")
     .partitionBy(*partition_cols).parquet(lake.spark_uri(dataset)))
