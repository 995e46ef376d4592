"""Spark rollups of the lake's history: hourly and daily candles, moving averages, trade aggregates.

Each asset recomputes its dataset from the raw zone (de-duplicated, see ``rollups``) and
overwrites the curated zone's partitions it produced, so a rerun converges on the same files.
What the API reads (hourly and daily candles, moving averages) is upserted into Cassandra too,
as far back as Cassandra's aggregates window reaches (``PRICEPIPE_HOT_DAYS_AGGREGATES``).

`analytics_job` runs this group and the `ml` group's training together, launched by
`analytics_sensor` when the lake holds a new day and by `analytics_schedule` on the clock.
"""

# No `from __future__ import annotations` here: Dagster reads the context annotation at definition time.
import datetime as dt
import math
from typing import TYPE_CHECKING, Any

import dagster as dg
from dagster import AssetExecutionContext
from dagster_pyspark import LazyPySparkResource

from pricepipe_assets.contract.utc import utc_iso
from pricepipe_assets.defs.lake.jobs import TOPIC_FOLLOWERS
from pricepipe_assets.defs.metadata import Materialized, time_range_metadata
from pricepipe_assets.defs.resources.cassandra import CassandraResource
from pricepipe_assets.defs.resources.lake import LakeResource
from pricepipe_assets.defs.run_queue import BATCH_LANE, has_active_run
from pricepipe_assets.settings import Settings
from pricepipe_assets.storage.archive import newest_expired_day
from pricepipe_assets.storage.cassandra_schema import MOVING_AVERAGE_WINDOWS, candle_bucket
from pricepipe_assets.storage.clock import symbol_clocks
from pricepipe_assets.storage.compaction import date_folders
from pricepipe_assets.storage.lake_datasets import (
    CURATED_CANDLES,
    CURATED_MOVING_AVERAGES,
    CURATED_TRADE_STATS,
    RAW_CANDLES,
    RAW_TRADES,
)
from pricepipe_assets.storage.live_tables import UPSERT_CANDLE, UPSERT_MOVING_AVERAGE
from pricepipe_assets.transforms.lake_frames import NoHistoryError, raw_candles, write_curated
from pricepipe_assets.transforms.rollups import moving_averages, rollup_candles, trade_aggregates, with_venue_candles

if TYPE_CHECKING:
    import pandas as pd


def _time(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC)


def hot_only(frame: Any, cassandra: CassandraResource) -> Any:
    """The rows of a full recompute still inside Cassandra's aggregates window by their symbol's
    clock: retention has archived and deleted the older ones, and writing them again would bring
    them back. Symbols without a clock keep every row."""
    clocks, hot_days = symbol_clocks(cassandra), cassandra.hot_window(aggregate=True)
    if not clocks or frame.empty:
        return frame
    first_hot = {symbol: (dt.datetime.combine(newest_expired_day(now, hot_days), dt.time(), dt.UTC)
                          + dt.timedelta(days=1)).timestamp() * 1000 for symbol, now in clocks.items()}
    return frame[frame["open_time"] >= frame["symbol"].map(first_hot).fillna(0)]


def _behind(minutes: float) -> str:
    """What a candle was made of: its count of 1m candles, or none for the venue's own (null minutes)."""
    return "the venue's candle" if math.isnan(minutes) else f"{int(minutes)} min"


def _candles_asset(interval: str, name: str, description: str) -> dg.AssetsDefinition:
    @dg.asset(name=name, group_name="analytics", kinds={"spark", "parquet", "cassandra"},
              deps=["candles_lake", "cassandra_schema"], description=description)
    def _rollup(context: AssetExecutionContext, spark: LazyPySparkResource, lake: LakeResource,
                cassandra: CassandraResource) -> Materialized:
        session = spark.spark_session
        candles = with_venue_candles(rollup_candles(raw_candles(session, lake), interval),
                                     raw_candles(session, lake, interval))
        write_curated(candles, lake, CURATED_CANDLES, ["interval", "symbol"])
        collected: pd.DataFrame = candles.drop("date").toPandas()
        frame = collected.sort_values(["symbol", "open_time"])
        rows = [(r.symbol, interval, candle_bucket(interval, r.open_time), _time(r.open_time), _time(r.close_time),
                 r.exchange, r.open, r.high, r.low, r.close, r.volume, r.quote_volume, int(r.trades))
                for r in hot_only(frame, cassandra).itertuples()]
        cassandra.write_all(UPSERT_CANDLE, rows)
        incomplete = frame[~frame["is_complete"]]
        context.log.info(f"{len(frame)} {interval} candles, {len(incomplete)} of them incomplete")
        return dg.MaterializeResult(metadata={
            **time_range_metadata(frame),
            "incomplete_candles": len(incomplete),
            "incomplete_open_times": dg.MetadataValue.json(
                [f"{r.symbol} {utc_iso(r.open_time)} ({_behind(r.minutes)})" for r in incomplete.head(20).itertuples()]),
            "dataset": lake.path(CURATED_CANDLES, f"interval={interval}"),
        })

    return _rollup


candles_hourly = _candles_asset(
    "1h", "candles_hourly",
    "Hourly candles per symbol rolled up with Spark from the lake's raw 1m candles (each candle's newest "
    "delivery), where an hour lacks minutes the venue's own hourly candle from `candles.1h` if one arrived: "
    "curated zone `curated/candles/interval=1h/` and Cassandra's `candles` table for the API. "
    "`minutes`/`is_complete` mark hours with missing 1m candles.")

candles_daily = _candles_asset(
    "1d", "candles_daily",
    "Daily candles per symbol rolled up with Spark from the lake's raw 1m candles, and the venue's own daily "
    "candles from `candles.1d` (imported or backfilled history) for days whose minutes the lake does not all hold, "
    "each day once: curated zone "
    "`curated/candles/interval=1d/` and Cassandra's `candles` table. The daily model and the moving averages "
    "start here; `is_complete` is false for the current day and for days with exchange outages.")


@dg.asset(
    group_name="analytics",
    kinds={"spark", "parquet", "cassandra"},
    deps=["candles_daily"],
    description="Trailing N-day simple moving averages of daily close (N = "
    f"{', '.join(str(w) for w in MOVING_AVERAGE_WINDOWS)}) for every day with N days of history: "
    "`curated/moving_averages/` and Cassandra's `moving_averages` for the API and the chart's overlay.",
)
def moving_averages_daily(context: AssetExecutionContext, spark: LazyPySparkResource, lake: LakeResource,
                          cassandra: CassandraResource) -> Materialized:
    daily = spark.spark_session.read.parquet(lake.spark_uri(CURATED_CANDLES, "interval=1d"))
    averages = moving_averages(daily)
    write_curated(averages, lake, CURATED_MOVING_AVERAGES, ["window", "symbol"])
    frame: pd.DataFrame = averages.toPandas()
    rows = [(r.symbol, int(r.window), candle_bucket("1d", r.open_time), _time(r.open_time).date(), r.sma)
            for r in hot_only(frame, cassandra).itertuples()]
    cassandra.write_all(UPSERT_MOVING_AVERAGE, rows)
    per_window = frame.groupby("window").size()
    return dg.MaterializeResult(metadata={
        **time_range_metadata(frame),
        "days_per_window": dg.MetadataValue.json({str(w): int(n) for w, n in per_window.items()}),
        "dataset": lake.path(CURATED_MOVING_AVERAGES),
    })


@dg.asset(
    group_name="analytics",
    kinds={"spark", "parquet"},
    deps=["trades_lake"],
    description="Historical trade aggregates per symbol and hour and day from the lake's raw trades (each trade "
    "once): count, base and quote volume, buy/sell volume, VWAP, first/last/high/low price. Lake only "
    "(`curated/trade_stats/interval=1h|1d/`); the live tables hold the recent minutes and hours.",
)
def trade_stats_history(context: AssetExecutionContext, spark: LazyPySparkResource,
                        lake: LakeResource) -> Materialized:
    if not lake.exists(RAW_TRADES):
        raise NoHistoryError(f"no raw trades under {lake.path(RAW_TRADES)} yet: materialize `trades_lake` first")
    trades = spark.spark_session.read.parquet(lake.spark_uri(RAW_TRADES))
    hourly, daily = trade_aggregates(trades, "1h"), trade_aggregates(trades, "1d")
    aggregates = hourly.unionByName(daily)
    write_curated(aggregates, lake, CURATED_TRADE_STATS, ["interval", "symbol"])
    frame: pd.DataFrame = daily.drop("date").toPandas()
    return dg.MaterializeResult(metadata={
        **time_range_metadata(frame),
        "hours": hourly.count(),
        "trades": int(frame["trades"].sum()) if not frame.empty else 0,
        "dataset": lake.path(CURATED_TRADE_STATS),
    })


analytics_job = dg.define_asset_job(
    "analytics_job",
    selection=dg.AssetSelection.groups("analytics", "ml")
    - dg.AssetSelection.assets(*(name for followers in TOPIC_FOLLOWERS.values() for name in followers)),
    description="Rolls up the lake's history with Spark, rebuilds features, trains the models and publishes the "
    "15-day forecast. In one process, so every step shares one Spark session.",
    executor_def=dg.in_process_executor,
    tags=BATCH_LANE,
)


@dg.sensor(
    name="analytics_sensor",
    job=analytics_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Requests an `analytics_job` run as soon as the lake's raw candles hold a day they did not hold at "
    "the last request (a backfill, or a new day of the feed), so rollups, models and the forecast follow the "
    "history without waiting for `analytics_schedule`.",
)
def analytics_sensor(context: dg.SensorEvaluationContext, lake: LakeResource) -> dg.SensorResult | dg.SkipReason:
    days = {folder.rsplit("date=", 1)[1] for folder in date_folders(lake, RAW_CANDLES)}
    if not days:
        return dg.SkipReason("no candles in the lake yet")
    signature = f"{len(days)} days up to {max(days)}"
    if signature == context.cursor:
        return dg.SkipReason(f"no new day of candles ({signature})")
    if has_active_run(context.instance, job_name=analytics_job.name):
        return dg.SkipReason("an analytics run is queued or running")
    return dg.SensorResult(run_requests=[dg.RunRequest(run_key=f"analytics {signature}")], cursor=signature)


def definitions(settings: Settings) -> dg.Definitions:
    analytics_schedule = dg.ScheduleDefinition(
        name="analytics_schedule",
        job=analytics_job,
        cron_schedule=settings.analytics_cron,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Rolls up history, retrains the models and republishes the forecast (PRICEPIPE_ANALYTICS_CRON).",
    )
    return dg.Definitions(assets=[candles_hourly, candles_daily, moving_averages_daily, trade_stats_history],
                          jobs=[analytics_job], sensors=[analytics_sensor], schedules=[analytics_schedule])
