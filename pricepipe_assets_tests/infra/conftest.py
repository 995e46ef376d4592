"""The local cluster for every test of it: started once through the CLI (unless already up) for the
whole session, so its modules share one start, and stopped through the CLI at the end."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest

from infra.local import cluster, launcher
from pricepipe_assets.kafka.client import KafkaCluster, kafka_cluster
from pricepipe_assets.settings import Settings
from pricepipe_assets.storage.cassandra import CassandraCluster, cassandra_cluster


def pricepipe(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pricepipe_assets.cli.main", *args],
                          capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="session")
def cluster_layout(request: pytest.FixtureRequest, settings: Settings) -> Iterator[launcher.Layout]:
    capture = request.config.pluginmanager.getplugin("capturemanager")
    layout = cluster.layout(settings)
    started = not all(launcher.is_ready(node) for node in cluster.NODES.values())
    if started:
        result = pricepipe("infra", "up", "--cluster")
        with capture.global_and_fixture_disabled():
            print("\n" + result.stdout, flush=True)  # the start times of each node, for the record
        assert result.returncode == 0, result.stdout + result.stderr
        assert "PRICEPIPE_KAFKA_BOOTSTRAP=127.0.0.11:9092,127.0.0.12:9092,127.0.0.13:9092" in result.stdout
    yield layout
    if started:
        result = pricepipe("infra", "down", "--cluster")
        assert result.returncode == 0, result.stdout + result.stderr
        running = [p.name for node in cluster.NODES.values() for p in node.processes if launcher.read_pid(layout, p)]
        assert running == []


@pytest.fixture(scope="session")
def cluster_settings(cluster_layout: launcher.Layout) -> Settings:
    return Settings.from_env({**os.environ, **cluster.environment()})


@pytest.fixture()
def cluster_kafka(cluster_settings: Settings) -> Iterator[KafkaCluster]:
    resource = kafka_cluster(cluster_settings).model_copy(update={"topic_prefix": f"test.{uuid.uuid4().hex[:10]}."})
    yield resource
    admin = resource.admin()
    mine = [name for name in admin.list_topics(timeout=10).topics if name.startswith(resource.topic_prefix)]
    if mine:
        admin.delete_topics(mine, operation_timeout=30)


@pytest.fixture()
def cluster_cassandra(cluster_settings: Settings) -> Iterator[CassandraCluster]:
    resource = cassandra_cluster(cluster_settings).model_copy(update={"keyspace": f"test_{uuid.uuid4().hex[:10]}"})
    yield resource
    resource.session().execute(f"DROP KEYSPACE IF EXISTS {resource.keyspace}")
    resource.close()
