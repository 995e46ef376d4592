"""Hostile JSON for the property tests of the contract and the venue parsers: values of every shape,
nesting thousands deep, numbers of thousands of digits or past a float's range, lone surrogates,
invalid UTF-8, wrong types and messages of a megabyte, built as bytes by repetition (a megabyte costs
hypothesis a few drawn integers, not a megabyte of its own choices); where to put them in a valid
message; and what a parser must do with them (:func:`refused_or_valid`)."""

from __future__ import annotations

import copy
import functools
import json
import math
import operator
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from pricepipe_assets.contract.record_values import MAX_MAGNITUDE, MAX_TEXT, MIN_MAGNITUDE
from pricepipe_assets.contract.records import Record, RecordError, decode

# JSON-ish values of every shape, including the ones a venue should never send.
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30),
    st.sampled_from(["NaN", "inf", "-1", "0", "1e308", "1e400", "1704067200000", "1704067200000000", "BTCUSDT"]),
)
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                      max_leaves=10)
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


Path = tuple[str | int, ...]


def slots_of(value: Any, path: Path = ()) -> list[Path]:
    """Every part of a message a hostile value can take the place of: the whole, each field, each element."""
    parts = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    return [path, *(slot for key, part in parts for slot in slots_of(part, (*path, key)))]


def part_at(value: Any, path: Path) -> Any:
    return functools.reduce(operator.getitem, path, value)


# Text no valid message holds: set where a hostile value goes, then replaced by it in the JSON.
HOLE = "\x00hole\x00"


def with_part(message: Any, path: Path, value: bytes) -> bytes:
    """``message`` as JSON with its part at ``path`` (``()``: the whole message) replaced by ``value``, any bytes:
    most hostile values are nothing ``json.dumps`` could write (1e400, an escaped lone surrogate, invalid
    UTF-8, 5,000 nested arrays), so they go in as text."""
    if not path:
        return value
    holed = copy.deepcopy(message)
    part_at(holed, path[:-1])[path[-1]] = HOLE
    return json.dumps(holed).encode().replace(json.dumps(HOLE).encode(), value)


def repeated(unit: bytes, size: int) -> bytes:
    """``unit`` repeated to exactly ``size`` bytes: how every long input here is built."""
    return (unit * (size // len(unit) + 1))[:size]


# Depths around the parsers' own limits (json's is Python's recursion limit of about 1,000, orjson's is
# 1,024) are drawn on purpose, besides anything from 500 to 5,000.
depths = st.one_of(st.integers(500, 5000), st.integers(950, 1050))
deep = st.builds(lambda depth, shape, closed: shape[0] * depth + b"0" + (shape[1] * depth if closed else b""),
                 depths, st.sampled_from([(b"[", b"]"), (b'{"a":', b"}"), (b'[{"":', b"}]"), (b"[ \n", b"\n]")]),
                 st.booleans())
# 20 to 5,000 digits: a first one that is not 0, then a drawn run of digits repeated.
long_digits = st.builds(lambda head, tail, length: head + repeated(tail, length - 1),
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
