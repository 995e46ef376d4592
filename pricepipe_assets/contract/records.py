"""The records of pricepipe's Kafka contract: their fields, validation and JSON.

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
* A venue closes a candle early when an outage stops trading inside its interval, and its dumps keep
  it with the real, earlier ``close_time``. Such a candle is real data: it is kept with
  ``is_complete = false`` (see :func:`covers_interval`). A close time after the interval's end or
  before the open is still an error.
* A field added to a record after version 1 has a default, and a message without it (or with
  ``null``) decodes to that default: every message written before the field existed means exactly
  the default (an old candle was refused unless it covered its whole interval).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from pricepipe_assets.contract import topics
from pricepipe_assets.contract.books import OrderBook
from pricepipe_assets.contract.record_base import SCHEMA_VERSION, Record, SymbolKeyed
from pricepipe_assets.contract.record_values import RecordError, parse_symbol, parse_text, preview, sane_time

__all__ = ["SCHEMA_VERSION", "OrderBook", "Record", "RecordError"]

INTERVAL_MS: dict[str, int] = {"1m": 60_000, "1h": 3_600_000, "1d": 86_400_000}
CANDLE_TOPICS: dict[str, str] = {"1m": topics.CANDLES_1M, "1h": topics.CANDLES_1H, "1d": topics.CANDLES_1D}


def covers_interval(interval: str, open_time: int, close_time: int) -> bool:
    """Whether a candle closing at ``close_time`` ran to its interval's last millisecond: the value its
    ``is_complete`` must have. Builders of candles call this rather than compare times themselves,
    so they agree with :meth:`Candle.check`; an unknown interval counts as covered and is refused by
    the check."""
    step = INTERVAL_MS.get(interval) if isinstance(interval, str) else None
    return step is None or close_time == open_time + step - 1


@dataclass(frozen=True, slots=True)
class Candle(SymbolKeyed, Record):
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
    is_complete: bool = True

    INTS: ClassVar[frozenset[str]] = frozenset({"open_time", "close_time", "trades"})
    FLOATS: ClassVar[frozenset[str]] = frozenset({"open", "high", "low", "close", "volume", "quote_volume"})
    BOOLS: ClassVar[frozenset[str]] = frozenset({"is_closed", "is_complete"})

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
        parse_symbol(self.symbol)
        if not isinstance(self.interval, str) or self.interval not in INTERVAL_MS:
            raise RecordError(f"interval must be one of {', '.join(INTERVAL_MS)}, got {preview(self.interval)!r}")
        step = INTERVAL_MS[self.interval]
        sane_time(self.open_time, "open_time")
        if self.open_time % step:
            raise RecordError(f"open_time {self.open_time} is not aligned to a {self.interval} boundary")
        if not self.open_time <= self.close_time <= self.open_time + step - 1:
            raise RecordError(f"close_time {self.close_time} is outside its {self.interval} candle "
                              f"[open_time, open_time + {step - 1}]")
        covered = covers_interval(self.interval, self.open_time, self.close_time)
        if self.is_complete != covered:
            raise RecordError(f"is_complete must be {str(covered).lower()} for close_time {self.close_time} "
                              f"(open_time + {self.close_time - self.open_time})")
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
class Trade(SymbolKeyed, Record):
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
        parse_symbol(self.symbol)
        parse_text(self.trade_id, "trade_id")
        sane_time(self.ts, "ts")
        if self.side not in ("buy", "sell"):
            raise RecordError(f"side must be 'buy' or 'sell', got {preview(self.side)!r}")
        if not self.size > 0:
            raise RecordError(f"size must be positive, got {self.size}")
        if not self.price > 0:
            raise RecordError(f"price must be positive, got {self.price}")


@dataclass(frozen=True, slots=True)
class Quote(SymbolKeyed, Record):
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
        parse_symbol(self.symbol)
        sane_time(self.ts, "ts")
        for name in ("bid", "ask"):
            if not getattr(self, name) > 0:
                raise RecordError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("bid_size", "ask_size"):
            if getattr(self, name) < 0:
                raise RecordError(f"{name} must not be negative, got {getattr(self, name)}")
        if self.bid > self.ask:
            raise RecordError(f"crossed quote: bid {self.bid} above ask {self.ask}")


@dataclass(frozen=True, slots=True)
class Prediction(SymbolKeyed, Record):
    """A forecast of the close of one candle: ``horizon`` is the candle's interval (``1m`` for the
    next-minute model, ``1d`` for each day of the 15-day forecast), ``target_time`` its open time,
    and ``[lower, upper]`` the prediction interval around ``predicted``. ``reason`` says why a
    fallback answers instead of the trained model (``None``, JSON ``null``, when the model
    answered), so a user who sees a naive forecast learns from the answer what the model lacked."""

    symbol: str
    model: str
    model_version: str
    horizon: str
    made_at: int
    target_time: int
    predicted: float
    lower: float
    upper: float
    reason: str | None = None

    INTS: ClassVar[frozenset[str]] = frozenset({"made_at", "target_time"})
    FLOATS: ClassVar[frozenset[str]] = frozenset({"predicted", "lower", "upper"})

    @property
    def topic(self) -> str:
        return topics.PREDICTIONS

    @property
    def timestamp(self) -> int:
        return self.made_at

    def check(self) -> None:
        parse_symbol(self.symbol)
        sane_time(self.made_at, "made_at")
        if self.horizon not in INTERVAL_MS:
            raise RecordError(f"horizon must be one of {', '.join(INTERVAL_MS)}, got {preview(self.horizon)!r}")
        if self.target_time % INTERVAL_MS[self.horizon]:
            raise RecordError(f"target_time {self.target_time} is not the open time of a {self.horizon} candle")
        if not self.made_at - 86_400_000 * 366 < self.target_time <= self.made_at + 86_400_000 * 366:
            raise RecordError(f"target_time {self.target_time} is more than a year from made_at {self.made_at}")
        if not self.lower <= self.predicted <= self.upper:
            raise RecordError(f"interval must hold lower <= predicted <= upper, got {self.lower}, {self.predicted}, {self.upper}")


# The raw bytes a dead letter keeps: enough to see what was wrong, small enough that the letter
# itself always fits in a Kafka message (the broker's default limit is 1 MiB, and base64 adds a third).
DEAD_LETTER_RAW_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class DeadLetter(Record):
    """Input that failed: where it came from, why, its size and SHA-256, and its first
    ``DEAD_LETTER_RAW_BYTES`` bytes (base64). ``size`` and ``sha256`` identify the whole input even
    when ``raw`` holds only its start; letters written before they existed have ``None`` there."""

    source_topic: str
    source_partition: int | None
    source_offset: int | None
    error: str
    raw: str
    size: int | None = None
    sha256: str | None = None

    @property
    def topic(self) -> str:
        return topics.DEADLETTER

    @property
    def key(self) -> str:
        return self.source_topic

    @classmethod
    def of(cls, source_topic: str, raw: bytes | str, error: str, partition: int | None = None,
           offset: int | None = None, keep_bytes: int = DEAD_LETTER_RAW_BYTES) -> DeadLetter:
        data = raw.encode(errors="surrogatepass") if isinstance(raw, str) else raw
        return cls(source_topic, partition, offset, error[:2000], base64.b64encode(data[:keep_bytes]).decode(),
                   len(data), hashlib.sha256(data).hexdigest())

    def raw_bytes(self) -> bytes:
        return base64.b64decode(self.raw)

    @property
    def is_truncated(self) -> bool:
        """Whether ``raw`` holds only the start of the input."""
        return self.size is not None and self.size > len(self.raw_bytes())

    def without_raw(self) -> DeadLetter:
        """The same letter with no raw bytes: what is sent when even the letter cannot be produced."""
        return DeadLetter(self.source_topic, self.source_partition, self.source_offset, self.error, "", self.size,
                          self.sha256)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DeadLetter:
        if not isinstance(data, Mapping):
            raise RecordError(f"expected a JSON object, got {type(data).__name__}")
        try:
            return cls(str(data["source_topic"]), data["source_partition"], data["source_offset"], str(data["error"]),
                       str(data["raw"]), data.get("size"), data.get("sha256"))
        except KeyError as missing:
            raise RecordError(f"missing field {missing}") from None


RECORD_TYPES: dict[str, type[Record]] = {
    topics.CANDLES_1M: Candle,
    topics.CANDLES_1H: Candle,
    topics.CANDLES_1D: Candle,
    topics.TRADES: Trade,
    topics.QUOTES: Quote,
    topics.PREDICTIONS: Prediction,
    topics.ORDERBOOK: OrderBook,
}


def decode(topic: str, raw: bytes | None) -> Record:
    """The validated record of a message on ``topic``; :class:`RecordError` says why it is not one.

    *Any* failure to decode is a :class:`RecordError`, not only the ones foreseen: a consumer
    dead-letters what this refuses and moves on, so an exception of another type escaping here
    would fail its run on the same offsets again and again, and stop the topic for good.
    """
    if raw is None:
        raise RecordError("empty message (no value)")
    record_type = RECORD_TYPES.get(topic)
    if record_type is None:
        raise RecordError(f"no record type for topic {topic!r}")
    try:
        return record_type.from_json(raw)
    except RecordError:
        raise
    except Exception as error:  # any failure at all: see the docstring
        raise RecordError(f"could not be decoded: {type(error).__name__}: {str(error)[:200]}") from None
