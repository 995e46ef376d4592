"""LakeResource round trips on the local filesystem and on real HDFS (WebHDFS)."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from pricepipe_assets.defs.resources import LakeResource

PARTITIONS = pa.schema([("symbol", pa.string()), ("date", pa.string())])


def candles_table() -> pa.Table:
    return pa.table({
        "symbol": ["BTCUSDT", "BTCUSDT", "ETHUSDT"],
        "date": ["2024-01-01", "2024-01-02", "2024-01-01"],
        "open_time": pa.array([1704067200000, 1704153600000, 1704067200000], pa.int64()),
        "close": [42283.58, 44000.5, 2352.04],
    })


def test_write_then_read_returns_the_same_rows(lake: LakeResource) -> None:
    files = lake.write_dataset(candles_table(), "raw/candles", ["symbol", "date"], basename="offsets-0-2")
    assert len(files) == 3
    assert any("symbol=BTCUSDT/date=2024-01-02" in f for f in files)

    back = lake.read_dataset("raw/candles", partitioning=PARTITIONS).sort_by("close")
    assert back.select(["symbol", "date", "open_time", "close"]).to_pylist() == candles_table().sort_by("close").to_pylist()


def test_rewriting_the_same_basename_replaces_instead_of_duplicating(lake: LakeResource) -> None:
    lake.write_dataset(candles_table(), "raw/candles", ["symbol", "date"], basename="offsets-0-2")
    lake.write_dataset(candles_table(), "raw/candles", ["symbol", "date"], basename="offsets-0-2")
    assert lake.read_dataset("raw/candles", partitioning=PARTITIONS).num_rows == 3

    lake.write_dataset(candles_table(), "raw/candles", ["symbol", "date"], basename="offsets-3-5")
    btc = lake.read_dataset("raw/candles", partitioning=PARTITIONS, filter=pc.field("symbol") == "BTCUSDT")
    assert btc.num_rows == 4


def test_a_rewrite_replaces_the_file_and_a_half_written_file_is_never_read(lake: LakeResource) -> None:
    lake.write_dataset(candles_table(), "raw/candles", ["symbol", "date"], basename="offsets-0-2")
    changed = candles_table().set_column(3, "close", pa.array([1.0, 2.0, 3.0]))
    files = lake.write_dataset(changed, "raw/candles", ["symbol", "date"], basename="offsets-0-2")
    assert all(f.rsplit("/", 1)[1] == "offsets-0-2-0.parquet" for f in files)
    # what a writer killed half-way leaves: a truncated file under its hidden staging name
    with lake.filesystem().open_output_stream(
            lake.path("raw/candles", "symbol=BTCUSDT", "date=2024-01-01", ".offsets-3-5-0.parquet.tmp")) as stream:
        stream.write(b"PAR1 truncated")
    back = lake.read_dataset("raw/candles", partitioning=PARTITIONS)
    assert sorted(back.column("close").to_pylist()) == [1.0, 2.0, 3.0]


def test_reading_a_missing_dataset_names_it(lake: LakeResource) -> None:
    with pytest.raises(FileNotFoundError, match="lake dataset 'raw/nothing' does not exist"):
        lake.read_dataset("raw/nothing")


def test_delete_removes_a_dataset(lake: LakeResource) -> None:
    lake.write_dataset(candles_table(), "raw/candles", ["symbol", "date"], basename="a")
    lake.delete("raw/candles")
    assert not lake.exists("raw/candles")


def test_years_of_daily_partitions_written_at_once_get_one_file_each(local_lake: LakeResource) -> None:
    """More partitions than pyarrow's writer takes in one call (1,024): two symbols' 1,200 days of
    daily candles, as an import of years of history writes them."""
    days = [(dt.date(2020, 1, 1) + dt.timedelta(days=n)).isoformat() for n in range(600)]
    table = pa.table({
        "symbol": ["BTCUSDT"] * 600 + ["ETHUSDT"] * 600,
        "date": days * 2,
        "open_time": pa.array(range(1200), pa.int64()),
    })
    assert table.group_by(["symbol", "date"]).aggregate([]).num_rows > 1024
    files = local_lake.write_dataset(table, "raw/candles", ["symbol", "date"], basename="history")
    assert len(files) == table.group_by(["symbol", "date"]).aggregate([]).num_rows
    assert all(f.endswith("/history-0.parquet") for f in files)
    back = local_lake.read_dataset("raw/candles", partitioning=PARTITIONS)
    assert sorted(back.column("open_time").to_pylist()) == list(range(1200))
