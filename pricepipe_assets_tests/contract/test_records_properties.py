"""Property-based tests: hostile input to every validator of the contract either becomes a valid record or is refused
with a RecordError and a reason; nothing else escapes, nothing invalid gets through.

Beyond shallow JSON of a few hundred bytes, the input a broken venue or an attacker can send
(:mod:`pricepipe_assets_tests.support.hostile_json`) is drawn in every part of a valid message of every record type,
and valid records get one absurd number. The venue parsers have the same tests in ``test_venue_properties``."""

from __future__ import annotations

import functools
import hashlib
import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from pricepipe_assets.contract import topics
from pricepipe_assets.contract.books import MAX_LEVELS, OrderBook
from pricepipe_assets.contract.records import (
    DEAD_LETTER_RAW_BYTES,
    RECORD_TYPES,
    Candle,
    DeadLetter,
    Prediction,
    Quote,
    Record,
    RecordError,
    Trade,
    decode,
)
from pricepipe_assets_tests.support.hostile_json import (
    BIG_PROPERTIES,
    PROPERTIES,
    WIDE_PROPERTIES,
    Path,
    hostile,
    huge,
    part_at,
    refused_or_valid,
    repeated,
    sizes,
    slots_of,
    values,
    with_part,
)

CANDLE = Candle("binance", "BTCUSDT", "1m", 1704067200000, 1704067259999, 42283.58, 42298.62, 42261.02, 42298.61,
                35.92724, 1519032.9, 1327, True).to_dict()


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


# A valid message of every record type: the tests below break one part of one of these at a time.
VALID: dict[str, dict[str, Any]] = {
    topics.CANDLES_1M: CANDLE,
    **{topic: json.loads(record.to_json()) for topic, record in [
        (topics.CANDLES_1H, Candle("binance", "BTCUSDT", "1h", 1704067200000, 1704070799999, 42283.58, 42554.57,
                                   42261.02, 42475.23, 1271.68, 53957894.4, 40876, True)),
        (topics.CANDLES_1D, Candle("binance", "ETHUSDT", "1d", 1704067200000, 1704153599999, 2281.87, 2352.37,
                                   2265.24, 2352.04, 216702.6, 499202373.2, 622419, True)),
        (topics.TRADES, Trade("bitmex", "XBTUSD", "00000000-006d-1000-0000-000000000001", 1704067200123, "buy",
                              100.0, 42000.5)),
        (topics.QUOTES, Quote("bitmex", "XBTUSD", 1704067200123, 41999.5, 42000.0, 10.0, 12.0)),
        (topics.PREDICTIONS, Prediction("BTCUSDT", "sgd_minute", "3", "1m", 1704067200000, 1704067260000, 42000.0,
                                        41900.0, 42100.0, "no minute model yet")),
        (topics.ORDERBOOK, OrderBook("binance", "BTCUSDT", 1704067200123, 2098041696700,
                                     ((42000.0, 1.5), (41999.5, 0.2)), ((42000.5, 0.5), (42001.0, 3.0)))),
    ]},
}
SLOTS: list[tuple[str, Path]] = [(topic, path) for topic, message in VALID.items() for path in slots_of(message)]

# A valid number of every kind, replaced by an extreme one, as a JSON number or a numeric string.
# Not ``v``, which decode ignores; ``type``, not ``isinstance``, since a boolean is no number here.
NUMERIC_SLOTS = [(topic, path) for topic, path in SLOTS
                 if path[:1] != ("v",) and type(part_at(VALID[topic], path)) in (int, float)]
EXTREMES: list[int | float] = [1e300, -1e300, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, 1e18, 1e-12,
                               0, -0.0, 2**63, 2**63 - 1, -(2**63), -(2**63) - 1, 2**64, 10**30, -(10**30)]


def test_every_record_type_has_a_valid_message_to_break() -> None:
    """So a refusal below is about the one part broken; a record type added without a message here fails."""
    assert set(VALID) == set(RECORD_TYPES)
    for topic, message in VALID.items():
        assert refused_or_valid(functools.partial(decode, topic, json.dumps(message).encode())) is not None


@WIDE_PROPERTIES
@given(slot=st.sampled_from(SLOTS), value=hostile)
def test_anything_as_any_part_of_a_message_of_every_record_type_is_valid_or_refused(
        slot: tuple[str, Path], value: bytes) -> None:
    topic, path = slot
    refused_or_valid(functools.partial(decode, topic, with_part(VALID[topic], path, value)))


@BIG_PROPERTIES
@given(slot=st.sampled_from(SLOTS), value=huge)
def test_a_megabyte_value_as_any_part_of_any_message_is_valid_or_refused(slot: tuple[str, Path], value: bytes) -> None:
    topic, path = slot
    refused_or_valid(functools.partial(decode, topic, with_part(VALID[topic], path, value)))


@BIG_PROPERTIES
@given(topic=st.sampled_from(sorted(VALID)), size=sizes,
       whitespace=st.sampled_from([" ", "\n", "\t", "\r\n", " \t\n\r"]), unknown_keys=st.booleans())
def test_megabyte_padding_or_unknown_keys_leave_a_valid_record_as_it_is(
        topic: str, size: int, whitespace: str, unknown_keys: bool) -> None:
    compact = json.dumps(VALID[topic], separators=(",", ":")).encode()
    if unknown_keys:
        raw = b"{" + b"".join(b'"unknown%07d":0,' % key for key in range(size // 19)) + compact[1:]
    else:
        pad = whitespace * (size // len(whitespace) // (compact.count(b",") + compact.count(b":") + 2))
        raw = (pad + json.dumps(VALID[topic], separators=("," + pad, ":" + pad)) + pad).encode()
    assert refused_or_valid(functools.partial(decode, topic, raw)) == RECORD_TYPES[topic].from_dict(VALID[topic])


@BIG_PROPERTIES
@given(levels=st.one_of(st.integers(1, 60_000), st.integers(MAX_LEVELS - 5, MAX_LEVELS + 5)),
       side=st.sampled_from(["bids", "asks"]))
def test_an_order_book_side_of_any_length_is_valid_up_to_the_limit_and_refused_beyond(levels: int, side: str) -> None:
    # Prices a thousandth apart, away from the other side's best: falling bids, rising asks.
    first, step = (42_000_000, -1) if side == "bids" else (42_000_500, 1)
    array = b"[" + b",".join(b"[%d.%03d,1]" % divmod(first + step * level, 1000) for level in range(levels)) + b"]"
    book = refused_or_valid(functools.partial(decode, topics.ORDERBOOK, with_part(VALID[topics.ORDERBOOK], (side,), array)))
    assert (book is not None) == (levels <= MAX_LEVELS)


@WIDE_PROPERTIES
@given(slot=st.sampled_from(NUMERIC_SLOTS), extreme=st.one_of(st.sampled_from(EXTREMES), st.floats(), st.integers()),
       as_text=st.booleans())
def test_a_valid_record_with_one_absurd_number_is_refused_or_keeps_it_exactly(
        slot: tuple[str, Path], extreme: int | float, as_text: bool) -> None:
    topic, path = slot
    value = json.dumps(str(extreme) if as_text else extreme).encode()
    record = refused_or_valid(functools.partial(decode, topic, with_part(VALID[topic], path, value)))
    if record is not None:
        # A float field reads a number as the nearest float (2**53 + 1 as 2**53), as every JSON reader does.
        kept = float(extreme) if isinstance(part_at(VALID[topic], path), float) else extreme
        assert part_at(record.to_dict(), path) == kept, "an accepted number is kept, never changed"


@BIG_PROPERTIES
@given(raw=st.one_of(st.binary(max_size=4096),
                     st.builds(repeated, st.binary(min_size=1, max_size=64),
                               st.one_of(sizes, st.integers(DEAD_LETTER_RAW_BYTES - 2, DEAD_LETTER_RAW_BYTES + 2))),
                     st.text(st.characters(categories=["Cs", "L", "N", "Zs"]), max_size=200)),
       error=st.text(max_size=300))
def test_a_dead_letter_of_any_input_is_small_decodes_and_identifies_the_whole_input(
        raw: bytes | str, error: str) -> None:
    data = raw.encode(errors="surrogatepass") if isinstance(raw, str) else raw
    letter = DeadLetter.of(topics.TRADES, raw, error, partition=0, offset=7)
    assert len(letter.to_json()) < 100_000
    back = DeadLetter.from_json(letter.to_json())
    assert back == letter
    assert back.raw_bytes() == data[:DEAD_LETTER_RAW_BYTES]
    assert (back.size, back.sha256, back.is_truncated) == (len(data), hashlib.sha256(data).hexdigest(),
                                                           len(data) > DEAD_LETTER_RAW_BYTES)
