"""Records: JSON round trips use exactly the contract's fields, bad messages are refused with a reason."""

from __future__ import annotations

import dataclasses
import json
import math

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
