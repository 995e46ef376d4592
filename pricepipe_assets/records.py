"""The records of pricepipe's Kafka contract: parsing from each venue's wire format, validation, JSON.

Every value on a pricepipe topic is a UTF-8 JSON object whose field names are exactly the
dataclass fields below plus ``v`` (the schema version), so any Kafka client can read it without
this module. Each parser returns a *validated* record or raises :class:`RecordError` with a
reason fit for the dead-letter topic; nothing is repaired or dropped silently.

Decisions about real venue quirks (see ``docs/data-contract.md``):

* Binance timestamps arrive in milliseconds (spot before 2025, REST, WebSocket) or in
  microseconds (spot dumps from 2025 on); both are normalised to milliseconds.
* Some venues set a candle's open to the previous close, so ``open`` can lie outside
  ``[low, high]`` on real data. Such a candle is kept unchanged and reported as a warning by
  :meth:`Candle.quirks`; only ``close`` outside ``[low, high]``, ``high < low``, non-positive or
  non-finite prices are errors.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar, TypeVar

from pricepipe_assets import topics

SCHEMA_VERSION = 1

INTERVAL_MS: dict[str, int] = {"1m": 60_000, "1h": 3_600_000, "1d": 86_400_000}
CANDLE_TOPICS: dict[str, str] = {"1m": topics.CANDLES_1M, "1h": topics.CANDLES_1H, "1d": topics.CANDLES_1D}

# Event times outside this window are errors: before any of the venues existed, or in the future.
EARLIEST_MS = int(dt.datetime(2010, 1, 1, tzinfo=dt.UTC).timestamp() * 1000)
FUTURE_SLACK_MS = 86_400_000
# Binance microsecond timestamps (2025+ spot dumps) are 16 digits; milliseconds are 13.
MICROSECONDS_FROM = 10**15

R = TypeVar("R", bound="Record")


class RecordError(ValueError):
    """Input that is not a valid record; the message is the dead-letter reason."""


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def _finite(value: Any, name: str) -> float:
    """A JSON number or numeric string as a finite float; booleans, NaN and infinities are refused."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise RecordError(f"{name} must be a number, got {type(value).__name__}")
    try:
        number = float(value)
    except ValueError:
        raise RecordError(f"{name} must be a number, got {str(value)[:40]!r}") from None
    if not math.isfinite(number):
        raise RecordError(f"{name} must be finite, got {value!r}")
    return number


def _integer(value: Any, name: str) -> int:
    if isinstance(value, bool):
        raise RecordError(f"{name} must be an integer, got bool")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    raise RecordError(f"{name} must be an integer, got {str(value)[:40]!r}")


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise RecordError(f"{name} must be a non-empty string, got {str(value)[:40]!r}")
    return value


def _symbol(value: Any) -> str:
    symbol = _text(value, "symbol")
    if not symbol.replace("_", "").isalnum() or not symbol.isascii() or len(symbol) > 32:
        raise RecordError(f"symbol must be 1-32 ASCII letters, digits or _, got {symbol[:40]!r}")
    return symbol


def to_millis(value: Any, name: str) -> int:
    """Milliseconds UTC from a Binance time in milliseconds or microseconds."""
    stamp = _integer(value, name)
    return stamp // 1000 if stamp >= MICROSECONDS_FROM else stamp


def _sane_time(stamp: int, name: str) -> int:
    if stamp < EARLIEST_MS or stamp > now_ms() + FUTURE_SLACK_MS:
        raise RecordError(f"{name} {stamp} is not a plausible time in milliseconds UTC")
    return stamp


def iso_to_millis(value: Any, name: str) -> int:
    """Milliseconds UTC from an ISO-8601 time such as BitMEX's ``2024-01-01T00:00:00.123Z``."""
    text = _text(value, name)
    try:
        parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise RecordError(f"{name} must be an ISO-8601 time, got {text[:40]!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return int(parsed.timestamp() * 1000)


@dataclass(frozen=True, slots=True)
class Record:
    """Shared JSON handling; subclasses define fields, ``topic`` and ``check``."""

    INTS: ClassVar[frozenset[str]] = frozenset()
    FLOATS: ClassVar[frozenset[str]] = frozenset()
    OPTIONAL_FLOATS: ClassVar[frozenset[str]] = frozenset()
    BOOLS: ClassVar[frozenset[str]] = frozenset()

    @property
    def topic(self) -> str:
        raise NotImplementedError

    @property
    def key(self) -> str:
        return getattr(self, "symbol")

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
        values: dict[str, Any] = {}
        for spec in fields(cls):
            name = spec.name
            if name not in data:
                raise RecordError(f"missing field {name!r}")
            value = data[name]
            if name in cls.INTS:
                values[name] = _integer(value, name)
            elif name in cls.FLOATS:
                values[name] = _finite(value, name)
            elif name in cls.OPTIONAL_FLOATS:
                values[name] = None if value is None else _finite(value, name)
            elif name in cls.BOOLS:
                if not isinstance(value, bool):
                    raise RecordError(f"{name} must be true or false, got {str(value)[:40]!r}")
                values[name] = value
            else:
                values[name] = _text(value, name)
        record = cls(**values)
        record.check()
        return record

    @classmethod
    def from_json(cls: type[R], raw: bytes | str) -> R:
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as error:
            raise RecordError(f"not valid JSON: {error}") from None
        return cls.from_dict(data)


@dataclass(frozen=True, slots=True)
class Candle(Record):
    exchange: str
    symbol: str
    interval: str
    open_time: int
    close_time: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    quote_volume: float
    trades: int
    is_closed: bool

    INTS: ClassVar[frozenset[str]] = frozenset({"open_time", "close_time", "trades"})
    FLOATS: ClassVar[frozenset[str]] = frozenset({"open", "high", "low", "close", "volume", "quote_volume"})
    BOOLS: ClassVar[frozenset[str]] = frozenset({"is_closed"})

    @property
    def topic(self) -> str:
        return CANDLE_TOPICS[self.interval]

    @property
    def timestamp(self) -> int:
        return self.open_time

    @property
    def event_time(self) -> int:
        return self.close_time

    def check(self) -> None:
        _symbol(self.symbol)
        if not isinstance(self.interval, str) or self.interval not in INTERVAL_MS:
            raise RecordError(f"interval must be one of {', '.join(INTERVAL_MS)}, got {self.interval!r}")
        step = INTERVAL_MS[self.interval]
        _sane_time(self.open_time, "open_time")
        if self.open_time % step:
            raise RecordError(f"open_time {self.open_time} is not aligned to a {self.interval} boundary")
        if self.close_time != self.open_time + step - 1:
            raise RecordError(f"close_time {self.close_time} must be open_time + {step - 1} for {self.interval}")
        for name in ("open", "high", "low", "close"):
            if not getattr(self, name) > 0:
                raise RecordError(f"{name} must be positive, got {getattr(self, name)}")
        if self.high < self.low:
            raise RecordError(f"high {self.high} is below low {self.low}")
        if not self.low <= self.close <= self.high:
            raise RecordError(f"close {self.close} is outside [low {self.low}, high {self.high}]")
        for name in ("volume", "quote_volume"):
            if getattr(self, name) < 0:
                raise RecordError(f"{name} must not be negative, got {getattr(self, name)}")
        if self.trades < 0:
            raise RecordError(f"trades must not be negative, got {self.trades}")

    def quirks(self) -> list[str]:
        """Real-data oddities that are kept, not refused (see the module docstring)."""
        if not self.low <= self.open <= self.high:
            return [f"open {self.open} outside [low {self.low}, high {self.high}]"]
        return []


@dataclass(frozen=True, slots=True)
class Trade(Record):
    exchange: str
    symbol: str
    trade_id: str
    ts: int
    side: str
    size: float
    price: float

    INTS: ClassVar[frozenset[str]] = frozenset({"ts"})
    FLOATS: ClassVar[frozenset[str]] = frozenset({"size", "price"})

    @property
    def topic(self) -> str:
        return topics.TRADES

    @property
    def timestamp(self) -> int:
        return self.ts

    def check(self) -> None:
        _symbol(self.symbol)
        _text(self.trade_id, "trade_id")
        _sane_time(self.ts, "ts")
        if self.side not in ("buy", "sell"):
            raise RecordError(f"side must be 'buy' or 'sell', got {self.side!r}")
        if not self.size > 0:
            raise RecordError(f"size must be positive, got {self.size}")
        if not self.price > 0:
            raise RecordError(f"price must be positive, got {self.price}")


@dataclass(frozen=True, slots=True)
class Quote(Record):
    exchange: str
    symbol: str
    ts: int
    bid: float
    ask: float
    bid_size: float
    ask_size: float

    INTS: ClassVar[frozenset[str]] = frozenset({"ts"})
    FLOATS: ClassVar[frozenset[str]] = frozenset({"bid", "ask", "bid_size", "ask_size"})

    @property
    def topic(self) -> str:
        return topics.QUOTES

    @property
    def timestamp(self) -> int:
        return self.ts

    def check(self) -> None:
        _symbol(self.symbol)
        _sane_time(self.ts, "ts")
        for name in ("bid", "ask"):
            if not getattr(self, name) > 0:
                raise RecordError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("bid_size", "ask_size"):
            if getattr(self, name) < 0:
                raise RecordError(f"{name} must not be negative, got {getattr(self, name)}")
        if self.bid > self.ask:
            raise RecordError(f"crossed quote: bid {self.bid} above ask {self.ask}")


@dataclass(frozen=True, slots=True)
class Prediction(Record):
    """A forecast of the close of one candle: ``horizon`` is the candle's interval (``1m`` for the
    next-minute model, ``1d`` for each day of the 15-day forecast), ``target_time`` its open time,
    and ``[lower, upper]`` the prediction interval around ``predicted``."""

    symbol: str
    model: str
    model_version: str
    horizon: str
    made_at: int
    target_time: int
    predicted: float
    lower: float
    upper: float

    INTS: ClassVar[frozenset[str]] = frozenset({"made_at", "target_time"})
    FLOATS: ClassVar[frozenset[str]] = frozenset({"predicted", "lower", "upper"})

    @property
    def topic(self) -> str:
        return topics.PREDICTIONS

    @property
    def timestamp(self) -> int:
        return self.made_at

    def check(self) -> None:
        _symbol(self.symbol)
        _sane_time(self.made_at, "made_at")
        if self.horizon not in INTERVAL_MS:
            raise RecordError(f"horizon must be one of {', '.join(INTERVAL_MS)}, got {self.horizon!r}")
        if self.target_time % INTERVAL_MS[self.horizon]:
            raise RecordError(f"target_time {self.target_time} is not the open time of a {self.horizon} candle")
        if self.target_time <= self.made_at - 86_400_000 * 366:
            raise RecordError(f"target_time {self.target_time} is far before made_at {self.made_at}")
        if not self.lower <= self.predicted <= self.upper:
            raise RecordError(f"interval must hold lower <= predicted <= upper, got {self.lower}, {self.predicted}, {self.upper}")


@dataclass(frozen=True, slots=True)
class DeadLetter(Record):
    """Input that failed: where it came from, why, and its exact bytes (base64)."""

    source_topic: str
    source_partition: int | None
    source_offset: int | None
    error: str
    raw: str

    @property
    def topic(self) -> str:
        return topics.DEADLETTER

    @property
    def key(self) -> str:
        return self.source_topic

    @classmethod
    def of(cls, source_topic: str, raw: bytes | str, error: str, partition: int | None = None,
           offset: int | None = None) -> DeadLetter:
        data = raw.encode() if isinstance(raw, str) else raw
        return cls(source_topic, partition, offset, error[:2000], base64.b64encode(data).decode())

    def raw_bytes(self) -> bytes:
        return base64.b64decode(self.raw)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DeadLetter:
        if not isinstance(data, Mapping):
            raise RecordError(f"expected a JSON object, got {type(data).__name__}")
        try:
            return cls(str(data["source_topic"]), data["source_partition"], data["source_offset"], str(data["error"]),
                       str(data["raw"]))
        except KeyError as missing:
            raise RecordError(f"missing field {missing}") from None


# --- venue wire formats --------------------------------------------------------------------------


def candle_from_binance_row(row: Sequence[Any], symbol: str, interval: str, *, exchange: str = "binance",
                            is_closed: bool = True) -> Candle:
    """A Binance kline row: a dump CSV line (ms or µs times) or a REST ``/api/v3/klines`` array."""
    if len(row) < 9:  # Binance sends 12 columns; the first 9 are the ones the contract keeps
        raise RecordError(f"a Binance kline row needs at least 9 columns, got {len(row)}")
    candle = Candle(
        exchange=exchange,
        symbol=symbol,
        interval=interval,
        open_time=to_millis(row[0], "open_time"),
        close_time=to_millis(row[6], "close_time"),
        open=_finite(row[1], "open"),
        high=_finite(row[2], "high"),
        low=_finite(row[3], "low"),
        close=_finite(row[4], "close"),
        volume=_finite(row[5], "volume"),
        quote_volume=_finite(row[7], "quote_volume"),
        trades=_integer(row[8], "trades"),
        is_closed=is_closed,
    )
    candle.check()
    return candle


def candle_from_binance_event(event: Mapping[str, Any]) -> Candle:
    """A Binance WebSocket kline event (``{"e": "kline", "s": ..., "k": {...}}``)."""
    if not isinstance(event, Mapping) or event.get("e") != "kline" or not isinstance(event.get("k"), Mapping):
        raise RecordError("not a Binance kline event")
    k = event["k"]
    try:
        row = [k["t"], k["o"], k["h"], k["l"], k["c"], k["v"], k["T"], k["q"], k["n"]]
        symbol, interval, closed = k["s"], k["i"], k["x"]
    except KeyError as missing:
        raise RecordError(f"kline event without field {missing}") from None
    if not isinstance(closed, bool):
        raise RecordError(f"kline field 'x' must be true or false, got {closed!r}")
    return candle_from_binance_row(row, _symbol(symbol), interval, is_closed=closed)


def trade_from_binance_agg_row(row: Sequence[Any], symbol: str, *, exchange: str = "binance") -> Trade:
    """A Binance aggTrades CSV row: ``agg_trade_id, price, quantity, first_id, last_id, time, is_buyer_maker``.

    The taker sold when the buyer was the maker, so ``is_buyer_maker`` true means side ``sell``.
    """
    if len(row) < 7:
        raise RecordError(f"an aggTrades row has 7 columns, got {len(row)}")
    maker = str(row[6]).strip().lower()
    if maker not in ("true", "false"):
        raise RecordError(f"is_buyer_maker must be true or false, got {str(row[6])[:40]!r}")
    trade = Trade(
        exchange=exchange,
        symbol=symbol,
        trade_id=str(_integer(row[0], "agg_trade_id")),
        ts=to_millis(row[5], "transact_time"),
        side="sell" if maker == "true" else "buy",
        size=_finite(row[2], "quantity"),
        price=_finite(row[1], "price"),
    )
    trade.check()
    return trade


def trade_from_bitmex(item: Mapping[str, Any]) -> Trade:
    """One element of a BitMEX ``trade`` table's ``data`` array."""
    if not isinstance(item, Mapping):
        raise RecordError("a BitMEX trade must be an object")
    try:
        side = _text(item["side"], "side").lower()
        trade = Trade(
            exchange="bitmex",
            symbol=_symbol(item["symbol"]),
            trade_id=_text(item["trdMatchID"], "trdMatchID"),
            ts=iso_to_millis(item["timestamp"], "timestamp"),
            side=side,
            size=_finite(item["size"], "size"),
            price=_finite(item["price"], "price"),
        )
    except KeyError as missing:
        raise RecordError(f"BitMEX trade without field {missing}") from None
    trade.check()
    return trade


def quote_from_bitmex(item: Mapping[str, Any]) -> Quote:
    """One element of a BitMEX ``quote`` table's ``data`` array (an empty book side is an error)."""
    if not isinstance(item, Mapping):
        raise RecordError("a BitMEX quote must be an object")
    try:
        quote = Quote(
            exchange="bitmex",
            symbol=_symbol(item["symbol"]),
            ts=iso_to_millis(item["timestamp"], "timestamp"),
            bid=_finite(item["bidPrice"], "bidPrice"),
            ask=_finite(item["askPrice"], "askPrice"),
            bid_size=_finite(item["bidSize"], "bidSize"),
            ask_size=_finite(item["askSize"], "askSize"),
        )
    except KeyError as missing:
        raise RecordError(f"BitMEX quote without field {missing}") from None
    quote.check()
    return quote


RECORD_TYPES: dict[str, type[Record]] = {
    topics.CANDLES_1M: Candle,
    topics.CANDLES_1H: Candle,
    topics.CANDLES_1D: Candle,
    topics.TRADES: Trade,
    topics.QUOTES: Quote,
    topics.PREDICTIONS: Prediction,
}


def decode(topic: str, raw: bytes | None) -> Record:
    """The validated record of a message on ``topic``; :class:`RecordError` says why it is not one."""
    if raw is None:
        raise RecordError("empty message (no value)")
    record_type = RECORD_TYPES.get(topic)
    if record_type is None:
        raise RecordError(f"no record type for topic {topic!r}")
    return record_type.from_json(raw)
