"""The Dagster resource of :class:`~pricepipe_assets.storage.cassandra.CassandraCluster`: the same
settings as resource config (shown in the UI, secrets as variable names), one session per run
process, closed when the run's execution ends."""

from __future__ import annotations

import dagster as dg

from pricepipe_assets.storage.cassandra import BATCH_ROWS, CassandraCluster, CassandraUnavailable, cql_date

__all__ = ["BATCH_ROWS", "CassandraResource", "CassandraUnavailable", "cql_date"]


# Unparametrized: a subscripted ConfigurableResource is a pydantic model class of its own at run time.
class CassandraResource(CassandraCluster, dg.ConfigurableResource):  # type: ignore[type-arg]
    """A Cassandra cluster and pricepipe's keyspace in it."""

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        self.close()
