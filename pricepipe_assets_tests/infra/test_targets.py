"""Which local servers `pricepipe run` takes care of, decided from the settings alone (nothing is contacted)."""

from __future__ import annotations

import pytest

from infra.local.targets import plan
from pricepipe_assets.settings import Settings


def settings(**variables: str) -> Settings:
    return Settings.from_env({f"PRICEPIPE_{name.upper()}": value for name, value in variables.items()})


def test_the_defaults_are_the_local_kafka_and_cassandra_and_a_lake_folder_needs_no_hdfs() -> None:
    decided = plan(settings(lake_uri="/data/lake"))
    assert decided.local == ("kafka", "cassandra")
    assert decided.notes == ("[run] hdfs: not needed, the lake is the local folder /data/lake",)


def test_a_kafka_elsewhere_is_not_started_and_named_as_used() -> None:
    decided = plan(settings(kafka_bootstrap="10.255.255.1:9092", lake_uri="/data/lake"))
    assert "kafka" not in decided.local and "cassandra" in decided.local
    assert "[run] kafka: using 10.255.255.1:9092 (not started here)" in decided.notes


@pytest.mark.parametrize("bootstrap", ["localhost:9092", "PLAINTEXT://127.0.0.1:9092", "127.0.0.1:9092,localhost:9092"])
def test_the_launchers_own_broker_address_counts_as_local(bootstrap: str) -> None:
    assert "kafka" in plan(settings(kafka_bootstrap=bootstrap)).local


@pytest.mark.parametrize("bootstrap", ["127.0.0.1:9093", "127.0.0.1:9092,broker2:9092", "[::1]:9092", "broker1"])
def test_a_broker_list_that_is_not_only_the_launchers_broker_is_a_real_cluster(bootstrap: str) -> None:
    decided = plan(settings(kafka_bootstrap=bootstrap))
    assert "kafka" not in decided.local
    assert f"[run] kafka: using {bootstrap} (not started here)" in decided.notes


def test_cassandra_elsewhere_or_on_another_port_is_not_started() -> None:
    remote = plan(settings(cassandra_hosts="cass1.example,cass2.example"))
    assert "cassandra" not in remote.local
    assert "[run] cassandra: using cass1.example,cass2.example port 9042 (not started here)" in remote.notes
    assert "cassandra" not in plan(settings(cassandra_port="9142")).local


def test_a_webhdfs_lake_on_the_launchers_namenode_needs_the_local_hdfs() -> None:
    assert plan(settings(lake_uri="webhdfs://127.0.0.1:9870/pricepipe")).local == ("kafka", "cassandra", "hdfs")


def test_a_webhdfs_lake_on_a_real_namenode_starts_no_hdfs() -> None:
    decided = plan(settings(lake_uri="webhdfs://namenode.example:9870/pricepipe"))
    assert "hdfs" not in decided.local
    assert "[run] hdfs: using webhdfs://namenode.example:9870 (not started here)" in decided.notes


def test_everything_elsewhere_means_no_local_server_at_all() -> None:
    decided = plan(settings(kafka_bootstrap="broker1:9092", cassandra_hosts="cass1",
                            lake_uri="webhdfs://namenode:9870/lake"))
    assert decided.local == ()
    assert len(decided.notes) == 3
