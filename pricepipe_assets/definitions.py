"""The pricepipe code location: every asset, check, job, sensor, schedule and resource, wired once.

Each group of the asset graph says what it adds in its ``definitions(settings)``; this module only
merges them with the resources. Each Dagster run re-imports it in a fresh process, so it imports
only light modules; Spark, scikit-learn and plotting are imported inside the assets that use them.
The settings are read here, once, and reach the definitions as arguments and the assets as
resource config.
"""

from __future__ import annotations

import dagster as dg

from pricepipe_assets.defs import alerts, analytics, exchanges, ingestion, kafka, lake, live, ml, retention
from pricepipe_assets.defs.resources import build_resources
from pricepipe_assets.settings import get_settings

# In the order data flows: from the venues, through Kafka, to the live tables and the lake, then
# the history's rollups, the models, and the retention that keeps Cassandra's window.
GROUPS = (exchanges, kafka, ingestion, live, lake, analytics, ml, retention)

settings = get_settings()
defs = dg.Definitions.merge(
    *(group.definitions(settings) for group in GROUPS),
    # The alert sensors watch the whole graph, so they belong to no group.
    alerts.definitions(settings),
    dg.Definitions(resources=build_resources(settings)),
)
