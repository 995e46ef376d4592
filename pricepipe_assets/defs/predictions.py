"""Predictions from Kafka into Cassandra, each beside the actual close once that candle exists.

Models publish to the `predictions` topic rather than writing Cassandra themselves, so any
consumer (another store, a trading bot) sees the same stream, and this sensor-driven asset is
the one writer: idempotent upserts keyed by the predicted candle, offsets committed afterwards.
"""

# No `from __future__ import annotations` here: Dagster reads the context annotation at definition time.
import datetime as dt
from collections import defaultdict
from typing import Any

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
UPSERT_MODEL_PREDICTION = """
INSERT INTO model_predictions (symbol, horizon, bucket, model, target_time, made_at, model_version, predicted, lower,
                               upper)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
SELECT_CLOSES = "SELECT open_time, close FROM candles WHERE symbol = ? AND interval = ? AND bucket = ?"
# Per table: its partition key after (symbol, horizon, bucket), and so how a partition is read and updated.
_RESOLVED = {"predictions": "", "model_predictions": " AND model = ?"}
DAILY = "1d"


def _time(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC)


def resolve_actuals(cassandra: CassandraResource, partitions: set[tuple[Any, ...]], table: str = "predictions") -> int:
    """Set ``actual`` on every prediction of the given partitions of ``table`` whose candle has closed since.

    Predictions and candles share their bucketing, so each partition (``symbol, horizon, bucket``,
    and ``model`` for `model_predictions`) is matched against exactly one candle partition.
    Returns the predictions resolved now.
    """
    key = _RESOLVED[table]
    select = f"SELECT target_time, actual FROM {table} WHERE symbol = ? AND horizon = ? AND bucket = ?{key}"
    update = f"UPDATE {table} SET actual = ? WHERE symbol = ? AND horizon = ? AND bucket = ?{key} AND target_time = ?"
    session = cassandra.session()
    updates = []
    for partition in partitions:
        symbol, horizon, bucket = partition[:3]
        pending = [row.target_time for row in session.execute(cassandra.prepare(select), partition)
                   if row.actual is None]
        if not pending:
            continue
        closes = {row.open_time: row.close for row in session.execute(cassandra.prepare(SELECT_CLOSES),
                                                                       (symbol, horizon, bucket))}
        updates += [(closes[t], *partition, t) for t in pending if t in closes]
    return cassandra.write_all(update, updates)


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
    predictions = [item.record for item in batch.records if isinstance(item.record, Prediction)]
    written = cassandra.write_all(UPSERT_PREDICTION, [
        (p.symbol, p.horizon, candle_bucket(p.horizon, p.target_time), _time(p.target_time), _time(p.made_at),
         p.model, p.model_version, p.predicted, p.lower, p.upper) for p in predictions])
    cassandra.write_all(UPSERT_MODEL_PREDICTION, [
        (p.symbol, p.horizon, candle_bucket(p.horizon, p.target_time), p.model, _time(p.target_time), _time(p.made_at),
         p.model_version, p.predicted, p.lower, p.upper) for p in predictions])
    forecasts = cassandra.write_all(UPSERT_FORECAST, [
        (p.symbol, candle_bucket(DAILY, p.made_at), _time(p.made_at), _time(p.target_time), p.model, p.model_version,
         p.predicted, p.lower, p.upper, p.reason) for p in predictions if p.horizon == DAILY])
    # The bucket before each target's too: the last candle of a day is resolved by the next day's run.
    touched = {(p.symbol, p.horizon, candle_bucket(p.horizon, t)) for p in predictions
               for t in (p.target_time, p.target_time - INTERVAL_MS[p.horizon])}
    resolved = resolve_actuals(cassandra, touched)
    models: dict[tuple[str, str], set[str]] = defaultdict(set)
    for prediction in predictions:
        models[prediction.symbol, prediction.horizon].add(prediction.model)
    resolve_actuals(cassandra, {(*part, model) for part in touched for model in models[part[:2]]}, "model_predictions")
    commit_batch(context, kafka, batch)
    by_model: dict[str, int] = defaultdict(int)
    for prediction in predictions:
        by_model[f"{prediction.model} ({prediction.horizon})"] += 1
    return dg.MaterializeResult(metadata={
        **batch_metadata(written, batch), "forecast_rows": forecasts, "actuals_resolved": resolved,
        "predictions_by_model": dg.MetadataValue.json(dict(by_model))})
