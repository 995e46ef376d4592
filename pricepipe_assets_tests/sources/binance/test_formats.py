"""Binance's kline and aggTrades layouts parse to the contract; bad rows are refused with a reason, quirks are kept."""

from __future__ import annotations

import pytest

from pricepipe_assets.contract.records import Candle, RecordError, Trade
from pricepipe_assets.sources.binance import formats

SPOT_2024_ROW = "1704067200000,42283.58000000,42298.62000000,42261.02000000,42298.61000000,35.92724000,1704067259999,1519031.69451920,1327,23.18766000,980394.71034560,0"
SPOT_2026_1H_ROW = "1778198400000000,80006.00000000,80142.84000000,79729.72000000,79831.99000000,958.06006000,1778201999999999,76636658.96208970,67626,559.85461000,44801546.15802500,0"
AGG_TRADE_ROW = "480537903,79972.8,542.0,1123474160,1123474164,1778198400020,true"


def test_spot_kline_row_in_milliseconds() -> None:
    candle = formats.candle_from_binance_row(SPOT_2024_ROW.split(","), "BTCUSDT", "1m")
    assert candle == Candle("binance", "BTCUSDT", "1m", 1704067200000, 1704067259999, 42283.58, 42298.62, 42261.02,
                            42298.61, 35.92724, 1519031.6945192, 1327, True)
    assert candle.topic == "candles.1m"


def test_microsecond_kline_row_is_normalised_to_milliseconds() -> None:
    candle = formats.candle_from_binance_row(SPOT_2026_1H_ROW.split(","), "BTCUSDT", "1h")
    assert (candle.open_time, candle.close_time) == (1778198400000, 1778201999999)
    assert candle.topic == "candles.1h"


def test_rest_kline_array_with_numbers_and_strings() -> None:
    row = [1704067200000, "42283.58", "42298.62", "42261.02", "42298.61", "35.92724", 1704067259999, "1519031.69", 1327,
           "23.18", "980394.71", "0"]
    assert formats.candle_from_binance_row(row, "BTCUSDT", "1m").trades == 1327


def test_websocket_kline_event_keeps_open_flag() -> None:
    event = {"e": "kline", "E": 1704067230000, "s": "BTCUSDT", "k": {
        "t": 1704067200000, "T": 1704067259999, "s": "BTCUSDT", "i": "1m", "o": "42283.58", "c": "42290.00",
        "h": "42298.62", "l": "42261.02", "v": "10.5", "n": 300, "x": False, "q": "444000.1"}}
    candle = formats.candle_from_binance_event(event)
    assert candle.is_closed is False and candle.close == 42290.0


def test_agg_trade_taker_side_follows_is_buyer_maker() -> None:
    sell = formats.trade_from_binance_agg_row(AGG_TRADE_ROW.split(","), "BTCUSD_PERP", exchange="binance-cm")
    buy = formats.trade_from_binance_agg_row(AGG_TRADE_ROW.replace("true", "false").split(","), "BTCUSD_PERP")
    assert (sell.side, buy.side) == ("sell", "buy")
    assert sell == Trade("binance-cm", "BTCUSD_PERP", "480537903", 1778198400020, "sell", 542.0, 79972.8)


def test_open_outside_low_high_is_kept_and_reported_as_a_quirk() -> None:
    row = SPOT_2024_ROW.split(",")
    row[1] = "42300.00"  # open = previous close, above this minute's high: real venues do this
    candle = formats.candle_from_binance_row(row, "BTCUSDT", "1m")
    assert candle.open == 42300.0
    assert candle.quirks() == ["open 42300.0 outside [low 42261.02, high 42298.62]"]


def test_a_kline_the_venue_closed_early_is_kept_with_its_real_close_time() -> None:
    row = SPOT_2024_ROW.split(",")
    row[6] = "1704067231250"  # trading stopped 31.25 s into the minute; the dump keeps the candle
    candle = formats.candle_from_binance_row(row, "BTCUSDT", "1m")
    assert (candle.close_time, candle.is_complete, candle.close) == (1704067231250, False, 42298.61)
    assert formats.candle_from_binance_row(SPOT_2024_ROW.split(","), "BTCUSDT", "1m").is_complete is True


def test_an_early_close_in_microseconds_is_compared_after_normalising() -> None:
    row = SPOT_2026_1H_ROW.split(",")
    row[6] = "1778200000000000"  # 26 min 40 s into the hour
    candle = formats.candle_from_binance_row(row, "BTCUSDT", "1h")
    assert (candle.close_time, candle.is_complete) == (1778200000000, False)
    assert formats.candle_from_binance_row(SPOT_2026_1H_ROW.split(","), "BTCUSDT", "1h").is_complete is True


@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [
        (4, "42400.0", "close 42400.0 is outside [low 42261.02, high 42298.62]"),
        (2, "42000.0", "high 42000.0 is below low 42261.02"),
        (3, "-1", "low must be positive"),
        (1, "NaN", "open must be finite"),
        (2, "inf", "high must be finite"),
        (5, "-3", "volume must not be negative"),
        (5, "lots", "volume must be a number, got 'lots'"),
        (0, "1704067200001", "open_time 1704067200001 is not aligned to a 1m boundary"),
        (6, "1704067260000", "close_time 1704067260000 is outside its 1m candle [open_time, open_time + 59999]"),
        (6, "1704067199999", "close_time 1704067199999 is outside its 1m candle [open_time, open_time + 59999]"),
        (0, "99", "open_time 99 is not a plausible time"),
        (8, "12.5", "trades must be an integer"),
    ],
)
def test_invalid_kline_rows_are_refused_with_a_reason(column: int, value: str, reason: str) -> None:
    row = SPOT_2024_ROW.split(",")
    row[column] = value
    with pytest.raises(RecordError, match=reason.replace("[", r"\[").replace("+", r"\+")):
        formats.candle_from_binance_row(row, "BTCUSDT", "1m")


def test_far_future_timestamp_is_refused() -> None:
    row = SPOT_2024_ROW.split(",")
    row[0], row[6] = "4102444800000", "4102444859999"  # 2100-01-01
    with pytest.raises(RecordError, match="not a plausible time"):
        formats.candle_from_binance_row(row, "BTCUSDT", "1m")
