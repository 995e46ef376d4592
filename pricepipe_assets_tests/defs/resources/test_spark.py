"""Spark reads what the lake resource wrote, from the local filesystem and from real HDFS."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pyarrow as pa

from pricepipe_assets.defs.resources import LakeResource


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
