"""History read back from the lake's raw zone, for a replay: the lake is the source of truth, so a
platform can be re-fed from it without the exchange or its dumps.

The raw zone stores what Kafka delivered, so the same record can sit there twice (delivered twice
upstream); each stream here yields a record once, by its natural key, in event-time order.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from pricepipe_assets.contract.records import Candle, Trade
from pricepipe_assets.storage.lake import Lake
from pricepipe_assets.storage.lake_datasets import RAW_CANDLES, RAW_TRADES

CANDLE_PARTITIONS = pa.schema([("interval", pa.string()), ("symbol", pa.string()), ("date", pa.string())])
TRADE_PARTITIONS = pa.schema([("symbol", pa.string()), ("date", pa.string())])


def _days(start: dt.date, end: dt.date) -> pc.Expression:
    return (pc.field("date") >= start.isoformat()) & (pc.field("date") <= end.isoformat())


def candles_from_lake(lake: Lake, symbol: str, start: dt.date, end: dt.date,
                      interval: str = "1m") -> Iterator[Candle]:
    """``symbol``'s candles of the days ``start``..``end``, once per open time, oldest first."""
    where = (pc.field("interval") == interval) & (pc.field("symbol") == symbol) & _days(start, end)
    table = lake.read_dataset(RAW_CANDLES, partitioning=CANDLE_PARTITIONS, filter=where).sort_by("open_time")
    previous = None
    for row in table.to_pylist():
        if row["open_time"] != previous:
            previous = row["open_time"]
            yield Candle.from_dict(row)


def trades_from_lake(lake: Lake, symbol: str, start: dt.date, end: dt.date) -> Iterator[Trade]:
    """``symbol``'s trades of the days ``start``..``end``, once per trade id, in time order."""
    where = (pc.field("symbol") == symbol) & _days(start, end)
    table = lake.read_dataset(RAW_TRADES, partitioning=TRADE_PARTITIONS, filter=where)
    table = table.sort_by([("ts", "ascending"), ("trade_id", "ascending")])
    seen: set[str] = set()
    for row in table.to_pylist():
        if row["trade_id"] not in seen:
            seen.add(row["trade_id"])
            yield Trade.from_dict(row)


def lake_streams(lake: Lake, symbols: Sequence[str], start: dt.date, end: dt.date,
                 trades_symbol: str | None) -> list[Iterator[Candle] | Iterator[Trade]]:
    """The replay input of a lake: 1m candles per symbol, and one symbol's trades if asked for."""
    streams: list[Iterator[Candle] | Iterator[Trade]] = [candles_from_lake(lake, s, start, end) for s in symbols]
    if trades_symbol:
        streams.append(trades_from_lake(lake, trades_symbol, start, end))
    return streams
