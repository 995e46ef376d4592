"""Time windows and the Cassandra buckets that hold them.

"The last 6 complete hours" ends where the current, incomplete hour begins; a window never
reaches past "now" (the platform clock). A range is read bucket by bucket, each bucket one
partition, so every query stays inside one bounded partition.
"""

from __future__ import annotations

import datetime as dt

from pricepipe_assets.storage.cassandra_schema import candle_bucket

STEP = {"1m": dt.timedelta(minutes=1), "1h": dt.timedelta(hours=1), "1d": dt.timedelta(days=1)}


def floor(moment: dt.datetime, interval: str) -> dt.datetime:
    """The start of the interval (1m, 1h, 1d) that ``moment`` falls in."""
    step = STEP[interval]
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return epoch + ((moment - epoch) // step) * step


def complete(now: dt.datetime, interval: str, count: int) -> tuple[dt.datetime, dt.datetime]:
    """The last ``count`` complete intervals before ``now``: [start, end) with end the current interval's start."""
    end = floor(now, interval)
    return end - count * STEP[interval], end


def buckets(interval: str, start: dt.datetime, end: dt.datetime) -> list[dt.date]:
    """The buckets (days for 1m, months for 1h, years for 1d) that [start, end) touches, in order."""
    if end <= start:
        return []
    found: list[dt.date] = []
    moment = start
    last = candle_bucket(interval, to_ms(end) - 1)
    while True:
        bucket = candle_bucket(interval, to_ms(moment))
        found.append(bucket)
        if bucket >= last:
            return found
        moment = _next_bucket_start(interval, bucket)


def _next_bucket_start(interval: str, bucket: dt.date) -> dt.datetime:
    if interval == "1m":
        day = bucket + dt.timedelta(days=1)
    elif interval == "1h":
        day = (bucket.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    else:
        day = bucket.replace(year=bucket.year + 1)
    return dt.datetime.combine(day, dt.time(), dt.UTC)


def to_ms(moment: dt.datetime) -> int:
    return round(moment.timestamp() * 1000)


def utc(value: dt.datetime) -> dt.datetime:
    """A driver timestamp (naive UTC) as an aware UTC datetime."""
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def iso(value: dt.datetime | None) -> str | None:
    """ISO-8601 UTC with milliseconds and a ``Z``, the API's one time format."""
    if value is None:
        return None
    if value.tzinfo is None:  # the driver's naive UTC: the fast path, taken for every row read
        return value.isoformat(timespec="milliseconds") + "Z"
    return value.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
