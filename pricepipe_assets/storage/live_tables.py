"""The CQL of the live market tables: candles and their moving averages, trades and their
statistics per minute and hour, and each symbol's latest prices and order book (schema:
``cassandra_schema``). `symbols` is :mod:`clock`'s; the prediction tables are
:mod:`prediction_tables`'.

Every write is an upsert on the row's natural key, so a batch delivered again rewrites the same rows.
Every read names one partition by its full key (symbol and time bucket), except the single-row
reads of `latest_prices` and `order_books` and the order-book check's scan of that small table.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from pricepipe_assets.contract.records import INTERVAL_MS
from pricepipe_assets.storage.cassandra import CassandraCluster
from pricepipe_assets.storage.cassandra_schema import candle_bucket

_CANDLE_COLUMNS = ("symbol, interval, bucket, open_time, close_time, exchange, open, high, low, close, volume, "
                   "quote_volume, trades")
# Rolled-up candles (defs/analytics.py): their completeness is the curated zone's `is_complete`.
UPSERT_CANDLE = f"INSERT INTO candles ({_CANDLE_COLUMNS}) VALUES ({', '.join('?' * 13)})"
# Candles from Kafka, with the contract's `is_complete` (false: the venue closed the candle early).
UPSERT_VENUE_CANDLE = f"INSERT INTO candles ({_CANDLE_COLUMNS}, is_complete) VALUES ({', '.join('?' * 14)})"
# A prediction's actual close (transforms/live_writes.py).
SELECT_CLOSES = "SELECT open_time, close FROM candles WHERE symbol = ? AND interval = ? AND bucket = ?"
# What the API answers of a candle.
_SERVED_CANDLE_COLUMNS = "open_time, close_time, open, high, low, close, volume, quote_volume, trades"
SELECT_CANDLES = (f"SELECT {_SERVED_CANDLE_COLUMNS} FROM candles WHERE symbol = ? AND interval = ? AND bucket = ? "
                  "AND open_time >= ? AND open_time < ?")
SELECT_NEWEST_CANDLE = (f"SELECT {_SERVED_CANDLE_COLUMNS} FROM candles WHERE symbol = ? AND interval = ? "
                        "AND bucket = ? ORDER BY open_time DESC LIMIT 1")
SELECT_DAY_CANDLES = """
SELECT open_time, close_time, open, high, low, close, is_complete FROM candles
WHERE symbol = ? AND interval = '1m' AND bucket = ?
"""
SELECT_RECENT_CANDLES = """
SELECT symbol, open_time, high, low, close, volume, trades FROM candles
WHERE symbol = ? AND interval = '1m' AND bucket = ? AND open_time <= ? ORDER BY open_time DESC LIMIT ?
"""
SELECT_NEWEST_OPEN_TIME = ("SELECT open_time FROM candles WHERE symbol = ? AND interval = ? AND bucket = ?"
                           " AND open_time >= ? AND open_time < ? ORDER BY open_time DESC LIMIT 1")

UPSERT_MOVING_AVERAGE = "INSERT INTO moving_averages (symbol, window_days, bucket, day, sma) VALUES (?, ?, ?, ?, ?)"
SELECT_MOVING_AVERAGES = ("SELECT day, sma FROM moving_averages WHERE symbol = ? AND window_days = ? AND bucket = ? "
                          "AND day >= ? AND day <= ?")

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
SELECT_TRADE_HOURS = ("SELECT hour, trades, volume, quote_volume FROM trade_stats_hour "
                      "WHERE symbol = ? AND bucket = ? AND hour >= ? AND hour < ?")

UPDATE_QUOTE = """
UPDATE latest_prices USING TIMESTAMP ? SET exchange = ?, bid = ?, ask = ?, quote_time = ? WHERE symbol = ?
"""
UPDATE_LAST_TRADE = """
UPDATE latest_prices USING TIMESTAMP ? SET exchange = ?, last_price = ?, trade_time = ? WHERE symbol = ?
"""
SELECT_LATEST_PRICE = "SELECT exchange, bid, ask, quote_time, last_price, trade_time FROM latest_prices WHERE symbol = ?"
UPDATE_ORDER_BOOK = """
UPDATE order_books USING TIMESTAMP ? SET exchange = ?, ts = ?, sequence = ?, bids = ?, asks = ? WHERE symbol = ?
"""
SELECT_ORDER_BOOK = "SELECT exchange, ts, sequence, bids, asks FROM order_books WHERE symbol = ?"
_SELECT_ALL_ORDER_BOOKS = "SELECT symbol, exchange, ts, sequence, bids, asks FROM order_books"


def day_minute_candles(cassandra: CassandraCluster, symbol: str, day: dt.date) -> Any:
    """Every stored 1m candle of ``symbol`` on ``day`` (one partition), for the OHLC check."""
    return cassandra.session().execute(cassandra.prepare(SELECT_DAY_CANDLES), (symbol, day))


def recent_minute_candles(cassandra: CassandraCluster, symbol: str, newest_ms: int, count: int) -> list[Any]:
    """The ``count`` 1m candles up to ``newest_ms``, newest first: its day's partition, and the day
    before when the day has not that many candles yet."""
    session, select = cassandra.session(), cassandra.prepare(SELECT_RECENT_CANDLES)
    day = candle_bucket("1m", newest_ms)
    newest = dt.datetime.fromtimestamp(newest_ms / 1000, dt.UTC)
    rows = list(session.execute(select, (symbol, day, newest, count)))
    if len(rows) < count:
        rows += list(session.execute(select, (symbol, day - dt.timedelta(days=1), newest, count - len(rows))))
    return rows


def last_stored_open_time(cassandra: CassandraCluster, symbol: str, interval: str, start_ms: int,
                          end_ms: int) -> int | None:
    """The newest candle of ``symbol`` already in Cassandra within ``[start_ms, end_ms)``, newest bucket first."""
    query = cassandra.prepare(SELECT_NEWEST_OPEN_TIME)
    session = cassandra.session()
    buckets = sorted({candle_bucket(interval, ms) for ms in range(start_ms, end_ms, INTERVAL_MS["1d"])}, reverse=True)
    for bucket in buckets:
        row = session.execute(query, (symbol, interval, bucket, start_ms, end_ms)).one()
        if row is not None:
            return int(row.open_time.replace(tzinfo=dt.UTC).timestamp() * 1000)
    return None


def all_order_books(cassandra: CassandraCluster) -> list[Any]:
    """Every stored book: one row per symbol, so a small table read whole."""
    return list(cassandra.session().execute(_SELECT_ALL_ORDER_BOOKS))
