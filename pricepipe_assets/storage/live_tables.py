"""The CQL that writes and reads the live tables fed from Kafka (schema: ``cassandra_schema``).

Every write is an upsert on the row's natural key, so a batch delivered again rewrites the same rows.
"""

from __future__ import annotations

_CANDLE_COLUMNS = ("symbol, interval, bucket, open_time, close_time, exchange, open, high, low, close, volume, "
                   "quote_volume, trades")
# Rolled-up candles (defs/analytics.py): their completeness is the curated zone's `is_complete`.
UPSERT_CANDLE = f"INSERT INTO candles ({_CANDLE_COLUMNS}) VALUES ({', '.join('?' * 13)})"
# Candles from Kafka, with the contract's `is_complete` (false: the venue closed the candle early).
UPSERT_VENUE_CANDLE = f"INSERT INTO candles ({_CANDLE_COLUMNS}, is_complete) VALUES ({', '.join('?' * 14)})"
UPSERT_TRADE = """
INSERT INTO trades (symbol, bucket, ts, trade_id, exchange, side, size, price) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
"""
SELECT_TRADES = """
SELECT ts, trade_id, side, size, price FROM trades WHERE symbol = ? AND bucket = ? AND ts >= ? AND ts < ?
"""
STATS_COLUMNS = "trades, volume, quote_volume, buy_volume, sell_volume, vwap, last_price"
UPSERT_MINUTE = f"INSERT INTO trade_stats_minute (symbol, bucket, minute, {STATS_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
SELECT_MINUTES = f"SELECT minute, {STATS_COLUMNS} FROM trade_stats_minute WHERE symbol = ? AND bucket = ? AND minute >= ? AND minute < ?"
SELECT_MINUTE_STARTS = "SELECT minute FROM trade_stats_minute WHERE symbol = ? AND bucket = ? AND minute >= ? AND minute < ?"
SELECT_NEWEST_MINUTE = "SELECT minute FROM trade_stats_minute WHERE symbol = ? AND bucket = ? ORDER BY minute DESC LIMIT 1"
UPSERT_HOUR = f"INSERT INTO trade_stats_hour (symbol, bucket, hour, {STATS_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
UPDATE_QUOTE = """
UPDATE latest_prices USING TIMESTAMP ? SET exchange = ?, bid = ?, ask = ?, quote_time = ? WHERE symbol = ?
"""
UPDATE_ORDER_BOOK = """
UPDATE order_books USING TIMESTAMP ? SET exchange = ?, ts = ?, sequence = ?, bids = ?, asks = ? WHERE symbol = ?
"""
UPDATE_LAST_TRADE = """
UPDATE latest_prices USING TIMESTAMP ? SET exchange = ?, last_price = ?, trade_time = ? WHERE symbol = ?
"""
UPDATE_SYMBOL = """
UPDATE symbols USING TIMESTAMP ? SET exchange = ?, latest_event_time = ? WHERE symbol = ?
"""
UPSERT_MOVING_AVERAGE = "INSERT INTO moving_averages (symbol, window_days, bucket, day, sma) VALUES (?, ?, ?, ?, ?)"
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
