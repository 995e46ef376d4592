"""The replay feed through a Kafka broker and a Cassandra node going away, on the local cluster.

Real candles (BTCUSDT, 2024-01-01) and trades (BTCUSD_PERP, 2026-05-08) are replayed into the
cluster's Kafka at ``SPEED`` times real time, each day in about two and a half minutes, while the
stream worker's stages write the live tables in process and the test plays the Dagster daemon: it
ticks the topics' sensors and executes each requested run in process, on an instance that keeps the
runs, so a range whose run failed is requested again with an attempt suffix, the project's own retry. Meanwhile kafka-2 is stopped and restarted, then
cassandra-2, and the API is asked for a price and candles all along. At the end the lake and every
Cassandra table the feed reaches equal the source row for row, and what each fault cost (failed
runs and ticks, seconds of lag) is printed for docs/scaling.md.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pyarrow as pa
import pytest
from starlette.testclient import TestClient

from api.app import create_app
from infra.local import cluster, launcher
from pricepipe_assets.contract.topics import CANDLES_1M, PREDICTIONS, TRADES
from pricepipe_assets.defs.lake.jobs import TOPIC_CONSUMERS
from pricepipe_assets.defs.resources import CassandraResource, KafkaResource, LakeResource
from pricepipe_assets.kafka import batches as kafka_batches
from pricepipe_assets.kafka.client import kafka_cluster
from pricepipe_assets.settings import Settings
from pricepipe_assets.sources.binance.dumps import BinanceDumps, Dataset
from pricepipe_assets.sources.replay import Replayer
from pricepipe_assets.storage.cassandra import cassandra_cluster
from pricepipe_assets.storage.cassandra_schema import candle_bucket
from pricepipe_assets.storage.lake_datasets import RAW_CANDLES, RAW_TRADES
from pricepipe_assets.stream import worker
from pricepipe_assets.stream.stages import STAGES, Stores
from pricepipe_assets_tests.support.kafka_runs import (
    CANDLE_DAY,
    TRADE_CANDLE_COLUMNS,
    TRADE_DAY,
    definitions,
    expected_minute_stats,
    expected_trade_candles,
    run_requested,
    source_candles,
    source_trades,
    tick,
)
from pricepipe_assets_tests.support.stream_runs import stage_lag

SPEED = 600.0
# (node, seconds after the replay starts that it is stopped, seconds it stays down)
FAULTS = (("kafka-2", 15.0, 30.0), ("cassandra-2", 75.0, 30.0))
SAMPLED = (CANDLES_1M, TRADES)
SENSED = (CANDLES_1M, TRADES, PREDICTIONS)
CANDLE_COLUMNS = ["open_time", "open", "high", "low", "close", "volume", "quote_volume", "trades"]
ASKED = ("/BTCUSD_PERP/price", "/candles/BTCUSDT?start=2024-01-01T00:00&end=2024-01-01T01:00")
DEADLINE_S = 900
HIVE = pa.schema([("interval", pa.string()), ("symbol", pa.string()), ("date", pa.string())])


@dataclass
class Record:
    """What the test saw, by wall-clock time since the replay started."""

    start: float = field(default_factory=time.monotonic)
    phases: list[tuple[float, str]] = field(default_factory=lambda: [(0.0, "before the faults")])
    # (time, topic, messages in the topic, messages every consuming asset has committed)
    offsets: list[tuple[float, str, int, int]] = field(default_factory=list)
    runs: list[tuple[float, str, bool]] = field(default_factory=list)
    failed_ticks: list[float] = field(default_factory=list)
    answers: list[tuple[float, int]] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)

    def now(self) -> float:
        return time.monotonic() - self.start

    def phase(self, at: float) -> str:
        return [name for start, name in self.phases if start <= at][-1]


def _background(record: Record, work: Callable[[], object]) -> threading.Thread:
    def guarded() -> None:
        try:
            work()
        except BaseException as error:  # noqa: BLE001 - re-raised by the test's main thread
            record.errors.append(error)

    thread = threading.Thread(target=guarded, daemon=True)
    thread.start()
    return thread


def _faults(record: Record, layout: launcher.Layout) -> None:
    for node, stop_at, down_s in FAULTS:
        time.sleep(max(0.0, stop_at - record.now()))
        record.phases.append((record.now(), f"{node} stopped and restarted"))
        launcher.down([node], layout, echo=lambda _: None, catalog=cluster.NODES)
        time.sleep(down_s)
        launcher.up([node], layout, echo=lambda _: None, catalog=cluster.NODES)
        record.phases.append((record.now(), f"after {node} is back"))


def _sample_offsets(record: Record, kafka: KafkaResource, done: threading.Event) -> None:
    """Twice a second, each topic's size and how far its slowest consumer committed, in messages."""
    while not done.wait(0.5):
        for topic in SAMPLED:
            try:
                groups = [kafka_batches.committed_and_watermarks(kafka, kafka.consumer_group(asset), topic)
                          for asset in TOPIC_CONSUMERS[topic]]
            except Exception:  # noqa: BLE001 - a broker going away loses a sample, not the test
                continue
            if all(groups) and all(g.keys() == groups[0].keys() for g in groups):
                size = sum(high for _, _, high in groups[0].values())
                committed = sum(min(kafka_batches.position(g[p][0], g[p][1]) for g in groups) for p in groups[0])
                record.offsets.append((record.now(), topic, size, committed))


def _worst_lag(record: Record, topic: str, phase: str) -> float:
    """The longest any message of ``topic`` waited for its last consumer during ``phase``: at each
    sample, the age of the oldest message not committed by every consuming asset (its age counted
    from the first sample whose topic size included it)."""
    samples = [(at, size, committed) for at, name, size, committed in record.offsets if name == topic]
    worst = 0.0
    for at, _, committed in samples:
        if record.phase(at) != phase:
            continue
        arrived = next((when for when, size, _ in samples if size > committed), None)
        if arrived is not None and arrived <= at:
            worst = max(worst, at - arrived)
    return worst


def _play_the_daemon(record: Record, defs: dg.Definitions, kafka: KafkaResource, client: TestClient,
                     background: list[threading.Thread]) -> None:
    """Tick every sensor and run what it asks for, until the feed and the faults are over, a whole
    round of ticks finds no lag and the stream worker's stages have written everything."""
    instance = dg.DagsterInstance.ephemeral()
    while True:
        quiet = not any(thread.is_alive() for thread in background) and not any(
            stage_lag(kafka, stage) for stage in STAGES)
        for topic in SENSED:
            try:
                outcome = tick(topic, kafka, instance)
            except Exception:  # noqa: BLE001 - the daemon logs a failed tick and ticks again
                record.failed_ticks.append(record.now())
                quiet = False
                continue
            for request in outcome.run_requests:
                started = record.now()
                result = run_requested(defs, topic, request, instance, raise_on_error=False)
                record.runs.append((started, topic, result.success))
                quiet = False
        for path in ASKED:
            record.answers.append((record.now(), client.get(path).status_code))
        if record.errors:
            raise record.errors[0]
        if quiet:
            return
        assert record.now() < DEADLINE_S, "the runs did not catch up with the feed"


def _report(record: Record) -> str:
    lines = ["phase | from (s) | runs ok | runs failed | ticks failed | worst lag candles.1m (s) | worst lag trades (s)"]
    for index, (start, phase) in enumerate(record.phases):
        end = record.phases[index + 1][0] if index + 1 < len(record.phases) else record.now()
        runs = [ok for at, _, ok in record.runs if start <= at < end]
        ticks = sum(start <= at < end for at in record.failed_ticks)
        lags = " | ".join(f"{_worst_lag(record, topic, phase):.1f}" for topic in SAMPLED)
        lines.append(f"{phase} | {start:.1f} | {sum(runs)} | {len(runs) - sum(runs)} | {ticks} | {lags}")
    return "\n".join(lines)


@pytest.fixture
def resources(cluster_settings: Settings, tmp_path: Path) -> Iterator[tuple[KafkaResource, CassandraResource,
                                                                              LakeResource]]:
    unique = uuid.uuid4().hex[:10]
    kafka = KafkaResource(**{**_fields(cluster_settings, "kafka"), "topic_prefix": f"test.{unique}."})
    cassandra = CassandraResource(**{**_fields(cluster_settings, "cassandra"), "keyspace": f"test_{unique}"})
    yield kafka, cassandra, LakeResource(uri=str(tmp_path / "lake"))
    cassandra.session().execute(f"DROP KEYSPACE IF EXISTS {cassandra.keyspace}")
    cassandra.close()
    admin = kafka.admin()
    mine = [name for name in admin.list_topics(timeout=10).topics if name.startswith(kafka.topic_prefix)]
    admin.delete_topics(mine, operation_timeout=30)


def _fields(settings: Settings, kind: str) -> dict[str, Any]:
    model = kafka_cluster(settings) if kind == "kafka" else cassandra_cluster(settings)
    return model.model_dump()


def _rows(cassandra: CassandraResource, cql: str, *parameters: object) -> pd.DataFrame:
    return pd.DataFrame(list(cassandra.session().execute(cql, parameters)))


def _millis(column: pd.Series) -> pd.Series:
    return (column - pd.Timestamp("1970-01-01")) // pd.Timedelta(milliseconds=1)


def _assert_everything_equals_the_source(kafka: KafkaResource, cassandra: CassandraResource, lake: LakeResource,
                                         shared_data: Path) -> None:
    klines = source_candles(shared_data)[CANDLE_COLUMNS]
    live = _rows(cassandra, "SELECT open_time, open, high, low, close, volume, quote_volume, trades FROM candles "
                 "WHERE symbol = 'BTCUSDT' AND interval = '1m' AND bucket = %s", CANDLE_DAY)
    live["open_time"] = _millis(live["open_time"])
    pd.testing.assert_frame_equal(live[CANDLE_COLUMNS], klines, check_dtype=False)
    raw = lake.read_dataset(RAW_CANDLES, partitioning=HIVE).to_pandas()
    lake_klines = raw[raw["symbol"] == "BTCUSDT"].sort_values("open_time").reset_index(drop=True)
    pd.testing.assert_frame_equal(lake_klines[CANDLE_COLUMNS], klines, check_dtype=False)

    trades = source_trades(shared_data)
    derived = expected_trade_candles(trades, Settings().trade_candle_grace_s)
    rows = _rows(cassandra, "SELECT open_time, open, high, low, close, volume, quote_volume, trades FROM candles "
                 "WHERE symbol = 'BTCUSD_PERP' AND interval = '1m' AND bucket = %s", TRADE_DAY)
    rows.index = _millis(rows.pop("open_time"))
    pd.testing.assert_frame_equal(rows[TRADE_CANDLE_COLUMNS], derived[TRADE_CANDLE_COLUMNS], check_dtype=False,
                                  check_names=False, rtol=1e-12)
    lake_derived = raw[raw["symbol"] == "BTCUSD_PERP"].drop_duplicates(["open_time", *TRADE_CANDLE_COLUMNS])
    assert sorted(lake_derived["open_time"]) == list(derived.index)

    stored = _rows(cassandra, "SELECT * FROM trade_stats_minute WHERE symbol = 'BTCUSD_PERP' AND bucket = %s",
                   TRADE_DAY)
    stored["minute"] = _millis(stored["minute"])
    expected = expected_minute_stats(trades)
    columns = ["minute", "trades", "volume", "quote_volume", "buy_volume", "sell_volume", "vwap", "last_price"]
    pd.testing.assert_frame_equal(stored[columns], expected[columns], check_dtype=False, rtol=1e-9)
    month = candle_bucket("1h", int(pd.Timestamp(TRADE_DAY).timestamp() * 1000))
    hours = _rows(cassandra, "SELECT trades FROM trade_stats_hour WHERE symbol = 'BTCUSD_PERP' AND bucket = %s", month)
    assert len(hours) == 24 and hours["trades"].sum() == len(trades)
    stored_trades = _rows(cassandra, "SELECT trade_id FROM trades WHERE symbol = 'BTCUSD_PERP' AND bucket = %s",
                          TRADE_DAY)
    assert sorted(stored_trades["trade_id"].astype(int)) == sorted(trades["agg_trade_id"])
    latest = cassandra.session().execute("SELECT last_price FROM latest_prices WHERE symbol = 'BTCUSD_PERP'").one()
    assert latest.last_price == expected["last_price"].iloc[-1]
    lake_trades = lake.read_dataset(RAW_TRADES, columns=["trade_id"]).to_pandas()
    assert len(lake_trades) == len(trades) and lake_trades["trade_id"].is_unique


def test_the_feed_loses_and_doubles_nothing_through_a_broker_and_a_cassandra_node_going_away(
        resources: tuple[KafkaResource, CassandraResource, LakeResource], cluster_settings: Settings,
        cluster_layout: launcher.Layout, shared_data: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    kafka, cassandra, lake = resources
    cassandra.session()  # migrated before the API starts, as `pricepipe run` does
    dumps = BinanceDumps(tmp_path / "cache", (shared_data / "binance").as_uri())
    candles = list(dumps.records(Dataset.klines("BTCUSDT", "1m"), CANDLE_DAY, CANDLE_DAY))
    trades = list(dumps.records(Dataset.agg_trades("BTCUSD_PERP", "futures/cm"), TRADE_DAY, TRADE_DAY))
    api = create_app(Settings.from_env({**cluster.environment(), "PRICEPIPE_KEYSPACE": cassandra.keyspace}))
    record, sampling_done = Record(), threading.Event()
    with TestClient(api) as client:
        record.start = time.monotonic()
        feed = [_background(record, lambda stream=stream: Replayer(kafka.publisher(), speed=SPEED).run(stream))
                for stream in (candles, trades)]
        faults = _background(record, lambda: _faults(record, cluster_layout))
        sampler = _background(record, lambda: _sample_offsets(record, kafka, sampling_done))
        stream_stop = threading.Event()
        stream = worker.start(lambda: Stores(kafka, CassandraResource(**cassandra.model_dump()), kafka.publisher(),
                                             Settings().trade_candle_grace_s * 1000), stream_stop)
        try:
            _play_the_daemon(record, definitions(kafka, cassandra, lake), kafka, client, [*feed, faults])
        finally:
            stream_stop.set()
            for _, thread in stream:
                thread.join(30)
            sampling_done.set()
            sampler.join(10)
    report = _report(record)
    with capsys.disabled():
        print(f"\n{report}\nruns {len(record.runs)}, API answers {len(record.answers)}, "
              f"{record.now():.0f} s from the replay's start", flush=True)

    assert [name for _, name in record.phases][1:] == [
        phase for node, _, _ in FAULTS for phase in (f"{node} stopped and restarted", f"after {node} is back")]
    first_answer = next(at for at, status in record.answers if status == 200)
    assert {status for at, status in record.answers if at >= first_answer} == {200}, record.answers
    assert {status for at, status in record.answers if at < first_answer} <= {404}
    _assert_everything_equals_the_source(kafka, cassandra, lake, shared_data)
