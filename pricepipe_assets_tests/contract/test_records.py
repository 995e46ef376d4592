"""Records: JSON round trips use exactly the contract's fields, bad messages are refused with a reason."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re

import pytest

from pricepipe_assets.contract import records
from pricepipe_assets.contract.records import (
    Candle,
    DeadLetter,
    Prediction,
    Quote,
    RecordError,
    Trade,
)

# A real BTCUSDT minute (Binance spot dump, 2024-01-01 00:00).
BTC_MINUTE = Candle("binance", "BTCUSDT", "1m", 1704067200000, 1704067259999, 42283.58, 42298.62, 42261.02, 42298.61,
                    35.92724, 1519031.6945192, 1327, True)
# The same minute had the venue stopped trading 31.25 s into it.
EARLY_CLOSED = dataclasses.replace(BTC_MINUTE, close_time=1704067231250, is_complete=False)


@pytest.mark.parametrize("record", [
    Candle("binance", "ETHUSDT", "1d", 1704067200000, 1704153599999, 2352.0, 2400.0, 2300.0, 2380.0, 1.0, 2.0, 3, True),
    EARLY_CLOSED,
    Trade("bitmex", "XBTUSD", "t-1", 1704067200123, "buy", 1.0, 42000.0),
    Quote("bitmex", "XBTUSD", 1704067200123, 1.0, 2.0, 3.0, 4.0),
    Prediction("BTCUSDT", "sgd", "3", "1m", 1704067200000, 1704067260000, 42000.0, 41900.0, 42100.0),
    Prediction("BTCUSDT", "naive", "history", "1d", 1704067200000, 1704153600000, 42000.0, 41000.0, 43000.0,
               "no daily model yet: 60 closed days of history"),
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


TRADE = json.loads(Trade("bitmex", "XBTUSD", "t-1", 1704067200123, "buy", 1.0, 42000.0).to_json())


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"[" * 2000 + b"]" * 2000, "nested more deeply"),
        (b'{"a":' * 5000 + b"1" + b"}" * 5000, "nested more deeply"),
        (json.dumps({**TRADE, "ts": 2**64}).encode(), "ts must fit in 64 bits"),
        (json.dumps({**TRADE, "ts": str(2**64)}).encode(), "ts must fit in 64 bits"),
        (json.dumps({**TRADE, "ts": "9" * 5000}).encode(), "ts must be an integer"),
        (json.dumps({**TRADE, "price": 10**400}).encode(), "price must be a number"),
        (b'{"price": ' + b"9" * 5000 + b"}", "not valid JSON"),
        (json.dumps({**TRADE, "price": 1e300}).encode(), "price must be 0 or between"),
        (json.dumps({**TRADE, "size": 5e-324}).encode(), "size must be 0 or between"),
        (json.dumps({**TRADE, "trade_id": "\ud800"}).encode(), "trade_id is not encodable as UTF-8"),
        (json.dumps({**TRADE, "trade_id": "x" * 1_200_000}).encode(), "trade_id must be at most 256 characters"),
        (json.dumps({**TRADE, "exchange": "\ud800"}).encode(), "exchange is not encodable as UTF-8"),
    ],
)
def test_decode_refuses_hostile_messages_with_a_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(RecordError, match=reason):
        records.decode("trades", raw)


def test_a_failure_no_parser_foresaw_is_still_a_refusal(monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(raw: bytes) -> Trade:
        raise MemoryError("no room")

    monkeypatch.setattr(Trade, "from_json", explode)
    with pytest.raises(RecordError, match="could not be decoded: MemoryError: no room"):
        records.decode("trades", json.dumps(TRADE).encode())


def test_a_prediction_for_a_time_beyond_any_date_is_refused() -> None:
    with pytest.raises(RecordError, match="more than a year from made_at"):
        Prediction("BTCUSDT", "sgd", "3", "1m", 1704067200000, 2**62 // 60_000 * 60_000, 1.0, 1.0, 1.0).check()


def test_a_dead_letter_keeps_the_first_64_kib_with_the_size_and_hash_of_the_whole_input() -> None:
    raw = bytes(range(256)) * 5000
    letter = DeadLetter.from_json(DeadLetter.of("trades", raw, "too big", partition=0, offset=3).to_json())
    assert letter.raw_bytes() == raw[:65536]
    assert (letter.size, letter.sha256, letter.is_truncated) == (len(raw), hashlib.sha256(raw).hexdigest(), True)
    assert len(letter.to_json()) < 100_000
    reduced = letter.without_raw()
    assert (reduced.raw, reduced.size, reduced.sha256) == ("", letter.size, letter.sha256)


def test_a_dead_letter_written_before_size_and_hash_existed_still_decodes() -> None:
    old = {"v": 1, "source_topic": "trades", "source_partition": 0, "source_offset": 1, "error": "e", "raw": "AA=="}
    letter = DeadLetter.from_json(json.dumps(old))
    assert (letter.raw_bytes(), letter.size, letter.sha256, letter.is_truncated) == (b"\x00", None, None, False)


def test_a_candle_built_without_the_flag_covers_its_interval() -> None:
    assert BTC_MINUTE.is_complete is True
    assert json.loads(BTC_MINUTE.to_json())["is_complete"] is True


@pytest.mark.parametrize("flag", ["absent", None])
def test_a_message_from_before_the_flag_decodes_as_a_complete_candle(flag: str | None) -> None:
    message = json.loads(BTC_MINUTE.to_json())
    del message["is_complete"]
    if flag is None:
        message["is_complete"] = None
    assert records.decode("candles.1m", json.dumps(message).encode()) == BTC_MINUTE


def test_an_early_closed_candle_keeps_its_real_close_time_as_its_event_time() -> None:
    back = records.decode("candles.1m", EARLY_CLOSED.to_json())
    assert (back.close_time, back.is_complete, back.event_time) == (1704067231250, False, 1704067231250)
    assert back.timestamp == BTC_MINUTE.open_time


@pytest.mark.parametrize(("changes", "reason"), [
    ({"close_time": 1704067231250}, "is_complete must be false for close_time 1704067231250 (open_time + 31250)"),
    ({"is_complete": False}, "is_complete must be true for close_time 1704067259999 (open_time + 59999)"),
    ({"close_time": 1704067260000, "is_complete": False},
     "close_time 1704067260000 is outside its 1m candle [open_time, open_time + 59999]"),
    ({"close_time": 1704067199999, "is_complete": False},
     "close_time 1704067199999 is outside its 1m candle [open_time, open_time + 59999]"),
    ({"is_complete": "false"}, "is_complete must be true or false"),
])
def test_a_close_time_outside_the_candle_or_against_the_flag_is_refused(changes: dict[str, object],
                                                                        reason: str) -> None:
    message = {**json.loads(BTC_MINUTE.to_json()), **changes}
    with pytest.raises(RecordError, match=re.escape(reason)):
        records.decode("candles.1m", json.dumps(message).encode())


def test_a_prediction_message_from_before_the_reason_is_the_models_own() -> None:
    prediction = Prediction("BTCUSDT", "rf_daily", "7", "1d", 1704067200000, 1704153600000, 42000.0, 41000.0, 43000.0)
    message = json.loads(prediction.to_json())
    assert message["reason"] is None
    del message["reason"]
    assert records.decode("predictions", json.dumps(message).encode()) == prediction
