"""Spark rollups of real 1m candles and trades equal an independent pandas computation, in the lake's
curated zone and in Cassandra, even when the raw zone holds a candle or a trade twice."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pytest
from dagster_pyspark import LazyPySparkResource

from pricepipe_assets.defs.analytics import candles_daily, candles_hourly, moving_averages_daily, trade_stats_history
from pricepipe_assets.defs.lake import trade_row, write_chunks
from pricepipe_assets.defs.resources import CassandraResource, LakeResource
from pricepipe_assets.kafka.batches import Batch, Delivered, OffsetRange
from pricepipe_assets.sources.binance.dumps import BinanceDumps, Dataset
from pricepipe_assets.storage.lake_datasets import (
    CURATED_CANDLES,
    CURATED_MOVING_AVERAGES,
    CURATED_TRADE_STATS,
    RAW_TRADES,
)
from pricepipe_assets_tests.support.lake_fill import real_minutes, write_raw_candles

FIRST_DAY, LAST_DAY = dt.date(2024, 1, 1), dt.date(2024, 2, 4)
TRADE_DAY = dt.date(2026, 5, 8)
REPLAYED = 500


def _fill_raw_zone(lake: LakeResource, shared_data: Path, cache: Path) -> pd.DataFrame:
    """35 real days of BTCUSDT 1m candles into the raw zone, the first ``REPLAYED`` of them
    delivered twice (as a replayed source does); returns the distinct source."""
    candles = real_minutes(shared_data, cache, "BTCUSDT", FIRST_DAY, LAST_DAY)
    write_raw_candles(lake, [*candles, *candles[:REPLAYED]])
    return pd.DataFrame([c.to_dict() for c in candles])


def _pandas_rollup(source: pd.DataFrame, step_ms: int) -> pd.DataFrame:
    frame = source.sort_values("open_time").assign(start=source["open_time"] - source["open_time"] % step_ms)
    return frame.groupby("start").agg(open=("open", "first"), high=("high", "max"), low=("low", "min"),
                                      close=("close", "last"), volume=("volume", "sum"),
                                      quote_volume=("quote_volume", "sum"), trades=("trades", "sum"),
                                      minutes=("open_time", "size")).reset_index().rename(columns={"start": "open_time"})


@pytest.fixture
def rolled_up(spark: Any, spark_config: dict[str, str], local_lake: LakeResource, cassandra: CassandraResource,
              shared_data: Path, tmp_path: Path) -> tuple[pd.DataFrame, dg.ExecuteInProcessResult]:
    source = _fill_raw_zone(local_lake, shared_data, tmp_path / "cache")
    result = dg.materialize(
        [candles_hourly, candles_daily, moving_averages_daily],
        resources={"spark": LazyPySparkResource(spark_config=spark_config), "lake": local_lake, "cassandra": cassandra},
        instance=dg.DagsterInstance.ephemeral(),
    )
    return source, result


COLUMNS = ["open_time", "open", "high", "low", "close", "volume", "quote_volume", "trades", "minutes"]


def test_daily_and_hourly_rollups_equal_a_pandas_group_by_of_the_distinct_source(
        rolled_up: tuple[pd.DataFrame, dg.ExecuteInProcessResult], spark: Any, local_lake: LakeResource) -> None:
    source, result = rolled_up
    assert result.success
    for interval, step_ms, days in (("1d", 86_400_000, 35), ("1h", 3_600_000, 35 * 24)):
        curated = (spark.read.parquet(local_lake.spark_uri(CURATED_CANDLES, f"interval={interval}"))
                   .toPandas().sort_values("open_time").reset_index(drop=True))
        expected = _pandas_rollup(source, step_ms)
        assert len(curated) == days
        pd.testing.assert_frame_equal(curated[COLUMNS], expected[COLUMNS], check_dtype=False, rtol=1e-12)
        assert curated["is_complete"].all()
    metadata = result.asset_materializations_for_node("candles_daily")[0].metadata
    assert metadata["dagster/row_count"].value == 35
    assert metadata["first_time"].value == "2024-01-01T00:00:00+00:00"


def test_daily_candles_reach_cassandra_for_the_api(
        rolled_up: tuple[pd.DataFrame, dg.ExecuteInProcessResult], cassandra: CassandraResource) -> None:
    source, _ = rolled_up
    rows = pd.DataFrame(list(cassandra.session().execute(
        "SELECT open_time, open, high, low, close, volume, trades FROM candles "
        "WHERE symbol = 'BTCUSDT' AND interval = '1d' AND bucket = '2024-01-01'")))
    expected = _pandas_rollup(source, 86_400_000)
    assert len(rows) == 35
    assert rows["close"].tolist() == expected["close"].tolist()
    assert rows["volume"].tolist() == pytest.approx(expected["volume"].tolist(), rel=1e-12)


def test_moving_averages_are_trailing_and_only_where_the_window_is_full(
        rolled_up: tuple[pd.DataFrame, dg.ExecuteInProcessResult], spark: Any, local_lake: LakeResource,
        cassandra: CassandraResource) -> None:
    source, _ = rolled_up
    closes = _pandas_rollup(source, 86_400_000).set_index("open_time")["close"]
    curated = spark.read.parquet(local_lake.spark_uri(CURATED_MOVING_AVERAGES)).toPandas()
    for window in (7, 30):
        got = curated[curated["window"] == window].sort_values("open_time").set_index("open_time")["sma"]
        expected = closes.rolling(window).mean().dropna()
        assert len(got) == 35 - window + 1
        pd.testing.assert_series_equal(got, expected, check_names=False, rtol=1e-12)
    assert set(curated["window"]) == {7, 14, 30}
    stored = list(cassandra.session().execute(
        "SELECT day, sma FROM moving_averages WHERE symbol = 'BTCUSDT' AND window_days = 7 AND bucket = '2024-01-01'"))
    assert len(stored) == 29 and str(stored[0].day) == "2024-01-07"


def test_trade_aggregates_count_each_real_trade_once(spark: Any, spark_config: dict[str, str],
                                                     local_lake: LakeResource, shared_data: Path,
                                                     tmp_path: Path) -> None:
    dumps = BinanceDumps(tmp_path, (shared_data / "binance").as_uri())
    trades = list(dumps.records(Dataset.agg_trades("BTCUSD_PERP", "futures/cm"), TRADE_DAY, TRADE_DAY))
    delivered = [*trades, *trades[:REPLAYED]]
    batch = Batch([OffsetRange("trades", 0, 0, len(delivered))],
                  [Delivered("trades", 0, offset, trade) for offset, trade in enumerate(delivered)])
    write_chunks(local_lake, batch, RAW_TRADES, ["symbol", "date"], trade_row)
    result = dg.materialize([trade_stats_history], resources={"spark": LazyPySparkResource(spark_config=spark_config),
                                                              "lake": local_lake},
                            instance=dg.DagsterInstance.ephemeral())
    assert result.success

    source = pd.DataFrame([t.to_dict() for t in trades])
    source["hour"] = source["ts"] - source["ts"] % 3_600_000
    expected = source.groupby("hour").agg(trades=("trade_id", "size"), volume=("size", "sum"),
                                          high=("price", "max"), low=("price", "min"))
    stored = spark.read.parquet(local_lake.spark_uri(CURATED_TRADE_STATS)).toPandas()
    hourly = stored[stored["interval"] == "1h"].set_index("open_time").sort_index()
    assert len(hourly) == 24
    assert hourly["trades"].tolist() == expected["trades"].tolist()
    assert hourly["volume"].tolist() == pytest.approx(expected["volume"].tolist(), rel=1e-12)
    assert hourly["high"].tolist() == expected["high"].tolist()
    (daily,) = stored[stored["interval"] == "1d"].itertuples()
    assert daily.trades == len(trades) == 105_280
    buys = source.loc[source["side"] == "buy", "size"].sum()
    assert daily.buy_volume == pytest.approx(buys, rel=1e-12)
