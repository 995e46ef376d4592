"""Which of the local servers the settings point at, so ``pricepipe run`` starts only those.

A server is this launcher's only when the configured address is exactly where the launcher
serves it (127.0.0.1 or localhost, on its port). Anything else is a real cluster, or a server
someone runs by other means: starting a local one beside it would only hide a misconfiguration,
so it is used as configured and said so.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlparse

from infra.local.servers import CASSANDRA, HDFS, KAFKA
from pricepipe_assets.settings import Settings

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost"})
KAFKA_DEFAULT_PORT = 9092


@dataclass(frozen=True)
class ServerPlan:
    """The local servers to make sure of, and one line for each server used as configured."""

    local: tuple[str, ...]
    notes: tuple[str, ...]


def _kafka_address(entry: str) -> tuple[str, int]:
    """``[protocol://]host[:port]`` as librdkafka reads a bootstrap entry."""
    address = entry.split("://", 1)[-1]
    host, colon, port = address.rpartition(":")
    if colon and port.isdigit():
        return host.lower(), int(port)
    return address.lower(), KAFKA_DEFAULT_PORT


def _is_local(addresses: list[tuple[str, int]], port: int) -> bool:
    return bool(addresses) and all(host in LOCAL_HOSTS and at == port for host, at in addresses)


def plan(settings: Settings) -> ServerPlan:
    """Decide from the settings alone, without connecting anywhere, so it can be checked offline."""
    local: list[str] = []
    notes: list[str] = []
    brokers = [entry.strip() for entry in settings.kafka_bootstrap.split(",") if entry.strip()]
    if _is_local([_kafka_address(entry) for entry in brokers], KAFKA.client_ports[0]):
        local.append(KAFKA.name)
    else:
        notes.append(f"[run] kafka: using {','.join(brokers)} (not started here)")
    contact_points = [(host.lower(), settings.cassandra_port) for host in settings.cassandra_hosts]
    if _is_local(contact_points, CASSANDRA.client_ports[0]):
        local.append(CASSANDRA.name)
    else:
        notes.append(f"[run] cassandra: using {','.join(settings.cassandra_hosts)} port {settings.cassandra_port} "
                     "(not started here)")
    lake = urlparse(settings.lake_uri)
    if lake.scheme != "webhdfs":
        notes.append(f"[run] hdfs: not needed, the lake is the local folder {settings.lake_uri}")
    elif _is_local([((lake.hostname or "").lower(), lake.port or 0)], HDFS.client_ports[0]):
        local.append(HDFS.name)
    else:
        notes.append(f"[run] hdfs: using {lake.scheme}://{lake.netloc} (not started here)")
    return ServerPlan(tuple(local), tuple(notes))
