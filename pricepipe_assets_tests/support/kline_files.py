"""Binance's kline dump files read with plain pandas, sharing no code with the project's parsers,
so a test can compare what the pipeline stored with the source itself."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

KLINE_COLUMNS = ["open_time", "open", "high", "low", "close", "volume", "close_time", "quote_volume", "trades",
                 "taker_buy_base", "taker_buy_quote", "ignore"]
CANDLE_COLUMNS = ["symbol", "open_time", "open", "high", "low", "close", "volume", "quote_volume", "trades"]


def kline_file(shared_data: Path, symbol: str, day: str, interval: str = "1m") -> Path:
    """One day's spot kline zip in the dumps mirror."""
    return shared_data / "binance" / "data" / "spot" / "daily" / "klines" / symbol / interval / \
        f"{symbol}-{interval}-{day}.zip"


def read_minutes(shared_data: Path, symbol: str, days: tuple[str, ...]) -> pd.DataFrame:
    """Binance spot 1m klines of ``days`` (zipped CSV without header, times in ms before 2025)."""
    frames = [pd.read_csv(kline_file(shared_data, symbol, day), header=None, names=KLINE_COLUMNS) for day in days]
    candles = pd.concat(frames, ignore_index=True)
    candles["symbol"] = symbol
    return candles[CANDLE_COLUMNS]
