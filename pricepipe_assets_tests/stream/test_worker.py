"""The stream worker as processes on the real servers: two `pricepipe stream` share the partitions
through the consumer-group protocol, and workers killed with SIGKILL at any moment leave the live
tables equal to a pandas reference of the real source, row for row: nothing lost, nothing doubled."""

from __future__ import annotations

import dataclasses
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from pricepipe_assets.contract.records import Candle, Trade
from pricepipe_assets.contract.topics import ALL_TOPICS
from pricepipe_assets.defs.resources import CassandraResource, KafkaResource
from pricepipe_assets.sources.binance.dumps import BinanceDumps, Dataset
from pricepipe_assets.stream.stages import STAGES
from pricepipe_assets_tests.support.kafka_runs import CANDLE_DAY, TRADE_DAY, expected_minute_stats, source_trades
from pricepipe_assets_tests.support.stream_runs import stage_lag

PARTITIONS = 4
# The real trades spread over derived symbols, so that every partition has some and a second worker work.
SYMBOLS = 8
TRADES = 40_000
STATS = ["trades", "volume", "quote_volume", "buy_volume", "sell_volume", "vwap", "last_price"]


@dataclasses.dataclass
class Source:
    candles: list[Candle]
    trades: list[Trade]
    reference: pd.DataFrame  # the trades, as aggTrades rows with their derived symbol

    def records(self) -> list[Candle | Trade]:
        return [*self.candles, *self.trades]


@pytest.fixture()
def source(shared_data: Path, tmp_path: Path) -> Source:
    dumps = BinanceDumps(tmp_path / "cache", (shared_data / "binance").as_uri())
    candles = [c for symbol in ("BTCUSDT", "ETHUSDT")
               for c in dumps.records(Dataset.klines(symbol, "1m"), CANDLE_DAY, CANDLE_DAY) if isinstance(c, Candle)]
    real = [t for t in dumps.records(Dataset.agg_trades("BTCUSD_PERP", "futures/cm"), TRADE_DAY, TRADE_DAY)
            if isinstance(t, Trade)][:TRADES]
    trades = [dataclasses.replace(t, symbol=f"PERP{i % SYMBOLS}") for i, t in enumerate(real)]
    reference = source_trades(shared_data).iloc[:TRADES].copy()
    reference["symbol"] = [f"PERP{i % SYMBOLS}" for i in range(TRADES)]
    return Source(candles, trades, reference)


@pytest.fixture()
def topics(kafka: KafkaResource) -> KafkaResource:
    """The test's topics with enough partitions for two workers to share."""
    wide = KafkaResource(bootstrap_servers=kafka.bootstrap_servers, topic_prefix=kafka.topic_prefix,
                         topic_partitions=PARTITIONS, retention_hours=1)
    wide.ensure_topics(ALL_TOPICS)
    return wide


class Workers:
    """`pricepipe stream` processes on the test's topics and keyspace."""

    def __init__(self, kafka: KafkaResource, cassandra: CassandraResource, logs: Path) -> None:
        self.env = {**os.environ, "PRICEPIPE_TOPIC_PREFIX": kafka.topic_prefix, "PRICEPIPE_KEYSPACE": cassandra.keyspace,
                    "PRICEPIPE_STREAM_REPORT_S": "1"}
        self.env.pop("DAGSTER_HOME", None)
        self.logs = logs
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self) -> subprocess.Popen[bytes]:
        log = (self.logs / f"worker-{len(self.started)}.log").open("wb")
        process = subprocess.Popen([str(Path(sys.executable).parent / "pricepipe"), "stream"], env=self.env,
                                   stdout=log, stderr=subprocess.STDOUT)
        self.started.append(process)
        return process

    def kill(self, process: subprocess.Popen[bytes]) -> None:
        process.send_signal(signal.SIGKILL)
        process.wait(30)

    def stop_all(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.started:
            process.wait(60)


@pytest.fixture()
def workers(topics: KafkaResource, cassandra: CassandraResource, tmp_path: Path) -> Iterator[Workers]:
    cassandra.migrate()
    running = Workers(topics, cassandra, tmp_path)
    yield running
    running.stop_all()


def produce(kafka: KafkaResource, records: list[Candle | Trade], chunks: int, pause_s: float) -> threading.Thread:
    """Publish ``records`` in ``chunks`` with a pause after each, on a thread: a stream, not a backlog."""
    def run() -> None:
        publisher = kafka.publisher()
        size = -(-len(records) // chunks)
        for start in range(0, len(records), size):
            for record in records[start:start + size]:
                publisher.publish(record)
            publisher.flush()
            time.sleep(pause_s)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def wait_for_members(kafka: KafkaResource, count: int, timeout_s: float = 60) -> None:
    """Until every stage's group has ``count`` members, each with partitions of its own."""
    admin, groups = kafka.admin(), [kafka.consumer_group(stage.asset) for stage in STAGES]
    deadline = time.monotonic() + timeout_s
    while True:
        described = [future.result() for future in admin.describe_consumer_groups(groups).values()]
        if all(len(group.members) == count and all(m.assignment.topic_partitions for m in group.members)
               for group in described):
            return
        assert time.monotonic() < deadline, f"the groups did not reach {count} members with partitions each"
        time.sleep(0.5)


def wait_caught_up(kafka: KafkaResource, workers: Workers, timeout_s: float = 240) -> None:
    deadline = time.monotonic() + timeout_s
    while any(stage_lag(kafka, stage) for stage in STAGES):
        logs = "\n".join(p.read_text(errors="replace")[-2000:] for p in sorted(workers.logs.glob("worker-*.log")))
        assert time.monotonic() < deadline, f"the workers still lag after {timeout_s:.0f} s:\n{logs}"
        time.sleep(0.5)


def assert_tables_equal_the_source(cassandra: CassandraResource, source: Source) -> None:
    session = cassandra.session()
    for symbol in ("BTCUSDT", "ETHUSDT"):
        stored = pd.DataFrame(list(session.execute(
            "SELECT open_time, open, high, low, close, volume, trades FROM candles WHERE symbol = %s "
            "AND interval = '1m' AND bucket = %s", (symbol, CANDLE_DAY))))
        expected = [c for c in source.candles if c.symbol == symbol]
        assert len(stored) == len(expected) == 1440
        assert stored["close"].tolist() == [c.close for c in expected]
        assert stored["volume"].tolist() == [c.volume for c in expected]
    stored_trades = sum(session.execute("SELECT count(*) FROM trades WHERE symbol = %s AND bucket = %s",
                                        (f"PERP{i}", TRADE_DAY)).one()[0] for i in range(SYMBOLS))
    assert stored_trades == TRADES
    for symbol, group in source.reference.groupby("symbol"):
        expected = expected_minute_stats(group.drop(columns="symbol"))
        stored = pd.DataFrame(list(session.execute(
            "SELECT * FROM trade_stats_minute WHERE symbol = %s AND bucket = %s", (symbol, TRADE_DAY))))
        assert len(stored) == len(expected), symbol
        pd.testing.assert_frame_equal(stored[STATS].reset_index(drop=True), expected[STATS].reset_index(drop=True),
                                      check_dtype=False, rtol=1e-9)
        hours = session.execute("SELECT sum(trades) FROM trade_stats_hour WHERE symbol = %s AND bucket = %s",
                                (symbol, TRADE_DAY.replace(day=1))).one()[0]
        assert hours == len(group), symbol
        last = session.execute("SELECT last_price FROM latest_prices WHERE symbol = %s", (symbol,)).one()
        assert last.last_price == expected["last_price"].iloc[-1]


@pytest.mark.timeout(600)
def test_a_second_worker_shares_the_partitions_and_takes_over_from_a_killed_one(
        topics: KafkaResource, cassandra: CassandraResource, source: Source, workers: Workers) -> None:
    first = workers.start()
    stream = produce(topics, source.records(), chunks=30, pause_s=0.5)
    time.sleep(5)
    workers.start()
    wait_for_members(topics, 2)
    workers.kill(first)
    stream.join()
    wait_caught_up(topics, workers)

    assert_tables_equal_the_source(cassandra, source)


@pytest.mark.timeout(900)
def test_a_worker_killed_at_twenty_random_moments_loses_nothing_and_doubles_nothing(
        topics: KafkaResource, cassandra: CassandraResource, source: Source, workers: Workers) -> None:
    moments = random.Random(27)
    stream = produce(topics, source.records(), chunks=40, pause_s=1.0)
    for _ in range(20):
        process = workers.start()
        time.sleep(moments.uniform(1.0, 4.0))
        workers.kill(process)
    stream.join()
    workers.start()
    wait_caught_up(topics, workers)

    assert_tables_equal_the_source(cassandra, source)
