"""The pricepipe code location: every asset, check, sensor, schedule and resource, wired once.

Each Dagster run re-imports this module in a fresh process, so it imports only light modules;
Spark, scikit-learn and plotting are imported inside the assets that use them.
"""

from __future__ import annotations

import dagster as dg

from pricepipe_assets.assets import analytics, ingestion, lake, live, ml, predictions, retention, setup, topics
from pricepipe_assets.checks import ASSET_CHECKS
from pricepipe_assets.jobs import TOPIC_JOBS, analytics_job, retention_job
from pricepipe_assets.resources import build_resources
from pricepipe_assets.schedules import SCHEDULES, live_freshness_job
from pricepipe_assets.sensors import SENSORS
from pricepipe_assets.settings import get_settings

defs = dg.Definitions(
    assets=[*dg.load_assets_from_modules([setup, ingestion, lake, live, predictions, analytics, ml, retention]),
            *topics.FEEDS, *topics.TOPICS],
    asset_checks=ASSET_CHECKS,
    jobs=[*TOPIC_JOBS.values(), live_freshness_job, analytics_job, retention_job],
    sensors=SENSORS,
    schedules=SCHEDULES,
    resources=build_resources(get_settings()),
)
