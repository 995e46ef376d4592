"""Retention: Cassandra keeps a hot window, the lake keeps everything.

One daily-partitioned asset per kind of hot rows archives a day to ``archive/<name>/date=<day>/``
and then deletes it from Cassandra (see ``pricepipe_assets.storage.archive`` for why that order loses
nothing); two more compact the raw zone's small files of a day. A partition is materialized once
its day is archived, so the partitions view of each asset shows which days were.

"Expired" is judged by each symbol's clock (its newest event time, see ``pricepipe_assets.storage.clock``),
not wall time, so replayed history is kept as if it were live.

`retention_schedule` is built by hand rather than from the partitioned job's own cadence: which days
are expired depends on each symbol's clock, which is wall time when live but the replayed moment
when replaying history. Each tick asks for the expired days some retention asset has not done yet,
one run per day with just those assets.
"""

# No `from __future__ import annotations` here: Dagster reads the context annotation at definition time.
import datetime as dt
from typing import Any, cast

import dagster as dg
from dagster import AssetExecutionContext
from pydantic import Field

from pricepipe_assets.contract.topics import CANDLES_1M, ORDERBOOK, TRADES
from pricepipe_assets.defs.metadata import Materialized
from pricepipe_assets.defs.partitions import day_partitions
from pricepipe_assets.defs.resources.cassandra import CassandraResource
from pricepipe_assets.defs.resources.kafka import KafkaResource
from pricepipe_assets.defs.resources.lake import LakeResource
from pricepipe_assets.defs.run_queue import BATCH_LANE
from pricepipe_assets.kafka import batches as kafka_batches
from pricepipe_assets.settings import Settings
from pricepipe_assets.storage.archive import (
    HOT_PARTS,
    ArchiveVerificationError,
    HotPart,
    archive_day,
    expired_symbols,
    newest_expired_day,
)
from pricepipe_assets.storage.clock import symbol_clocks
from pricepipe_assets.storage.compaction import compact_folder, date_folders
from pricepipe_assets.storage.lake_datasets import OFFSETS_PER_FILE, RAW_CANDLES, RAW_ORDER_BOOKS, RAW_TRADES

DAYS = day_partitions()


class RetentionConfig(dg.Config):
    hot_days: int | None = Field(default=None, description="Days kept in Cassandra, counting the clock's current "
                                    "day; empty: PRICEPIPE_HOT_DAYS (or PRICEPIPE_HOT_DAYS_AGGREGATES for aggregates).")


def _expired_or_fail(cassandra: CassandraResource, day: dt.date, hot_days: int) -> list[str]:
    """The symbols whose clock has moved ``day`` out of the hot window; fails when there is none."""
    clocks = symbol_clocks(cassandra)
    if not clocks:
        raise dg.Failure("no event has been stored yet, so no day has expired: retention has nothing to do")
    symbols = expired_symbols(clocks, day, hot_days)
    if not symbols:
        newest = max(clocks.values())
        raise dg.Failure(f"{day} is inside the hot window ({hot_days} days up to the clock's {newest.date()}) of every "
                         f"symbol; days up to {newest_expired_day(newest, hot_days)} can be archived")
    return symbols


# The asset writing each kind of hot rows: its archive comes after it in the graph.
WRITER_OF_PART = {
    "candles_1m": "candles_live", "candles_1h": "candles_hourly", "candles_1d": "candles_daily",
    "trades": "trade_stats_minute", "trade_stats_minute": "trade_stats_minute", "trade_stats_hour": "trade_stats_hour",
    "predictions_1m": "predictions_live", "predictions_1d": "predictions_live", "forecasts": "predictions_live",
    "model_predictions_1m": "predictions_live", "model_predictions_1d": "predictions_live",
    "moving_averages": "moving_averages_daily",
}


def archive_asset(part: HotPart) -> dg.AssetsDefinition:
    window = "PRICEPIPE_HOT_DAYS_AGGREGATES" if part.aggregate else "PRICEPIPE_HOT_DAYS"

    @dg.asset(
        name=f"{part.name}_archive",
        group_name="retention",
        partitions_def=DAYS,
        kinds={"cassandra", "parquet"},
        deps=[WRITER_OF_PART[part.name]],
        description=f"Expired days of Cassandra's `{part.table}` ({part.name.replace('_', ' ')}) moved to the lake: "
        f"copied to `archive/{part.name}/date=<day>/`, read back and compared (row count and a checksum of the "
        f"keys), then deleted from Cassandra. Days older than {window} are expired.",
    )
    def _archive(context: AssetExecutionContext, config: RetentionConfig, cassandra: CassandraResource,
                 lake: LakeResource) -> Materialized:
        day = dt.date.fromisoformat(context.partition_key)
        hot_days = cassandra.hot_window(part.aggregate) if config.hot_days is None else config.hot_days
        symbols = _expired_or_fail(cassandra, day, hot_days)
        try:
            result = archive_day(cassandra, lake, part, symbols, day)
        except ArchiveVerificationError as error:
            raise dg.Failure(str(error)) from None
        context.log.info(f"{part.name} {day}: {result.rows_archived} rows archived, {result.rows_deleted} deleted")
        return dg.MaterializeResult(metadata={
            "dagster/row_count": result.rows_archived,
            "rows_archived": result.rows_archived,
            "rows_deleted": result.rows_deleted,
            "rows_found_in_cassandra": result.rows_in_cassandra,
            "bytes_written": result.bytes_written,
            "key_checksum": result.key_checksum,
            "archive": result.archive_file,
            "hot_days": hot_days,
            "symbols": dg.MetadataValue.json(symbols),
        })

    return _archive


ARCHIVE_ASSETS = [archive_asset(part) for part in HOT_PARTS]
ARCHIVE_KEYS = {asset.key.to_user_string() for asset in ARCHIVE_ASSETS}


def compaction_asset(name: str, dataset: str, topic: str, writer: str) -> dg.AssetsDefinition:
    @dg.asset(
        name=name,
        group_name="retention",
        partitions_def=DAYS,
        kinds={"parquet"},
        deps=[writer],
        description=f"Compacts a day of `{dataset}` once it is out of the hot window: the files of offset blocks "
        f"`{writer}` has fully committed are merged into one `compacted-<n>.parquet` per folder. Readers see the same "
        "rows before and after.",
    )
    def _compact(context: AssetExecutionContext, config: RetentionConfig, cassandra: CassandraResource,
                 lake: LakeResource, kafka: KafkaResource) -> Materialized:
        day = context.partition_key
        _expired_or_fail(cassandra, dt.date.fromisoformat(day),
                         cassandra.hot_window(False) if config.hot_days is None else config.hot_days)
        committed = {partition: offset or 0 for partition, (offset, _, _) in
                     kafka_batches.committed_and_watermarks(kafka, kafka.consumer_group(writer), topic).items()}
        folders = [f for f in date_folders(lake, dataset) if f.endswith(f"/date={day}")]
        done = [c for folder in folders if (c := compact_folder(lake, folder, committed, OFFSETS_PER_FILE)) is not None]
        return dg.MaterializeResult(metadata={
            "folders_compacted": len(done),
            "files_merged": sum(c.files_merged for c in done),
            "dagster/row_count": sum(c.rows for c in done),
            "files": dg.MetadataValue.json([c.file for c in done]),
        })

    return _compact


COMPACTION_ASSETS = [
    compaction_asset("raw_candles_compaction", RAW_CANDLES, CANDLES_1M, "candles_lake"),
    compaction_asset("raw_trades_compaction", RAW_TRADES, TRADES, "trades_lake"),
    compaction_asset("raw_order_books_compaction", RAW_ORDER_BOOKS, ORDERBOOK, "order_books_lake"),
]

# Each retention asset and whether its window is the aggregates' one.
RETENTION_WINDOWS: dict[str, bool] = {
    **{f"{part.name}_archive": part.aggregate for part in HOT_PARTS},
    "raw_candles_compaction": False,
    "raw_trades_compaction": False,
    "raw_order_books_compaction": False,
}


# Forecasts and predictions reach past the newest stored candle by up to this many days.
FORECAST_REACH_DAYS = 16


def data_days(lake: LakeResource) -> set[dt.date]:
    """The days a hot table can hold rows for: every day of the raw zone and the forecast reach after it."""
    stored = {dt.date.fromisoformat(folder.rsplit("date=", 1)[1])
              for dataset in (RAW_CANDLES, RAW_TRADES) for folder in date_folders(lake, dataset)}
    return {day + dt.timedelta(days=n) for day in stored for n in range(FORECAST_REACH_DAYS + 1)}


def _archived_symbols(instance: dg.DagsterInstance, asset: str, day: str) -> set[str]:
    """The symbols the newest materialization of an archive asset's day covered."""
    result = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[day]), limit=1)
    if not result.records:
        return set()
    materialization = result.records[0].asset_materialization
    symbols = materialization.metadata.get("symbols") if materialization else None
    # The archive assets record their symbols as a JSON list of names.
    return set(cast("list[str]", symbols.value)) if symbols is not None else set()


def due_archives(instance: dg.DagsterInstance, cassandra: CassandraResource, clocks: dict[str, dt.datetime],
                 days: set[dt.date], limit: int) -> dict[str, list[str]]:
    """Per day that has expired for some symbol and is not yet done by every retention asset, the
    assets still to run (oldest days first, at most ``limit`` days).

    An archive asset's day is done only for the symbols it covered: a symbol whose clock moves the
    day out of its window later (replays of different eras side by side) makes that day due again,
    so no symbol's rows are left behind in Cassandra under a partition that looks archived.
    """
    due: dict[str, list[str]] = {}
    for asset, aggregate in RETENTION_WINDOWS.items():
        done: set[Any] = instance.get_materialized_partitions(dg.AssetKey(asset))
        hot_days = cassandra.hot_window(aggregate)
        for day in days:
            expired = expired_symbols(clocks, day, hot_days)
            if not expired:
                continue
            key = day.isoformat()
            if key in done and (asset not in ARCHIVE_KEYS or set(expired) <= _archived_symbols(instance, asset, key)):
                continue
            due.setdefault(key, []).append(asset)
    return {day: sorted(due[day]) for day in sorted(due)[:limit]}


retention_job = dg.define_asset_job(
    "retention_job",
    selection=dg.AssetSelection.groups("retention"),
    description="Archives one expired day of every hot Cassandra table to the lake, then deletes it; compacts the "
    "day's raw files.",
    executor_def=dg.in_process_executor,
    tags=BATCH_LANE,
)

# Days requested per tick, oldest first: a first run over years of replayed history catches up
# over several ticks instead of queueing thousands of runs at once.
RETENTION_DAYS_PER_TICK = 14


@dg.schedule(
    name="retention_schedule",
    job=retention_job,
    cron_schedule="20 * * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Hourly: archives to the lake, then deletes from Cassandra, every day that has left the hot window "
    "(PRICEPIPE_HOT_DAYS, PRICEPIPE_HOT_DAYS_AGGREGATES) by the platform clock, and compacts the raw zone's days.",
)
def retention_schedule(context: dg.ScheduleEvaluationContext, cassandra: CassandraResource,
                       lake: LakeResource) -> dg.SkipReason | list[dg.RunRequest]:
    clocks = symbol_clocks(cassandra)
    due = due_archives(context.instance, cassandra, clocks, data_days(lake), RETENTION_DAYS_PER_TICK) if clocks else {}
    if not due:
        return dg.SkipReason("every expired day is archived")
    return [dg.RunRequest(run_key=f"retention {day} {' '.join(assets)}", partition_key=day,
                          asset_selection=[dg.AssetKey(asset) for asset in assets]) for day, assets in due.items()]


def definitions(settings: Settings) -> dg.Definitions:
    return dg.Definitions(assets=[*ARCHIVE_ASSETS, *COMPACTION_ASSETS], jobs=[retention_job],
                          schedules=[retention_schedule])
