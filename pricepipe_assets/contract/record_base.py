"""The base of every record of pricepipe's Kafka contract: JSON in and out, field by field validation.

It lives apart from the records themselves so that each family of records (``records``, ``books``)
can have a module of its own and ``records.decode`` still knows them all.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from dataclasses import MISSING, asdict, dataclass, fields
from typing import Any, ClassVar, TypeVar

from pricepipe_assets.contract.record_values import (
    INT64_MAX,
    INT64_MIN,
    MAX_MAGNITUDE,
    MAX_TEXT,
    MIN_MAGNITUDE,
    RecordError,
    loads_json,
    parse_boolean,
    parse_finite,
    parse_integer,
    parse_optional_finite,
    parse_text,
)

SCHEMA_VERSION = 1


R = TypeVar("R", bound="Record")


@dataclass(frozen=True, slots=True)
class Record:
    """Shared JSON handling; subclasses define fields, ``topic`` and ``check``."""

    INTS: ClassVar[frozenset[str]] = frozenset()
    FLOATS: ClassVar[frozenset[str]] = frozenset()
    OPTIONAL_FLOATS: ClassVar[frozenset[str]] = frozenset()
    BOOLS: ClassVar[frozenset[str]] = frozenset()
    # Fields of other shapes (an order book's levels), each with its own parser.
    PARSERS: ClassVar[Mapping[str, Callable[[Any, str], Any]]] = {}

    @property
    def topic(self) -> str:
        raise NotImplementedError

    @property
    def key(self) -> str:
        """The Kafka message key."""
        raise NotImplementedError

    @property
    def timestamp(self) -> int:
        """The moment the record describes, in ms UTC (a candle's open, a trade's execution):
        what lake partitions, metadata time ranges and gap reports are about."""
        raise NotImplementedError

    @property
    def event_time(self) -> int:
        """When the record becomes visible on a live feed, in ms UTC: what replays pace by.
        The same as :attr:`timestamp` except for a candle, which is only known once closed."""
        return self.timestamp

    def check(self) -> None:
        """Raise :class:`RecordError` when the record breaks the contract."""

    def to_dict(self) -> dict[str, Any]:
        return {"v": SCHEMA_VERSION, **asdict(self)}

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), separators=(",", ":"), allow_nan=False).encode()

    @classmethod
    def from_dict(cls: type[R], data: Mapping[str, Any]) -> R:
        """A validated record from a decoded JSON object; unknown extra fields are ignored."""
        if not isinstance(data, Mapping):
            raise RecordError(f"expected a JSON object, got {type(data).__name__}")
        values: list[Any] = []
        for name, parse, default in _parsers(cls):  # type: ignore[arg-type]  # a class is hashable: python/mypy#11470
            value = data.get(name, MISSING)
            if default is not MISSING and value is None or value is MISSING:
                if default is MISSING:
                    raise RecordError(f"missing field {name!r}")
                values.append(default)
            else:
                values.append(value if _plain(parse, value) else parse(value, name))
        record = cls(*values)
        record.check()
        return record

    @classmethod
    def from_json(cls: type[R], raw: bytes | str) -> R:
        try:
            data = loads_json(raw)
        except ValueError as error:  # UnicodeDecodeError is one
            raise RecordError(f"not valid JSON: {error}") from None
        return cls.from_dict(data)


class SymbolKeyed:
    """The part of a record of one symbol that makes the symbol its Kafka key (first in the bases,
    before :class:`Record`)."""

    __slots__ = ()
    symbol: str

    @property
    def key(self) -> str:
        return self.symbol


def _plain(parse: Callable[[Any, str], Any], value: Any) -> bool:
    """Whether ``value`` is what ``parse`` would return unchanged: the shape of nearly every field of
    every message, checked without the parser's conversions. Anything else goes through the parser,
    which converts it or refuses it with its reason."""
    kind = type(value)
    if parse is parse_finite:
        return kind is float and (not value or MIN_MAGNITUDE <= abs(value) <= MAX_MAGNITUDE)
    if parse is parse_integer:
        return kind is int and INT64_MIN <= value <= INT64_MAX
    if parse is parse_text:
        return kind is str and 0 < len(value) <= MAX_TEXT and value.isascii() and not value.isspace()
    return parse is parse_boolean and kind is bool


@functools.cache
def _parsers(record_type: type[Record]) -> tuple[tuple[str, Callable[[Any, str], Any], Any], ...]:
    """Each field of a record type with the function validating it and its default (``MISSING`` when
    required), worked out once per type: every message of a batch is decoded through this, and
    ``dataclasses.fields`` costs more than the checks."""
    def parser(name: str) -> Callable[[Any, str], Any]:
        if name in record_type.PARSERS:
            return record_type.PARSERS[name]
        if name in record_type.INTS:
            return parse_integer
        if name in record_type.FLOATS:
            return parse_finite
        if name in record_type.OPTIONAL_FLOATS:
            return parse_optional_finite
        if name in record_type.BOOLS:
            return parse_boolean
        return parse_text

    return tuple((spec.name, parser(spec.name), spec.default) for spec in fields(record_type) if spec.init)
