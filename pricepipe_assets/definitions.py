"""The pricepipe code location: every asset, check, sensor, schedule and resource, wired once.

Each Dagster run re-imports this module in a fresh process, so it imports only light modules;
Spark, scikit-learn and plotting are imported inside the assets that use them. The settings are
read here, once, and reach the definitions as arguments and the assets as resource config.
"""

from __future__ import annotations

import dagster as dg

from pricepipe_assets.defs import (
    analytics,
    bootstrap,
    lake,
    live,
    minute_lstm,
    minute_predictions,
    ml,
    retention,
    topics,
)
from pricepipe_assets.defs.checks import ASSET_CHECKS
from pricepipe_assets.defs.ingestion import binance_history_asset
from pricepipe_assets.defs.jobs import TOPIC_JOBS, analytics_job, retention_job
from pricepipe_assets.defs.resources import build_resources
from pricepipe_assets.defs.schedules import build_schedules
from pricepipe_assets.defs.sensors import build_sensors
from pricepipe_assets.settings import get_settings

settings = get_settings()
defs = dg.Definitions(
    assets=[*dg.load_assets_from_modules([bootstrap, lake, analytics, ml, minute_lstm, minute_predictions, retention]),
            binance_history_asset(settings.symbols), *live.LIVE_TABLES, *topics.FEEDS, *topics.TOPICS],
    asset_checks=ASSET_CHECKS,
    jobs=[*TOPIC_JOBS.values(), analytics_job, retention_job],
    sensors=build_sensors(settings),
    schedules=build_schedules(settings),
    resources=build_resources(settings),
)
