"""Cassandra schema as ordered migrations, applied at start-up by :class:`CassandraCluster`.

Each migration runs once per keyspace and is recorded in ``schema_migrations``; every statement
is also idempotent on its own (``IF NOT EXISTS``), so two processes starting together, or a
migration interrupted half-way, converge on the same schema. Tables are shaped by the queries
that read them: one partition per symbol and time bucket, never an unbounded partition.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

# The windows (in days) of the simple moving averages the `moving_averages` table holds.
MOVING_AVERAGE_WINDOWS: tuple[int, ...] = (7, 14, 30, 50, 100, 200)


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]


def candle_bucket(interval: str, open_time_ms: int) -> dt.date:
    """The ``bucket`` of a candle: its UTC day (1m), month (1h) or year (1d), as a date."""
    day = dt.datetime.fromtimestamp(open_time_ms / 1000, dt.UTC).date()
    if interval == "1m":
        return day
    if interval == "1h":
        return day.replace(day=1)
    return day.replace(month=1, day=1)


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "candles by symbol, interval and time bucket",
        (
            # bucket: the UTC day of a 1m candle, the month of a 1h candle, the year of a 1d candle,
            # so a partition holds at most 1,440 / 744 / 366 rows.
            """
            CREATE TABLE IF NOT EXISTS candles (
                symbol text,
                interval text,
                bucket date,
                open_time timestamp,
                close_time timestamp,
                exchange text,
                open double,
                high double,
                low double,
                close double,
                volume double,
                quote_volume double,
                trades int,
                PRIMARY KEY ((symbol, interval, bucket), open_time)
            ) WITH CLUSTERING ORDER BY (open_time ASC)
            """,
        ),
    ),
    Migration(
        2,
        "trades by symbol and day; trade statistics per minute (by day) and per hour (by month)",
        (
            # Trades keyed by event time and id: a trade delivered twice is one row, and
            # `/{symbol}/trades/{n}` reads one or two day partitions by time range.
            """
            CREATE TABLE IF NOT EXISTS trades (
                symbol text,
                bucket date,
                ts timestamp,
                trade_id text,
                exchange text,
                side text,
                size double,
                price double,
                PRIMARY KEY ((symbol, bucket), ts, trade_id)
            ) WITH CLUSTERING ORDER BY (ts ASC, trade_id ASC)
            """,
            # At most 1,440 rows per partition (one per minute of the day).
            """
            CREATE TABLE IF NOT EXISTS trade_stats_minute (
                symbol text,
                bucket date,
                minute timestamp,
                trades int,
                volume double,
                quote_volume double,
                buy_volume double,
                sell_volume double,
                vwap double,
                last_price double,
                PRIMARY KEY ((symbol, bucket), minute)
            ) WITH CLUSTERING ORDER BY (minute ASC)
            """,
            # bucket: the first day of the hour's month, at most 744 rows per partition.
            """
            CREATE TABLE IF NOT EXISTS trade_stats_hour (
                symbol text,
                bucket date,
                hour timestamp,
                trades int,
                volume double,
                quote_volume double,
                buy_volume double,
                sell_volume double,
                vwap double,
                last_price double,
                PRIMARY KEY ((symbol, bucket), hour)
            ) WITH CLUSTERING ORDER BY (hour ASC)
            """,
        ),
    ),
    Migration(
        3,
        "latest bid/ask and last trade price per symbol",
        (
            # One row per symbol; writers set USING TIMESTAMP = event time (µs), so the quote
            # columns and the trade columns each keep the newest event whatever the arrival order.
            """
            CREATE TABLE IF NOT EXISTS latest_prices (
                symbol text PRIMARY KEY,
                exchange text,
                bid double,
                ask double,
                quote_time timestamp,
                last_price double,
                trade_time timestamp
            )
            """,
        ),
    ),
    Migration(
        4,
        "moving averages, next-minute predictions and daily forecasts",
        (
            # bucket: the first day of the year, at most 366 rows per partition.
            """
            CREATE TABLE IF NOT EXISTS moving_averages (
                symbol text,
                window_days int,
                bucket date,
                day date,
                sma double,
                PRIMARY KEY ((symbol, window_days, bucket), day)
            ) WITH CLUSTERING ORDER BY (day ASC)
            """,
            # One row per predicted candle (target_time = its open time; the newest prediction of
            # it wins), bucket: the target's UTC day. `actual` is the candle's close once known.
            """
            CREATE TABLE IF NOT EXISTS predictions (
                symbol text,
                horizon text,
                bucket date,
                target_time timestamp,
                made_at timestamp,
                model text,
                model_version text,
                predicted double,
                lower double,
                upper double,
                actual double,
                PRIMARY KEY ((symbol, horizon, bucket), target_time)
            ) WITH CLUSTERING ORDER BY (target_time ASC)
            """,
            # Each daily forecast kept whole, newest first; bucket: the year it was made in.
            """
            CREATE TABLE IF NOT EXISTS forecasts (
                symbol text,
                bucket date,
                made_at timestamp,
                target_time timestamp,
                model text,
                model_version text,
                predicted double,
                lower double,
                upper double,
                PRIMARY KEY ((symbol, bucket), made_at, target_time)
            ) WITH CLUSTERING ORDER BY (made_at DESC, target_time ASC)
            """,
        ),
    ),
    Migration(
        5,
        "symbols seen, each with its newest event time: the platform's clock",
        (
            # One row per symbol; writers set USING TIMESTAMP = event time (µs), so the newest event
            # wins whatever the arrival order. max(latest_event_time) is "now" for the API and
            # retention: wall time when live, the replayed moment when replaying history.
            """
            CREATE TABLE IF NOT EXISTS symbols (
                symbol text PRIMARY KEY,
                exchange text,
                latest_event_time timestamp
            )
            """,
        ),
    ),
    Migration(
        6,
        "candles keep whether they cover their whole interval",
        (
            # false: the venue closed the candle early (an outage), close_time is the real one. Rows
            # written before this column read null, which means true: only full candles were stored.
            "ALTER TABLE candles ADD IF NOT EXISTS is_complete boolean",
        ),
    ),
    Migration(
        7,
        "daily forecasts keep why a fallback answered",
        (
            # null: the daily model answered.
            "ALTER TABLE forecasts ADD IF NOT EXISTS reason text",
        ),
    ),
    Migration(
        8,
        "predictions kept per model, and the walk-forward score each model is served with",
        (
            # `predictions` keeps one prediction per candle (the newest wins); with several minute
            # models each keeps its own here, so the API can answer for the one asked for.
            """
            CREATE TABLE IF NOT EXISTS model_predictions (
                symbol text,
                horizon text,
                bucket date,
                model text,
                target_time timestamp,
                made_at timestamp,
                model_version text,
                predicted double,
                lower double,
                upper double,
                actual double,
                PRIMARY KEY ((symbol, horizon, bucket, model), target_time)
            ) WITH CLUSTERING ORDER BY (target_time DESC)
            """,
            # One row per model of a symbol and horizon: its newest version's walk-forward MAE over
            # the naive forecast's and whether it passed not_worse_than_baseline (else naive answers).
            """
            CREATE TABLE IF NOT EXISTS model_scores (
                symbol text,
                horizon text,
                model text,
                model_version text,
                mae_ratio double,
                passed boolean,
                PRIMARY KEY ((symbol, horizon), model)
            )
            """,
        ),
    ),
    Migration(
        9,
        "the latest order book per symbol",
        (
            # One row per symbol, bounded by the symbols followed; writers set USING TIMESTAMP =
            # the book's event time (µs), so a book arriving late never replaces a newer one.
            # Levels are [price, size] best first, the top PRICEPIPE_BOOK_DEPTH of each side.
            """
            CREATE TABLE IF NOT EXISTS order_books (
                symbol text PRIMARY KEY,
                exchange text,
                ts timestamp,
                sequence bigint,
                bids list<frozen<tuple<double, double>>>,
                asks list<frozen<tuple<double, double>>>
            )
            """,
        ),
    ),
    Migration(
        10,
        "API keys, stored hashed, and the browser sessions opened with them",
        (
            # One row per key: the SHA-256 of the key (never the key), what it may read and how often.
            """
            CREATE TABLE IF NOT EXISTS api_keys (
                name text PRIMARY KEY,
                key_hash blob,
                scopes set<text>,
                rate_limit int,
                rate_period_s int,
                created_at timestamp
            )
            """,
            # A session of POST /login: the SHA-256 of its cookie's token and the hash of the key it
            # was opened with, so revoking (or replacing) that key ends it; rows expire with the cookie.
            """
            CREATE TABLE IF NOT EXISTS api_sessions (
                token_hash blob PRIMARY KEY,
                key_hash blob,
                created_at timestamp
            )
            """,
        ),
    ),
)
