"""Single values of a message checked and converted: numbers, integers, text, symbols and times.

The contract's records and every venue's wire parser share these, so a value is refused for the
same reason, in the same words, wherever it arrives; :class:`RecordError`'s message is the reason
the dead-letter topic keeps.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import time
from typing import Any

import orjson

# Event times outside this window are errors: before any of the venues existed, or in the future.
EARLIEST_MS = int(dt.datetime(2010, 1, 1, tzinfo=dt.UTC).timestamp() * 1000)
FUTURE_SLACK_MS = 86_400_000
# Binance microsecond timestamps (2025+ spot dumps) are 16 digits; milliseconds are 13.
MICROSECONDS_FROM = 10**15
# orjson reads an integer beyond 64 bits as a float where json keeps it exact; such a number has 19+ digits.
LONG_DIGITS = re.compile(rb"\d{19}")
LONG_DIGITS_TEXT = re.compile(r"\d{19}")
# Bounds that keep every accepted value storable and computable downstream: Cassandra's bigint and
# timestamp are 64-bit, a product or sum of two accepted numbers stays finite, and text stays a
# name, not a payload. A record beyond them is refused like any other invalid one.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MAX_MAGNITUDE = 1e18
MIN_MAGNITUDE = 1e-12
MAX_TEXT = 256

class RecordError(ValueError):
    """Input that is not a valid record; the message is the dead-letter reason."""


def preview(value: Any) -> str:
    """At most 40 characters of a refused value for its reason, for any value: ``str`` of a list
    nested a thousand deep recurses past Python's limit, and of a 5,000-digit integer raises."""
    if isinstance(value, str):
        return value[:40]
    if isinstance(value, (list, tuple, dict)):
        return f"a JSON {'object' if isinstance(value, dict) else 'array'} of {len(value)} items"
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        return f"an integer of {value.bit_length()} bits"
    return str(value)[:40]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def parse_finite(value: Any, name: str) -> float:
    """A JSON number or numeric string as a finite float; booleans, NaN and infinities are refused."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise RecordError(f"{name} must be a number, got {type(value).__name__}")
    try:
        number = float(value)
    except (ValueError, OverflowError):
        raise RecordError(f"{name} must be a number, got {preview(value)!r}") from None
    if not math.isfinite(number):
        raise RecordError(f"{name} must be finite, got {preview(value)!r}")
    if number and not MIN_MAGNITUDE <= abs(number) <= MAX_MAGNITUDE:
        raise RecordError(f"{name} must be 0 or between {MIN_MAGNITUDE:g} and {MAX_MAGNITUDE:g} in magnitude, "
                          f"got {number!r}")
    return number


def parse_integer(value: Any, name: str) -> int:
    """A JSON integer, integral float or digit string that fits in 64 bits, as Cassandra stores it."""
    if isinstance(value, bool):
        raise RecordError(f"{name} must be an integer, got bool")
    number: int | None = None
    if isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and len(value) <= 24 and value.strip().lstrip("-").isdigit():
        number = int(value)
    if number is None:
        raise RecordError(f"{name} must be an integer, got {preview(value)!r}")
    if not INT64_MIN <= number <= INT64_MAX:
        raise RecordError(f"{name} must fit in 64 bits, got {preview(value)!r}")
    return number


def parse_text(value: Any, name: str) -> str:
    """Non-empty text of at most ``MAX_TEXT`` characters that UTF-8 can encode (JSON admits lone
    surrogates such as ``"\\ud800"``, which no store can write)."""
    if not isinstance(value, str) or not value.strip():
        raise RecordError(f"{name} must be a non-empty string, got {preview(value)!r}")
    if len(value) > MAX_TEXT:
        raise RecordError(f"{name} must be at most {MAX_TEXT} characters, got {len(value):,}")
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            raise RecordError(f"{name} is not encodable as UTF-8 (a lone surrogate)") from None
    return value


def parse_boolean(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise RecordError(f"{name} must be true or false, got {preview(value)!r}")
    return value


def parse_optional_finite(value: Any, name: str) -> float | None:
    return None if value is None else parse_finite(value, name)


_SCALARS = frozenset({str, int, bool, type(None)})


def _flat_without_large_floats(value: Any) -> bool:
    """Whether an object orjson read cannot hold an integer beyond 64 bits: it has no nested value,
    and no float as large as one (orjson turns such an integer into a float). Checking the values
    costs less than searching the raw message for a run of 19 digits, and a record is such an
    object."""
    return type(value) is dict and all(type(item) in _SCALARS or type(item) is float and abs(item) < 2.0**63
                                       for item in value.values())


def loads_json(raw: bytes | str) -> Any:
    """What ``json.loads`` returns, through orjson (several times faster) whenever the two agree.

    They agree on every document orjson accepts except integers beyond 64 bits, which are sent to
    ``json`` with everything orjson refuses (NaN, lone surrogates, byte order marks...), so values
    and error messages, and with them every dead-letter reason, stay exactly ``json``'s.
    """
    try:
        value = orjson.loads(raw)
    except (orjson.JSONDecodeError, TypeError):
        pass
    else:
        if _flat_without_large_floats(value):
            return value
        long_digits = LONG_DIGITS_TEXT.search(raw) if isinstance(raw, str) else LONG_DIGITS.search(raw)
        if not long_digits:
            return value
    try:
        return json.loads(raw)
    except RecursionError:
        raise ValueError("nested more deeply than Python's recursion limit") from None


def parse_symbol(value: Any) -> str:
    symbol = parse_text(value, "symbol")
    if not symbol.replace("_", "").isalnum() or not symbol.isascii() or len(symbol) > 32:
        raise RecordError(f"symbol must be 1-32 ASCII letters, digits or _, got {symbol[:40]!r}")
    return symbol


def to_millis(value: Any, name: str) -> int:
    """Milliseconds UTC from a Binance time in milliseconds or microseconds."""
    stamp = parse_integer(value, name)
    return stamp // 1000 if stamp >= MICROSECONDS_FROM else stamp


def sane_time(stamp: int, name: str) -> int:
    if stamp < EARLIEST_MS or stamp > now_ms() + FUTURE_SLACK_MS:
        raise RecordError(f"{name} {stamp} is not a plausible time in milliseconds UTC")
    return stamp


def iso_to_millis(value: Any, name: str) -> int:
    """Milliseconds UTC from an ISO-8601 time such as BitMEX's ``2024-01-01T00:00:00.123Z``."""
    text = parse_text(value, name)
    try:
        parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise RecordError(f"{name} must be an ISO-8601 time, got {text[:40]!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return int(parsed.timestamp() * 1000)
