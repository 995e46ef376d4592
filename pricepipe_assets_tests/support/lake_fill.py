"""Test helper: real candles and trades into the lake's raw zone through the project's own lake writer."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from pricepipe_assets.contract.records import Candle, Trade
from pricepipe_assets.defs.lake.assets import candle_row, trade_row, write_chunks
from pricepipe_assets.defs.resources import LakeResource
from pricepipe_assets.kafka.batches import Batch, Delivered, OffsetRange
from pricepipe_assets.sources.binance.dumps import BinanceDumps, Dataset
from pricepipe_assets.storage.lake_datasets import RAW_CANDLES, RAW_TRADES


def real_minutes(shared_data: Path, cache: Path, symbol: str, first: dt.date, last: dt.date) -> list[Candle]:
    dumps = BinanceDumps(cache, (shared_data / "binance").as_uri())
    return list(dumps.records(Dataset.klines(symbol, "1m"), first, last))


def write_raw_candles(lake: LakeResource, candles: list[Candle]) -> None:
    """As ``candles_lake`` would store them had they arrived on partition 0 in this order."""
    batch = Batch([OffsetRange("candles.1m", 0, 0, len(candles))],
                  [Delivered("candles.1m", 0, offset, candle) for offset, candle in enumerate(candles)])
    write_chunks(lake, batch, RAW_CANDLES, ["interval", "symbol", "date"], candle_row)


def write_raw_trades(lake: LakeResource, trades: list[Trade]) -> None:
    """As ``trades_lake`` would store them had they arrived on partition 0 in this order."""
    batch = Batch([OffsetRange("trades", 0, 0, len(trades))],
                  [Delivered("trades", 0, offset, trade) for offset, trade in enumerate(trades)])
    write_chunks(lake, batch, RAW_TRADES, ["symbol", "date"], trade_row)
