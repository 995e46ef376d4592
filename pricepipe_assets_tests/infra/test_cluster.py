"""The local cluster (`pricepipe infra up --cluster`): three brokers and three Cassandra nodes that
replicate what pricepipe writes, and keep taking writes with one broker or one node down; a Spark
worker registered with its master; PostgreSQL answering as the Dagster instance would use it.

The fault tests restart the node they stop, so the order of the tests does not matter.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import time
import uuid

import pytest

from infra.local import cluster, launcher, postgres, spark_standalone
from pricepipe_assets.kafka.client import KafkaCluster
from pricepipe_assets.storage.cassandra import CassandraCluster


def round_trip(kafka: KafkaCluster, topic: str, count: int = 20) -> list[bytes]:
    """Write ``count`` messages with acks=all (pricepipe's producer) and read them back."""
    producer = kafka.producer()
    assert producer.list_topics(timeout=10).brokers
    failures: list[str] = []
    for i in range(count):
        producer.produce(kafka.topic(topic), key=str(i).encode(), value=f"m{i}".encode(),
                         on_delivery=lambda error, _: failures.append(str(error)) if error else None)
    assert producer.flush(90) == 0 and failures == []
    consumer = kafka.consumer(f"test-{uuid.uuid4().hex[:8]}")
    consumer.subscribe([kafka.topic(topic)])
    values: list[bytes] = []
    try:
        for _ in range(60):
            values += [m.value() for m in consumer.consume(count, timeout=1) if m.error() is None]
            if len(values) >= count:
                break
    finally:
        consumer.close()
    return sorted(values)


def expected(count: int = 20) -> list[bytes]:
    return sorted(f"m{i}".encode() for i in range(count))


def write_and_read_trades(cassandra: CassandraCluster, trade_ids: list[str]) -> list[str]:
    """Upsert trades through pricepipe's bulk writer and read the partition back, both at the configured level."""
    day = dt.date(2026, 5, 8)
    ts = dt.datetime(2026, 5, 8, 12, tzinfo=dt.UTC)
    rows = [("BTCUSDT", day, ts, trade_id, "binance", "buy", 1.0, 100.0) for trade_id in trade_ids]
    cassandra.write_all("INSERT INTO trades (symbol, bucket, ts, trade_id, exchange, side, size, price) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    select = cassandra.prepare("SELECT trade_id FROM trades WHERE symbol = ? AND bucket = ?")
    return sorted(row.trade_id for row in cassandra.session().execute(select, ("BTCUSDT", day)))


def test_every_broker_is_in_the_metadata(cluster_kafka: KafkaCluster) -> None:
    brokers = cluster_kafka.admin().list_topics(timeout=10).brokers
    assert sorted((b.id, b.host, b.port) for b in brokers.values()) == [
        (1, "127.0.0.11", 9092), (2, "127.0.0.12", 9092), (3, "127.0.0.13", 9092)]


def test_pricepipes_topics_have_three_replicas_two_of_them_in_sync(cluster_kafka: KafkaCluster) -> None:
    from confluent_kafka.admin import ConfigResource, ResourceType

    (name,) = cluster_kafka.ensure_topics(["trades"])
    admin = cluster_kafka.admin()
    partitions = admin.list_topics(name, timeout=10).topics[name].partitions
    assert len(partitions) == cluster_kafka.topic_partitions
    assert all(len(p.replicas) == 3 for p in partitions.values())
    [future] = admin.describe_configs([ConfigResource(ResourceType.TOPIC, name)]).values()
    assert future.result(timeout=30)["min.insync.replicas"].value == "2"


def test_messages_written_with_acks_all_are_read_back(cluster_kafka: KafkaCluster) -> None:
    cluster_kafka.ensure_topics(["trades"])
    assert round_trip(cluster_kafka, "trades") == expected()


def test_the_ring_has_three_nodes_up_on_one_schema(cluster_layout: launcher.Layout) -> None:
    from cassandra.cluster import Cluster

    for node in cluster.NODES.values():
        if node.kind == "cassandra":
            assert launcher.is_ready(node), f"{node.name} does not see the whole ring"
    driver = Cluster(list(cluster.ADDRESSES), port=cluster.CASSANDRA_PORT)
    try:
        driver.connect()
        hosts = driver.metadata.all_hosts()
        assert sorted(host.address for host in hosts if host.is_up) == list(cluster.ADDRESSES)
    finally:
        driver.shutdown()


def test_pricepipes_keyspace_has_three_replicas_and_local_quorum(cluster_cassandra: CassandraCluster) -> None:
    session = cluster_cassandra.session()
    replication = session.execute("SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = %s",
                                  (cluster_cassandra.keyspace,)).one().replication
    assert replication["replication_factor"] == "3"
    assert cluster_cassandra.consistency == "LOCAL_QUORUM"
    assert write_and_read_trades(cluster_cassandra, ["a", "b"]) == ["a", "b"]


# One process that connects to a fresh keyspace (so migrates it) and then uses its newest table.
CONNECT_AND_USE = """import sys
from pricepipe_assets.storage.cassandra import CassandraCluster
CassandraCluster.model_validate_json(sys.argv[1]).prepare("SELECT * FROM order_books WHERE symbol = ?")
"""


def test_processes_migrating_a_fresh_keyspace_at_once_leave_one_schema_on_every_node(
        cluster_cassandra: CassandraCluster) -> None:
    """Run processes start together (a run's steps, several runs): each migrates on first use."""
    processes = [subprocess.Popen([sys.executable, "-c", CONNECT_AND_USE, cluster_cassandra.model_dump_json()],
                                  stderr=subprocess.PIPE, text=True) for _ in range(4)]
    for process in processes:
        _, errors = process.communicate(timeout=300)
        assert process.returncode == 0, errors
    session = cluster_cassandra.session()
    tables = "SELECT table_name, id FROM system_schema.tables WHERE keyspace_name = %s"
    by_node = {host.address: sorted(session.execute(tables, (cluster_cassandra.keyspace,), host=host))
               for host in session.cluster.metadata.all_hosts()}
    assert sorted(by_node) == list(cluster.ADDRESSES)
    assert len({tuple(rows) for rows in by_node.values()}) == 1, by_node  # same tables, same identities
    assert "order_books" in {row.table_name for row in by_node[cluster.ADDRESSES[0]]}


def test_a_topic_stays_writable_with_one_broker_down(cluster_kafka: KafkaCluster, cluster_layout: launcher.Layout) -> None:
    cluster_kafka.ensure_topics(["trades"])
    launcher.down(["kafka-3"], cluster_layout, catalog=cluster.NODES)
    try:
        # A broker killed at the end of its stop timeout (a loaded machine) stays in the metadata
        # until the controller's session timeout (9 s) fences it.
        deadline = time.monotonic() + 30
        while len(cluster_kafka.admin().list_topics(timeout=10).brokers) != 2 and time.monotonic() < deadline:
            time.sleep(1)
        assert len(cluster_kafka.admin().list_topics(timeout=10).brokers) == 2
        assert round_trip(cluster_kafka, "trades") == expected()
    finally:
        launcher.up(["kafka-3"], cluster_layout, catalog=cluster.NODES)


def test_local_quorum_reads_and_writes_go_on_with_one_node_down(cluster_cassandra: CassandraCluster,
                                                                 cluster_layout: launcher.Layout) -> None:
    assert write_and_read_trades(cluster_cassandra, ["before"]) == ["before"]
    from cassandra import ConsistencyLevel, Unavailable, WriteTimeout
    from cassandra.query import SimpleStatement

    launcher.down(["cassandra-3"], cluster_layout, catalog=cluster.NODES)
    try:
        assert launcher.read_pid(cluster_layout, cluster.NODES["cassandra-3"].processes[0]) is None
        assert write_and_read_trades(cluster_cassandra, ["during"]) == ["before", "during"]
        every_replica = SimpleStatement("DELETE FROM trades WHERE symbol = 'BTCUSDT' AND bucket = '2026-05-08'",
                                        consistency_level=ConsistencyLevel.ALL)
        with pytest.raises((Unavailable, WriteTimeout)):  # the node is really gone: ALL cannot be met
            cluster_cassandra.session().execute(every_replica)
    finally:
        launcher.up(["cassandra-3"], cluster_layout, catalog=cluster.NODES)


def test_a_kind_names_every_node_of_it_and_a_node_name_one() -> None:
    assert [s.name for s in launcher.resolve(["kafka"], cluster.NODES)] == ["kafka-1", "kafka-2", "kafka-3"]
    assert [s.name for s in launcher.resolve(["cassandra-2"], cluster.NODES)] == ["cassandra-2"]
    assert [s.name for s in launcher.resolve(["spark"], cluster.NODES)] == ["spark-master", "spark-worker"]
    with pytest.raises(launcher.InfraError, match="unknown server 'hdfs': choose from kafka, cassandra, spark, postgres, kafka-1"):
        launcher.resolve(["hdfs"], cluster.NODES)


def test_an_address_that_is_not_on_this_machine_is_a_clear_error() -> None:
    with pytest.raises(launcher.InfraError, match="need the loopback address 192.0.2.13, but it cannot be bound"):
        cluster.check_addresses(("127.0.0.11", "192.0.2.13"))


def test_the_spark_worker_is_registered_with_its_cores_and_memory(cluster_layout: launcher.Layout) -> None:
    status = spark_standalone.applications()
    assert status["status"] == "ALIVE" and status["url"] == spark_standalone.MASTER_URL
    (worker,) = status["workers"]
    assert (worker["host"], worker["state"], worker["cores"], worker["memory"]) == (
        spark_standalone.WORKER_HOST, "ALIVE", spark_standalone.WORKER_CORES, 1024)


def test_postgres_serves_the_dagster_database_to_its_password_only(cluster_layout: launcher.Layout) -> None:
    import psycopg2

    connection = psycopg2.connect(postgres.URL)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_database(), current_user, inet_server_addr()::text")
            assert cursor.fetchone() == ("dagster", "dagster", f"{postgres.HOST}/32")
    finally:
        connection.close()
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        psycopg2.connect(postgres.URL.replace(":dagster@", ":wrong@"))
