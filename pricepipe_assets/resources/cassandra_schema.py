"""Cassandra schema as ordered migrations, applied at start-up by :class:`CassandraResource`.

Each migration runs once per keyspace and is recorded in ``schema_migrations``; every statement
is also idempotent on its own (``IF NOT EXISTS``), so two processes starting together, or a
migration interrupted half-way, converge on the same schema. Tables are shaped by the queries
that read them: one partition per symbol and time bucket, never an unbounded partition.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


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
)
