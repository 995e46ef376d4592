"""Declared parameters: one description per parameter drives both parsing and the OpenAPI schema.

Declaring a parameter once (type, range, allowed values, default) means the 422 a client gets and
the schema ``/docs`` shows can never disagree.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from api.errors import InvalidParameter

SYMBOL_PATTERN = r"^[A-Za-z0-9_]{1,32}$"
_SYMBOL = re.compile(SYMBOL_PATTERN)


@dataclass(frozen=True)
class Param:
    """One path or query parameter.

    ``kind``: ``symbol`` (upper-cased), ``integer`` (``minimum``/``maximum``, or one of ``choices``),
    ``choice`` (one of ``choices``), ``time`` (an ISO-8601 date or UTC date-time) or ``end`` (the
    same, but a date alone means the end of that day, so ``start=D&end=D`` is the whole day D).
    """

    name: str
    where: str  # "path" or "query"
    kind: str
    description: str
    default: Any = None
    minimum: int | None = None
    maximum: int | None = None
    choices: tuple[Any, ...] = ()

    def parse(self, raw: str | None) -> Any:
        if raw is None or raw == "":
            return self.default
        return getattr(self, f"_parse_{self.kind}")(raw)

    def _parse_symbol(self, raw: str) -> str:
        if not _SYMBOL.match(raw):
            raise InvalidParameter(self.name, "expected 1 to 32 letters, digits or '_' such as BTCUSDT")
        return raw.upper()

    def _parse_integer(self, raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise InvalidParameter(self.name, f"expected an integer, got {raw[:40]!r}") from None
        if self.choices and value not in self.choices:
            raise InvalidParameter(self.name, f"expected one of {', '.join(map(str, self.choices))}, got {value}")
        if (self.minimum is not None and value < self.minimum) or (self.maximum is not None and value > self.maximum):
            raise InvalidParameter(self.name, f"must be between {self.minimum} and {self.maximum}, got {value}")
        return value

    def _parse_choice(self, raw: str) -> str:
        if raw not in self.choices:
            raise InvalidParameter(self.name, f"expected one of {', '.join(self.choices)}, got {raw[:40]!r}")
        return raw

    def _parse_time(self, raw: str) -> dt.datetime:
        return parse_time(self.name, raw)

    def _parse_end(self, raw: str) -> dt.datetime:
        moment = parse_time(self.name, raw)
        return moment + dt.timedelta(days=1) if len(raw) == 10 else moment

    def schema(self) -> dict[str, Any]:
        """The parameter's OpenAPI 3.1 object."""
        schema: dict[str, Any] = {"type": "string"}
        if self.kind == "symbol":
            schema["pattern"] = SYMBOL_PATTERN
        elif self.kind == "integer" and self.choices:
            schema = {"type": "integer", "enum": list(self.choices)}
        elif self.kind == "integer":
            schema = {"type": "integer", "minimum": self.minimum, "maximum": self.maximum}
        elif self.kind == "choice":
            schema["enum"] = list(self.choices)
        elif self.kind in ("time", "end"):
            schema["pattern"] = r"^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?$"
        if self.default is not None:
            schema["default"] = self.default
        return {"name": self.name, "in": self.where, "required": self.where == "path",
                "description": self.description, "schema": schema}


def parse_time(name: str, raw: str) -> dt.datetime:
    """A UTC instant from an ISO date (its midnight) or date-time (naive means UTC)."""
    try:
        if len(raw) == 10:
            value = dt.datetime.combine(dt.date.fromisoformat(raw), dt.time(), dt.UTC)
        else:
            value = dt.datetime.fromisoformat(raw)
    except ValueError:
        raise InvalidParameter(name, f"expected a date YYYY-MM-DD or a date-time YYYY-MM-DDTHH:MM:SSZ, "
                                     f"got {raw[:40]!r}") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    if not 2009 <= value.year <= 2100:
        raise InvalidParameter(name, f"year {value.year} is outside 2009..2100")
    return value.astimezone(dt.UTC)


def parse_all(params: tuple[Param, ...], path: Mapping[str, str], query: Mapping[str, str]) -> dict[str, Any]:
    """Every declared parameter parsed; an undeclared query parameter is refused, so a typo such
    as ``?intervl=1h`` is reported instead of silently ignored."""
    declared = {p.name for p in params if p.where == "query"} | {"api_key"}
    for name in query:
        if name not in declared:
            allowed = ", ".join(sorted(declared - {"api_key"})) or "none"
            raise InvalidParameter(name[:40], f"not a parameter of this endpoint (allowed: {allowed})")
    return {p.name: p.parse(path.get(p.name) if p.where == "path" else query.get(p.name)) for p in params}


def finite(value: float | None) -> float | None:
    """JSON has no NaN or infinity: such a stored value is answered as null."""
    return value if value is not None and math.isfinite(value) else None
