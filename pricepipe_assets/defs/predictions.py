"""Predictions from Kafka into Cassandra, each beside the actual close once that candle exists.

Models publish to the `predictions` topic rather than writing Cassandra themselves, so any
consumer (another store, a trading bot) sees the same stream, and this sensor-driven asset is
the one writer: idempotent upserts keyed by the predicted candle, offsets committed afterwards.
"""

# No `from __future__ import annotations` here: Dagster reads the context annotation at definition time.
import datetime as dt
from collections import defaultdict

import dagster as dg
from dagster import AssetExecutionContext

from pricepipe_assets.contract.records import INTERVAL_MS, Prediction
from pricepipe_assets.contract.topics import PREDICTIONS
from pricepipe_assets.defs.kafka_fed import OffsetRangesConfig, batch_metadata, commit_batch, read_batch
from pricepipe_assets.defs.resources.cassandra import CassandraResource
from pricepipe_assets.defs.resources.kafka import KafkaResource
from pricepipe_assets.defs.topics import topic_key
from pricepipe_assets.storage.cassandra_schema import candle_bucket

UPSERT_PREDICTION = """
INSERT INTO predictions (symbol, horizon, bucket, target_time, made_at, model, model_version, predicted, lower, upper)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
UPSERT_FORECAST = """
INSERT INTO forecasts (symbol, bucket, made_at, target_time, model, model_version, predicted, lower, upper, reason)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
SELECT_UNRESOLVED = """
SELECT target_time, actual FROM predictions WHERE symbol = ? AND horizon = ? AND bucket = ?
"""
SELECT_CLOSES = "SELECT open_time, close FROM candles WHERE symbol = ? AND interval = ? AND bucket = ?"
SET_ACTUAL = "UPDATE predictions SET actual = ? WHERE symbol = ? AND horizon = ? AND bucket = ? AND target_time = ?"
DAILY = "1d"


def _time(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC)


def resolve_actuals(cassandra: CassandraResource, partitions: set[tuple[str, str, dt.date]]) -> int:
    """Set ``actual`` on every prediction of the given partitions whose candle has closed since.

    Predictions and candles share their bucketing, so each partition is matched against exactly
    one candle partition. Returns the predictions resolved now.
    """
    session = cassandra.session()
    updates = []
    for symbol, horizon, bucket in partitions:
        pending = [row.target_time for row in session.execute(cassandra.prepare(SELECT_UNRESOLVED),
                                                               (symbol, horizon, bucket)) if row.actual is None]
        if not pending:
            continue
        closes = {row.open_time: row.close for row in session.execute(cassandra.prepare(SELECT_CLOSES),
                                                                       (symbol, horizon, bucket))}
        updates += [(closes[t], symbol, horizon, bucket, t) for t in pending if t in closes]
    return cassandra.write_all(SET_ACTUAL, updates)


@dg.asset(
    group_name="live",
    kinds={"kafka", "cassandra"},
    deps=["cassandra_schema", topic_key(PREDICTIONS)],
    description="Predictions from the `predictions` topic in Cassandra: every forecast candle in `predictions` (one "
    "partition per symbol, horizon and day/year; the newest prediction of a candle wins) with the actual close "
    "filled in once that candle is stored, and each daily forecast kept whole in `forecasts` for `/forecast`.",
)
def predictions_live(context: AssetExecutionContext, config: OffsetRangesConfig, kafka: KafkaResource,
                     cassandra: CassandraResource) -> dg.MaterializeResult:
    batch = read_batch(context, kafka, config, PREDICTIONS, dead_letter=True)
    predictions = [item.record for item in batch.records if isinstance(item.record, Prediction)]
    written = cassandra.write_all(UPSERT_PREDICTION, [
        (p.symbol, p.horizon, candle_bucket(p.horizon, p.target_time), _time(p.target_time), _time(p.made_at),
         p.model, p.model_version, p.predicted, p.lower, p.upper) for p in predictions])
    forecasts = cassandra.write_all(UPSERT_FORECAST, [
        (p.symbol, candle_bucket(DAILY, p.made_at), _time(p.made_at), _time(p.target_time), p.model, p.model_version,
         p.predicted, p.lower, p.upper, p.reason) for p in predictions if p.horizon == DAILY])
    # The bucket before each target's too: the last candle of a day is resolved by the next day's run.
    touched = {(p.symbol, p.horizon, candle_bucket(p.horizon, t)) for p in predictions
               for t in (p.target_time, p.target_time - INTERVAL_MS[p.horizon])}
    resolved = resolve_actuals(cassandra, touched)
    commit_batch(context, kafka, batch)
    by_model: dict[str, int] = defaultdict(int)
    for prediction in predictions:
        by_model[f"{prediction.model} ({prediction.horizon})"] += 1
    return dg.MaterializeResult(metadata={
        **batch_metadata(written, batch), "forecast_rows": forecasts, "actuals_resolved": resolved,
        "predictions_by_model": dg.MetadataValue.json(dict(by_model))})
