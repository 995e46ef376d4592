"""Asset checks on the lake's candles: stored once (no duplicate keys) and complete (gap report).

Each check looks at the days the asset's latest materialization touched (its ``symbols`` and
``days`` metadata), so its cost follows the batch, not the size of the whole table.
"""

# No `from __future__ import annotations` here: Dagster reads the context annotation at definition time.
import datetime as dt
import itertools
from collections.abc import Iterable
from typing import Any, NotRequired, TypedDict

import dagster as dg

from pricepipe_assets.contract.records import INTERVAL_MS
from pricepipe_assets.contract.utc import utc_iso
from pricepipe_assets.defs.metadata import touched_by_latest
from pricepipe_assets.defs.resources.lake import LakeResource
from pricepipe_assets.storage.lake_datasets import RAW_CANDLES

MINUTE_MS = INTERVAL_MS["1m"]
SHOWN_AT_MOST = 50


def _raw_candle_keys(lake: LakeResource, days: list[str], columns: list[str]) -> Any:
    """``columns`` of every raw 1m candle stored for ``days``, as a pandas frame."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    partitioning = pa.schema([("interval", pa.string()), ("symbol", pa.string()), ("date", pa.string())])
    table = lake.read_dataset(RAW_CANDLES, partitioning=partitioning, columns=columns,
                              filter=(ds.field("interval") == "1m") & ds.field("date").isin(days))
    return table.to_pandas()


@dg.asset_check(asset="candles_lake", description="No 1m candle (symbol, open time) is stored twice in the raw "
                "zone for the days the latest batch touched: replays must overwrite, not add.")
def candles_lake_no_duplicates(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> dg.AssetCheckResult:
    _, days = touched_by_latest(context.instance, "candles_lake")
    if not days:
        return dg.AssetCheckResult(passed=True, metadata={"candles_checked": 0})
    keys = _raw_candle_keys(lake, days, ["symbol", "open_time"])
    duplicated = keys[keys.duplicated(keep="first")]
    examples = [f"{row.symbol} {dt.datetime.fromtimestamp(row.open_time / 1000, dt.UTC).isoformat()}"
                for row in duplicated.head(SHOWN_AT_MOST).itertuples()]
    return dg.AssetCheckResult(passed=duplicated.empty, metadata={
        "candles_checked": len(keys), "duplicates": len(duplicated), "examples": dg.MetadataValue.json(examples)})


def gap_ranges(open_times: Iterable[int]) -> list[tuple[int, int]]:
    """The first and last open time of each run of minutes without a candle between the first and
    the last of ``open_times``: a range stays one entry however long the outage, where a list of
    minutes would have to be cut off."""
    present = sorted(set(open_times))
    return [(before + MINUTE_MS, after - MINUTE_MS) for before, after in itertools.pairwise(present)
            if after - before > MINUTE_MS]


class CandleSpan(TypedDict):
    """A candle's open and close times, ISO 8601."""

    open_time: str
    close_time: str


class Gap(TypedDict):
    """A run of minutes without a candle, inclusive, and the early-closed candle right before it, if any."""

    first: str
    last: str
    minutes: int
    after_early_close: NotRequired[CandleSpan]


def symbol_gap_report(candles: Iterable[tuple[int, int]]) -> tuple[list[Gap], list[CandleSpan]]:
    """One symbol's gaps and early-closed candles from its ``(open_time, close_time)`` pairs.

    An early close is how an outage starts inside a minute, so a gap right after such a candle names
    it (``after_early_close``): the outage is read as one event, not as two unrelated findings.
    """
    close_times = dict(candles)
    early = {start: end for start, end in sorted(close_times.items()) if end != start + MINUTE_MS - 1}
    closes: list[CandleSpan] = [{"open_time": utc_iso(start), "close_time": utc_iso(end)}
                                for start, end in early.items()]
    gaps: list[Gap] = []
    for first, last in gap_ranges(close_times):
        gap: Gap = {"first": utc_iso(first), "last": utc_iso(last), "minutes": (last - first) // MINUTE_MS + 1}
        before = first - MINUTE_MS
        if before in early:
            gap["after_early_close"] = {"open_time": utc_iso(before), "close_time": utc_iso(early[before])}
        gaps.append(gap)
    return gaps, closes


@dg.asset_check(asset="candles_lake", description="Gap report: every run of minutes with no 1m candle in the raw "
                "zone between each symbol's first and last candle of the days the latest batch touched, as "
                "`{first, last, minutes}` ranges, and the candles the venue closed early (an outage inside the "
                "minute), named beside the gap that follows them. A warning, because real dumps do have gaps.")
def candles_lake_gaps(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> dg.AssetCheckResult:
    _, days = touched_by_latest(context.instance, "candles_lake")
    if not days:
        return dg.AssetCheckResult(passed=True, metadata={"missing_minutes": 0, "early_closed": 0})
    keys = _raw_candle_keys(lake, days, ["symbol", "open_time", "close_time"])
    gaps_by_symbol: dict[str, list[Gap]] = {}
    early_by_symbol: dict[str, list[CandleSpan]] = {}
    for symbol, group in keys.groupby("symbol"):
        gaps, closes = symbol_gap_report(zip(group["open_time"].tolist(), group["close_time"].tolist(), strict=True))
        if gaps:
            gaps_by_symbol[str(symbol)] = gaps
        if closes:
            early_by_symbol[str(symbol)] = closes
    missing = sum(gap["minutes"] for gaps in gaps_by_symbol.values() for gap in gaps)
    early = sum(len(closes) for closes in early_by_symbol.values())
    return dg.AssetCheckResult(passed=missing == 0 and early == 0, severity=dg.AssetCheckSeverity.WARN, metadata={
        "missing_minutes": missing, "gaps_by_symbol": dg.MetadataValue.json(gaps_by_symbol),
        "early_closed": early, "early_closed_by_symbol": dg.MetadataValue.json(early_by_symbol),
        "days": dg.MetadataValue.json(days)})


LAKE_CHECKS = [candles_lake_no_duplicates, candles_lake_gaps]
