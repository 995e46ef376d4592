"""Predictions from Kafka into Cassandra, each beside the actual close once that candle exists.

Models publish to the `predictions` topic rather than writing Cassandra themselves, so any
consumer (another store, a trading bot) sees the same stream, and this sensor-driven asset is
the one writer: idempotent upserts keyed by the predicted candle, offsets committed afterwards.
"""

# No `from __future__ import annotations` here: Dagster reads the context annotation at definition time.
import dagster as dg
from dagster import AssetExecutionContext

from pricepipe_assets.contract.topics import PREDICTIONS
from pricepipe_assets.defs.kafka_fed import OffsetRangesConfig, batch_metadata, commit_batch, read_batch
from pricepipe_assets.defs.resources.cassandra import CassandraResource
from pricepipe_assets.defs.resources.kafka import KafkaResource
from pricepipe_assets.defs.topics import topic_key
from pricepipe_assets.transforms import live_writes


@dg.asset(
    group_name="live",
    kinds={"kafka", "cassandra"},
    deps=["cassandra_schema", topic_key(PREDICTIONS)],
    description="Predictions from the `predictions` topic in Cassandra: every forecast candle in `predictions` (one "
    "partition per symbol, horizon and day/year; the newest prediction of a candle wins) with the actual close "
    "filled in once that candle is stored, the same per model in `model_predictions` (for `/predictions?model=`), "
    "and each daily forecast kept whole in `forecasts` for `/forecast`.",
)
def predictions_live(context: AssetExecutionContext, config: OffsetRangesConfig, kafka: KafkaResource,
                     cassandra: CassandraResource) -> dg.MaterializeResult:
    batch = read_batch(context, kafka, config, PREDICTIONS, dead_letter=True)
    writes = live_writes.predictions(cassandra, batch.records)
    commit_batch(context, kafka, batch)
    return dg.MaterializeResult(metadata={
        **batch_metadata(writes.written, batch), "forecast_rows": writes.forecasts,
        "actuals_resolved": writes.resolved, "predictions_by_model": dg.MetadataValue.json(writes.by_model)})
