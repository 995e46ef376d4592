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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse
from urllib.request import url2pathname

import requests

from pricepipe_assets.contract.records import Candle, Record, RecordError
from pricepipe_assets.sources.binance.dump_files import (
    Dataset,
    DumpError,
    DumpFile,
    DumpRow,
    read_rows,
)
from pricepipe_assets.sources.progress import Progress
from pricepipe_assets.sources.replay import Rejected

if TYPE_CHECKING:
    from pricepipe_assets.kafka.publisher import Publisher

DEFAULT_BASE_URL = "https://data.binance.vision"

_SHA256 = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 20


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


def _held(row: DumpRow, after: int | None) -> bool:
    """Whether ``row`` is a record at or before ``after``; a row that does not parse is not held (it
    goes on to the dead-letter topic)."""
    try:
        return after is not None and row.parse().timestamp <= after
    except RecordError:
        return False


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
    backfill halfway. ``progress`` shows bars over files and rows on a terminal, a line per file
    elsewhere (for the CLI; see ``sources.progress``).
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
        file_days = dataset.file_days(start, end)
        with self._progress(f"download {dataset}", " file", total=len(file_days)) as progress:
            for number, day in enumerate(file_days, 1):
                try:
                    files.append(self.fetch(dataset, day))
                    state = "ready"
                except MissingDayError:
                    if not skip_missing:
                        raise
                    missing.append(day)
                    state = "missing"
                progress.update()
                progress.step_done(f"{day} {state} ({number}/{len(file_days)})")
        return Downloads(dataset, tuple(files), tuple(missing))

    def records(self, dataset: Dataset, start: dt.date, end: dt.date, *,
                skip_missing: bool = False) -> Iterator[Record | Rejected]:
        """The records of a date range for a replay; files are downloaded before the first is yielded."""
        return self.download(dataset, start, end, skip_missing=skip_missing).records()

    def backfill(self, publisher: Publisher, dataset: Dataset, start: dt.date, end: dt.date, *,
                 skip_missing: bool = False, after: int | None = None) -> BackfillResult:
        """Publish every row of a date range: records to their topics, bad rows to the dead-letter topic.

        Kafka confirms each file's messages before the next file is read, so a failure loses at
        most one day's work and never reports unconfirmed data as published. ``after`` (ms UTC)
        leaves out the records at or before it, which the caller already holds, so a resumed
        backfill publishes no double; rows are in time order, so only the first rows are checked.
        """
        downloads = self.download(dataset, start, end, skip_missing=skip_missing)
        tally = _Tally()
        resuming = after is not None
        with self._progress(f"publish {dataset}", " rows") as progress:
            for file in downloads.files:
                rows = 0
                for row in read_rows(file, dataset):
                    if resuming:
                        if _held(row, after):
                            continue
                        resuming = False
                    tally.count(publisher.offer(row.source, row.raw, row.parse))
                    rows += 1
                    progress.update()
                publisher.flush()
                progress.step_done(f"{file.day} published, {rows:,} rows")
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

    def _progress(self, desc: str, unit: str, total: int | None = None) -> Progress:
        return Progress(desc, unit, enabled=self.progress, total=total)


def _checksum_path(target: Path) -> Path:
    return target.with_name(f"{target.name}.CHECKSUM")


def _file_chunks(url: str) -> Iterator[bytes]:
    path = Path(url2pathname(urlparse(url).path))
    if not path.is_file():
        raise _NotFound(url)
    with path.open("rb") as source:
        yield from iter(lambda: source.read(_CHUNK), b"")
