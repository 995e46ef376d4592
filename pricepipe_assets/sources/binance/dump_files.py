"""The layout of Binance's dumps site: which series exist, where each file of one lives, and the rows of a file.

A series is a :class:`Dataset`; its files are daily (one a day, published the next day) or monthly
(one a month, published after the month ends), under paths that are the same on
data.binance.vision, on any mirror of it, and in pricepipe's cache, so one path names a file
everywhere.
"""

from __future__ import annotations

import datetime as dt
import re
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from pricepipe_assets.contract.records import INTERVAL_MS, Record, RecordError
from pricepipe_assets.sources.binance.formats import (
    candle_from_binance_row,
    trade_from_binance_agg_row,
)

PERIODS = ("daily", "monthly")

KLINES = "klines"
AGG_TRADES = "aggTrades"
# The market's folder on the dumps site -> the ``exchange`` of its records: spot and the two futures
# markets list the same symbol names for different instruments, so they must stay apart downstream.
MARKETS: dict[str, str] = {"spot": "binance", "futures/um": "binanceusdm", "futures/cm": "binancecoinm"}

# A header is a first line of column names only; a data row always holds numbers.
_HEADER = re.compile(rb"[A-Za-z_][A-Za-z0-9_ ]*(?:,[A-Za-z_][A-Za-z0-9_ ]*)+")
_SYMBOL = re.compile(r"[A-Z0-9_]{1,32}")


class DumpError(RuntimeError):
    """A dump could not be fetched or read; the message is a sentence meant for the user."""


@dataclass(frozen=True)
class Dataset:
    """One series of dump files: a market, a kind (``klines`` or ``aggTrades``), a symbol, an interval,
    and whether its files are daily or monthly."""

    market: str
    kind: str
    symbol: str
    interval: str | None = None
    period: str = "daily"

    def __post_init__(self) -> None:
        if self.market not in MARKETS:
            raise ValueError(f"market must be one of {', '.join(MARKETS)}, got {self.market!r}")
        if self.kind not in (KLINES, AGG_TRADES):
            raise ValueError(f"kind must be {KLINES} or {AGG_TRADES}, got {self.kind!r}")
        if not _SYMBOL.fullmatch(self.symbol):
            raise ValueError(f"symbol must be written as Binance does (upper-case, e.g. BTCUSDT), got {self.symbol!r}")
        if self.kind == KLINES and self.interval not in INTERVAL_MS:
            raise ValueError(f"kline interval must be one of {', '.join(INTERVAL_MS)}, got {self.interval!r}")
        if self.kind == AGG_TRADES and self.interval is not None:
            raise ValueError("aggTrades dumps have no interval")
        if self.period not in PERIODS:
            raise ValueError(f"period must be one of {', '.join(PERIODS)}, got {self.period!r}")

    @classmethod
    def klines(cls, symbol: str, interval: str, market: str = "spot", period: str = "daily") -> Dataset:
        return cls(market, KLINES, symbol, interval, period)

    @classmethod
    def agg_trades(cls, symbol: str, market: str = "spot") -> Dataset:
        return cls(market, AGG_TRADES, symbol)

    @property
    def exchange(self) -> str:
        return MARKETS[self.market]

    def __str__(self) -> str:
        return " ".join(part for part in (self.market, self.kind, self.symbol, self.interval) if part)

    def path(self, day: dt.date) -> str:
        """The path below the base URL of the file holding ``day`` (its month's, for a monthly series),
        exactly as on data.binance.vision."""
        folder = f"data/{self.market}/{self.period}/{self.kind}/{self.symbol}"
        if self.interval:
            folder += f"/{self.interval}"
        stamp = day.isoformat() if self.period == "daily" else f"{day:%Y-%m}"
        return f"{folder}/{self.symbol}-{self.interval or self.kind}-{stamp}.zip"

    def file_days(self, start: dt.date, end: dt.date) -> list[dt.date]:
        """The first day of each file covering ``start`` to ``end`` (both included): every day, or the
        first of every month."""
        if self.period == "daily":
            return days(start, end)
        if end < start:
            raise ValueError(f"the end date {end.isoformat()} is before the start date {start.isoformat()}")
        months = (end.year - start.year) * 12 + end.month - start.month
        return [dt.date(start.year + (start.month - 1 + n) // 12, (start.month - 1 + n) % 12 + 1, 1)
                for n in range(months + 1)]

    def parse(self, fields: Sequence[str]) -> Record:
        if self.kind == KLINES:
            assert self.interval is not None
            return candle_from_binance_row(fields, self.symbol, self.interval, exchange=self.exchange)
        return trade_from_binance_agg_row(fields, self.symbol, exchange=self.exchange)


@dataclass(frozen=True)
class DumpFile:
    """A day's (or month's) zip in the cache; ``verified`` when it matched the server's CHECKSUM on download."""

    day: dt.date
    source: str
    path: Path
    verified: bool


@dataclass(frozen=True)
class DumpRow:
    """One CSV line as it is in the file, with where it came from (the dead-letter source)."""

    dataset: Dataset
    source: str
    line: int
    raw: bytes

    def parse(self) -> Record:
        """The validated record; the :class:`RecordError` names the line so a dead letter can be found."""
        try:
            return self.dataset.parse(self.raw.decode("utf-8").split(","))
        except UnicodeDecodeError:
            raise RecordError(f"line {self.line}: not UTF-8 text") from None
        except RecordError as error:
            raise RecordError(f"line {self.line}: {error}") from None


def read_rows(file: DumpFile, dataset: Dataset) -> Iterator[DumpRow]:
    """Every data row of a dump zip in file order; a header row (futures files) is skipped."""
    try:
        with zipfile.ZipFile(file.path) as archive, archive.open(_csv_member(archive, file)) as lines:
            for number, line in enumerate(lines, start=1):
                raw = line.rstrip(b"\r\n")
                if number == 1 and _HEADER.fullmatch(raw):
                    continue
                yield DumpRow(dataset, file.source, number, raw)
    except (zipfile.BadZipFile, zlib.error, EOFError):
        raise DumpError(f"the cached {file.path} is damaged; delete it so the next run downloads it again") from None


def _csv_member(archive: zipfile.ZipFile, file: DumpFile) -> str:
    names = [name for name in archive.namelist() if name.endswith(".csv")]
    if len(names) != 1:
        raise DumpError(f"{file.path} should hold exactly one CSV file, but holds {names or 'none'}")
    return names[0]


def days(start: dt.date, end: dt.date) -> list[dt.date]:
    """The days from ``start`` to ``end``, both included."""
    if end < start:
        raise ValueError(f"the end date {end.isoformat()} is before the start date {start.isoformat()}")
    return [start + dt.timedelta(days=n) for n in range((end - start).days + 1)]
