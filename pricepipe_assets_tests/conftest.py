"""Shared fixtures: the real local servers (started once, stopped only if this session started them),
and isolated names (keyspace, topics, lake folders) so tests never see each other's data."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.local import launcher
from pricepipe_assets.resources import CassandraResource, KafkaResource, LakeResource
from pricepipe_assets.settings import Settings

def _echo(line: str) -> None:
    print(line, file=sys.__stderr__, flush=True)


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings.from_env()


def _server(settings: Settings, name: str) -> Iterator[None]:
    """Start ``name`` unless it already serves; stop it at the end only if this session started it."""
    layout = launcher.Layout(settings.state_dir, settings.cache_dir)
    server = launcher.SERVERS[name]
    was_running = all(launcher.read_pid(layout, p) for p in server.processes) or launcher.is_ready(server)
    if not was_running:
        launcher.up([name], layout, _echo)
    yield
    if not was_running:
        launcher.down([name], layout, _echo)


@pytest.fixture(scope="session")
def kafka_server(settings: Settings) -> Iterator[None]:
    yield from _server(settings, "kafka")


@pytest.fixture(scope="session")
def cassandra_server(settings: Settings) -> Iterator[None]:
    yield from _server(settings, "cassandra")


@pytest.fixture(scope="session")
def hdfs_server(settings: Settings) -> Iterator[None]:
    yield from _server(settings, "hdfs")


@pytest.fixture()
def unique() -> str:
    """A short random suffix for names that must not collide between tests or runs."""
    return uuid.uuid4().hex[:10]


@pytest.fixture()
def kafka(kafka_server: None, settings: Settings) -> KafkaResource:
    return KafkaResource(bootstrap_servers=settings.kafka_bootstrap, topic_partitions=2, retention_hours=1)


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
