"""Every CQL statement the API runs, prepared once per process.

Each reads one partition by its full key (symbol and time bucket, see
``pricepipe_assets.storage.cassandra_schema``) with a clustering range or a LIMIT, except
``SYMBOLS`` and ``LATEST_PRICES``' single-row reads; none needs ``ALLOW FILTERING``.
"""

from __future__ import annotations

from pricepipe_assets.storage.clock import SELECT_SYMBOLS

# The platform clock: the same statement the assets read it with.
SYMBOLS = SELECT_SYMBOLS

_CANDLE_COLUMNS = "open_time, close_time, open, high, low, close, volume, quote_volume, trades"
CANDLES = (f"SELECT {_CANDLE_COLUMNS} FROM candles WHERE symbol = ? AND interval = ? AND bucket = ? "
           "AND open_time >= ? AND open_time < ?")
NEWEST_CANDLE = (f"SELECT {_CANDLE_COLUMNS} FROM candles WHERE symbol = ? AND interval = ? AND bucket = ? "
                 "ORDER BY open_time DESC LIMIT 1")

MOVING_AVERAGES = ("SELECT day, sma FROM moving_averages WHERE symbol = ? AND window_days = ? AND bucket = ? "
                   "AND day >= ? AND day <= ?")

# `forecasts` clusters by made_at DESC: LIMIT 1 is the newest forecast of the partition.
NEWEST_FORECAST = "SELECT made_at FROM forecasts WHERE symbol = ? AND bucket = ? LIMIT 1"
FORECAST = ("SELECT target_time, model, model_version, predicted, lower, upper, reason FROM forecasts "
            "WHERE symbol = ? AND bucket = ? AND made_at = ?")

PREDICTIONS = ("SELECT target_time, made_at, model, model_version, predicted, lower, upper, actual FROM predictions "
               "WHERE symbol = ? AND horizon = ? AND bucket = ? ORDER BY target_time DESC LIMIT ?")

# Per model (migration 8): the same rows, from the partition of the model asked for.
MODEL_PREDICTIONS = ("SELECT target_time, made_at, model, model_version, predicted, lower, upper, actual "
                     "FROM model_predictions WHERE symbol = ? AND horizon = ? AND bucket = ? AND model = ? "
                     "ORDER BY target_time DESC LIMIT ?")
MODEL_SCORES = "SELECT model, model_version, mae_ratio, passed FROM model_scores WHERE symbol = ? AND horizon = ?"

TRADE_HOURS = ("SELECT hour, trades, volume, quote_volume FROM trade_stats_hour "
               "WHERE symbol = ? AND bucket = ? AND hour >= ? AND hour < ?")
TRADES = "SELECT ts, trade_id, side, size, price FROM trades WHERE symbol = ? AND bucket = ? AND ts >= ? AND ts < ?"

LATEST_PRICE = "SELECT exchange, bid, ask, quote_time, last_price, trade_time FROM latest_prices WHERE symbol = ?"
ORDER_BOOK = "SELECT exchange, ts, sequence, bids, asks FROM order_books WHERE symbol = ?"

ALL = (SYMBOLS, CANDLES, NEWEST_CANDLE, MOVING_AVERAGES, NEWEST_FORECAST, FORECAST, PREDICTIONS, MODEL_PREDICTIONS,
       MODEL_SCORES, TRADE_HOURS, TRADES, LATEST_PRICE, ORDER_BOOK)
