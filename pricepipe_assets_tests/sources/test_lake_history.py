"""A replay fed from the lake's raw zone: each record once, in event-time order, into Kafka."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pyarrow as pa

from pricepipe_assets.contract.records import Candle, Trade
from pricepipe_assets.defs.resources import KafkaResource, LakeResource
from pricepipe_assets.sources.binance.dumps import BinanceDumps, Dataset
from pricepipe_assets.sources.lake_history import candles_from_lake, lake_streams, trades_from_lake
from pricepipe_assets.sources.replay import Replayer
from pricepipe_assets.storage.lake_datasets import RAW_CANDLES, RAW_TRADES
from pricepipe_assets_tests.support.kafka_reads import consume

DAY = dt.date(2024, 1, 1)


def raw_rows(records: list[Candle] | list[Trade], day_of: str) -> pa.Table:
    """Rows shaped like the raw zone's (record fields, day partition, Kafka position)."""
    rows = [{**r.to_dict(), "date": dt.datetime.fromtimestamp(getattr(r, day_of) / 1000, dt.UTC).date().isoformat(),
             "kafka_partition": 0, "kafka_offset": i} for i, r in enumerate(records)]
    return pa.Table.from_pylist(rows).drop_columns(["v"])


def real_candles(shared_data: Path, tmp_path: Path) -> list[Candle]:
    dumps = BinanceDumps(tmp_path / "cache", (shared_data / "binance").as_uri())
    return list(dumps.records(Dataset.klines("BTCUSDT", "1m"), DAY, DAY))


def test_candles_delivered_twice_to_the_lake_replay_once_in_order(local_lake: LakeResource, shared_data: Path,
                                                                  tmp_path: Path) -> None:
    candles = real_candles(shared_data, tmp_path)
    table = raw_rows(candles, "open_time")
    local_lake.write_dataset(table, RAW_CANDLES, ["interval", "symbol", "date"], "p0-o000000000000")
    local_lake.write_dataset(table.slice(100, 50), RAW_CANDLES, ["interval", "symbol", "date"], "p1-o000000000000")
    assert list(candles_from_lake(local_lake, "BTCUSDT", DAY, DAY)) == candles
    assert list(candles_from_lake(local_lake, "ETHUSDT", DAY, DAY)) == []


def test_replay_from_the_lake_publishes_every_record_once(kafka: KafkaResource, local_lake: LakeResource,
                                                          shared_data: Path, tmp_path: Path) -> None:
    candles = real_candles(shared_data, tmp_path)[:120]
    trades = [Trade("binance", "BTCUSDT", str(i), c.open_time + 30_000, "buy", 0.5, c.close) for i, c in enumerate(candles)]
    local_lake.write_dataset(raw_rows(candles, "open_time"), RAW_CANDLES, ["interval", "symbol", "date"], "a")
    local_lake.write_dataset(raw_rows(trades, "ts"), RAW_TRADES, ["symbol", "date"], "a")
    local_lake.write_dataset(raw_rows(trades[:10], "ts"), RAW_TRADES, ["symbol", "date"], "b")  # delivered twice
    assert list(trades_from_lake(local_lake, "BTCUSDT", DAY, DAY)) == trades

    status = Replayer(kafka.publisher(), speed=None).run(*lake_streams(local_lake, ["BTCUSDT"], DAY, DAY, "BTCUSDT"))
    assert status.dead_letters == 0
    got_candles = [json.loads(m.value())["open_time"] for m in consume(kafka, "candles.1m", expected=120)]
    got_trades = [json.loads(m.value())["trade_id"] for m in consume(kafka, "trades", expected=120)]
    assert sorted(got_candles) == [c.open_time for c in candles]
    assert sorted(got_trades, key=int) == [t.trade_id for t in trades]
