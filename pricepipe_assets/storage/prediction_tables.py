"""The CQL of the prediction tables: `predictions` (the newest prediction of each candle),
`model_predictions` (the same per model), `forecasts` (each daily forecast whole) and
`model_scores` (how each minute model fared against the naive baseline); schema:
``cassandra_schema``.

Every write is an upsert on the row's natural key, so a batch delivered again rewrites the same
rows; every read names one partition by its full key.
"""

from __future__ import annotations

UPSERT_PREDICTION = """
INSERT INTO predictions (symbol, horizon, bucket, target_time, made_at, model, model_version, predicted, lower, upper)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
SELECT_PREDICTIONS = ("SELECT target_time, made_at, model, model_version, predicted, lower, upper, actual "
                      "FROM predictions WHERE symbol = ? AND horizon = ? AND bucket = ? ORDER BY target_time DESC "
                      "LIMIT ?")

UPSERT_MODEL_PREDICTION = """
INSERT INTO model_predictions (symbol, horizon, bucket, model, target_time, made_at, model_version, predicted, lower,
                               upper)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
# Per model (migration 8): the same rows, from the partition of the model asked for.
SELECT_MODEL_PREDICTIONS = ("SELECT target_time, made_at, model, model_version, predicted, lower, upper, actual "
                            "FROM model_predictions WHERE symbol = ? AND horizon = ? AND bucket = ? AND model = ? "
                            "ORDER BY target_time DESC LIMIT ?")

# Per table: its partition key after (symbol, horizon, bucket), and so how a partition's
# predictions are read and their actual close set once the candle closed.
_PARTITION_KEY_AFTER_BUCKET = {"predictions": "", "model_predictions": " AND model = ?"}
SELECT_ACTUALS = {table: f"SELECT target_time, actual FROM {table} WHERE symbol = ? AND horizon = ? AND bucket = ?{key}"
                  for table, key in _PARTITION_KEY_AFTER_BUCKET.items()}
UPDATE_ACTUAL = {table: f"UPDATE {table} SET actual = ? WHERE symbol = ? AND horizon = ? AND bucket = ?{key} "
                        "AND target_time = ?"
                 for table, key in _PARTITION_KEY_AFTER_BUCKET.items()}

UPSERT_FORECAST = """
INSERT INTO forecasts (symbol, bucket, made_at, target_time, model, model_version, predicted, lower, upper, reason)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
# `forecasts` clusters by made_at DESC: LIMIT 1 is the newest forecast of the partition.
SELECT_NEWEST_FORECAST = "SELECT made_at FROM forecasts WHERE symbol = ? AND bucket = ? LIMIT 1"
SELECT_FORECAST = ("SELECT target_time, model, model_version, predicted, lower, upper, reason FROM forecasts "
                   "WHERE symbol = ? AND bucket = ? AND made_at = ?")

# Written by the next-minute predictions, read by `/predictions` to pick its default model.
UPSERT_MINUTE_MODEL_SCORE = ("INSERT INTO model_scores (symbol, horizon, model, model_version, mae_ratio, passed) "
                             "VALUES (?, '1m', ?, ?, ?, ?)")
SELECT_MODEL_SCORES = "SELECT model, model_version, mae_ratio, passed FROM model_scores WHERE symbol = ? AND horizon = ?"
