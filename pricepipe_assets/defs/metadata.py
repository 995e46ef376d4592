"""Materialization metadata shared by the asset groups, in the terms a newcomer reads in the UI."""

from typing import TYPE_CHECKING, Any, cast

import dagster as dg

from pricepipe_assets.contract.utc import utc_iso

# What an asset returns. Dagster reads the return annotation and wants the bare class (it refuses a
# subscripted one on an asset with checks), so only the type checker sees the value type.
if TYPE_CHECKING:
    Materialized = dg.MaterializeResult[Any]
else:
    Materialized = dg.MaterializeResult


def time_range_metadata(frame: Any, time_column: str = "open_time") -> dict[str, Any]:
    """Rows, symbols and time range of a pandas frame, as a newcomer reads them in the UI."""
    if frame.empty:
        return {"dagster/row_count": 0}
    return {
        "dagster/row_count": len(frame),
        "symbols": dg.MetadataValue.json(sorted(frame["symbol"].unique().tolist())),
        "first_time": utc_iso(int(frame[time_column].min())),
        "last_time": utc_iso(int(frame[time_column].max())),
    }


def touched_by_latest(instance: dg.DagsterInstance, asset: str) -> tuple[list[str], list[str]]:
    """The symbols and days of the asset's latest materialization (none before the first one): what
    a check looks at, so its cost follows the batch, not the size of the whole table."""
    event = instance.get_latest_materialization_event(dg.AssetKey(asset))
    if event is None or event.asset_materialization is None:
        return [], []
    metadata = event.asset_materialization.metadata
    # Both are JSON lists of strings, written by `batch_metadata`.
    symbols, days = metadata.get("symbols"), metadata.get("days")
    return cast(list[str], symbols.value if symbols else []), cast(list[str], days.value if days else [])
