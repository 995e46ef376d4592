"""Candles kept as CSV files into Kafka, published like the venue's own: a multi-year daily history
exported elsewhere is what a forecaster needs on its first start, and no exchange stream gives it.

Two layouts are read, told apart by their first line:

- Binance's 12 kline columns (``open_time,open,high,low,close,volume,close_time,quote_volume,
  trades,...``), with or without a header, times in milliseconds or microseconds; parsed by the
  same function as the dumps, so such a file is validated exactly like them.
- Plain OHLCV, ``timestamp,open,high,low,close,volume`` with a header; ``timestamp`` is the
  candle's open as an ISO date or time (UTC) or epoch milliseconds. The layout has no quote volume
  or trade count: both are published as 0, and the close time is the end of the interval.

A row that does not parse, or parses to a candle the contract refuses, goes to ``deadletter``
with the reason and the file's line; nothing is dropped silently.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pricepipe_assets.contract.record_values import RecordError, iso_to_millis, parse_finite, to_millis
from pricepipe_assets.contract.records import CANDLE_TOPICS, INTERVAL_MS, Candle, covers_interval
from pricepipe_assets.kafka.publisher import Publisher
from pricepipe_assets.sources.binance.formats import candle_from_binance_row
from pricepipe_assets.sources.progress import Progress

PLAIN_HEADER = ["timestamp", "open", "high", "low", "close", "volume"]


@dataclass(frozen=True)
class ImportResult:
    """What an import published: rows read, candles on the interval's topic, rows dead-lettered."""

    rows: int
    published: int
    dead_letters: int
    later: int = 0  # rows at or after the import's ``before``, left out


def _plain_candle(row: list[str], symbol: str, interval: str, exchange: str) -> Candle:
    if len(row) != len(PLAIN_HEADER):
        raise RecordError(f"a plain OHLCV row needs {len(PLAIN_HEADER)} columns, got {len(row)}")
    open_time = _plain_open_time(row[0])
    close_time = open_time + INTERVAL_MS[interval] - 1
    candle = Candle(exchange=exchange, symbol=symbol, interval=interval, open_time=open_time, close_time=close_time,
                    open=parse_finite(row[1], "open"), high=parse_finite(row[2], "high"),
                    low=parse_finite(row[3], "low"), close=parse_finite(row[4], "close"),
                    volume=parse_finite(row[5], "volume"), quote_volume=0.0, trades=0, is_closed=True,
                    is_complete=covers_interval(interval, open_time, close_time))
    candle.check()
    return candle


def _plain_open_time(cell: str) -> int:
    """The plain layout's ``timestamp``: epoch milliseconds, or an ISO date or time (UTC)."""
    stamp = cell.strip()
    return to_millis(stamp, "timestamp") if stamp.isdigit() else iso_to_millis(stamp, "timestamp")


def _rows(path: Path) -> Iterator[tuple[int, list[str], bool]]:
    """(line number, cells, whether the file is in the plain layout) for every data row."""
    with path.open(newline="") as file:
        reader = csv.reader(file)
        first = next(reader, None)
        if first is None:
            return
        header = [cell.strip().lower() for cell in first]
        plain = header == PLAIN_HEADER
        if not plain and not header[0].isdigit():
            if header[0] not in ("open_time", "open time"):
                raise ValueError(f"{path}: the first line is neither {','.join(PLAIN_HEADER)} nor a Binance kline "
                                 f"header or row: {','.join(first)[:120]}")
        elif not plain:
            yield 1, first, False
        for line, row in enumerate(reader, start=2):
            if row:
                yield line, row, plain


def import_candles(publisher: Publisher, path: Path, symbol: str, interval: str, *, exchange: str = "binance",
                   before_ms: int | None = None, progress: bool = False) -> ImportResult:
    """Publish every candle of ``path`` to ``interval``'s candle topic, bad rows to ``deadletter``;
    returns once Kafka confirmed them all (:meth:`Publisher.flush` raises otherwise).

    With ``before_ms``, only candles that open earlier are published: a replay that starts there
    must not find its history already holding the days it is about to replay. ``progress`` shows a
    bar of rows on a terminal, one line once the file is done elsewhere (see ``sources.progress``).
    """
    if interval not in CANDLE_TOPICS:
        raise ValueError(f"interval must be one of {', '.join(CANDLE_TOPICS)}, got {interval!r}")
    topic = CANDLE_TOPICS[interval]
    rows = published = dead = later = 0
    with Progress(path.name, " rows", enabled=progress) as bar:
        for line, row, plain in _rows(path):
            rows += 1
            bar.update()
            raw = ",".join(row)
            try:
                candle = (_plain_candle(row, symbol, interval, exchange) if plain
                          else candle_from_binance_row(row, symbol, interval, exchange=exchange))
            except RecordError as error:
                publisher.dead_letter(topic, raw, f"{path.name} line {line}: {error}")
                dead += 1
                continue
            if before_ms is not None and candle.open_time >= before_ms:
                later += 1
                continue
            publisher.publish(candle)
            published += 1
        publisher.flush()
        bar.step_done(f"{rows:,} rows, {published:,} published, {dead:,} dead-lettered, {later:,} left for later")
    return ImportResult(rows, published, dead, later)


def daily_history_file(folder: Path, symbol: str) -> Path | None:
    """The spot daily history of ``symbol`` in ``folder``: among the files named ``*<symbol>_1d.csv``
    (``futures`` ones left out, since their prices are another market's), the one reaching furthest
    back; None when there is none."""
    found = [path for path in folder.glob(f"*{symbol}_1d.csv") if "futures" not in path.name
             and (path.name == f"{symbol}_1d.csv" or path.name.endswith(f"_{symbol}_1d.csv"))]
    usable = sorted((first, path.name, path) for path in found if (first := _first_open_time(path)) is not None)
    return usable[0][2] if usable else None


def _first_open_time(path: Path) -> int | None:
    for _, row, plain in _rows(path):
        try:
            return _plain_open_time(row[0]) if plain else to_millis(row[0].strip(), "open_time")
        except RecordError:
            return None
    return None
