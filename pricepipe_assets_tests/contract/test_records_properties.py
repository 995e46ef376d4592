"""Property-based tests: hostile input to every parser and validator either becomes a valid record or is refused with
a RecordError and a reason; nothing else escapes, nothing invalid gets through.

Beyond shallow JSON of a few hundred bytes, the input a broken venue or an attacker can send is drawn too, in every
part of a valid message of every record type and venue format: nesting thousands deep, messages of a megabyte and
more, numbers of thousands of digits or past a float's range, lone surrogates, invalid UTF-8, wrong types, and valid
records with one absurd number. That input is built as bytes by repetition, so a megabyte costs hypothesis a few drawn
integers, not a megabyte of its own choices, and the tests stay fast."""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import math
import operator
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pricepipe_assets.contract import topics
from pricepipe_assets.contract.books import MAX_LEVELS, OrderBook
from pricepipe_assets.contract.record_values import MAX_MAGNITUDE, MAX_TEXT, MIN_MAGNITUDE, loads_json
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
# For every part of every message times every kind of hostile value: a wide space, and cheap examples.
WIDE_PROPERTIES = settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# For messages of 100 kB to 1.5 MB: each example costs milliseconds, so fewer of them keep a test to seconds.
BIG_PROPERTIES = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def refused_or_valid(call: Callable[[], Record]) -> Record | None:
    """Run a parser: a refusal must be a RecordError with a reason; a record must pass its own check, hold
    only values every store downstream can keep, and come back unchanged from its own JSON, so whatever
    gets through is read the same by every consumer of its topic."""
    try:
        record = call()
    except RecordError as error:
        assert str(error), "a refusal must say why"
        return None
    record.check()
    for name, value in record.to_dict().items():
        _assert_storable(name, value)
    assert decode(record.topic, record.to_json()) == record
    return record


def _assert_storable(name: str, value: Any) -> None:
    """Floats of 0 or a magnitude in the contract's bounds (finite, and sums and products of two stay so),
    64-bit integers (Cassandra's bigint) and short UTF-8-encodable text, levels included."""
    if isinstance(value, (tuple, list)):
        for index, item in enumerate(value):
            _assert_storable(f"{name}[{index}]", item)
    elif isinstance(value, float):
        assert math.isfinite(value), f"{name} is {value}"
        assert not value or MIN_MAGNITUDE <= abs(value) <= MAX_MAGNITUDE, f"{name} is {value}, beyond the bounds"
    elif isinstance(value, int):
        assert -(2**63) <= value < 2**63, f"{name} is {value}, beyond 64 bits"
    elif isinstance(value, str):
        assert len(value) <= MAX_TEXT, f"{name} has {len(value)} characters"
        value.encode()  # raises UnicodeEncodeError on a lone surrogate


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


# --- Hostile input beyond small, shallow JSON -------------------------------------------------------

Path = tuple[str | int, ...]

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
# A valid message of each venue format, as its client reads it from the wire, with the parser it goes to.
VENUES: list[tuple[Callable[[Any], Record], Any]] = [
    (functools.partial(candle_from_binance_row, symbol="BTCUSDT", interval="1m"),
     [1704067200000, "42283.58", "42298.62", "42261.02", "42298.61", "35.92724", 1704067259999, "1519031.69", 1327,
      "17.4", "735872.3", "0"]),
    (functools.partial(trade_from_binance_agg_row, symbol="BTCUSD_PERP"),
     [26129, "42000.5", "0.01", 27781, 27781, 1704067200123, "true"]),
    (candle_from_binance_event,
     {"e": "kline", "E": 1704067260000, "s": "BTCUSDT",
      "k": {"t": 1704067200000, "T": 1704067259999, "s": "BTCUSDT", "i": "1m", "o": "42283.58", "c": "42298.61",
            "h": "42298.62", "l": "42261.02", "v": "35.92724", "n": 1327, "x": True, "q": "1519031.69"}}),
    (trade_from_bitmex,
     {"timestamp": "2024-01-01T00:00:00.123Z", "symbol": "XBTUSD", "side": "Buy", "size": 100, "price": 42000.5,
      "trdMatchID": "00000000-006d-1000-0000-000000000001"}),
    (quote_from_bitmex,
     {"timestamp": "2024-01-01T00:00:00.123Z", "symbol": "XBTUSD", "bidSize": 10, "bidPrice": 41999.5,
      "askPrice": 42000.0, "askSize": 12}),
]


def _slots(value: Any, path: Path = ()) -> list[Path]:
    """Every part of a message a hostile value can take the place of: the whole, each field, each element."""
    parts = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    return [path, *(slot for key, part in parts for slot in _slots(part, (*path, key)))]


def _at(value: Any, path: Path) -> Any:
    return functools.reduce(operator.getitem, path, value)


# Text no valid message holds: set where a hostile value goes, then replaced by it in the JSON.
HOLE = "\x00hole\x00"


def _with(message: Any, path: Path, value: bytes) -> bytes:
    """``message`` as JSON with its part at ``path`` (``()``: the whole message) replaced by ``value``, any bytes:
    most hostile values are nothing ``json.dumps`` could write (1e400, an escaped lone surrogate, invalid
    UTF-8, 5,000 nested arrays), so they go in as text."""
    if not path:
        return value
    holed = copy.deepcopy(message)
    _at(holed, path[:-1])[path[-1]] = HOLE
    return json.dumps(holed).encode().replace(json.dumps(HOLE).encode(), value)


def _repeat(unit: bytes, size: int) -> bytes:
    """``unit`` repeated to exactly ``size`` bytes: how every long input here is built."""
    return (unit * (size // len(unit) + 1))[:size]


SLOTS: list[tuple[str, Path]] = [(topic, path) for topic, message in VALID.items() for path in _slots(message)]
VENUE_SLOTS: list[tuple[int, Path]] = [(index, path) for index, (_, message) in enumerate(VENUES)
                                       for path in _slots(message)]
# Depths around the parsers' own limits (json's is Python's recursion limit of about 1,000, orjson's is
# 1,024) are drawn on purpose, besides anything from 500 to 5,000.
depths = st.one_of(st.integers(500, 5000), st.integers(950, 1050))
deep = st.builds(lambda depth, shape, closed: shape[0] * depth + b"0" + (shape[1] * depth if closed else b""),
                 depths, st.sampled_from([(b"[", b"]"), (b'{"a":', b"}"), (b'[{"":', b"}]"), (b"[ \n", b"\n]")]),
                 st.booleans())
# 20 to 5,000 digits: a first one that is not 0, then a drawn run of digits repeated.
long_digits = st.builds(lambda head, tail, length: head + _repeat(tail, length - 1),
                        st.sampled_from([b"1", b"5", b"9"]),
                        st.text("0123456789", min_size=1, max_size=12).map(str.encode), st.integers(20, 5000))
exponents = st.one_of(st.just(b""), st.sampled_from([b"e400", b"E-400", b"e-324", b"e+308", b"e18", b"e-12"]),
                      st.integers(-5000, 5000).map(lambda exponent: b"e%d" % exponent))
# Numbers at and just past every bound of the contract (64-bit integers, 1e-12..1e18) and of a float.
EDGE_NUMBERS = [b"0", b"-0", b"-0.0", b"0e0", b"5e-324", b"-5e-324", b"2.2250738585072014e-308", b"1e-400",
                b"1.7976931348623157e308", b"1e309", b"-1e400", b"1e18", b"1.0000000000000002e18", b"1e-12",
                b"9.99e-13", b"%d" % (2**63 - 1), b"%d" % 2**63, b"%d" % -(2**63), b"%d" % (-(2**63) - 1),
                b"%d" % 10**30, b"1E999999999999999999999"]
numbers = st.one_of(
    st.builds(lambda sign, whole, fraction, exponent: sign + whole + fraction + exponent,
              st.sampled_from([b"", b"-"]), long_digits, st.one_of(st.just(b""), long_digits.map(b".".__add__)),
              exponents),
    st.sampled_from(EDGE_NUMBERS),
    st.integers().map(lambda number: b"%d" % number),
)
# JSON admits an escaped lone surrogate, which no UTF-8 store can write; bytes that are not UTF-8 are no JSON at all.
bad_text = st.one_of(
    st.integers(0xD800, 0xDFFF).map(lambda unit: b'"BTC\\u%04x"' % unit),
    st.sampled_from([b'"\\udc00\\ud800"', b'"\\ud83d"', b'"\\ud83d\\ude00"']),
    st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xc0\xaf", b"\x80"]).flatmap(
        lambda bad: st.sampled_from([bad, b'"' + bad + b'"', b'"BTC' + bad + b'USDT"'])),
)
wrong_types = st.one_of(
    st.sampled_from([b"null", b"true", b"false", b'""', b'" "', b"[]", b"{}", b"[1,2]", b'{"a":1}', b"NaN",
                     b"-Infinity", b'"NaN"', b'"inf"']),
    values.map(lambda value: json.dumps(value).encode()),
)
shallow_hostile = st.one_of(numbers, numbers.map(lambda number: b'"' + number + b'"'), bad_text, wrong_types,
                            st.binary(max_size=4096))
hostile = st.one_of(deep, shallow_hostile)
# 100 kB to 1.5 MB: one string, array or number, built by repetition.
sizes = st.integers(100_000, 1_500_000)
huge = st.one_of(
    st.builds(lambda unit, size: b'"' + unit * (size // len(unit)) + b'"',
              st.sampled_from([b"x", b"\\u00e9", "é".encode(), b"\\ud800", b"\\\\", b"9"]), sizes),
    st.builds(lambda item, size: b"[" + b",".join([item] * (size // (len(item) + 1))) + b"]",
              st.sampled_from([b"[1,1]", b'["42000.5","0.001"]', b"0", b"null", b'"x"', b"[]", b"{}"]), sizes),
    st.builds(lambda size, fraction: b"0." + b"0" * size + b"1" if fraction else b"9" * size, sizes, st.booleans()),
)
# A valid number of every kind, replaced by an extreme one, as a JSON number or a numeric string.
# Not ``v``, which decode ignores; ``type``, not ``isinstance``, since a boolean is no number here.
NUMERIC_SLOTS = [(topic, path) for topic, path in SLOTS
                 if path[:1] != ("v",) and type(_at(VALID[topic], path)) in (int, float)]
EXTREMES: list[int | float] = [1e300, -1e300, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, 1e18, 1e-12,
                               0, -0.0, 2**63, 2**63 - 1, -(2**63), -(2**63) - 1, 2**64, 10**30, -(10**30)]


def _parsed_by_venue(slot: tuple[int, Path], value: bytes) -> None:
    """A venue's message with ``value`` in one part, read from JSON as its client reads it and given to its
    parser. ``loads_json`` gives the values ``json.loads`` gives, and nesting as deep as orjson reads (1,024
    levels); what it refuses (invalid UTF-8, deeper nesting) never reaches a parser, so is no parser's to test."""
    index, path = slot
    parse, message = VENUES[index]
    try:
        item = loads_json(_with(message, path, value))
    except ValueError:
        return
    if isinstance(message, list) and not isinstance(item, list):
        return  # a row's callers give its parser a list: a CSV line's fields, or a JSON array the REST client checked
    refused_or_valid(functools.partial(parse, item))


def test_every_record_type_and_venue_format_has_a_valid_message_to_break() -> None:
    """So a refusal below is about the one part broken; a record type added without a message here fails."""
    assert set(VALID) == set(RECORD_TYPES)
    for topic, message in VALID.items():
        assert refused_or_valid(functools.partial(decode, topic, json.dumps(message).encode())) is not None
    for parse, message in VENUES:
        assert refused_or_valid(functools.partial(parse, message)) is not None


@WIDE_PROPERTIES
@given(slot=st.sampled_from(SLOTS), value=hostile)
def test_anything_as_any_part_of_a_message_of_every_record_type_is_valid_or_refused(
        slot: tuple[str, Path], value: bytes) -> None:
    topic, path = slot
    refused_or_valid(functools.partial(decode, topic, _with(VALID[topic], path, value)))


@WIDE_PROPERTIES
@given(slot=st.sampled_from(VENUE_SLOTS), value=shallow_hostile)
def test_anything_as_any_part_of_a_venue_message_is_parsed_or_refused(slot: tuple[int, Path], value: bytes) -> None:
    """Deep nesting has a test of its own, next: the venue parsers cannot take it yet."""
    _parsed_by_venue(slot, value)


def test_a_value_nested_as_deep_as_json_readers_go_is_refused_by_every_venue_parser() -> None:
    """A value 500 or 1,000 deep in every part of every venue message: JSON readers return such values
    (orjson reads 1,024 levels; json.loads a little under Python's recursion limit), and a reason that
    showed ``str()`` of such a value recursed past the limit itself."""
    for slot in VENUE_SLOTS:
        for opening, closing in ((b"[", b"]"), (b'{"a":', b"}")):
            for depth in (500, 1000):
                _parsed_by_venue(slot, opening * depth + b"0" + closing * depth)


@BIG_PROPERTIES
@given(slot=st.sampled_from(SLOTS), venue_slot=st.sampled_from(VENUE_SLOTS), value=huge)
def test_a_megabyte_value_as_any_part_of_any_message_is_valid_or_refused(
        slot: tuple[str, Path], venue_slot: tuple[int, Path], value: bytes) -> None:
    topic, path = slot
    refused_or_valid(functools.partial(decode, topic, _with(VALID[topic], path, value)))
    _parsed_by_venue(venue_slot, value)


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
    book = refused_or_valid(functools.partial(decode, topics.ORDERBOOK, _with(VALID[topics.ORDERBOOK], (side,), array)))
    assert (book is not None) == (levels <= MAX_LEVELS)


@WIDE_PROPERTIES
@given(slot=st.sampled_from(NUMERIC_SLOTS), extreme=st.one_of(st.sampled_from(EXTREMES), st.floats(), st.integers()),
       as_text=st.booleans())
def test_a_valid_record_with_one_absurd_number_is_refused_or_keeps_it_exactly(
        slot: tuple[str, Path], extreme: int | float, as_text: bool) -> None:
    topic, path = slot
    value = json.dumps(str(extreme) if as_text else extreme).encode()
    record = refused_or_valid(functools.partial(decode, topic, _with(VALID[topic], path, value)))
    if record is not None:
        # A float field reads a number as the nearest float (2**53 + 1 as 2**53), as every JSON reader does.
        kept = float(extreme) if isinstance(_at(VALID[topic], path), float) else extreme
        assert _at(record.to_dict(), path) == kept, "an accepted number is kept, never changed"


@BIG_PROPERTIES
@given(raw=st.one_of(st.binary(max_size=4096),
                     st.builds(_repeat, st.binary(min_size=1, max_size=64),
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
