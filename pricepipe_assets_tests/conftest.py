"""Shared fixtures: the real local servers (started once, stopped only if this session started them),
and isolated names (keyspace, topics, lake folders) so tests never see each other's data."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dagster_pyspark import LazyPySparkResource

from infra.local import launcher
from pricepipe_assets.defs.resources import CassandraResource, KafkaResource, LakeResource
from pricepipe_assets.defs.resources.spark import spark_resource
from pricepipe_assets.settings import Settings

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings.from_env()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real market data the tests replay: ``shared/data`` beside the checkout (see its PROVENANCE.md)."""
    path = REPO.parent / "shared" / "data"
    assert (path / "PROVENANCE.md").is_file(), f"the real market data is expected at {path}"
    return path


@pytest.fixture(scope="session")
def spark_config() -> dict[str, str]:
    """The project's Spark settings, on two local cores like the machines the tests run on."""
    return spark_resource(Settings.from_env({"PRICEPIPE_SPARK_MASTER": "local[2]"})).spark_config


@pytest.fixture(scope="session")
def spark(spark_config: dict[str, str]) -> Iterator[Any]:
    """One Spark session for the whole test run (its start-up costs seconds); assets given a
    ``LazyPySparkResource`` with the same config get this session back from ``getOrCreate``."""
    session = LazyPySparkResource(spark_config=spark_config).spark_session
    yield session
    session.stop()


@pytest.fixture(scope="session")
def local_servers(request: pytest.FixtureRequest, settings: Settings) -> Iterator[None]:
    """Kafka, Cassandra and HDFS, started together (in parallel) unless already serving.

    At the end, only the servers this session started are stopped, so a developer's running
    platform survives a test run.
    """
    capture = request.config.pluginmanager.getplugin("capturemanager")

    def echo(line: str) -> None:
        with capture.global_and_fixture_disabled():
            print(line, flush=True)

    layout = launcher.Layout(settings.state_dir, settings.cache_dir)
    names = ["kafka", "cassandra", "hdfs"]
    not_ready = [name for name in names if not launcher.is_ready(launcher.SERVERS[name])]
    # A server with live pid files is being started (or restarted) by someone else: wait for it, and
    # leave it running at the end; only those with no process at all are this session's.
    starting = [name for name in not_ready
                if all(launcher.read_pid(layout, p) for p in launcher.SERVERS[name].processes)]
    started = [name for name in not_ready if name not in starting]
    if started:
        launcher.up(started, layout, echo)
    deadline = time.monotonic() + 300
    while starting and time.monotonic() < deadline:
        starting = [name for name in starting if not launcher.is_ready(launcher.SERVERS[name])]
        time.sleep(1)
    assert not starting, f"{', '.join(starting)} did not become ready while another process started them"
    yield
    if started:
        launcher.down(started, layout, echo)


@pytest.fixture(scope="session")
def kafka_server(local_servers: None) -> None:
    """The real Kafka broker on 127.0.0.1:9092."""


@pytest.fixture(scope="session")
def cassandra_server(local_servers: None) -> None:
    """The real Cassandra node on 127.0.0.1:9042."""


@pytest.fixture(scope="session")
def hdfs_server(local_servers: None) -> None:
    """The real HDFS NameNode and DataNode (WebHDFS on 127.0.0.1:9870)."""


@pytest.fixture()
def unique() -> str:
    """A short random suffix for names that must not collide between tests or runs."""
    return uuid.uuid4().hex[:10]


@pytest.fixture()
def kafka(kafka_server: None, settings: Settings, unique: str) -> Iterator[KafkaResource]:
    """A resource whose contract topics are this test's own (``test.<unique>.trades`` ...), deleted afterwards."""
    resource = KafkaResource(bootstrap_servers=settings.kafka_bootstrap, topic_prefix=f"test.{unique}.",
                             topic_partitions=2, retention_hours=1)
    yield resource
    admin = resource.admin()
    mine = [name for name in admin.list_topics(timeout=10).topics if name.startswith(resource.topic_prefix)]
    if mine:
        admin.delete_topics(mine, operation_timeout=10)


@pytest.fixture()
def cassandra(cassandra_server: None, settings: Settings, unique: str) -> Iterator[CassandraResource]:
    """A resource on a keyspace of its own, dropped afterwards."""
    resource = CassandraResource(hosts=list(settings.cassandra_hosts), port=settings.cassandra_port,
                                 keyspace=f"test_{unique}")
    yield resource
    resource.session().execute(f"DROP KEYSPACE IF EXISTS {resource.keyspace}")
    resource.close()


@pytest.fixture()
def local_lake(tmp_path: Path) -> LakeResource:
    return LakeResource(uri=str(tmp_path / "lake"))


@pytest.fixture()
def hdfs_lake(hdfs_server: None, unique: str) -> Iterator[LakeResource]:
    lake = LakeResource(uri=f"webhdfs://127.0.0.1:9870/pricepipe-tests/{unique}", hdfs_user="root")
    yield lake
    lake.filesystem().delete_dir(lake.root)


@pytest.fixture(params=["local", "hdfs"])
def lake(request: pytest.FixtureRequest) -> LakeResource:
    """The same lake tests, once on the local filesystem and once on real HDFS."""
    return request.getfixturevalue(f"{request.param}_lake")
