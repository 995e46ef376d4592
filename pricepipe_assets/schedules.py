"""Schedules: work that is due because time passed, not because data arrived.

The analytics schedule recomputes rollups, features, models and the forecast from the lake.

Freshness checks also run inside every Kafka-fed run, but there they can only pass: a table
that has stopped receiving data has no run to check it. The freshness schedule evaluates them
on the clock, so a stalled feed, sensor or Cassandra shows as a failed check in the UI.
"""

from __future__ import annotations

import dagster as dg

from pricepipe_assets.checks import FRESHNESS_CHECKS
from pricepipe_assets.jobs import analytics_job
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

SCHEDULES: list[dg.ScheduleDefinition] = [live_freshness_schedule, analytics_schedule]
