"""Partition definitions shared by assets, jobs and schedules."""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg

# Binance spot opened on 2017-08-17; its daily dumps start there.
BINANCE_HISTORY_START = "2017-08-17"


def symbol_day_partitions(symbols: Sequence[str]) -> dg.MultiPartitionsDefinition:
    """One partition per symbol and UTC day (a day is published by Binance once it is over)."""
    return dg.MultiPartitionsDefinition({
        "date": dg.DailyPartitionsDefinition(start_date=BINANCE_HISTORY_START),
        "symbol": dg.StaticPartitionsDefinition(list(symbols)),
    })


def day_partitions() -> dg.DailyPartitionsDefinition:
    """One partition per UTC day since Binance's history starts: the days retention archives."""
    return dg.DailyPartitionsDefinition(start_date=BINANCE_HISTORY_START)
