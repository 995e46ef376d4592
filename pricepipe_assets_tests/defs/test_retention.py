"""Retention against real Cassandra and a real lake: ten days in, a three-day window kept hot, the
other seven archived row for row; reruns change nothing; a crash between copy and delete and an
archive that does not verify lose nothing; raw-zone compaction leaves what readers see unchanged."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pyarrow as pa
import pytest

from pricepipe_assets.contract.records import Prediction
from pricepipe_assets.contract.topics import CANDLES_1M, PREDICTIONS
from pricepipe_assets.defs.lake.assets import candle_row, write_chunks
from pricepipe_assets.defs.resources import CassandraResource, KafkaResource, LakeResource
from pricepipe_assets.defs.retention import ARCHIVE_ASSETS, due_archives, retention_schedule
from pricepipe_assets.kafka.batches import Batch, Delivered, OffsetRange
from pricepipe_assets.storage import archive
from pricepipe_assets.storage.compaction import compact_folder
from pricepipe_assets.storage.lake_datasets import RAW_CANDLES
from pricepipe_assets_tests.support.kafka_runs import definitions, drain, publish_candles, source_candles
from pricepipe_assets_tests.support.lake_fill import real_minutes

DAYS = [dt.date(2024, 1, 1) + dt.timedelta(days=n) for n in range(10)]
HOT_DAYS = 3
ARCHIVES = {asset.key.to_user_string(): asset for asset in ARCHIVE_ASSETS}
CANDLES, PREDICTED = ARCHIVES["candles_1m_archive"], ARCHIVES["predictions_1m_archive"]
PER_MODEL = ARCHIVES["model_predictions_1m_archive"]


def _day_ms(day: dt.date) -> int:
    return int(dt.datetime.combine(day, dt.time(), dt.UTC).timestamp() * 1000)


@pytest.fixture
def ten_days(kafka: KafkaResource, cassandra: CassandraResource, local_lake: LakeResource, shared_data: Path,
             tmp_path: Path) -> None:
    """Ten real days of BTCUSDT candles and a prediction per hour, through Kafka and the sensor-driven runs."""
    for day in DAYS:
        publish_candles(kafka, shared_data, tmp_path, day)
    publisher = kafka.publisher()
    for day in DAYS:
        for hour in range(24):
            target = _day_ms(day) + hour * 3_600_000
            publisher.publish(Prediction("BTCUSDT", "sgd_minute", "v1", "1m", target - 60_000, target, 1.0, 0.5, 1.5))
    publisher.flush()
    defs, instance = definitions(kafka, cassandra, local_lake), dg.DagsterInstance.ephemeral()
    drain(defs, CANDLES_1M, kafka, instance)
    drain(defs, PREDICTIONS, kafka, instance)


def _archive(assets: list[dg.AssetsDefinition], day: dt.date, cassandra: CassandraResource, lake: LakeResource,
             raise_on_error: bool = True) -> dg.ExecuteInProcessResult:
    config = {"ops": {a.op.name: {"config": {"hot_days": HOT_DAYS}} for a in assets}}
    return dg.materialize(assets, partition_key=day.isoformat(), run_config=config, raise_on_error=raise_on_error,
                          resources={"cassandra": cassandra, "lake": lake}, instance=dg.DagsterInstance.ephemeral())


def _hot_candles(cassandra: CassandraResource, day: dt.date) -> int:
    return len(list(cassandra.session().execute(
        "SELECT open_time FROM candles WHERE symbol = 'BTCUSDT' AND interval = '1m' AND bucket = %s", (day,))))


def _archived(lake: LakeResource, name: str, day: dt.date) -> pd.DataFrame:
    part = next(p for p in archive.HOT_PARTS if p.name == name)
    frame = archive.read_archive(lake, part, day)
    assert frame is not None, f"{name} {day} was not archived"
    return frame


def test_a_three_day_window_keeps_the_last_three_days_and_archives_the_other_seven_row_for_row(
        ten_days: None, cassandra: CassandraResource, local_lake: LakeResource, shared_data: Path) -> None:
    for day in DAYS[:7]:
        result = _archive([CANDLES, PREDICTED, PER_MODEL], day, cassandra, local_lake)
        metadata = result.asset_materializations_for_node("candles_1m_archive")[0].metadata
        assert metadata["rows_archived"].value == metadata["rows_deleted"].value == 1440
        assert metadata["bytes_written"].value > 0

    assert [_hot_candles(cassandra, day) for day in DAYS] == [0] * 7 + [1440] * 3
    columns = ["open_time", "open", "high", "low", "close", "volume", "quote_volume", "trades"]
    for day in DAYS[:7]:
        archived = _archived(local_lake, "candles_1m", day).sort_values("open_time").reset_index(drop=True)
        archived["open_time"] = (archived["open_time"] - pd.Timestamp("1970-01-01")) // pd.Timedelta(milliseconds=1)
        pd.testing.assert_frame_equal(archived[columns], source_candles(shared_data, day)[columns], check_dtype=False)
        assert len(_archived(local_lake, "predictions_1m", day)) == 24
        assert len(_archived(local_lake, "model_predictions_1m", day)) == 24

    too_recent = _archive([CANDLES], DAYS[7], cassandra, local_lake, raise_on_error=False)
    assert not too_recent.success and _hot_candles(cassandra, DAYS[7]) == 1440
    failure = too_recent.get_step_failure_events()[0].step_failure_data.error
    assert failure is not None and "inside the hot window" in failure.message


def test_rerunning_an_archived_day_changes_nothing(ten_days: None, cassandra: CassandraResource,
                                                   local_lake: LakeResource) -> None:
    first = _archive([CANDLES], DAYS[0], cassandra, local_lake).asset_materializations_for_node("candles_1m_archive")
    again = _archive([CANDLES], DAYS[0], cassandra, local_lake).asset_materializations_for_node("candles_1m_archive")
    assert again[0].metadata["rows_deleted"].value == 0
    assert again[0].metadata["rows_archived"].value == 1440
    assert again[0].metadata["key_checksum"].value == first[0].metadata["key_checksum"].value


def test_a_crash_between_copy_and_delete_is_finished_by_the_next_run(
        ten_days: None, cassandra: CassandraResource, local_lake: LakeResource, monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(*args: Any, **kwargs: Any) -> str:
        raise RuntimeError("process killed after the copy")

    with monkeypatch.context() as patch:
        patch.setattr(archive.HotPart, "delete_cql", crash)
        assert not _archive([CANDLES], DAYS[1], cassandra, local_lake, raise_on_error=False).success
    assert len(_archived(local_lake, "candles_1m", DAYS[1])) == 1440 and _hot_candles(cassandra, DAYS[1]) == 1440

    _archive([CANDLES], DAYS[1], cassandra, local_lake)
    assert _hot_candles(cassandra, DAYS[1]) == 0
    archived = _archived(local_lake, "candles_1m", DAYS[1])
    assert len(archived) == 1440 and archived["open_time"].is_unique


def test_an_archive_that_does_not_verify_is_not_followed_by_a_delete(
        ten_days: None, cassandra: CassandraResource, local_lake: LakeResource, monkeypatch: pytest.MonkeyPatch) -> None:
    write = archive._write
    monkeypatch.setattr(archive, "_write", lambda lake, part, day, frame: write(lake, part, day, frame.iloc[1:]))
    result = _archive([CANDLES], DAYS[2], cassandra, local_lake, raise_on_error=False)
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.error
    assert failure is not None and "does not verify" in failure.message and "nothing was deleted" in failure.message
    assert _hot_candles(cassandra, DAYS[2]) == 1440


def test_the_schedule_requests_every_expired_day_with_the_assets_still_to_run(
        ten_days: None, cassandra: CassandraResource, local_lake: LakeResource) -> None:
    with dg.instance_for_test() as instance, dg.build_schedule_context(
            instance=instance, resources={"cassandra": cassandra, "lake": local_lake}) as context:
        requests = retention_schedule(context)
    # With the default 7-day window and the clock on 2024-01-10, days up to 2024-01-03 have expired.
    assert [r.partition_key for r in requests] == ["2024-01-01", "2024-01-02", "2024-01-03"]
    assert {key.to_user_string() for key in requests[0].asset_selection} == {
        "candles_1m_archive", "trades_archive", "trade_stats_minute_archive", "predictions_1m_archive",
        "model_predictions_1m_archive", "raw_candles_compaction", "raw_trades_compaction", "raw_order_books_compaction"}


def test_a_day_archived_for_one_symbol_is_due_again_once_another_symbols_clock_expires_it(
        ten_days: None, kafka: KafkaResource, cassandra: CassandraResource, local_lake: LakeResource,
        shared_data: Path, tmp_path: Path) -> None:
    """Replays of different eras side by side: ETHUSDT's clock (2024-02-01) expires 2024-01-08 while
    BTCUSDT's (2024-01-10) keeps it hot, so the first archive of that day covers ETHUSDT only; once
    BTCUSDT's clock moves on, the day must be archived again instead of looking done."""
    publisher = kafka.publisher()
    publisher.publish(real_minutes(shared_data, tmp_path, "ETHUSDT", dt.date(2024, 2, 1), dt.date(2024, 2, 1))[0])
    publisher.flush()
    drain(definitions(kafka, cassandra, local_lake), CANDLES_1M, kafka, dg.DagsterInstance.ephemeral())
    day = dt.date(2024, 1, 8)
    with dg.instance_for_test() as instance:
        result = dg.materialize([CANDLES], partition_key=day.isoformat(), instance=instance,
                                run_config={"ops": {CANDLES.op.name: {"config": {"hot_days": HOT_DAYS}}}},
                                resources={"cassandra": cassandra, "lake": local_lake})
        assert result.asset_materializations_for_node(CANDLES.op.name)[0].metadata["symbols"].value == ["ETHUSDT"]
        assert _hot_candles(cassandra, day) == 1440

        eth_clock = dt.datetime(2024, 2, 1, tzinfo=dt.UTC)
        kept_hot = due_archives(instance, cassandra, {"BTCUSDT": dt.datetime(2024, 1, 10, tzinfo=dt.UTC), "ETHUSDT": eth_clock},
                                {day}, limit=10)
        expired = due_archives(instance, cassandra, {"BTCUSDT": dt.datetime(2024, 1, 20, tzinfo=dt.UTC), "ETHUSDT": eth_clock},
                               {day}, limit=10)
    assert "candles_1m_archive" not in kept_hot.get(day.isoformat(), [])
    assert "candles_1m_archive" in expired[day.isoformat()]


def test_compaction_merges_sealed_blocks_into_one_file_and_readers_see_the_same_rows(
        local_lake: LakeResource, shared_data: Path, tmp_path: Path) -> None:
    candles = real_minutes(shared_data, tmp_path, "BTCUSDT", DAYS[0], DAYS[0])[:200]
    # One candle per offset block, as a slow topic produces: 200 small files in one day's folder.
    batch = Batch([OffsetRange("candles.1m", 0, 0, 200 * 10_000)],
                  [Delivered("candles.1m", 0, n * 10_000, candle) for n, candle in enumerate(candles)])
    write_chunks(local_lake, batch, RAW_CANDLES, ["interval", "symbol", "date"], candle_row)
    folder = f"{RAW_CANDLES}/interval=1m/symbol=BTCUSDT/date=2024-01-01"
    hive = pa.schema([("interval", pa.string()), ("symbol", pa.string()), ("date", pa.string())])
    before = local_lake.read_dataset(RAW_CANDLES, partitioning=hive).sort_by("kafka_offset")

    committed = {0: 150 * 10_000}  # the writer has committed the first 150 blocks only
    result = compact_folder(local_lake, folder, committed, 10_000)
    assert result is not None and result.files_merged == 150
    assert len(local_lake.list_names(folder)) == 51
    assert compact_folder(local_lake, folder, {0: 200 * 10_000}, 10_000) is not None
    assert local_lake.list_names(folder) == ["compacted-2.parquet"]
    after = local_lake.read_dataset(RAW_CANDLES, partitioning=hive).sort_by("kafka_offset")
    assert after.select(before.column_names).equals(before)
