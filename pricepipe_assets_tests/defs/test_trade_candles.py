"""`trade_candles` through the stream worker on the real servers: the real BTCUSD_PERP day
equals a pandas resample of its aggTrades, BitMEX trades from the local BitMEX server become
candles, and late, repeated and replayed trades converge on the same candles."""

from __future__ import annotations

import json
import random
import threading
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd

from pricepipe_assets.cli import stream
from pricepipe_assets.contract.records import Trade
from pricepipe_assets.contract.topics import CANDLES_1M, TRADES
from pricepipe_assets.defs.resources import CassandraResource, KafkaResource, LakeResource
from pricepipe_assets.sources.backoff import exponential_backoff
from pricepipe_assets.sources.binance.dumps import BinanceDumps, Dataset
from pricepipe_assets.sources.bitmex.ws import BitmexClient
from pricepipe_assets_tests.sources.bitmex.test_ws import wait_until
from pricepipe_assets_tests.support.exchange_servers.bitmex_server import BitmexServer, iso_millis
from pricepipe_assets_tests.support.kafka_reads import consume
from pricepipe_assets_tests.support.kafka_runs import (
    TRADE_CANDLE_COLUMNS,
    TRADE_DAY,
    definitions,
    drain,
    expected_trade_candles,
    source_trades,
)

GRACE_S = 10


def real_trades(shared_data: Path, cache_dir: Path) -> list[Trade]:
    dumps = BinanceDumps(cache_dir, (shared_data / "binance").as_uri())
    return [t for t in dumps.records(Dataset.agg_trades("BTCUSD_PERP", "futures/cm"), TRADE_DAY, TRADE_DAY)
            if isinstance(t, Trade)]


def published(kafka: KafkaResource, expected: int) -> list[Any]:
    return consume(kafka, CANDLES_1M, expected)


def latest_by_minute(messages: list[Any]) -> pd.DataFrame:
    """The last version of each published candle: what an upsert downstream keeps."""
    latest = {json.loads(m.value())["open_time"]: json.loads(m.value()) for m in messages}
    return pd.DataFrame([latest[t] for t in sorted(latest)]).set_index("open_time")


def publish(kafka: KafkaResource, trades: list[Trade]) -> None:
    publisher = kafka.publisher()
    for trade in trades:
        publisher.publish(trade)
    publisher.flush()


def test_the_real_day_in_two_batches_equals_a_resample_of_its_aggtrades(
        kafka: KafkaResource, cassandra: CassandraResource, local_lake: LakeResource, shared_data: Path,
        tmp_path: Path) -> None:
    """The noon split leaves a minute open at the end of the first batch; the second run publishes it
    although it reads none of its trades, and every minute is published exactly once."""
    trades = real_trades(shared_data, tmp_path)
    defs, instance = definitions(kafka, cassandra, local_lake), dg.DagsterInstance.ephemeral()
    for part in (trades[:len(trades) // 2], trades[len(trades) // 2:]):
        publish(kafka, part)
        assert all(run.success for run in drain(defs, TRADES, kafka, instance, grace_s=GRACE_S))

    expected = expected_trade_candles(source_trades(shared_data), GRACE_S)
    messages = published(kafka, len(expected))
    assert len(messages) == len(expected)
    candles = latest_by_minute(messages)
    assert set(candles["exchange"]) == {"binancecoinm"} and set(candles["symbol"]) == {"BTCUSD_PERP"}
    pd.testing.assert_frame_equal(candles[TRADE_CANDLE_COLUMNS], expected[TRADE_CANDLE_COLUMNS], check_dtype=False, check_names=False,
                                  rtol=1e-12)


def bitmex_items(trades: list[Trade]) -> list[dict[str, Any]]:
    """Real BTCUSD_PERP aggTrades in BitMEX's ``trade`` wire format, relabelled XBTUSD (an inverse BTC
    perpetual too) only to drive the protocol: BitMEX's own sample holds 10 prints of one minute,
    which no later trade would ever close."""
    return [{"timestamp": iso_millis(t.ts * 1000), "symbol": "XBTUSD", "side": t.side.capitalize(),
             "size": t.size, "price": t.price, "tickDirection": "ZeroPlusTick", "trdMatchID": t.trade_id,
             "grossValue": round(t.size / t.price * 1e8), "homeNotional": t.size / t.price,
             "foreignNotional": t.size} for t in trades]


def test_bitmex_trades_from_the_local_bitmex_server_become_bitmex_candles(
        kafka: KafkaResource, cassandra: CassandraResource, local_lake: LakeResource, shared_data: Path,
        tmp_path: Path) -> None:
    source = source_trades(shared_data)
    end = int(source["transact_time"].min()) // 60_000 * 60_000 + 300_000
    trades = [t for t in real_trades(shared_data, tmp_path) if t.ts < end]
    kafka.ensure_topics([TRADES, CANDLES_1M])
    stop = threading.Event()
    with BitmexServer(("XBTUSD",)) as server:
        backoff = exponential_backoff(initial_s=0.05, factor=2, cap_s=0.2, random_fraction=random.Random(3).random)
        client = BitmexClient(kafka.publisher(), url=server.url, symbols=("XBTUSD",), backoff=backoff, poll_s=0.05)
        thread = threading.Thread(target=client.run, args=(stop,), daemon=True)
        thread.start()
        try:
            wait_until(lambda: client.subscriptions == {"trade:XBTUSD", "quote:XBTUSD"}, "the client's subscriptions")
            items = bitmex_items(trades)
            for start in range(0, len(items), 100):
                server.insert("trade", items[start:start + 100])
            wait_until(lambda: client.counts.trades == len(trades), f"{len(trades)} trades")
        finally:
            stop.set()
            thread.join(timeout=30)
    assert all(run.success for run in drain(definitions(kafka, cassandra, local_lake), TRADES, kafka,
                                            dg.DagsterInstance.ephemeral(), grace_s=GRACE_S))

    expected = expected_trade_candles(source[source["transact_time"] < end], GRACE_S)
    candles = latest_by_minute(published(kafka, len(expected)))
    assert len(expected) == 4 and set(candles["exchange"]) == {"bitmex"} and set(candles["symbol"]) == {"XBTUSD"}
    pd.testing.assert_frame_equal(candles[TRADE_CANDLE_COLUMNS], expected[TRADE_CANDLE_COLUMNS], check_dtype=False, check_names=False,
                                  rtol=1e-12)


def test_late_and_repeated_trades_republish_amended_candles_and_a_replay_publishes_the_same_bytes(
        kafka: KafkaResource, cassandra: CassandraResource, local_lake: LakeResource, shared_data: Path,
        tmp_path: Path) -> None:
    """Every 7th trade of the first 6,000 arrives after the rest, with the first half again (as a
    replay does): the last version of each candle, in Kafka and in `candles_live`, equals the
    resample. Then the stage's offsets are reset to the start (`pricepipe stream reset`) and it
    republishes every candle as its last version, byte for byte (the minutes it finds amended in the
    stored trades, as often as its batches close them)."""
    trades = real_trades(shared_data, tmp_path)[:6000]
    late = trades[::7]
    defs, instance = definitions(kafka, cassandra, local_lake), dg.DagsterInstance.ephemeral()
    for batch in ([t for t in trades if t not in late], [*late, *trades[:3000]]):
        publish(kafka, batch)
        assert all(run.success for run in drain(defs, TRADES, kafka, instance, grace_s=GRACE_S))
    expected = expected_trade_candles(source_trades(shared_data).iloc[:6000], GRACE_S)
    first = [m for m in consume(kafka, CANDLES_1M, len(expected) + 1)]
    assert len(first) > len(expected)  # amended minutes were published again
    pd.testing.assert_frame_equal(latest_by_minute(first)[TRADE_CANDLE_COLUMNS], expected[TRADE_CANDLE_COLUMNS], check_dtype=False,
                                  check_names=False, rtol=1e-12)

    assert all(run.success for run in drain(defs, CANDLES_1M, kafka, instance))
    rows = pd.DataFrame(list(cassandra.session().execute(
        "SELECT open_time, open, high, low, close, volume, quote_volume, trades FROM candles "
        "WHERE symbol = 'BTCUSD_PERP' AND interval = '1m' AND bucket = %s", (TRADE_DAY,))))
    rows.index = (rows.pop("open_time") - pd.Timestamp("1970-01-01")) // pd.Timedelta(milliseconds=1)
    pd.testing.assert_frame_equal(rows[TRADE_CANDLE_COLUMNS], expected[TRADE_CANDLE_COLUMNS], check_dtype=False, check_names=False,
                                  rtol=1e-12)

    stream.reset(kafka, ["trade_candles"], "earliest")
    assert all(run.success for run in drain(defs, TRADES, kafka, instance, grace_s=GRACE_S))
    everything = consume(kafka, CANDLES_1M, len(first) + len(expected))
    final = {json.loads(m.value())["open_time"]: m.value() for m in first}
    replayed = everything[len(first):]
    assert {json.loads(m.value())["open_time"] for m in replayed} == set(expected.index)
    assert all(m.value() == final[json.loads(m.value())["open_time"]] for m in replayed)
