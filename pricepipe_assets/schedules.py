"""Schedules: work that is due because time passed, not because data arrived.

The analytics schedule recomputes rollups, features, models and the forecast from the lake.

The retention schedule is built by hand rather than from the partitioned job's own cadence:
which days are expired depends on each symbol's clock (its newest event time), which is wall
time when live but the replayed moment when replaying history. Each tick asks for the expired
days some retention asset has not done yet, one run per day with just those assets.

Freshness checks also run inside every Kafka-fed run, but there they can only pass: a table
that has stopped receiving data has no run to check it. The freshness schedule evaluates them
on the clock, so a stalled feed, sensor or Cassandra shows as a failed check in the UI.
"""

from __future__ import annotations

import dagster as dg

from pricepipe_assets.assets.retention import data_days, due_archives
from pricepipe_assets.checks import FRESHNESS_CHECKS
from pricepipe_assets.clock import symbol_clocks
from pricepipe_assets.jobs import analytics_job, retention_job
from pricepipe_assets.resources.cassandra import CassandraResource
from pricepipe_assets.resources.lake import LakeResource
from pricepipe_assets.settings import get_settings

FRESHNESS_CRON = "*/5 * * * *"

live_freshness_job = dg.define_asset_job(
    "live_freshness_job",
    selection=dg.AssetSelection.checks(*FRESHNESS_CHECKS),
    description="Evaluates the freshness checks of the live Cassandra tables, without materializing anything.",
    executor_def=dg.in_process_executor,
)

live_freshness_schedule = dg.ScheduleDefinition(
    name="live_freshness_schedule",
    job=live_freshness_job,
    cron_schedule=FRESHNESS_CRON,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every 5 minutes: are candles, trade statistics and latest prices still being written?",
)

analytics_schedule = dg.ScheduleDefinition(
    name="analytics_schedule",
    job=analytics_job,
    cron_schedule=get_settings().analytics_cron,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Rolls up history, retrains the models and republishes the forecast (PRICEPIPE_ANALYTICS_CRON).",
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
    due = due_archives(context.instance, clocks, data_days(lake), RETENTION_DAYS_PER_TICK) if clocks else {}
    if not due:
        return dg.SkipReason("every expired day is archived")
    return [dg.RunRequest(run_key=f"retention {day} {' '.join(assets)}", partition_key=day,
                          asset_selection=[dg.AssetKey(asset) for asset in assets]) for day, assets in due.items()]


SCHEDULES: list[dg.ScheduleDefinition] = [live_freshness_schedule, analytics_schedule, retention_schedule]
