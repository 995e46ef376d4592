"""Spark reads what the lake resource wrote, from the local filesystem and from real HDFS, and a
run's Spark opens nothing to the network."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pyarrow as pa

from pricepipe_assets.defs.resources import LakeResource
from pricepipe_assets.defs.resources.spark import spark_config
from pricepipe_assets.settings import Settings


def test_spark_reads_hive_partitioned_parquet_written_by_the_lake(lake: LakeResource, spark: Any) -> None:
    table = pa.table({
        "symbol": ["BTCUSDT"] * 3 + ["ETHUSDT"] * 2,
        "date": ["2024-01-01", "2024-01-01", "2024-01-02", "2024-01-01", "2024-01-01"],
        "open_time": pa.array([1, 2, 3, 1, 2], pa.int64()),
        "volume": [1.5, 2.5, 3.0, 10.0, 20.0],
    })
    lake.write_dataset(table, "raw/candles", ["symbol", "date"], basename="part")

    frame = spark.read.parquet(lake.spark_uri("raw/candles"))
    totals = {row["symbol"]: (row["rows"], row["volume"]) for row in
              frame.groupBy("symbol").agg({"volume": "sum", "*": "count"})
              .withColumnsRenamed({"sum(volume)": "volume", "count(1)": "rows"}).collect()}
    assert totals == {"BTCUSDT": (3, 7.0), "ETHUSDT": (2, 30.0)}
    dates = sorted(r["date"] for r in frame.select("date").distinct().collect())
    assert dates == [dt.date(2024, 1, 1), dt.date(2024, 1, 2)]  # Spark types the Hive partition values


def test_a_run_s_spark_session_has_no_web_ui_and_its_local_driver_listens_on_loopback(spark: Any) -> None:
    assert spark.sparkContext.uiWebUrl is None
    assert spark.conf.get("spark.ui.enabled") == "false"
    assert spark.conf.get("spark.driver.bindAddress") == "127.0.0.1"
    assert spark.conf.get("spark.driver.host") == "127.0.0.1"


def test_a_driver_for_a_spark_cluster_has_no_ui_but_keeps_an_address_the_executors_can_reach() -> None:
    config = spark_config(Settings.from_env({"PRICEPIPE_SPARK_MASTER": "spark://spark-master:7077"}))
    assert config["spark.ui.enabled"] == "false"
    assert "spark.driver.bindAddress" not in config and "spark.driver.host" not in config
