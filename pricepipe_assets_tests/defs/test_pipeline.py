"""One real day through sensor-requested runs: the lake and Cassandra equal the source files row for
row, trade statistics equal a pandas group-by, a run killed before its commit or half-way through a write loses or doubles nothing,
and a gap in the input shows in the gap check."""

from __future__ import annotations

import datetime as dt
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pandas as pd
import pyarrow as pa
import pytest

from pricepipe_assets.contract.records import Candle
from pricepipe_assets.contract.topics import CANDLES_1M, TRADES
from pricepipe_assets.defs.resources import CassandraResource, KafkaResource, LakeResource
from pricepipe_assets.sources.binance.dumps import BinanceDumps, Dataset
from pricepipe_assets.sources.binance.formats import candle_from_binance_row
from pricepipe_assets.storage.cassandra_schema import candle_bucket
from pricepipe_assets.storage.clock import platform_now
from pricepipe_assets.storage.lake_datasets import RAW_CANDLES
from pricepipe_assets_tests.support.kafka_reads import consume
from pricepipe_assets_tests.support.kafka_runs import (
    CANDLE_DAY,
    TRADE_DAY,
    definitions,
    drain,
    expected_minute_stats,
    publish_candles,
    publish_trades,
    source_candles,
    source_trades,
)
from pricepipe_assets_tests.support.stream_runs import materialized

DAY_MS = 1704067200000
LATE_SAMPLE = 6000
HIVE = pa.schema([("interval", pa.string()), ("symbol", pa.string()), ("date", pa.string())])


def _cassandra_candles(cassandra: CassandraResource) -> pd.DataFrame:
    rows = cassandra.session().execute(
        "SELECT open_time, open, high, low, close, volume, quote_volume, trades FROM candles "
        "WHERE symbol = 'BTCUSDT' AND interval = '1m' AND bucket = %s", (CANDLE_DAY,))
    frame = pd.DataFrame(list(rows))
    frame["open_time"] = (frame["open_time"] - pd.Timestamp("1970-01-01")) // pd.Timedelta(milliseconds=1)
    return frame


def _assert_candles_equal_source(cassandra: CassandraResource, lake: LakeResource, shared_data: Path) -> None:
    source = source_candles(shared_data)
    columns = ["open_time", "open", "high", "low", "close", "volume", "quote_volume", "trades"]
    stored = _cassandra_candles(cassandra)
    pd.testing.assert_frame_equal(stored[columns].reset_index(drop=True), source[columns], check_dtype=False)
    raw = lake.read_dataset(RAW_CANDLES, partitioning=HIVE).to_pandas().sort_values("open_time")
    assert set(raw["date"]) == {"2024-01-01"} and set(raw["interval"]) == {"1m"}
    pd.testing.assert_frame_equal(raw[columns].reset_index(drop=True), source[columns], check_dtype=False)


def test_a_day_of_candles_reaches_lake_and_cassandra_once(
        kafka: KafkaResource, cassandra: CassandraResource, local_lake: LakeResource, shared_data: Path,
        tmp_path: Path) -> None:
    publish_candles(kafka, shared_data, tmp_path)
    instance = dg.DagsterInstance.ephemeral()
    (run,) = drain(definitions(kafka, cassandra, local_lake), CANDLES_1M, kafka, instance)

    _assert_candles_equal_source(cassandra, local_lake, shared_data)
    assert platform_now(cassandra) == dt.datetime(2024, 1, 1, 23, 59, 59, 999000, tzinfo=dt.UTC)
    metadata = materialized(instance, "candles_live")
    assert (metadata["dagster/row_count"], metadata["dead_letters"], metadata["lag"]) == (1440, 0, 0)
    assert metadata["first_event_time"] == "2024-01-01T00:00:00+00:00"
    files = sorted(p.name for p in Path(local_lake.root, RAW_CANDLES).rglob("*.parquet"))
    assert files and all(re.fullmatch(r"p[01]-o000000000000-0\.parquet", name) for name in files)
    checks = {c.check_name: c.passed for c in run.get_asset_check_evaluations()}
    assert checks == {"candles_live_ohlc": True, "candles_lake_no_duplicates": True, "candles_lake_gaps": True}


def test_bad_messages_go_to_deadletter_and_never_stop_the_batch(
        kafka: KafkaResource, cassandra: CassandraResource, local_lake: LakeResource, shared_data: Path,
        tmp_path: Path) -> None:
    publish_candles(kafka, shared_data, tmp_path)
    producer = kafka.producer()
    producer.produce(kafka.topic(CANDLES_1M), key=b"BTCUSDT", value=b"{not json")
    producer.flush(10)
    instance = dg.DagsterInstance.ephemeral()
    (run,) = drain(definitions(kafka, cassandra, local_lake), CANDLES_1M, kafka, instance)

    assert run.asset_materializations_for_node("candles_lake")[0].metadata["dead_letters"].value == 1
    assert materialized(instance, "candles_live")["dagster/row_count"] == 1440
    (letter,) = consume(kafka, "deadletter", expected=1)
    assert b"not valid JSON" in letter.value()


def _minute_candles(minutes: range) -> list[Candle]:
    return [Candle("binance", "BTCUSDT", "1m", DAY_MS + 60_000 * m, DAY_MS + 60_000 * m + 59_999, 1.0, 2.0, 0.5, 1.5,
                   1.0, 1.5, 1, True) for m in minutes]


EARLY_MINUTE, EARLY_CLOSE_MS = 9, 31_250  # the venue stopped trading 31.25 s into 00:09
OUTAGES = (range(10, 13), range(60, 180))  # the minutes after the early close, and a two-hour outage


def _real_rows_with_an_outage(shared_data: Path) -> list[list[str]]:
    """The first 200 real minutes of the day as a dump would hold them had the venue stopped at
    00:09:31.25 and again from 01:00 to 02:59: the early-closed 00:09 row keeps its real prices,
    only its close_time is the moment trading stopped."""
    source = source_candles(shared_data).head(200).astype(str).values.tolist()
    source[EARLY_MINUTE][6] = str(int(source[EARLY_MINUTE][0]) + EARLY_CLOSE_MS)
    lost = {m for outage in OUTAGES for m in outage}
    return [row for minute, row in enumerate(source) if minute not in lost]


def test_an_early_closed_candle_is_kept_flagged_counted_and_named_beside_the_gap_after_it(
        kafka: KafkaResource, cassandra: CassandraResource, local_lake: LakeResource, shared_data: Path) -> None:
    publisher = kafka.publisher()
    for row in _real_rows_with_an_outage(shared_data):
        publisher.publish(candle_from_binance_row(row, "BTCUSDT", "1m"))
    publisher.flush()
    instance = dg.DagsterInstance.ephemeral()
    (run,) = drain(definitions(kafka, cassandra, local_lake), CANDLES_1M, kafka, instance)

    early_open = DAY_MS + 60_000 * EARLY_MINUTE
    live = materialized(instance, "candles_live")
    assert (live["early_closed"], live["dead_letters"]) == (1, 0)
    lake = run.asset_materializations_for_node("candles_lake")[0].metadata
    assert (lake["early_closed"].value, lake["dead_letters"].value) == (1, 0)
    stored = {r.open_time: r for r in cassandra.session().execute(
        "SELECT open_time, close_time, is_complete FROM candles WHERE symbol = 'BTCUSDT' AND interval = '1m' "
        "AND bucket = %s", (CANDLE_DAY,))}
    assert len(stored) == 200 - sum(len(outage) for outage in OUTAGES)
    early_row = stored[dt.datetime(2024, 1, 1, 0, EARLY_MINUTE)]
    assert early_row.close_time == dt.datetime(2024, 1, 1, 0, EARLY_MINUTE, 31, 250000)
    assert [r.open_time.minute for r in stored.values() if not r.is_complete] == [EARLY_MINUTE]
    raw = local_lake.read_dataset(RAW_CANDLES, partitioning=HIVE).to_pandas().set_index("open_time")
    assert (raw.loc[early_open, "close_time"], raw.loc[early_open, "is_complete"]) == (early_open + EARLY_CLOSE_MS, False)
    assert raw["is_complete"].sum() == len(raw) - 1

    checks = {c.check_name: c for c in run.get_asset_check_evaluations()}
    assert checks["candles_live_ohlc"].passed and checks["candles_live_ohlc"].metadata["early_closed"].value == 1
    gaps = checks["candles_lake_gaps"]
    assert not gaps.passed
    assert gaps.metadata["missing_minutes"].value == 123
    assert gaps.metadata["gaps_by_symbol"].value == {"BTCUSDT": [
        {"first": "2024-01-01T00:10:00+00:00", "last": "2024-01-01T00:12:00+00:00", "minutes": 3,
         "after_early_close": {"open_time": "2024-01-01T00:09:00+00:00", "close_time": "2024-01-01T00:09:31.250000+00:00"}},
        {"first": "2024-01-01T01:00:00+00:00", "last": "2024-01-01T02:59:00+00:00", "minutes": 120}]}
    assert gaps.metadata["early_closed"].value == 1
    assert gaps.metadata["early_closed_by_symbol"].value == {"BTCUSDT": [
        {"open_time": "2024-01-01T00:09:00+00:00", "close_time": "2024-01-01T00:09:31.250000+00:00"}]}


def test_a_rewritten_lake_block_keeps_rows_kafka_retention_already_dropped(
        kafka: KafkaResource, cassandra: CassandraResource, local_lake: LakeResource) -> None:
    from confluent_kafka import TopicPartition

    publisher = kafka.publisher()
    for candle in _minute_candles(range(10)):
        publisher.publish(candle)
    publisher.flush()
    defs, instance = definitions(kafka, cassandra, local_lake), dg.DagsterInstance.ephemeral()
    (first,) = drain(defs, CANDLES_1M, kafka, instance)
    (partition,) = {int(r.split(":")[1]) for r in first.dagster_run.tags["pricepipe/offset_ranges"].split(",")}
    retention_cut = TopicPartition(kafka.topic(CANDLES_1M), partition, 5)
    admin = kafka.admin()
    admin.delete_records([retention_cut])[retention_cut].result(30)
    for candle in _minute_candles(range(10, 15)):
        publisher.publish(candle)
    publisher.flush()
    drain(defs, CANDLES_1M, kafka, instance)

    raw = local_lake.read_dataset(RAW_CANDLES, partitioning=HIVE, columns=["open_time", "kafka_offset"]).to_pandas()
    assert sorted(raw["kafka_offset"]) == list(range(15))
    assert sorted(raw["open_time"]) == [c.open_time for c in _minute_candles(range(15))]


KILLED_RUN = """
import sys, time
import dagster as dg
from pricepipe_assets.kafka import batches as kafka_batches
from pricepipe_assets.defs.resources import CassandraResource, KafkaResource, LakeResource
from pricepipe_assets_tests.support.kafka_runs import definitions, drain

def hang():
    print("KILL ME", flush=True)
    time.sleep(600)

def hang_before_commit(*args, **kwargs):
    hang()

write_all = CassandraResource.write_all
publish = LakeResource._publish

def hang_half_way_through_a_write(cassandra, cql, rows):
    write_all(cassandra, cql, rows[: len(rows) // 2])
    hang()

def hang_after_the_first_lake_file(lake, staged):
    publish(lake, staged)
    hang()

prefix, keyspace, lake_uri, topic, moment = sys.argv[1:]
if moment == "before-commit":
    kafka_batches.commit = hang_before_commit
elif moment == "mid-lake-write":
    LakeResource._publish = hang_after_the_first_lake_file
else:
    CassandraResource.write_all = hang_half_way_through_a_write
drain(definitions(KafkaResource(topic_prefix=prefix), CassandraResource(keyspace=keyspace), LakeResource(uri=lake_uri)),
      topic, KafkaResource(topic_prefix=prefix), dg.DagsterInstance.ephemeral())
"""


def _kill_run(kafka: KafkaResource, cassandra: CassandraResource, lake: LakeResource, topic: str, moment: str) -> None:
    """Run the topic's job in a subprocess and SIGKILL it at ``moment``: once its writes are done
    but before any commit, half-way through the lake's files, or half-way through a Cassandra write."""
    repo = Path(__file__).resolve().parents[2]
    process = subprocess.Popen(
        [sys.executable, "-c", KILLED_RUN, kafka.topic_prefix, cassandra.keyspace, lake.uri, topic, moment],
        cwd=repo, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(repo)})
    try:
        assert process.stdout is not None
        for line in process.stdout:
            if line.strip() == "KILL ME":
                break
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(30)
    assert process.returncode == -signal.SIGKILL


@pytest.mark.parametrize("moment", ["before-commit", "mid-lake-write", "mid-write"])
def test_a_run_killed_at_any_moment_leaves_every_candle_once(
        kafka: KafkaResource, cassandra: CassandraResource, local_lake: LakeResource, shared_data: Path,
        tmp_path: Path, moment: str) -> None:
    publish_candles(kafka, shared_data, tmp_path)
    _kill_run(kafka, cassandra, local_lake, CANDLES_1M, moment)

    (run,) = drain(definitions(kafka, cassandra, local_lake), CANDLES_1M, kafka, dg.DagsterInstance.ephemeral())
    assert run.success
    _assert_candles_equal_source(cassandra, local_lake, shared_data)


STATS = ["minute", "trades", "volume", "quote_volume", "buy_volume", "sell_volume", "vwap", "last_price"]


def _stored_minute_stats(cassandra: CassandraResource) -> pd.DataFrame:
    rows = cassandra.session().execute("SELECT * FROM trade_stats_minute WHERE symbol = 'BTCUSD_PERP' AND bucket = %s",
                                       (TRADE_DAY,))
    frame = pd.DataFrame(list(rows))
    frame["minute"] = (frame["minute"] - pd.Timestamp("1970-01-01")) // pd.Timedelta(milliseconds=1)
    return frame


def test_trade_statistics_equal_a_group_by_of_the_source_even_after_a_killed_run(
        kafka: KafkaResource, cassandra: CassandraResource, local_lake: LakeResource, shared_data: Path,
        tmp_path: Path) -> None:
    assert publish_trades(kafka, shared_data, tmp_path) == 105_280
    _kill_run(kafka, cassandra, local_lake, TRADES, "mid-write")
    (run,) = drain(definitions(kafka, cassandra, local_lake), TRADES, kafka, dg.DagsterInstance.ephemeral())
    assert run.success

    expected = expected_minute_stats(source_trades(shared_data))
    stored = _stored_minute_stats(cassandra)
    pd.testing.assert_frame_equal(stored[STATS], expected[STATS], check_dtype=False, rtol=1e-9)

    hours = pd.DataFrame(list(cassandra.session().execute(
        "SELECT hour, trades, volume FROM trade_stats_hour WHERE symbol = 'BTCUSD_PERP' AND bucket = %s",
        (candle_bucket("1h", int(pd.Timestamp(TRADE_DAY).timestamp() * 1000)),))))
    assert len(hours) == 24 and hours["trades"].sum() == 105_280
    assert hours["volume"].sum() == pytest.approx(expected["volume"].sum())
    latest = cassandra.session().execute("SELECT last_price FROM latest_prices WHERE symbol = 'BTCUSD_PERP'").one()
    assert latest.last_price == expected["last_price"].iloc[-1]
    raw = local_lake.read_dataset("raw/trades", columns=["trade_id"]).to_pandas()
    assert len(raw) == 105_280 and raw["trade_id"].is_unique


def test_late_and_repeated_trades_never_double_count(
        kafka: KafkaResource, cassandra: CassandraResource, local_lake: LakeResource, shared_data: Path,
        tmp_path: Path) -> None:
    """A later batch brings trades of minutes already computed (late) and trades already stored
    (repeated, as a replay does): the statistics still equal a group-by of the distinct trades,
    and the trades table holds each source trade once, field for field."""
    dumps = BinanceDumps(tmp_path, (shared_data / "binance").as_uri())
    trades = list(dumps.records(Dataset.agg_trades("BTCUSD_PERP", "futures/cm"), TRADE_DAY, TRADE_DAY))[:LATE_SAMPLE]
    late = trades[::7]
    defs, instance, publisher = definitions(kafka, cassandra, local_lake), dg.DagsterInstance.ephemeral(), kafka.publisher()
    for batch in ([t for t in trades if t not in late], [*late, *trades[:LATE_SAMPLE // 2]]):
        for trade in batch:
            publisher.publish(trade)
        publisher.flush()
        assert all(run.success for run in drain(defs, TRADES, kafka, instance))

    source = source_trades(shared_data).iloc[:LATE_SAMPLE]
    stored = _stored_minute_stats(cassandra)
    pd.testing.assert_frame_equal(stored[STATS], expected_minute_stats(source)[STATS], check_dtype=False, rtol=1e-9)
    rows = pd.DataFrame(list(cassandra.session().execute(
        "SELECT trade_id, price, size, side FROM trades WHERE symbol = 'BTCUSD_PERP' AND bucket = %s", (TRADE_DAY,))))
    assert sorted(rows["trade_id"].astype(int)) == sorted(source["agg_trade_id"])
    by_id = rows.assign(trade_id=rows["trade_id"].astype(int)).set_index("trade_id").loc[source["agg_trade_id"]]
    assert by_id["price"].tolist() == source["price"].tolist()
    assert by_id["size"].tolist() == source["quantity"].tolist()
    assert by_id["side"].tolist() == ["sell" if maker else "buy" for maker in source["is_buyer_maker"]]
