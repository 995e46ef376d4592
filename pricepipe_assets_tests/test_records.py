"""Records: every venue layout parses to the contract, bad input is refused with a reason, quirks are kept."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

from pricepipe_assets import records
from pricepipe_assets.records import (
    Candle,
    DeadLetter,
    Prediction,
    Quote,
    RecordError,
    Trade,
)
from pricepipe_assets.sources import venue_formats

SPOT_2024_ROW = "1704067200000,42283.58000000,42298.62000000,42261.02000000,42298.61000000,35.92724000,1704067259999,1519031.69451920,1327,23.18766000,980394.71034560,0"
SPOT_2026_1H_ROW = "1778198400000000,80006.00000000,80142.84000000,79729.72000000,79831.99000000,958.06006000,1778201999999999,76636658.96208970,67626,559.85461000,44801546.15802500,0"
AGG_TRADE_ROW = "480537903,79972.8,542.0,1123474160,1123474164,1778198400020,true"


def test_spot_kline_row_in_milliseconds() -> None:
    candle = venue_formats.candle_from_binance_row(SPOT_2024_ROW.split(","), "BTCUSDT", "1m")
    assert candle == Candle("binance", "BTCUSDT", "1m", 1704067200000, 1704067259999, 42283.58, 42298.62, 42261.02,
                            42298.61, 35.92724, 1519031.6945192, 1327, True)
    assert candle.topic == "candles.1m"


def test_microsecond_kline_row_is_normalised_to_milliseconds() -> None:
    candle = venue_formats.candle_from_binance_row(SPOT_2026_1H_ROW.split(","), "BTCUSDT", "1h")
    assert (candle.open_time, candle.close_time) == (1778198400000, 1778201999999)
    assert candle.topic == "candles.1h"


def test_rest_kline_array_with_numbers_and_strings() -> None:
    row = [1704067200000, "42283.58", "42298.62", "42261.02", "42298.61", "35.92724", 1704067259999, "1519031.69", 1327,
           "23.18", "980394.71", "0"]
    assert venue_formats.candle_from_binance_row(row, "BTCUSDT", "1m").trades == 1327


def test_websocket_kline_event_keeps_open_flag() -> None:
    event = {"e": "kline", "E": 1704067230000, "s": "BTCUSDT", "k": {
        "t": 1704067200000, "T": 1704067259999, "s": "BTCUSDT", "i": "1m", "o": "42283.58", "c": "42290.00",
        "h": "42298.62", "l": "42261.02", "v": "10.5", "n": 300, "x": False, "q": "444000.1"}}
    candle = venue_formats.candle_from_binance_event(event)
    assert candle.is_closed is False and candle.close == 42290.0


def test_agg_trade_taker_side_follows_is_buyer_maker() -> None:
    sell = venue_formats.trade_from_binance_agg_row(AGG_TRADE_ROW.split(","), "BTCUSD_PERP", exchange="binance-cm")
    buy = venue_formats.trade_from_binance_agg_row(AGG_TRADE_ROW.replace("true", "false").split(","), "BTCUSD_PERP")
    assert (sell.side, buy.side) == ("sell", "buy")
    assert sell == Trade("binance-cm", "BTCUSD_PERP", "480537903", 1778198400020, "sell", 542.0, 79972.8)


def test_bitmex_trade_and_quote() -> None:
    trade = venue_formats.trade_from_bitmex({"timestamp": "2024-01-01T00:00:00.123Z", "symbol": "XBTUSD", "side": "Sell",
                                       "size": 100, "price": 42000.5, "trdMatchID": "00000000-aaaa"})
    assert (trade.ts, trade.side, trade.size) == (1704067200123, "sell", 100.0)
    quote = venue_formats.quote_from_bitmex({"timestamp": "2024-01-01T00:00:01.000Z", "symbol": "XBTUSD", "bidSize": 5,
                                       "bidPrice": 42000.0, "askPrice": 42000.5, "askSize": 7})
    assert quote == Quote("bitmex", "XBTUSD", 1704067201000, 42000.0, 42000.5, 5.0, 7.0)


def test_open_outside_low_high_is_kept_and_reported_as_a_quirk() -> None:
    row = SPOT_2024_ROW.split(",")
    row[1] = "42300.00"  # open = previous close, above this minute's high: real venues do this
    candle = venue_formats.candle_from_binance_row(row, "BTCUSDT", "1m")
    assert candle.open == 42300.0
    assert candle.quirks() == ["open 42300.0 outside [low 42261.02, high 42298.62]"]


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
        (6, "1704067260000", "close_time 1704067260000 must be open_time + 59999"),
        (0, "99", "open_time 99 is not a plausible time"),
        (8, "12.5", "trades must be an integer"),
    ],
)
def test_invalid_kline_rows_are_refused_with_a_reason(column: int, value: str, reason: str) -> None:
    row = SPOT_2024_ROW.split(",")
    row[column] = value
    with pytest.raises(RecordError, match=reason.replace("[", r"\[").replace("+", r"\+")):
        venue_formats.candle_from_binance_row(row, "BTCUSDT", "1m")


def test_far_future_timestamp_is_refused() -> None:
    row = SPOT_2024_ROW.split(",")
    row[0], row[6] = "4102444800000", "4102444859999"  # 2100-01-01
    with pytest.raises(RecordError, match="not a plausible time"):
        venue_formats.candle_from_binance_row(row, "BTCUSDT", "1m")


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        ({"timestamp": "2024-01-01T00:00:00Z", "symbol": "XBTUSD", "side": "Buy", "size": -5, "price": 1,
          "trdMatchID": "a"}, "size must be positive"),
        ({"timestamp": "yesterday", "symbol": "XBTUSD", "side": "Buy", "size": 5, "price": 1, "trdMatchID": "a"},
         "timestamp must be an ISO-8601 time"),
        ({"timestamp": "2024-01-01T00:00:00Z", "symbol": "XBT/USD", "side": "Buy", "size": 5, "price": 1,
          "trdMatchID": "a"}, "symbol must be"),
        ({"timestamp": "2024-01-01T00:00:00Z", "symbol": "XBTUSD", "side": "Hold", "size": 5, "price": 1,
          "trdMatchID": "a"}, "side must be 'buy' or 'sell'"),
        ({"timestamp": "2024-01-01T00:00:00Z", "symbol": "XBTUSD", "side": "Buy", "size": True, "price": 1,
          "trdMatchID": "a"}, "size must be a number, got bool"),
        ({"symbol": "XBTUSD"}, "BitMEX trade without field 'side'"),
    ],
)
def test_invalid_bitmex_trades_are_refused(item: dict, reason: str) -> None:
    with pytest.raises(RecordError, match=reason):
        venue_formats.trade_from_bitmex(item)


def test_quote_with_empty_book_side_or_crossed_is_refused() -> None:
    base = {"timestamp": "2024-01-01T00:00:01Z", "symbol": "XBTUSD", "bidSize": 5, "bidPrice": 42000.0,
            "askPrice": 42000.5, "askSize": 7}
    with pytest.raises(RecordError, match="bidPrice must be a number, got NoneType"):
        venue_formats.quote_from_bitmex({**base, "bidPrice": None})
    with pytest.raises(RecordError, match="crossed quote"):
        venue_formats.quote_from_bitmex({**base, "bidPrice": 42001.0})


@pytest.mark.parametrize("record", [
    Candle("binance", "ETHUSDT", "1d", 1704067200000, 1704153599999, 2352.0, 2400.0, 2300.0, 2380.0, 1.0, 2.0, 3, True),
    Trade("bitmex", "XBTUSD", "t-1", 1704067200123, "buy", 1.0, 42000.0),
    Quote("bitmex", "XBTUSD", 1704067200123, 1.0, 2.0, 3.0, 4.0),
    Prediction("BTCUSDT", "sgd", "3", "1m", 1704067200000, 1704067260000, 42000.0, 41900.0, 42100.0),
])
def test_json_round_trip_uses_exactly_the_contract_fields(record: records.Record) -> None:
    encoded = json.loads(record.to_json())
    assert set(encoded) == {"v", *(f.name for f in dataclasses.fields(record))}
    assert encoded["v"] == records.SCHEMA_VERSION
    assert records.decode(record.topic, record.to_json()) == record


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "expected a JSON object, got list"),
        (b'{"exchange": "bitmex"}', "missing field 'symbol'"),
        (b"\xff\xfe", "not valid JSON"),
        (None, "empty message"),
    ],
)
def test_decode_refuses_broken_messages(raw: bytes | None, reason: str) -> None:
    with pytest.raises(RecordError, match=reason):
        records.decode("trades", raw)


def test_json_with_nan_is_refused() -> None:
    good = json.loads(Trade("bitmex", "XBTUSD", "t-1", 1704067200123, "buy", 1.0, 42000.0).to_json())
    raw = json.dumps({**good, "price": math.nan}).encode()  # Python writes NaN, which strict JSON has not
    with pytest.raises(RecordError, match="price must be finite"):
        records.decode("trades", raw)


def test_prediction_bounds_must_hold_the_prediction() -> None:
    with pytest.raises(RecordError, match="lower <= predicted <= upper"):
        Prediction("BTCUSDT", "sgd", "3", "1m", 1704067200000, 1704067260000, 42000.0, 42001.0, 42100.0).check()


def test_dead_letter_keeps_raw_bytes_and_reason() -> None:
    letter = DeadLetter.of("trades", b"\x00\xffbroken", "not valid JSON", partition=2, offset=17)
    back = DeadLetter.from_json(letter.to_json())
    assert back.raw_bytes() == b"\x00\xffbroken"
    assert (back.source_topic, back.source_partition, back.source_offset, back.error) == ("trades", 2, 17, "not valid JSON")
    assert back.key == "trades"
