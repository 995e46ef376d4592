"""Asset checks on the Kafka-fed assets: the data is right (OHLC invariants), stored once (no
duplicate keys) and complete (gap report). Whether the live tables are current is their freshness
policy's job (``defs/live.py``).

Each check looks at the days the asset's latest materialization touched (its ``symbols`` and
``days`` metadata), so its cost follows the batch, not the size of the whole table.
"""

# No `from __future__ import annotations` here: Dagster reads the context annotation at definition time.
import datetime as dt
from typing import Any

import dagster as dg

from pricepipe_assets.contract.records import INTERVAL_MS
from pricepipe_assets.defs.resources.cassandra import CassandraResource
from pricepipe_assets.defs.resources.lake import LakeResource
from pricepipe_assets.storage.lake_datasets import RAW_CANDLES

MINUTE_MS = INTERVAL_MS["1m"]
SHOWN_AT_MOST = 50

SELECT_DAY_CANDLES = """
SELECT open_time, close_time, open, high, low, close FROM candles WHERE symbol = ? AND interval = '1m' AND bucket = ?
"""


def _touched(context: dg.AssetCheckExecutionContext, asset: str) -> tuple[list[str], list[str]]:
    """The symbols and days of the asset's latest materialization (none before the first one)."""
    event = context.instance.get_latest_materialization_event(dg.AssetKey(asset))
    if event is None or event.asset_materialization is None:
        return [], []
    metadata = event.asset_materialization.metadata
    symbols = metadata.get("symbols")
    days = metadata.get("days")
    return (list(symbols.value) if symbols else []), (list(days.value) if days else [])


def ohlc_violations(row: Any) -> list[str]:
    """Why a stored candle breaks the contract (empty when it does not); open outside [low, high] is a known quirk."""
    problems = []
    if min(row.open, row.high, row.low, row.close) <= 0:
        problems.append("non-positive price")
    if row.high < row.low:
        problems.append("high < low")
    if not row.low <= row.close <= row.high:
        problems.append("close outside [low, high]")
    if row.close_time - row.open_time != dt.timedelta(milliseconds=MINUTE_MS - 1):
        problems.append("close_time is not open_time + 59.999 s")
    return problems


@dg.asset_check(asset="candles_live", description="Every 1m candle of the days the latest batch touched has "
                "positive prices, high >= low and close within [low, high] (open outside is a known venue quirk, "
                "counted but accepted).")
def candles_live_ohlc(context: dg.AssetCheckExecutionContext, cassandra: CassandraResource) -> dg.AssetCheckResult:
    symbols, days = _touched(context, "candles_live")
    select = cassandra.prepare(SELECT_DAY_CANDLES)
    checked, bad, quirks = 0, [], 0
    for symbol in symbols:
        for day in days:
            for row in cassandra.session().execute(select, (symbol, dt.date.fromisoformat(day))):
                checked += 1
                quirks += not row.low <= row.open <= row.high
                problems = ohlc_violations(row)
                if problems:
                    bad.append(f"{symbol} {row.open_time.isoformat()}: {', '.join(problems)}")
    return dg.AssetCheckResult(passed=not bad, metadata={
        "candles_checked": checked, "violations": len(bad), "open_outside_low_high": quirks,
        "examples": dg.MetadataValue.json(bad[:SHOWN_AT_MOST]), "days": dg.MetadataValue.json(days)})


def _raw_candle_keys(lake: LakeResource, days: list[str]) -> Any:
    """The (symbol, open_time) of every raw 1m candle stored for ``days``, as a pandas frame."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    partitioning = pa.schema([("interval", pa.string()), ("symbol", pa.string()), ("date", pa.string())])
    table = lake.read_dataset(RAW_CANDLES, partitioning=partitioning, columns=["symbol", "open_time"],
                              filter=(ds.field("interval") == "1m") & ds.field("date").isin(days))
    return table.to_pandas()


@dg.asset_check(asset="candles_lake", description="No 1m candle (symbol, open time) is stored twice in the raw "
                "zone for the days the latest batch touched: replays must overwrite, not add.")
def candles_lake_no_duplicates(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> dg.AssetCheckResult:
    _, days = _touched(context, "candles_lake")
    if not days:
        return dg.AssetCheckResult(passed=True, metadata={"candles_checked": 0})
    keys = _raw_candle_keys(lake, days)
    duplicated = keys[keys.duplicated(keep="first")]
    examples = [f"{row.symbol} {dt.datetime.fromtimestamp(row.open_time / 1000, dt.UTC).isoformat()}"
                for row in duplicated.head(SHOWN_AT_MOST).itertuples()]
    return dg.AssetCheckResult(passed=duplicated.empty, metadata={
        "candles_checked": len(keys), "duplicates": len(duplicated), "examples": dg.MetadataValue.json(examples)})


def missing_minutes(open_times: list[int]) -> list[int]:
    """The minutes without a candle between the first and the last of ``open_times``."""
    present = set(open_times)
    if not present:
        return []
    return [m for m in range(min(present), max(present) + 1, MINUTE_MS) if m not in present]


@dg.asset_check(asset="candles_lake", description="Gap report: the minutes with no 1m candle in the raw zone "
                "between each symbol's first and last candle of the days the latest batch touched (venue outages "
                "show here). A warning, because real dumps do have gaps.")
def candles_lake_gaps(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> dg.AssetCheckResult:
    _, days = _touched(context, "candles_lake")
    if not days:
        return dg.AssetCheckResult(passed=True, metadata={"missing_minutes": 0})
    keys = _raw_candle_keys(lake, days)
    report: dict[str, list[str]] = {}
    total = 0
    for symbol, group in keys.groupby("symbol"):
        missing = missing_minutes(group["open_time"].tolist())
        total += len(missing)
        if missing:
            report[str(symbol)] = [dt.datetime.fromtimestamp(m / 1000, dt.UTC).isoformat() for m in missing[:SHOWN_AT_MOST]]
    return dg.AssetCheckResult(passed=total == 0, severity=dg.AssetCheckSeverity.WARN, metadata={
        "missing_minutes": total, "first_missing_by_symbol": dg.MetadataValue.json(report),
        "days": dg.MetadataValue.json(days)})


ASSET_CHECKS = [candles_live_ohlc, candles_lake_no_duplicates, candles_lake_gaps]
