"""Binance's public data dumps as a source: daily kline and aggTrades zips, verified, cached, published.

The dumps (https://data.binance.vision, any mirror of its layout, or a ``file://`` copy) are the
only free, complete record of Binance's history, so backfills and offline replays start here.
Files are cached because a day never changes once published; they are downloaded to a temporary
name and renamed only after the server's CHECKSUM (when it has one) matched, so the cache never
holds a partial or corrupt file. Rows are parsed by :mod:`pricepipe_assets.contract.records`, the single
parser of Binance rows, so a dump and the live feed cannot disagree about a candle.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import tempfile
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse
from urllib.request import url2pathname

import requests
from tqdm import tqdm

from pricepipe_assets.contract.records import INTERVAL_MS, Candle, Record, RecordError
from pricepipe_assets.sources.binance.formats import (
    candle_from_binance_row,
    trade_from_binance_agg_row,
)
from pricepipe_assets.sources.replay import Rejected

if TYPE_CHECKING:
    from pricepipe_assets.kafka.publisher import Publisher

DEFAULT_BASE_URL = "https://data.binance.vision"
KLINES = "klines"
AGG_TRADES = "aggTrades"
# The market's folder on the dumps site -> the ``exchange`` of its records: spot and the two futures
# markets list the same symbol names for different instruments, so they must stay apart downstream.
MARKETS: dict[str, str] = {"spot": "binance", "futures/um": "binanceusdm", "futures/cm": "binancecoinm"}

# A header is a first line of column names only; a data row always holds numbers.
_HEADER = re.compile(rb"[A-Za-z_][A-Za-z0-9_ ]*(?:,[A-Za-z_][A-Za-z0-9_ ]*)+")
_SYMBOL = re.compile(r"[A-Z0-9_]{1,32}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 20


class DumpError(RuntimeError):
    """A dump could not be fetched or read; the message is a sentence meant for the user."""


class MissingDayError(DumpError):
    """The server has no file for a day (HTTP 404, or no such file under a ``file://`` base URL)."""

    def __init__(self, url: str, day: dt.date) -> None:
        super().__init__(f"{url} was not found: the dumps have no file for {day.isoformat()} "
                         "(ask to skip missing days to go on without it)")
        self.url = url
        self.day = day


class ChecksumError(DumpError):
    """A downloaded file does not match the server's CHECKSUM; it was not kept."""


class _NotFound(Exception):
    pass


@dataclass(frozen=True)
class Dataset:
    """One series of daily dump files: a market, a kind (``klines`` or ``aggTrades``), a symbol, an interval."""

    market: str
    kind: str
    symbol: str
    interval: str | None = None

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

    @classmethod
    def klines(cls, symbol: str, interval: str, market: str = "spot") -> Dataset:
        return cls(market, KLINES, symbol, interval)

    @classmethod
    def agg_trades(cls, symbol: str, market: str = "spot") -> Dataset:
        return cls(market, AGG_TRADES, symbol)

    @property
    def exchange(self) -> str:
        return MARKETS[self.market]

    def __str__(self) -> str:
        return " ".join(part for part in (self.market, self.kind, self.symbol, self.interval) if part)

    def path(self, day: dt.date) -> str:
        """The file's path below the base URL, exactly as on data.binance.vision."""
        folder = f"data/{self.market}/daily/{self.kind}/{self.symbol}"
        if self.interval:
            folder += f"/{self.interval}"
        return f"{folder}/{self.symbol}-{self.interval or self.kind}-{day.isoformat()}.zip"

    def parse(self, fields: Sequence[str]) -> Record:
        if self.kind == KLINES:
            assert self.interval is not None
            return candle_from_binance_row(fields, self.symbol, self.interval, exchange=self.exchange)
        return trade_from_binance_agg_row(fields, self.symbol, exchange=self.exchange)


@dataclass(frozen=True)
class DumpFile:
    """A day's zip in the cache; ``verified`` when it matched the server's CHECKSUM on download."""

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


@dataclass(frozen=True)
class Downloads:
    """The cached files of a date range and the days the server did not have."""

    dataset: Dataset
    files: tuple[DumpFile, ...]
    missing_days: tuple[dt.date, ...]

    def rows(self) -> Iterator[DumpRow]:
        for file in self.files:
            yield from read_rows(file, self.dataset)

    def records(self) -> Iterator[Record | Rejected]:
        """Records in file order (event-time order for Binance dumps), bad rows as :class:`Rejected`."""
        for row in self.rows():
            try:
                yield row.parse()
            except RecordError as error:
                yield Rejected(row.source, row.raw, str(error))


@dataclass(frozen=True)
class BackfillResult:
    """What a backfill did; event times as in :attr:`~pricepipe_assets.contract.records.Record.event_time` (ms UTC)."""

    files: int
    verified: int
    rows_read: int
    records_published: int
    dead_letters: int
    quirks: int
    first_event_ms: int | None
    last_event_ms: int | None
    missing_days: tuple[dt.date, ...]


class _Tally:
    """Running counts of a backfill."""

    def __init__(self) -> None:
        self.rows = self.published = self.dead_letters = self.quirks = 0
        self.first: int | None = None
        self.last: int | None = None

    def count(self, record: Record | None) -> None:
        self.rows += 1
        if record is None:
            self.dead_letters += 1
            return
        self.published += 1
        if isinstance(record, Candle) and record.quirks():
            self.quirks += 1
        moment = record.event_time
        self.first = moment if self.first is None else min(self.first, moment)
        self.last = moment if self.last is None else max(self.last, moment)

    def result(self, downloads: Downloads) -> BackfillResult:
        return BackfillResult(len(downloads.files), sum(f.verified for f in downloads.files), self.rows,
                              self.published, self.dead_letters, self.quirks, self.first, self.last,
                              downloads.missing_days)


def days(start: dt.date, end: dt.date) -> list[dt.date]:
    """The days from ``start`` to ``end``, both included."""
    if end < start:
        raise ValueError(f"the end date {end.isoformat()} is before the start date {start.isoformat()}")
    return [start + dt.timedelta(days=n) for n in range((end - start).days + 1)]


def _write_atomically(path: Path, data: bytes) -> None:
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f"{path.name}.", suffix=".part")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(temp, path)
    finally:
        Path(temp).unlink(missing_ok=True)


class BinanceDumps:
    """Client of the dumps site layout at ``base_url`` (``https://``, ``http://`` or ``file://``).

    ``cache_dir`` receives the files under their site paths; the application passes
    ``~/.cache/pricepipe/binance-dumps``. A ``file://`` source is copied into the cache like a
    download, so it is verified the same way and a later change to the mirror cannot alter a
    backfill halfway. ``progress`` shows tqdm bars over files and rows (for the CLI).
    """

    def __init__(self, cache_dir: Path | str, base_url: str = DEFAULT_BASE_URL, *, timeout_s: float = 30.0,
                 progress: bool = False) -> None:
        scheme = urlparse(base_url).scheme
        if scheme not in ("https", "http", "file"):
            raise ValueError(f"the dumps base URL must start with https://, http:// or file://, got {base_url!r}")
        self.cache_dir = Path(cache_dir)
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.progress = progress
        self._session = requests.Session()

    def download(self, dataset: Dataset, start: dt.date, end: dt.date, *, skip_missing: bool = False) -> Downloads:
        """Every day's file from ``start`` to ``end`` (inclusive) in the cache, fetched when not there yet.

        A missing day raises :class:`MissingDayError` before anything is published, unless
        ``skip_missing``: then it is listed in the result.
        """
        files: list[DumpFile] = []
        missing: list[dt.date] = []
        for day in self._bar(days(start, end), unit=" file", desc=f"download {dataset}"):
            try:
                files.append(self.fetch(dataset, day))
            except MissingDayError:
                if not skip_missing:
                    raise
                missing.append(day)
        return Downloads(dataset, tuple(files), tuple(missing))

    def records(self, dataset: Dataset, start: dt.date, end: dt.date, *,
                skip_missing: bool = False) -> Iterator[Record | Rejected]:
        """The records of a date range for a replay; files are downloaded before the first is yielded."""
        return self.download(dataset, start, end, skip_missing=skip_missing).records()

    def backfill(self, publisher: Publisher, dataset: Dataset, start: dt.date, end: dt.date, *,
                 skip_missing: bool = False) -> BackfillResult:
        """Publish every row of a date range: records to their topics, bad rows to the dead-letter topic.

        Kafka confirms each file's messages before the next file is read, so a failure loses at
        most one day's work and never reports unconfirmed data as published.
        """
        downloads = self.download(dataset, start, end, skip_missing=skip_missing)
        tally = _Tally()
        with self._bar(unit=" rows", desc=f"publish {dataset}") as bar:
            for file in downloads.files:
                for row in read_rows(file, dataset):
                    tally.count(publisher.offer(row.source, row.raw, row.parse))
                    bar.update()
                publisher.flush()
        return tally.result(downloads)

    def fetch(self, dataset: Dataset, day: dt.date) -> DumpFile:
        """One day's file from the cache, or downloaded (and verified) into it."""
        source = dataset.path(day)
        target = self.cache_dir / source
        if target.is_file():
            return DumpFile(day, source, target, _checksum_path(target).is_file())
        url = f"{self.base_url}/{source}"
        try:
            verified = self._download(url, target)
        except _NotFound:
            raise MissingDayError(url, day) from None
        return DumpFile(day, source, target, verified)

    def _download(self, url: str, target: Path) -> bool:
        """Download to a temporary file, verify, then rename; returns whether a CHECKSUM was verified."""
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(dir=target.parent, prefix=f"{target.name}.", suffix=".part")
        temp = Path(name)
        try:
            with os.fdopen(handle, "wb") as out:
                digest = hashlib.sha256()
                for chunk in self._chunks(url):
                    out.write(chunk)
                    digest.update(chunk)
            checksum = self._checksum(url, target.name)
            if checksum is not None and digest.hexdigest() != checksum[0]:
                raise ChecksumError(f"{target.name} from {url} is corrupt: its SHA-256 is {digest.hexdigest()} but "
                                    f"the server's CHECKSUM says {checksum[0]}; the file was not kept")
            if not zipfile.is_zipfile(temp):
                raise DumpError(f"{url} is not a zip archive (is the base URL {self.base_url} a dumps mirror?)")
            if checksum is not None:
                _write_atomically(_checksum_path(target), checksum[1])
            os.replace(temp, target)
        finally:
            temp.unlink(missing_ok=True)
        return checksum is not None

    def _checksum(self, url: str, filename: str) -> tuple[str, bytes] | None:
        """The expected SHA-256 and the CHECKSUM file's bytes, or None when the server has none."""
        checksum_url = f"{url}.CHECKSUM"
        try:
            data = b"".join(self._chunks(checksum_url))
        except _NotFound:
            return None
        parts = data.decode("utf-8", "replace").split()
        if len(parts) != 2 or not _SHA256.fullmatch(parts[0].lower()) or parts[1] != filename:
            raise ChecksumError(f"{checksum_url} is not a checksum of {filename} ('<sha256>  {filename}' expected, "
                                f"got {data[:120]!r})")
        return parts[0].lower(), data

    def _chunks(self, url: str) -> Iterator[bytes]:
        """The body of ``url`` in chunks; raises ``_NotFound`` when the server has no such file."""
        if url.startswith("file:"):
            return _file_chunks(url)
        return self._http_chunks(url)

    def _http_chunks(self, url: str) -> Iterator[bytes]:
        host = urlparse(url).netloc
        try:
            with self._session.get(url, stream=True, timeout=self.timeout_s) as response:
                if response.status_code == 404:
                    raise _NotFound(url)
                if response.status_code != 200:
                    raise DumpError(f"{host} answered HTTP {response.status_code} {response.reason} for {url}")
                yield from response.iter_content(_CHUNK)
        except requests.Timeout:
            raise DumpError(f"{host} did not answer within {self.timeout_s:g} s for {url}") from None
        except requests.ConnectionError:
            raise DumpError(f"cannot reach {host} to download {url}: the connection failed; check the network "
                            f"and the dumps base URL {self.base_url}") from None
        except requests.RequestException as error:
            raise DumpError(f"downloading {url} failed: {error}") from None

    def _bar(self, iterable: Iterable[Any] | None = None, **options: Any) -> tqdm:
        return tqdm(iterable, disable=not self.progress, **options)


def _checksum_path(target: Path) -> Path:
    return target.with_name(f"{target.name}.CHECKSUM")


def _file_chunks(url: str) -> Iterator[bytes]:
    path = Path(url2pathname(urlparse(url).path))
    if not path.is_file():
        raise _NotFound(url)
    with path.open("rb") as source:
        yield from iter(lambda: source.read(_CHUNK), b"")
