"""OHLCV files into Kafka: both layouts of the real daily histories are published whole, a bad row
goes to the dead-letter topic with its line, and the daily topic's readers store them."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import dagster as dg
import pyarrow.dataset as ds
import pytest

from pricepipe_assets.contract.records import Candle
from pricepipe_assets.contract.topics import CANDLES_1D, DEADLETTER
from pricepipe_assets.defs.resources import CassandraResource, KafkaResource, LakeResource
from pricepipe_assets.sources.candle_files import daily_history_file, import_candles
from pricepipe_assets.storage.lake_datasets import RAW_CANDLES
from pricepipe_assets_tests.support.kafka_reads import consume
from pricepipe_assets_tests.support.kafka_runs import definitions, drain

DAY_MS = 86_400_000


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def test_the_plain_layout_publishes_every_day_of_the_real_history_as_a_daily_candle(
        kafka: KafkaResource, shared_data: Path) -> None:
    path = shared_data / "daily_candles" / "yanniedog_spot_ETHUSDT_1d.csv"
    days = len(_lines(path)) - 1
    result = import_candles(kafka.publisher(), path, "ETHUSDT", "1d")

    assert (result.rows, result.published, result.dead_letters) == (days, days, 0)
    candles = [Candle.from_json(m.value()) for m in consume(kafka, CANDLES_1D, days)]
    assert len({c.open_time for c in candles}) == days
    first = min(candles, key=lambda c: c.open_time)
    assert (first.open_time, first.close_time) == (1502928000000, 1502928000000 + DAY_MS - 1)
    assert (first.open, first.high, first.low, first.close, first.volume) == (301.13, 312.18, 298.0, 302.0, 7030.71034)
    assert first.interval == "1d" and first.is_complete


def test_off_a_terminal_an_import_shows_one_line_for_the_file_and_no_carriage_return(
        kafka: KafkaResource, shared_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Standard error is captured here, not a terminal: as in a log file, no bar is drawn."""
    path = shared_data / "daily_candles" / "yanniedog_spot_ETHUSDT_1d.csv"
    days = len(_lines(path)) - 1
    import_candles(kafka.publisher(), path, "ETHUSDT", "1d", progress=True)

    progress = capsys.readouterr().err
    assert "\r" not in progress
    assert progress.splitlines() == [f"{path.name}: {days:,} rows, {days:,} published, 0 dead-lettered, 0 left for later"]


def test_the_binance_layout_with_a_header_keeps_quote_volume_and_trades(kafka: KafkaResource,
                                                                        shared_data: Path) -> None:
    path = shared_data / "daily_candles" / "ronaldlu66_spot_BTCUSDT_1d.csv"
    days = len(_lines(path)) - 1
    result = import_candles(kafka.publisher(), path, "BTCUSDT", "1d")

    assert (result.published, result.dead_letters) == (days, 0)
    first = min((Candle.from_json(m.value()) for m in consume(kafka, CANDLES_1D, days)), key=lambda c: c.open_time)
    assert (first.open_time, first.quote_volume, first.trades) == (1609459200000, 1582526989.1618726, 1314910)


def test_a_refused_row_goes_to_deadletter_with_its_line_and_the_rest_is_published(
        kafka: KafkaResource, shared_data: Path, tmp_path: Path) -> None:
    lines = _lines(shared_data / "daily_candles" / "yanniedog_spot_BTCUSDT_1d.csv")[:6]
    stamp, open_, high, low, close, volume = lines[3].split(",")
    lines[3] = ",".join([stamp, open_, low, high, close, volume])  # high below low
    path = tmp_path / "btc.csv"
    path.write_text("\n".join(lines) + "\n")

    result = import_candles(kafka.publisher(), path, "BTCUSDT", "1d")

    assert (result.rows, result.published, result.dead_letters) == (5, 4, 1)
    (letter,) = consume(kafka, DEADLETTER, 1)
    body = json.loads(letter.value())
    assert body["source_topic"] == "candles.1d" and body["error"].startswith("btc.csv line 4: ")
    assert len(consume(kafka, CANDLES_1D, 4)) == 4


def test_a_file_in_neither_layout_is_refused_before_anything_is_published(kafka: KafkaResource,
                                                                          tmp_path: Path) -> None:
    path = tmp_path / "prices.csv"
    path.write_text("date,price\n2024-01-01,42000\n")
    with pytest.raises(ValueError, match="neither"):
        import_candles(kafka.publisher(), path, "BTCUSDT", "1d")


def test_imported_daily_candles_reach_cassandra_and_the_lake_through_the_daily_topics_readers(
        kafka: KafkaResource, cassandra: CassandraResource, local_lake: LakeResource, shared_data: Path,
        tmp_path: Path) -> None:
    lines = _lines(shared_data / "daily_candles" / "ronaldlu66_spot_BTCUSDT_1d.csv")[:32]
    path = tmp_path / "january.csv"
    path.write_text("\n".join(lines) + "\n")
    assert import_candles(kafka.publisher(), path, "BTCUSDT", "1d").published == 31

    runs = drain(definitions(kafka, cassandra, local_lake), CANDLES_1D, kafka, dg.DagsterInstance.ephemeral())

    assert runs and all(run.success for run in runs)
    stored = list(cassandra.session().execute(
        "SELECT open_time, close FROM candles WHERE symbol = 'BTCUSDT' AND interval = '1d' AND bucket = %s",
        (dt.date(2021, 1, 1),)))
    assert len(stored) == 31 and stored[0].close == float(lines[1].split(",")[4])
    lake = ds.dataset(local_lake.path(RAW_CANDLES, "interval=1d"), filesystem=local_lake.filesystem(), format="parquet",
                      partitioning="hive")
    assert lake.count_rows() == 31


def test_the_daily_history_of_a_symbol_is_its_spot_file_reaching_furthest_back(shared_data: Path,
                                                                             tmp_path: Path) -> None:
    folder = shared_data / "daily_candles"
    assert daily_history_file(folder, "BTCUSDT") == folder / "yanniedog_spot_BTCUSDT_1d.csv"  # 2017, not 2021
    assert daily_history_file(folder, "ETHUSDT") == folder / "yanniedog_spot_ETHUSDT_1d.csv"
    assert daily_history_file(folder, "SOLUSDT") is None
    (tmp_path / "futures_um_XRPUSDT_1d.csv").write_text("timestamp,open,high,low,close,volume\n2017-01-01,1,1,1,1,1\n")
    (tmp_path / "XRPUSDT_1d.csv").write_text("timestamp,open,high,low,close,volume\n2019-01-01,1,1,1,1,1\n")
    assert daily_history_file(tmp_path, "XRPUSDT") == tmp_path / "XRPUSDT_1d.csv"  # futures are another market
