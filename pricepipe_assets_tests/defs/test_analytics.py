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

from pricepipe_assets.contract.records import Candle
from pricepipe_assets.defs.analytics import candles_daily, candles_hourly, moving_averages_daily, trade_stats_history
from pricepipe_assets.defs.resources import CassandraResource, LakeResource
from pricepipe_assets.sources.binance.dumps import BinanceDumps, Dataset
from pricepipe_assets.storage.lake_datasets import (
    CURATED_CANDLES,
    CURATED_MOVING_AVERAGES,
    CURATED_TRADE_STATS,
)
from pricepipe_assets_tests.support.lake_fill import real_minutes, write_raw_candles, write_raw_trades

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


DAY_MS = 86_400_000


def _venue_days(shared_data: Path, first: dt.date, last: dt.date) -> list[Candle]:
    """Binance's own daily BTCUSDT candles of [first, last], from the real daily history file."""
    frame = pd.read_csv(shared_data / "daily_candles" / "yanniedog_spot_BTCUSDT_1d.csv")
    frame = frame[(frame["timestamp"] >= first.isoformat()) & (frame["timestamp"] <= last.isoformat())]
    candles = []
    for row in frame.itertuples():
        open_time = int(dt.datetime.fromisoformat(row.timestamp).replace(tzinfo=dt.UTC).timestamp() * 1000)
        candles.append(Candle(exchange="binance", symbol="BTCUSDT", interval="1d", open_time=open_time,
                              close_time=open_time + DAY_MS - 1, open=row.open, high=row.high, low=row.low,
                              close=row.close, volume=row.volume, quote_volume=0.0, trades=0, is_closed=True))
    return candles


def test_daily_candles_take_the_venues_own_for_days_the_lake_lacks_minutes_of_and_count_each_day_once(
        spark: Any, spark_config: dict[str, str], local_lake: LakeResource, cassandra: CassandraResource,
        shared_data: Path, tmp_path: Path) -> None:
    minutes = real_minutes(shared_data, tmp_path / "cache", "BTCUSDT", dt.date(2024, 1, 1), dt.date(2024, 1, 5))
    outage = (dt.datetime(2024, 1, 3, 10, tzinfo=dt.UTC).timestamp() * 1000,
              dt.datetime(2024, 1, 3, 12, tzinfo=dt.UTC).timestamp() * 1000)
    write_raw_candles(local_lake, [c for c in minutes if not outage[0] <= c.open_time < outage[1]])
    venue = _venue_days(shared_data, dt.date(2023, 12, 1), dt.date(2024, 1, 4))
    write_raw_candles(local_lake, venue)

    result = dg.materialize([candles_daily], resources={
        "spark": LazyPySparkResource(spark_config=spark_config), "lake": local_lake, "cassandra": cassandra},
        instance=dg.DagsterInstance.ephemeral())

    assert result.success
    days = (spark.read.parquet(local_lake.spark_uri(CURATED_CANDLES, "interval=1d"))
            .toPandas().sort_values("open_time").reset_index(drop=True))
    assert len(days) == 31 + 5 and days["open_time"].is_unique
    by_day = days.set_index(pd.to_datetime(days["open_time"], unit="ms").dt.date)
    from_venue = {c.open_time: c for c in venue}
    for day in pd.date_range("2023-12-01", "2023-12-31").date:  # before the 1m history: the venue's candles
        row = by_day.loc[day]
        assert pd.isna(row["minutes"]) and row["close"] == from_venue[row["open_time"]].close
    outage_day = by_day.loc[dt.date(2024, 1, 3)]  # 120 minutes missing: the venue's candle, which saw them
    assert pd.isna(outage_day["minutes"]) and outage_day["volume"] == from_venue[outage_day["open_time"]].volume
    for day in (dt.date(2024, 1, 1), dt.date(2024, 1, 2), dt.date(2024, 1, 4), dt.date(2024, 1, 5)):
        assert by_day.loc[day, "minutes"] == 1440  # every minute in the lake: the rollup
    assert days["is_complete"].all()
    metadata = result.asset_materializations_for_node("candles_daily")[0].metadata
    assert metadata["first_time"].value == "2023-12-01T00:00:00+00:00"


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
    write_raw_trades(local_lake, [*trades, *trades[:REPLAYED]])
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
