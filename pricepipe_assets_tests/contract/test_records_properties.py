"""Property-based tests: hostile input to every parser and validator either becomes a valid record
or is refused with a RecordError and a reason; nothing else escapes, nothing invalid gets through."""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pricepipe_assets.contract import topics
from pricepipe_assets.contract.records import RECORD_TYPES, Candle, Record, RecordError, decode
from pricepipe_assets.sources.binance.formats import (
    candle_from_binance_event,
    candle_from_binance_row,
    trade_from_binance_agg_row,
)
from pricepipe_assets.sources.bitmex.formats import quote_from_bitmex, trade_from_bitmex

# JSON-ish values of every shape, including the ones a venue should never send.
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30),
    st.sampled_from(["NaN", "inf", "-1", "0", "1e308", "1e400", "1704067200000", "1704067200000000", "BTCUSDT"]),
)
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                      max_leaves=10)
CANDLE = Candle("binance", "BTCUSDT", "1m", 1704067200000, 1704067259999, 42283.58, 42298.62, 42261.02, 42298.61,
                35.92724, 1519032.9, 1327, True).to_dict()

PROPERTIES = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def refused_or_valid(call: Any) -> Record | None:
    """Run a parser: a record must pass its own check, a refusal must be a RecordError with a reason."""
    try:
        record = call()
    except RecordError as error:
        assert str(error), "a refusal must say why"
        return None
    record.check()
    for name, value in record.to_dict().items():
        assert not (isinstance(value, float) and not math.isfinite(value)), f"{name} is {value}"
    return record


@PROPERTIES
@given(topic=st.sampled_from([topics.CANDLES_1M, topics.TRADES, topics.QUOTES, topics.PREDICTIONS, "nope"]),
       raw=st.one_of(st.none(), st.binary(max_size=200), values.map(lambda v: json.dumps(v).encode())))
def test_any_bytes_on_any_topic_decode_or_are_refused_with_a_reason(topic: str, raw: bytes | None) -> None:
    refused_or_valid(lambda: decode(topic, raw))


@PROPERTIES
@given(field=st.sampled_from(sorted(CANDLE)), value=values)
def test_a_candle_with_one_field_replaced_by_anything_is_valid_or_refused(field: str, value: Any) -> None:
    candle = refused_or_valid(lambda: decode(topics.CANDLES_1M, json.dumps({**CANDLE, field: value}).encode()))
    if candle is not None and field in ("open", "high", "low", "close", "volume"):
        assert isinstance(getattr(candle, field), float)


@PROPERTIES
@given(row=st.lists(values, max_size=14))
def test_kline_and_agg_trade_rows_of_any_shape_are_parsed_or_refused(row: list[Any]) -> None:
    refused_or_valid(lambda: candle_from_binance_row(row, "BTCUSDT", "1m"))
    refused_or_valid(lambda: trade_from_binance_agg_row(row, "BTCUSD_PERP"))


@PROPERTIES
@given(item=values)
def test_websocket_elements_of_any_shape_are_parsed_or_refused(item: Any) -> None:
    refused_or_valid(lambda: candle_from_binance_event(item))
    refused_or_valid(lambda: trade_from_bitmex(item))
    refused_or_valid(lambda: quote_from_bitmex(item))


@PROPERTIES
@given(size=st.one_of(st.floats(max_value=0.0), st.just(float("nan")), st.just(float("inf"))),
       price=st.one_of(st.floats(max_value=0.0), st.just(float("nan")), st.just(-float("inf"))))
def test_non_positive_or_non_finite_sizes_and_prices_never_pass(size: float, price: float) -> None:
    trade = {"exchange": "bitmex", "symbol": "XBTUSD", "trade_id": "t1", "ts": 1704067200000, "side": "buy"}
    for bad in ({"size": size, "price": 100.0}, {"size": 1.0, "price": price}):
        assert refused_or_valid(lambda bad=bad: decode(topics.TRADES, json.dumps({**trade, **bad}).encode())) is None


def _outcome(call: Any) -> tuple[str, Any]:
    try:
        return "value", call()
    except Exception as error:  # noqa: BLE001 - the kind and message of any failure are what is compared
        return type(error).__name__, str(error)


@PROPERTIES
@given(topic=st.sampled_from([topics.CANDLES_1M, topics.TRADES, topics.QUOTES, topics.PREDICTIONS]),
       raw=st.one_of(st.binary(max_size=200), values.map(lambda v: json.dumps(v).encode()),
                     st.builds(lambda field, value: json.dumps({**CANDLE, field: value}).encode(),
                               st.sampled_from(sorted(CANDLE)), values)))
def test_decoding_gives_the_record_or_reason_the_standard_json_parser_gives(topic: str, raw: bytes) -> None:
    """The fast JSON parser behind `decode` never changes a record or a dead-letter reason."""
    record_type = RECORD_TYPES[topic]

    def with_json() -> Record:
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as error:
            raise RecordError(f"not valid JSON: {error}") from None
        return record_type.from_dict(data)

    assert _outcome(lambda: decode(topic, raw)) == _outcome(with_json)
