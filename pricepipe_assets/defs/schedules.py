"""Schedules: work that is due because time passed, not because data arrived.

The analytics schedule recomputes rollups, features, models and the forecast from the lake.

The retention schedule is built by hand rather than from the partitioned job's own cadence:
which days are expired depends on each symbol's clock (its newest event time), which is wall
time when live but the replayed moment when replaying history. Each tick asks for the expired
days some retention asset has not done yet, one run per day with just those assets.
"""

from __future__ import annotations

import dagster as dg

from pricepipe_assets.defs.jobs import analytics_job, retention_job
from pricepipe_assets.defs.resources.cassandra import CassandraResource
from pricepipe_assets.defs.resources.lake import LakeResource
from pricepipe_assets.defs.retention import data_days, due_archives
from pricepipe_assets.settings import Settings
from pricepipe_assets.storage.clock import symbol_clocks

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


def build_schedules(settings: Settings) -> list[dg.ScheduleDefinition]:
    """The analytics schedule on ``PRICEPIPE_ANALYTICS_CRON``, and the retention schedule."""
    analytics_schedule = dg.ScheduleDefinition(
        name="analytics_schedule",
        job=analytics_job,
        cron_schedule=settings.analytics_cron,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Rolls up history, retrains the models and republishes the forecast (PRICEPIPE_ANALYTICS_CRON).",
    )
    return [analytics_schedule, retention_schedule]
