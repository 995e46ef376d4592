"""The raw zone across the contract's growth: a block file written before `is_complete` existed,
rewritten after Kafka's retention dropped its first offsets, keeps those rows, as complete candles."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pyarrow as pa

from pricepipe_assets.defs.lake.assets import candle_row, write_chunks
from pricepipe_assets.defs.resources import LakeResource
from pricepipe_assets.kafka.batches import Batch, Delivered, OffsetRange
from pricepipe_assets.storage.lake_datasets import RAW_CANDLES, chunk_basename
from pricepipe_assets_tests.support.kafka_runs import CANDLE_DAY
from pricepipe_assets_tests.support.lake_fill import real_minutes

PARTITIONS = ["interval", "symbol", "date"]
HIVE = pa.schema([(name, pa.string()) for name in PARTITIONS])


def test_rows_of_a_file_older_than_is_complete_are_carried_over_as_complete(
        local_lake: LakeResource, shared_data: Path, tmp_path: Path) -> None:
    candles = real_minutes(shared_data, tmp_path, "BTCUSDT", CANDLE_DAY, CANDLE_DAY)[:10]
    delivered = [Delivered("candles.1m", 0, offset, candle) for offset, candle in enumerate(candles)]
    before_the_flag = pa.Table.from_pylist([candle_row(item) for item in delivered[:5]]).drop_columns(["v", "is_complete"])
    local_lake.write_dataset(before_the_flag, RAW_CANDLES, PARTITIONS, chunk_basename(0, 0))

    early = dataclasses.replace(candles[5], close_time=candles[5].open_time + 1_000, is_complete=False)
    later = [Delivered("candles.1m", 0, 5, early), *delivered[6:]]
    write_chunks(local_lake, Batch([OffsetRange("candles.1m", 0, 5, 10)], later), RAW_CANDLES, PARTITIONS, candle_row)

    raw = local_lake.read_dataset(RAW_CANDLES, partitioning=HIVE).sort_by("kafka_offset").to_pylist()
    assert [row["kafka_offset"] for row in raw] == list(range(10))
    assert [row["is_complete"] for row in raw] == [True] * 5 + [False] + [True] * 4
    assert [row["close_time"] for row in raw] == [c.close_time for c in candles[:5]] + [early.close_time] + [
        c.close_time for c in candles[6:]]
