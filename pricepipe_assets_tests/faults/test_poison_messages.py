"""Poison on every Kafka-fed topic while the replay streams: each bad message reaches `deadletter`
once, and the candles, trades, quotes, books and predictions after it are stored and served as usual.

A poison message used to fail its run on the same offsets attempt after attempt, so nothing after
it was ever written; the sensors and runs here are the platform's own, ticked in process.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import threading
from collections import Counter
from pathlib import Path

import dagster as dg
import pytest
from starlette.testclient import TestClient

from api.app import create_app
from pricepipe_assets.contract import topics
from pricepipe_assets.contract.books import OrderBook
from pricepipe_assets.contract.records import Candle, DeadLetter, Prediction, Quote, Trade
from pricepipe_assets.defs.resources import CassandraResource, KafkaResource, LakeResource
from pricepipe_assets.settings import Settings
from pricepipe_assets.sources.binance.dumps import BinanceDumps, Dataset
from pricepipe_assets.sources.replay import Replayer
from pricepipe_assets.storage.cassandra_schema import candle_bucket
from pricepipe_assets_tests.support.kafka_reads import consume
from pricepipe_assets_tests.support.kafka_runs import CANDLE_DAY, TRADE_DAY, definitions, drain

POISONED = (topics.CANDLES_1M, topics.TRADES, topics.QUOTES, topics.ORDERBOOK, topics.PREDICTIONS)
HALF_DAY = 720


def poison() -> dict[str, bytes]:
    """The three messages that stopped a topic for good: a JSON array nested 2,000 deep (a 4 kB
    RecursionError), 1.2 MB of JSON (compressible, so the broker takes it) and random bytes."""
    return {"nested": b"[" * 2000 + b"]" * 2000,
            "large": json.dumps({"symbol": "BTCUSDT", "pad": "A" * 1_200_000}).encode(),
            "random": os.urandom(512)}


def _produce_poison(kafka: KafkaResource) -> Counter[tuple[str, str]]:
    """Each poison message on each topic, as a hostile client would send it; returns the (full
    topic, SHA-256) of each."""
    producer = kafka.producer(**{"message.max.bytes": 4_000_000})
    sent: Counter[tuple[str, str]] = Counter()
    for topic in POISONED:
        for raw in poison().values():
            producer.produce(kafka.topic(topic), key=b"BTCUSDT", value=raw)
            sent[kafka.topic(topic), hashlib.sha256(raw).hexdigest()] += 1
    assert producer.flush(30) == 0
    return sent


def _drain_all(defs: dg.Definitions, kafka: KafkaResource, instance: dg.DagsterInstance) -> None:
    for topic in POISONED:
        for run in drain(defs, topic, kafka, instance, max_runs=10):
            assert run.success


def _after_the_poison(candle: Candle) -> tuple[Quote, OrderBook, Prediction]:
    """A quote, a book and a prediction at the second half's first candle, for the topics the
    replay does not feed: what arrives after the poison must still be stored."""
    at = candle.close_time
    mid = candle.close
    return (Quote("bitmex", "BTCUSDT", at, mid - 0.5, mid + 0.5, 1.0, 2.0),
            OrderBook("binance", "BTCUSDT", at, 1, ((mid - 0.5, 1.0),), ((mid + 0.5, 2.0),)),
            Prediction("BTCUSDT", "after-poison", "1", "1m", at, candle.open_time + 60_000, mid, mid - 10, mid + 10))


@pytest.mark.timeout(900)
def test_poison_on_every_topic_while_the_replay_streams_is_dead_lettered_once_and_later_data_is_served(
        kafka: KafkaResource, cassandra: CassandraResource, local_lake: LakeResource, shared_data: Path,
        tmp_path: Path) -> None:
    dumps = BinanceDumps(tmp_path / "cache", (shared_data / "binance").as_uri())
    candles = [c for c in dumps.records(Dataset.klines("BTCUSDT", "1m"), CANDLE_DAY, CANDLE_DAY)
               if isinstance(c, Candle)]
    trades = [t for t, _ in zip(dumps.records(Dataset.agg_trades("BTCUSD_PERP", "futures/cm"), TRADE_DAY, TRADE_DAY),
                                range(20_000), strict=False) if isinstance(t, Trade)]
    kafka.ensure_topics(topics.ALL_TOPICS)
    replayer = Replayer(kafka.publisher(), speed=None)
    defs, instance = definitions(kafka, cassandra, local_lake), dg.DagsterInstance.ephemeral()

    first = threading.Thread(target=replayer.run, args=(candles[:HALF_DAY], trades[:10_000]))
    first.start()
    _drain_all(defs, kafka, instance)  # runs take what the replay has published so far
    first.join()
    sent = _produce_poison(kafka)
    later = _after_the_poison(candles[HALF_DAY])
    publisher = kafka.publisher()
    for record in later:
        publisher.publish(record)
    publisher.flush()
    second = threading.Thread(target=Replayer(kafka.publisher(), speed=None).run,
                              args=(candles[HALF_DAY:], trades[10_000:]))
    second.start()
    _drain_all(defs, kafka, instance)
    second.join()
    _drain_all(defs, kafka, instance)

    letters = [DeadLetter.from_json(m.value()) for m in consume(kafka, topics.DEADLETTER, sent.total())]
    assert Counter((letter.source_topic, letter.sha256) for letter in letters) == sent
    assert all(letter.error and letter.source_offset is not None for letter in letters)
    with TestClient(create_app(Settings.from_env({"PRICEPIPE_KEYSPACE": cassandra.keyspace}))) as api:
        served = api.get(f"/candles/BTCUSDT?start={CANDLE_DAY}&end={CANDLE_DAY}").json()["candles"]
        assert [c["close"] for c in served] == [c.close for c in candles]
        price = api.get("/BTCUSDT/price").json()
        assert (price["buy"], price["sell"]) == (later[1].asks[0][0], later[1].bids[0][0])
        assert api.get("/BTCUSDT/orderbook").json()["bids"][0]["price"] == later[1].bids[0][0]
    session = cassandra.session()
    last_minute = dt.datetime.fromtimestamp(trades[-1].ts // 60_000 * 60, dt.UTC).replace(tzinfo=None)
    minutes = session.execute("SELECT minute FROM trade_stats_minute WHERE symbol = 'BTCUSD_PERP' AND bucket = %s",
                              (TRADE_DAY,)).all()
    assert last_minute in [row.minute for row in minutes]
    (stored,) = session.execute(
        "SELECT predicted FROM model_predictions WHERE symbol = 'BTCUSDT' AND horizon = '1m' AND bucket = %s "
        "AND model = %s", (candle_bucket("1m", later[2].target_time), later[2].model)).all()
    assert stored.predicted == later[2].predicted
