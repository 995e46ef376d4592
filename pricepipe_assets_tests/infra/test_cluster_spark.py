"""`analytics_job` on the local cluster's Spark master: the master runs it as an application of its
worker, and everything the job writes (the lake's curated zone and features, every Cassandra table,
the forecast on Kafka) equals what the same job writes with Spark in local mode from the same lake.

Both runs are `dagster job execute` of the code location, as the daemon's runs are, on the cluster's
Kafka and Cassandra, each with a lake, a keyspace and topics of its own; only the Spark master differs.
The minute models are left out of both: they train on pyarrow frames, never on Spark, and the
LSTM alone would take most of the test's time.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow.dataset as ds
import pytest

from infra.local import cluster, spark_standalone
from pricepipe_assets.defs.resources import LakeResource
from pricepipe_assets.kafka.client import kafka_cluster
from pricepipe_assets.settings import Settings
from pricepipe_assets.sources.binance.dumps import BinanceDumps, Dataset
from pricepipe_assets.storage.cassandra import CassandraCluster, cassandra_cluster
from pricepipe_assets_tests.support.kafka_reads import consume
from pricepipe_assets_tests.support.lake_fill import real_minutes, write_raw_candles, write_raw_trades

FIRST_DAY, LAST_DAY, TRADE_DAY = dt.date(2024, 1, 1), dt.date(2024, 2, 4), dt.date(2026, 5, 8)
WRITTEN = ("curated/candles", "curated/moving_averages", "curated/trade_stats", "features/daily", "features/minute")
# Written when each keyspace was migrated, not by the job.
NOT_COMPARED = {"schema_migrations"}
# Every asset of the job that runs on Spark, and the daily model and forecast that read their output.
SPARK_STEPS = ("candles_hourly", "candles_daily", "moving_averages_daily", "trade_stats_history", "minute_features",
               "daily_features", "daily_model", "daily_forecast")


@dataclass
class Run:
    """One `analytics_job` run's own lake, keyspace and topics."""

    master: str
    lake: Path
    keyspace: str
    prefix: str

    def environment(self) -> dict[str, str]:
        return {**os.environ, **cluster.environment(), "PRICEPIPE_SPARK_MASTER": self.master,
                "PRICEPIPE_LAKE_URI": str(self.lake), "PRICEPIPE_KEYSPACE": self.keyspace,
                "PRICEPIPE_TOPIC_PREFIX": self.prefix}


@pytest.fixture
def runs(cluster_settings: Settings, shared_data: Path, tmp_path: Path) -> Iterator[list[Run]]:
    dumps = BinanceDumps(tmp_path / "cache", (shared_data / "binance").as_uri())
    candles = real_minutes(shared_data, tmp_path / "cache", "BTCUSDT", FIRST_DAY, LAST_DAY)
    trades = list(dumps.records(Dataset.agg_trades("BTCUSD_PERP", "futures/cm"), TRADE_DAY, TRADE_DAY))
    made = []
    for name, master in (("local", "local[2]"), ("cluster", spark_standalone.MASTER_URL)):
        unique = uuid.uuid4().hex[:10]
        run = Run(master, tmp_path / f"{name}-lake", f"test_{unique}", f"test.{unique}.")
        write_raw_candles(LakeResource(uri=str(run.lake)), candles)
        write_raw_trades(LakeResource(uri=str(run.lake)), trades)
        made.append(run)
    yield made
    cassandra = cassandra_cluster(cluster_settings)
    for run in made:
        cassandra.session().execute(f"DROP KEYSPACE IF EXISTS {run.keyspace}")
    cassandra.close()
    admin = kafka_cluster(cluster_settings).admin()
    mine = [t for t in admin.list_topics(timeout=10).topics if any(t.startswith(r.prefix) for r in made)]
    if mine:
        admin.delete_topics(mine, operation_timeout=30)


def analytics(run: Run) -> float:
    """Run ``analytics_job`` as a user would, from the CLI; returns its wall time in seconds."""
    started = time.monotonic()
    result = subprocess.run([str(Path(sys.executable).parent / "dagster"), "job", "execute", "-m",
                             "pricepipe_assets.definitions", "-j", "analytics_job", "-o", ",".join(SPARK_STEPS)],
                            env=run.environment(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return time.monotonic() - started


def new_completed_applications(finished: set[str], timeout_s: float = 60) -> list[spark_standalone.Application]:
    """The applications completed since ``finished``: the master marks one completed a moment after
    its driver exits, so it is waited for rather than read once."""
    deadline = time.monotonic() + timeout_s
    while True:
        new = [app for app in spark_standalone.applications()["completedapps"] if app["id"] not in finished]
        if new or time.monotonic() > deadline:
            return new
        time.sleep(0.5)


def lake_frame(root: Path, dataset: str) -> pd.DataFrame:
    frame = ds.dataset(root / dataset, format="parquet", partitioning="hive").to_table().to_pandas()
    frame = frame.astype({c: str for c in frame.columns if isinstance(frame[c].dtype, pd.CategoricalDtype)})
    return frame.sort_values(list(frame.columns)).reset_index(drop=True)


def tables(cassandra: CassandraCluster, keyspace: str) -> dict[str, list[tuple]]:
    session = cassandra.session()
    names = [row.table_name for row in session.execute(
        "SELECT table_name FROM system_schema.tables WHERE keyspace_name = %s", (keyspace,))]
    return {name: sorted((tuple(row) for row in session.execute(f"SELECT * FROM {keyspace}.{name}")), key=repr)
            for name in names if name not in NOT_COMPARED}


def forecast(settings: Settings, run: Run) -> list[bytes]:
    kafka = kafka_cluster(settings).model_copy(update={"topic_prefix": run.prefix})
    return sorted(m.value() for m in consume(kafka, "predictions", expected=1))


def test_analytics_on_the_spark_master_writes_what_local_spark_writes(runs: list[Run],
                                                                      cluster_settings: Settings,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    local, on_cluster = runs
    finished = {app["id"] for app in spark_standalone.applications()["completedapps"]}
    seconds = {run.master: analytics(run) for run in (local, on_cluster)}
    with capsys.disabled():
        print("\nanalytics_job: " + ", ".join(f"{master} {s:.1f} s" for master, s in seconds.items()), flush=True)

    (application,) = new_completed_applications(finished)
    assert application["name"] == "pricepipe" and application["state"] == "FINISHED"
    for dataset in WRITTEN:
        expected = lake_frame(local.lake, dataset)
        assert len(expected) > 0, dataset
        pd.testing.assert_frame_equal(lake_frame(on_cluster.lake, dataset), expected, obj=dataset)
    cassandra = cassandra_cluster(cluster_settings)
    try:
        expected_tables = tables(cassandra, local.keyspace)
        assert len(expected_tables["candles"]) == 35 + 35 * 24 and expected_tables["moving_averages"]
        assert tables(cassandra, on_cluster.keyspace) == expected_tables
    finally:
        cassandra.close()
    expected_forecast = forecast(cluster_settings, local)
    assert len(expected_forecast) == 15
    assert forecast(cluster_settings, on_cluster) == expected_forecast
