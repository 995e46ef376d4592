"""The Dagster resource over :class:`~pricepipe_assets.storage.cassandra.CassandraClient`: its
settings as resource config (shown in the UI, secrets as variable names), one session per run
process, closed when the run's execution ends."""

from __future__ import annotations

import threading
from typing import Any

import dagster as dg
from pydantic import PrivateAttr

from pricepipe_assets.storage.cassandra import BATCH_ROWS, CassandraClient, CassandraUnavailable, cql_date

__all__ = ["BATCH_ROWS", "CassandraResource", "CassandraUnavailable", "cql_date"]


class CassandraResource(CassandraClient, dg.ConfigurableResource):
    """A Cassandra cluster and pricepipe's keyspace in it."""

    hosts: list[str] = ["127.0.0.1"]
    port: int = 9042
    keyspace: str = "pricepipe"
    replication: str = "{'class': 'SimpleStrategy', 'replication_factor': 1}"
    local_dc: str = ""
    username: str = ""
    password: str = ""
    request_timeout_s: float = 20.0
    connect_timeout_s: float = 10.0

    _cluster: Any = PrivateAttr(default=None)
    _session: Any = PrivateAttr(default=None)
    _prepared: dict[str, Any] = PrivateAttr(default_factory=dict)
    _lock: Any = PrivateAttr(default_factory=threading.Lock)

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        self.close()
