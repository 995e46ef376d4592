"""Event times as the contract writes them: milliseconds since the epoch, shown as UTC ISO-8601."""

from __future__ import annotations

import datetime as dt


def utc_iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat()


def utc_day(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).date().isoformat()


def day_start_ms(day: dt.date) -> int:
    """The first millisecond of ``day`` (UTC)."""
    return int(dt.datetime.combine(day, dt.time(), dt.UTC).timestamp() * 1000)
