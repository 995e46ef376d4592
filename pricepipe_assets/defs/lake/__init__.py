"""The `lake` group: Kafka's candles, trades and order books kept as Parquet, the platform's history.

`assets.py` writes the raw zone, `checks.py` checks it; `jobs.py` has one job per topic the lake
keeps, and `sensors.py` the sensors that launch them when the topic's lag calls for a run (and
record every consumer's lag, the stream worker's too, on the topic's asset).
"""

from __future__ import annotations

import dagster as dg

from pricepipe_assets.defs.lake.assets import KAFKA_FED
from pricepipe_assets.defs.lake.checks import LAKE_CHECKS
from pricepipe_assets.defs.lake.jobs import TOPIC_JOBS
from pricepipe_assets.defs.lake.sensors import kafka_sensors
from pricepipe_assets.settings import Settings


def definitions(settings: Settings) -> dg.Definitions:
    return dg.Definitions(assets=KAFKA_FED, asset_checks=LAKE_CHECKS, jobs=list(TOPIC_JOBS.values()),
                          sensors=kafka_sensors(settings))
