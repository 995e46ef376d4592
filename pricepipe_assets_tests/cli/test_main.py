"""The `pricepipe feed` and `pricepipe backfill` commands, run as a user runs them, against real Kafka
(and Cassandra for the REST resume) and local servers that speak the exchanges' protocols."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from pricepipe_assets.defs.resources import CassandraResource, KafkaResource
from pricepipe_assets_tests.support.exchange_servers.binance_rest_server import load_day, running
from pricepipe_assets_tests.support.exchange_servers.bitmex_server import BitmexServer, bitmex_trades_from_tardis
from pricepipe_assets_tests.support.kafka_reads import consume

PRICEPIPE = str(Path(sys.executable).parent / "pricepipe")
TARDIS_TRADES = "samples/trades/tardis_bitmex_trades_XBTUSD_sample.csv"


def pricepipe_env(kafka: KafkaResource, tmp_path: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "PRICEPIPE_TOPIC_PREFIX": kafka.topic_prefix, "PRICEPIPE_CACHE_DIR": str(tmp_path),
            "PRICEPIPE_KAFKA_TOPIC_PARTITIONS": "2", **extra}


def test_backfill_from_dumps_publishes_every_candle_once(kafka: KafkaResource, shared_data: Path,
                                                         tmp_path: Path) -> None:
    env = pricepipe_env(kafka, tmp_path, PRICEPIPE_BINANCE_DUMPS_URL=(shared_data / "binance").as_uri())
    result = subprocess.run([PRICEPIPE, "backfill", "--symbol", "ETHUSDT", "--start", "2024-03-30", "--end",
                             "2024-03-31"], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "2,880 candles published, 0 dead letters" in result.stderr
    opens = sorted(json.loads(m.value())["open_time"] for m in consume(kafka, "candles.1m", expected=2880))
    assert opens == [1711756800000 + 60_000 * i for i in range(2880)]


def test_backfill_via_rest_resumes_after_the_last_stored_candle(kafka: KafkaResource, cassandra: CassandraResource,
                                                                shared_data: Path, tmp_path: Path) -> None:
    stored = dt.datetime(2024, 1, 1, 19, 59, tzinfo=dt.UTC)  # the last candle Cassandra already has
    insert = cassandra.prepare("INSERT INTO candles (symbol, interval, bucket, open_time, close) VALUES (?, ?, ?, ?, ?)")
    cassandra.session().execute(insert, ("BTCUSDT", "1m", stored.date(), stored, 42000.0))
    with running({"BTCUSDT": load_day(shared_data, "BTCUSDT", "2024-01-01")}) as exchange:
        env = pricepipe_env(kafka, tmp_path, PRICEPIPE_BINANCE_REST_URL=exchange.base_url,
                            PRICEPIPE_KEYSPACE=cassandra.keyspace)
        result = subprocess.run([PRICEPIPE, "backfill", "--symbol", "BTCUSDT", "--start", "2024-01-01", "--end",
                                 "2024-01-01", "--source", "rest"], env=env, capture_output=True, text=True,
                                timeout=300)
    assert result.returncode == 0, result.stderr
    assert "resuming after the last stored candle, 2024-01-01T19:59:00+00:00" in result.stderr
    opens = sorted(json.loads(m.value())["open_time"] for m in consume(kafka, "candles.1m", expected=240))
    assert opens == [int(stored.timestamp() * 1000) + 60_000 * i for i in range(1, 241)]


def test_backfill_refuses_an_inverted_range_with_a_message(tmp_path: Path) -> None:
    result = subprocess.run([PRICEPIPE, "backfill", "--symbol", "BTCUSDT", "--start", "2024-01-02", "--end",
                             "2024-01-01"], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "--end 2024-01-01 is before --start 2024-01-02" in result.stderr
    assert "Traceback" not in result.stderr


def test_feed_replay_as_fast_as_possible_ends_with_every_record(kafka: KafkaResource, shared_data: Path,
                                                                tmp_path: Path) -> None:
    env = pricepipe_env(kafka, tmp_path, PRICEPIPE_BINANCE_DUMPS_URL=(shared_data / "binance").as_uri())
    result = subprocess.run([PRICEPIPE, "feed", "--source", "replay", "--start", "2026-05-08", "--speed", "0",
                             "--symbols", "BTCUSDT", "--trades", "BTCUSD_PERP"], env=env, capture_output=True,
                            text=True, timeout=600)
    # 2026-05-08 has no 1m BTCUSDT dump in the mirror, so the replay must say so and publish nothing
    assert result.returncode != 0
    assert "BTCUSDT-1m-2026-05-08.zip" in result.stderr and "Traceback" not in result.stderr

    result = subprocess.run([PRICEPIPE, "feed", "--source", "replay", "--start", "2024-01-01", "--speed", "0",
                             "--symbols", "BTCUSDT", "ETHUSDT"], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert len(consume(kafka, "candles.1m", expected=2880)) == 2880


def test_feed_bitmex_streams_real_trades_until_ctrl_c(kafka: KafkaResource, shared_data: Path, tmp_path: Path) -> None:
    trades = bitmex_trades_from_tardis(shared_data / TARDIS_TRADES)
    with BitmexServer(("XBTUSD",), trade_partial_size=len(trades)) as exchange:
        exchange.seed("trade", trades)
        env = pricepipe_env(kafka, tmp_path, PRICEPIPE_BITMEX_WS_URL=exchange.url, PRICEPIPE_BITMEX_SYMBOLS="XBTUSD")
        feed = subprocess.Popen([PRICEPIPE, "feed", "--source", "bitmex"], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            received = consume(kafka, "trades", expected=len(trades), timeout_s=60)
        finally:
            time.sleep(0.5)
            feed.send_signal(signal.SIGINT)
            _, stderr = feed.communicate(timeout=60)
    assert feed.returncode == 0, stderr
    assert "[feed] bitmex stopped" in stderr
    assert sorted(json.loads(m.value())["trade_id"] for m in received) == sorted(t["trdMatchID"] for t in trades)
