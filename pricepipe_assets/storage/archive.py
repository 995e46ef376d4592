"""Moving expired days of Cassandra's hot tables into the lake's archive, provably losing nothing.

For one table part and one UTC day: read the day's rows from their bounded partitions, merge them
into ``archive/<part>/date=<day>/rows-0.parquet`` (rows already archived by an earlier, interrupted
run stay; a row in both is taken from Cassandra), read the file back and compare its row count
and a checksum of its keys with what was meant to be written, and only then delete the day's
rows from Cassandra. So a rerun finds nothing left to delete and rewrites the same file; a crash
between the copy and the delete is finished by the next run; an archive that does not verify is
never followed by a delete.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pricepipe_assets.contract.forecasts import INTERVAL_METHODS
from pricepipe_assets.contract.utc import day_start_ms
from pricepipe_assets.storage.cassandra import CassandraCluster
from pricepipe_assets.storage.cassandra_schema import MOVING_AVERAGE_WINDOWS, candle_bucket
from pricepipe_assets.storage.lake import Lake

if TYPE_CHECKING:
    import pandas as pd

ARCHIVE = "archive"
ARCHIVE_BASENAME = "rows"


class ArchiveVerificationError(RuntimeError):
    """The archive read back differs from the rows meant to be in it; Cassandra was left untouched."""


@dataclass(frozen=True)
class Slice:
    """Where one symbol's rows of one day live: a partition, whole or a clustering range of it."""

    partition: tuple[Any, ...]
    whole_partition: bool


@dataclass(frozen=True)
class HotPart:
    """One kind of rows of one Cassandra table, with its hot window.

    ``partition_columns`` are the table's partition key; ``fixed`` pins the non-symbol, non-bucket
    ones (an interval, a horizon); ``key_columns`` identify a row; ``slices`` says which
    partitions hold a symbol's rows of a day.
    """

    name: str
    table: str
    partition_columns: tuple[str, ...]
    time_column: str
    key_columns: tuple[str, ...]
    aggregate: bool
    slices: Callable[[str, dt.date], list[Slice]]
    time_is_date: bool = False

    def hot_days(self, hot_days: int, hot_days_aggregates: int) -> int:
        return hot_days_aggregates if self.aggregate else hot_days

    @property
    def dataset(self) -> str:
        return f"{ARCHIVE}/{self.name}"

    def _where(self, whole_partition: bool) -> str:
        where = " AND ".join(f"{column} = ?" for column in self.partition_columns)
        if not whole_partition:
            where += f" AND {self.time_column} >= ? AND {self.time_column} < ?"
        return where

    def select_cql(self, whole_partition: bool) -> str:
        return f"SELECT * FROM {self.table} WHERE {self._where(whole_partition)}"

    def delete_cql(self, whole_partition: bool) -> str:
        return f"DELETE FROM {self.table} WHERE {self._where(whole_partition)}"

    def bounds(self, day: dt.date) -> tuple[Any, Any]:
        if self.time_is_date:
            return day, day + dt.timedelta(days=1)
        start = dt.datetime.combine(day, dt.time(), dt.UTC)
        return start, start + dt.timedelta(days=1)


def _bucketed(*fixed: Any, interval: str) -> Callable[[str, dt.date], list[Slice]]:
    """Partitions ``(symbol, *fixed, bucket)`` bucketed like candles of ``interval``."""
    def slices(symbol: str, day: dt.date) -> list[Slice]:
        return [Slice((symbol, *fixed, candle_bucket(interval, day_start_ms(day))), whole_partition=interval == "1m")]
    return slices


def _per_model(horizon: str) -> Callable[[str, dt.date], list[Slice]]:
    """Partitions ``(symbol, horizon, bucket, model)``: one per model that can publish predictions
    (every model the contract names an interval method for; a model that published none has an
    empty partition, which reads and deletes as nothing)."""
    def slices(symbol: str, day: dt.date) -> list[Slice]:
        bucket = candle_bucket(horizon, day_start_ms(day))
        return [Slice((symbol, horizon, bucket, model), whole_partition=horizon == "1m") for model in INTERVAL_METHODS]
    return slices


def _moving_average_slices(symbol: str, day: dt.date) -> list[Slice]:
    bucket = candle_bucket("1d", day_start_ms(day))
    return [Slice((symbol, window, bucket), whole_partition=False) for window in MOVING_AVERAGE_WINDOWS]


CANDLE_KEY = ("symbol", "interval", "bucket", "open_time")
STATS_KEY = ("symbol", "bucket")
PREDICTION_KEY = ("symbol", "horizon", "bucket", "target_time")
MODEL_PREDICTION_KEY = ("symbol", "horizon", "bucket", "model", "target_time")
MODEL_PARTITION = ("symbol", "horizon", "bucket", "model")

HOT_PARTS: tuple[HotPart, ...] = (
    HotPart("candles_1m", "candles", ("symbol", "interval", "bucket"), "open_time", CANDLE_KEY, False,
            _bucketed("1m", interval="1m")),
    HotPart("candles_1h", "candles", ("symbol", "interval", "bucket"), "open_time", CANDLE_KEY, True,
            _bucketed("1h", interval="1h")),
    HotPart("candles_1d", "candles", ("symbol", "interval", "bucket"), "open_time", CANDLE_KEY, True,
            _bucketed("1d", interval="1d")),
    HotPart("trades", "trades", ("symbol", "bucket"), "ts", ("symbol", "bucket", "ts", "trade_id"), False,
            _bucketed(interval="1m")),
    HotPart("trade_stats_minute", "trade_stats_minute", ("symbol", "bucket"), "minute", (*STATS_KEY, "minute"), False,
            _bucketed(interval="1m")),
    HotPart("trade_stats_hour", "trade_stats_hour", ("symbol", "bucket"), "hour", (*STATS_KEY, "hour"), True,
            _bucketed(interval="1h")),
    HotPart("predictions_1m", "predictions", ("symbol", "horizon", "bucket"), "target_time", PREDICTION_KEY, False,
            _bucketed("1m", interval="1m")),
    HotPart("predictions_1d", "predictions", ("symbol", "horizon", "bucket"), "target_time", PREDICTION_KEY, True,
            _bucketed("1d", interval="1d")),
    HotPart("model_predictions_1m", "model_predictions", MODEL_PARTITION, "target_time", MODEL_PREDICTION_KEY, False,
            _per_model("1m")),
    HotPart("model_predictions_1d", "model_predictions", MODEL_PARTITION, "target_time", MODEL_PREDICTION_KEY, True,
            _per_model("1d")),
    HotPart("forecasts", "forecasts", ("symbol", "bucket"), "made_at", ("symbol", "bucket", "made_at", "target_time"),
            True, _bucketed(interval="1d")),
    HotPart("moving_averages", "moving_averages", ("symbol", "window_days", "bucket"), "day",
            ("symbol", "window_days", "bucket", "day"), True, _moving_average_slices, time_is_date=True),
)


@dataclass(frozen=True)
class ArchiveResult:
    """What archiving one part's day did, for the materialization's metadata."""

    rows_in_cassandra: int
    rows_archived: int
    rows_deleted: int
    bytes_written: int
    key_checksum: str
    archive_file: str


def newest_expired_day(now: dt.datetime, hot_days: int) -> dt.date:
    """The newest day outside a window of ``hot_days`` days ending with the clock's current day."""
    return now.date() - dt.timedelta(days=hot_days)


def expired_symbols(clocks: dict[str, dt.datetime], day: dt.date, hot_days: int) -> list[str]:
    """The symbols for which ``day`` has left the hot window, each by its own clock."""
    return sorted(symbol for symbol, now in clocks.items() if day <= newest_expired_day(now, hot_days))


def _plain(value: Any) -> Any:
    """Driver values as pyarrow takes them: its ``Date`` becomes a ``datetime.date``."""
    from cassandra.util import Date

    return value.date() if isinstance(value, Date) else value


def read_day(cassandra: CassandraCluster, part: HotPart, symbols: Sequence[str],
             day: dt.date) -> tuple[pd.DataFrame, list[tuple[Slice, int]]]:
    """The day's rows of ``part`` for every symbol, and the slices that hold any (with their counts)."""
    import pandas as pd

    session = cassandra.session()
    frames, holding = [], []
    for symbol in symbols:
        for piece in part.slices(symbol, day):
            arguments = piece.partition if piece.whole_partition else (*piece.partition, *part.bounds(day))
            rows = list(session.execute(cassandra.prepare(part.select_cql(piece.whole_partition)), arguments))
            if rows:
                frames.append(pd.DataFrame([{k: _plain(v) for k, v in row._asdict().items()} for row in rows]))
                holding.append((piece, len(rows)))
    return (pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()), holding


def key_checksum(frame: pd.DataFrame, key_columns: Sequence[str]) -> str:
    """SHA-256 of the sorted row keys, rendered as text: equal sets of keys give equal checksums
    whatever their order or the column types the round trip through Parquet produced."""
    import pandas as pd

    digest = hashlib.sha256()
    if frame.empty:
        return digest.hexdigest()
    columns = []
    for column in key_columns:
        values = frame[column]
        if pd.api.types.is_datetime64_any_dtype(values):
            values = values.dt.tz_localize(None) if values.dt.tz is not None else values
            values = values.astype("datetime64[ms]").astype("int64")
        columns.append(values.astype(str))
    for key in sorted(zip(*columns, strict=True)):
        digest.update("\x1f".join(key).encode())
        digest.update(b"\x1e")
    return digest.hexdigest()


def _day_folder(part: HotPart, day: dt.date) -> str:
    return f"{part.dataset}/date={day.isoformat()}"


def read_archive(lake: Lake, part: HotPart, day: dt.date) -> pd.DataFrame | None:
    """The archived rows of a day, or None when the day was never archived."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = _day_folder(part, day)
    names = [n for n in lake.list_names(folder) if n.startswith(f"{ARCHIVE_BASENAME}-")]
    if not names:
        return None
    tables = [pq.read_table(lake.path(folder, name), filesystem=lake.filesystem()) for name in names]
    return pa.concat_tables(tables).to_pandas()


def _merge(archived: pd.DataFrame | None, current: pd.DataFrame, key_columns: Sequence[str]) -> pd.DataFrame:
    """Rows already archived plus the current ones, one per key; Cassandra's version wins."""
    import pandas as pd

    if archived is None or archived.empty:
        return current
    if current.empty:
        return archived
    merged = pd.concat([archived, current], ignore_index=True)
    return merged.drop_duplicates(subset=list(key_columns), keep="last").reset_index(drop=True)


def _write(lake: Lake, part: HotPart, day: dt.date, frame: pd.DataFrame) -> tuple[str, int]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False)
    buffer = pa.BufferOutputStream()
    pq.write_table(table, buffer)
    data = buffer.getvalue().to_pybytes()
    return lake.write_bytes(data, _day_folder(part, day), f"{ARCHIVE_BASENAME}-0.parquet"), len(data)


def archive_day(cassandra: CassandraCluster, lake: Lake, part: HotPart, symbols: Sequence[str],
                day: dt.date) -> ArchiveResult:
    """Copy, verify, then delete one day of ``part`` (see the module docstring)."""
    current, holding = read_day(cassandra, part, symbols, day)
    archived = read_archive(lake, part, day)
    if current.empty:
        if archived is None:
            return ArchiveResult(0, 0, 0, 0, "", "")
        return ArchiveResult(0, len(archived), 0, 0, key_checksum(archived, part.key_columns),
                             lake.path(_day_folder(part, day)))
    expected = _merge(archived, current, part.key_columns)
    expected_checksum = key_checksum(expected, part.key_columns)
    path, size = _write(lake, part, day, expected)
    back = read_archive(lake, part, day)
    back_checksum = key_checksum(back, part.key_columns) if back is not None else ""
    if back is None or len(back) != len(expected) or back_checksum != expected_checksum:
        raise ArchiveVerificationError(
            f"archive of {part.name} for {day} does not verify: {len(expected)} rows with key checksum "
            f"{expected_checksum[:12]} were written to {path}, {0 if back is None else len(back)} rows with checksum "
            f"{back_checksum[:12]} were read back; nothing was deleted from Cassandra")
    deleted = 0
    for piece, count in holding:
        arguments = piece.partition if piece.whole_partition else (*piece.partition, *part.bounds(day))
        cassandra.session().execute(cassandra.prepare(part.delete_cql(piece.whole_partition)), arguments)
        deleted += count
    return ArchiveResult(len(current), len(expected), deleted, size, expected_checksum, path)
