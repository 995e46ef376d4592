"""binance_history: one symbol-day partition publishes that day's real candles to Kafka, once."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg

from pricepipe_assets.defs.ingestion import binance_history_asset
from pricepipe_assets.defs.resources import BinanceResource, KafkaResource
from pricepipe_assets_tests.support.kafka_reads import consume


def test_a_partition_publishes_its_day_of_candles(kafka: KafkaResource, shared_data: Path, tmp_path: Path) -> None:
    binance = BinanceResource(dumps_url=(shared_data / "binance").as_uri(), cache_dir=str(tmp_path))
    key = dg.MultiPartitionKey({"date": "2024-01-01", "symbol": "BTCUSDT"})
    result = dg.materialize([binance_history_asset(["BTCUSDT", "ETHUSDT"])], partition_key=key, resources={"kafka": kafka, "binance": binance},
                            instance=dg.DagsterInstance.ephemeral())
    assert result.success
    metadata = result.asset_materializations_for_node("binance_history")[0].metadata
    assert metadata["dagster/row_count"].value == 1440
    assert metadata["dead_letters"].value == 0
    assert metadata["checksum_verified"].value is False  # the 2024 files of the mirror carry no CHECKSUM
    assert metadata["first_close_time"].value == "2024-01-01T00:00:59.999000+00:00"

    messages = consume(kafka, "candles.1m", expected=1440)
    assert len(messages) == 1440
    opens = sorted(json.loads(m.value())["open_time"] for m in messages)
    assert opens == [1704067200000 + 60_000 * i for i in range(1440)]
