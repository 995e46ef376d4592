"""The local cluster: three Kafka brokers and a three-node Cassandra ring on 127.0.0.11-13, a Spark
standalone master and worker, and PostgreSQL for a shared Dagster instance.

Replication only shows what it promises with more than one node, so ``pricepipe infra up
--cluster`` runs the same artifacts and templates as the single-node servers, three times, each
node on a loopback address of its own. Every node keeps the single node's ports on its own
address, so the cluster never collides with the servers on 127.0.0.1 and both can run at once.
Each broker is broker and controller (KRaft), the three controllers form the quorum, and every
Cassandra node is a seed, so any start order forms one ring. The Spark master (on the first
address) and its worker (on the second) run from the installed pyspark; PostgreSQL, from Debian's
package, listens on the first address. Its state lives under ``<state dir>/cluster``.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence

from infra.local import postgres, spark_standalone
from infra.local.server_types import InfraError, Layout, Process, Server
from pricepipe_assets.settings import Settings

ADDRESSES = ("127.0.0.11", "127.0.0.12", "127.0.0.13")
KAFKA_PORT = 9092
CASSANDRA_PORT = 9042
# Cassandra binds JMX to 127.0.0.1 whatever its listen address: node i takes 7210 + i, beside the single node's 7199.
JMX_BASE_PORT = 7210
REPLICAS, MIN_INSYNC = 3, 2


def _broker(node_id: int, host: str) -> Server:
    voters = ",".join(f"{i}@{address}:9093" for i, address in enumerate(ADDRESSES, start=1))
    name = f"kafka-{node_id}"
    # The broker that stops last waits (up to 5 minutes) for a controlled-shutdown answer from a
    # quorum that is already gone; its log is written, so it is killed soon instead.
    return Server(name=name, kind="kafka", host=host, nodes=len(ADDRESSES), stop_timeout_s=15,
                  processes=(Process(name, "kafka.Kafka", 256, (KAFKA_PORT, 9093)),),
                  start_timeout_s=180, client_ports=(KAFKA_PORT,), endpoints=(f"bootstrap {host}:{KAFKA_PORT}",),
                  values=(("HOST", host), ("NODE_ID", str(node_id)), ("VOTERS", voters),
                          ("REPLICAS", str(REPLICAS)), ("MIN_ISR", str(MIN_INSYNC))))


def _cassandra(node_id: int, host: str) -> Server:
    seeds = ",".join(f"{address}:7000" for address in ADDRESSES)
    name = f"cassandra-{node_id}"
    return Server(name=name, kind="cassandra", host=host, nodes=len(ADDRESSES),
                  processes=(Process(name, "org.apache.cassandra.service.CassandraDaemon", 512,
                                     (CASSANDRA_PORT, 7000)),),
                  start_timeout_s=420, client_ports=(CASSANDRA_PORT,), endpoints=(f"CQL {host}:{CASSANDRA_PORT}",),
                  values=(("HOST", host), ("SEEDS", seeds), ("CLUSTER_NAME", "pricepipe-cluster"),
                          ("REPLICAS", str(REPLICAS)), ("JMX_PORT", str(JMX_BASE_PORT + node_id))))


NODES: dict[str, Server] = {
    server.name: server
    for server in (*(_broker(i, host) for i, host in enumerate(ADDRESSES, start=1)),
                   *(_cassandra(i, host) for i, host in enumerate(ADDRESSES, start=1)),
                   spark_standalone.master(), spark_standalone.worker(), postgres.server())
}


def layout(settings: Settings) -> Layout:
    """The cluster's own data, logs and pid files, apart from the single-node servers'."""
    return Layout(settings.state_dir / "cluster", settings.cache_dir)


def check_addresses(addresses: Sequence[str] = ADDRESSES) -> None:
    """Refuse to start when a node's address is not on this machine, with what to do about it."""
    for address in addresses:
        with socket.socket() as sock:
            try:
                sock.bind((address, 0))
            except OSError as error:
                raise InfraError(
                    f"the local servers need the loopback address {address}, but it cannot be bound ({error}). "
                    "Linux routes all of 127.0.0.0/8 to lo; elsewhere add it first "
                    f"(macOS: sudo ifconfig lo0 alias {address})."
                ) from None


def bootstrap_servers() -> str:
    """``PRICEPIPE_KAFKA_BOOTSTRAP`` for the cluster."""
    return ",".join(f"{address}:{KAFKA_PORT}" for address in ADDRESSES)


def environment() -> dict[str, str]:
    """The ``PRICEPIPE_*`` variables that point pricepipe at the cluster with its replication."""
    return {"PRICEPIPE_KAFKA_BOOTSTRAP": bootstrap_servers(),
            "PRICEPIPE_KAFKA_REPLICATION_FACTOR": str(REPLICAS),
            "PRICEPIPE_KAFKA_MIN_INSYNC_REPLICAS": str(MIN_INSYNC),
            "PRICEPIPE_CASSANDRA_HOSTS": ",".join(ADDRESSES),
            "PRICEPIPE_CASSANDRA_REPLICATION": f"SimpleStrategy:{REPLICAS}",
            "PRICEPIPE_SPARK_MASTER": spark_standalone.MASTER_URL,
            "PRICEPIPE_DAGSTER_POSTGRES_URL": postgres.URL}
