"""Cassandra access: one session per process, the keyspace and schema migrated before first use.

:class:`CassandraCluster` is a plain pydantic model, so code outside Dagster (the API) uses it as
it is, and the Dagster resource (``pricepipe_assets.defs.resources.cassandra``) is the same model with
Dagster's resource behaviour added: one declaration of the settings serves both.
"""

from __future__ import annotations

import datetime as dt
import ssl
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, PrivateAttr

from pricepipe_assets.settings import Settings, path_text
from pricepipe_assets.storage.cassandra_schema import MIGRATIONS, Migration

if TYPE_CHECKING:
    from cassandra.cluster import Cluster, Session
    from cassandra.query import PreparedStatement

_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version int PRIMARY KEY,
    description text,
    applied_at timestamp
)
"""

# Any node answers it, keyspace or not: whether Cassandra is up.
PING = "SELECT release_version FROM system.local"

# Rows per unlogged single-partition batch: large enough to amortise a request, small enough that
# batches of one big partition still run concurrently.
BATCH_ROWS = 100


class CassandraUnavailable(RuntimeError):
    """No Cassandra node answered; the message names the contact points."""


class CassandraCluster(BaseModel):
    """A Cassandra cluster and pricepipe's keyspace in it: one session, migrations, prepared
    statements and bulk writes."""

    hosts: list[str] = ["127.0.0.1"]
    port: int = 9042
    keyspace: str = "pricepipe"
    replication: str = "{'class': 'SimpleStrategy', 'replication_factor': 1}"
    # Of every read and write; LOCAL_QUORUM on a keyspace of 3 replicas survives one node down.
    consistency: str = "LOCAL_ONE"
    local_dc: str = ""
    username: str = ""
    password: str = ""
    # TLS: on when ``tls``; PEM files, empty for the system's CAs and no client certificate.
    tls: bool = False
    ssl_ca_file: str = ""
    ssl_cert_file: str = ""
    ssl_key_file: str = ""
    ssl_check_hostname: bool = True
    request_timeout_s: float = 20.0
    connect_timeout_s: float = 10.0
    # The hot window: days of 1m-grained rows, and of hourly/daily aggregates, kept before retention
    # archives them to the lake and deletes them.
    hot_days: int = 7
    hot_days_aggregates: int = 400

    _cluster: Any = PrivateAttr(default=None)
    _session: Any = PrivateAttr(default=None)
    _prepared: dict[str, Any] = PrivateAttr(default_factory=dict)
    _lock: Any = PrivateAttr(default_factory=threading.Lock)

    def hot_window(self, aggregate: bool) -> int:
        """Days of rows of this kind that stay in Cassandra."""
        return self.hot_days_aggregates if aggregate else self.hot_days

    def _connect(self, timeout_s: float) -> Cluster:
        from cassandra import ConsistencyLevel
        from cassandra.auth import PlainTextAuthProvider
        from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
        from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy

        policy = TokenAwarePolicy(DCAwareRoundRobinPolicy(local_dc=self.local_dc or None))
        profile = ExecutionProfile(load_balancing_policy=policy, request_timeout=self.request_timeout_s,
                                   consistency_level=ConsistencyLevel.name_to_value[self.consistency])
        auth = PlainTextAuthProvider(self.username, self.password) if self.username else None
        return Cluster(
            self.hosts,
            port=self.port,
            auth_provider=auth,
            ssl_context=self._ssl_context(),
            execution_profiles={EXEC_PROFILE_DEFAULT: profile},
            connect_timeout=timeout_s,
            control_connection_timeout=timeout_s,
        )

    def _ssl_context(self) -> ssl.SSLContext | None:
        """A client context that verifies the nodes' certificates (and, unless turned off, that they
        name the address connected to); None without TLS."""
        if not self.tls:
            return None
        context = ssl.create_default_context(cafile=self.ssl_ca_file or None)
        context.check_hostname = self.ssl_check_hostname
        if self.ssl_cert_file:
            context.load_cert_chain(self.ssl_cert_file, self.ssl_key_file or None)
        return context

    def session(self) -> Session:
        """The process-wide session, bound to the keyspace, after migrations are applied."""
        with self._lock:
            if self._session is None:
                from cassandra.cluster import NoHostAvailable

                cluster = self._connect(self.connect_timeout_s)
                try:
                    # With connections to every node, not just the first: migrations address nodes one by one.
                    session = cluster.connect(wait_for_all_pools=True)
                except NoHostAvailable as error:
                    cluster.shutdown()
                    raise CassandraUnavailable(self._unavailable(error.errors)) from None
                self._cluster, self._session = cluster, session
                if not self._schema_is_current(session):
                    self._migrate(session)
            return self._session

    def _unavailable(self, errors: dict[Any, Exception]) -> str:
        """One line that says why no node took the connection: a refused login and an untrusted
        certificate are named as such, anything else with the driver's words."""
        from cassandra import AuthenticationFailed

        hosts = ", ".join(f"{h}:{self.port}" for h in self.hosts)
        reasons = list(errors.values())
        if any(isinstance(reason, AuthenticationFailed) for reason in reasons):
            if not self.username:
                return (f"Cassandra at {hosts} requires a login: set PRICEPIPE_CASSANDRA_USERNAME and "
                        "PRICEPIPE_CASSANDRA_PASSWORD")
            return (f"Cassandra at {hosts} refused user {self.username!r}: wrong user name or password "
                    "(PRICEPIPE_CASSANDRA_USERNAME, PRICEPIPE_CASSANDRA_PASSWORD)")
        texts = [str(reason) for reason in reasons]
        if any("mismatch" in text and "CERTIFICATE_VERIFY_FAILED" in text for text in texts):
            return (f"Cassandra at {hosts}: the node's certificate does not name the address connected to "
                    "(PRICEPIPE_CASSANDRA_SSL_CHECK_HOSTNAME)")
        if any("CERTIFICATE_VERIFY_FAILED" in text for text in texts):
            trusted = (f"PRICEPIPE_CASSANDRA_SSL_CA_FILE ({self.ssl_ca_file})" if self.ssl_ca_file
                       else "a CA this system trusts (set PRICEPIPE_CASSANDRA_SSL_CA_FILE to the nodes' CA)")
            return f"Cassandra at {hosts}: the node's certificate is not signed by {trusted}"
        detail = "; ".join(f"{endpoint}: {reason!r}" for endpoint, reason in errors.items())
        return f"no Cassandra node answered at {hosts}: {detail}".replace("\n", " ")

    def _schema_is_current(self, session: Session) -> bool:
        """Whether every migration is recorded already: one read instead of the DDL statements, so a
        run process (one per Dagster run) pays a single round trip for its schema on connecting."""
        from cassandra import InvalidRequest, ReadFailure
        from cassandra.connection import ConnectionException

        try:
            session.set_keyspace(self.keyspace)
            done = {row.version for row in session.execute("SELECT version FROM schema_migrations")}
        except (InvalidRequest, ConnectionException, ReadFailure):  # missing, or not yet on every node
            return False
        return all(migration.version in done for migration in MIGRATIONS)

    def migrate(self) -> list[Migration]:
        """Apply pending migrations; returns those applied now (none when the schema is current)."""
        session = self.session()
        return self._migrate(session)

    def _migrate(self, session: Session) -> list[Migration]:
        """Apply what is pending, every statement through one node that all processes pick alike.

        On a ring, two nodes creating the same table at once may each give it an identity of its
        own (Cassandra 5.0 merges schema by gossip), and a node that has not yet heard of a table
        fails statements on it. So the schema changes of every process go to the lowest-addressed
        node that is up, where ``IF NOT EXISTS`` sees what the others did, and each step waits until
        every node that is up has the same schema: a migration is recorded, and so trusted by other
        processes (``_schema_is_current``), only once all of them have its tables."""
        up = sorted((h for h in session.cluster.metadata.all_hosts() if h.is_up), key=lambda h: str(h.endpoint))
        host = up[0]
        session.execute(f"CREATE KEYSPACE IF NOT EXISTS {self.keyspace} WITH replication = {self.replication}",
                        host=host)
        _await_schema_agreement(session, up)
        session.set_keyspace(self.keyspace)
        session.execute(_MIGRATIONS_TABLE, host=host)
        _await_schema_agreement(session, up)
        done = {row.version for row in session.execute("SELECT version FROM schema_migrations", host=host)}
        record = ("INSERT INTO schema_migrations (version, description, applied_at) "
                  "VALUES (%s, %s, toTimestamp(now()))")
        applied = []
        for migration in MIGRATIONS:
            if migration.version in done:
                continue
            for statement in migration.statements:
                session.execute(statement, host=host)
            _await_schema_agreement(session, up)
            session.execute(record, (migration.version, migration.description), host=host)
            applied.append(migration)
        return applied

    def prepare(self, cql: str) -> PreparedStatement:
        """A prepared statement, prepared once per process and reused."""
        statement = self._prepared.get(cql)
        if statement is None:
            statement = self.session().prepare(cql)
            self._prepared[cql] = statement
        return statement

    def write_all(self, cql: str, rows: Sequence[Sequence[Any]], concurrency: int = 64) -> int:
        """Run one prepared statement for every row (see :meth:`write_together`); returns the rows written."""
        return self.write_together([(cql, rows)], concurrency)

    def write_together(self, writes: Sequence[tuple[str, Sequence[Sequence[Any]]]], concurrency: int = 64) -> int:
        """Run each prepared statement for each of its rows; raises on the first failure.

        Rows of one partition go together as unlogged batches of up to ``BATCH_ROWS``, also rows of
        different statements whose partition keys have the same values (a table and its statistics
        keyed alike): Cassandra applies such a batch as a single mutation of that partition, so a day
        of trades or candles costs a few hundred requests instead of one per row (single-partition
        batches are also exempt from the server's batch size warnings). Rows alone in their
        partition are sent as plain statements. Requests run concurrently.

        Returns the rows written. Writers are idempotent upserts, so a failure half-way (some
        batches applied, others not) is repaired by running the same write again.
        """
        from cassandra.concurrent import execute_concurrent

        requests = _requests([(self.prepare(cql), rows) for cql, rows in writes if rows])
        if len(requests) == 1:  # a live update: one request, without the concurrent machinery's cost
            self.session().execute(*requests[0])
        elif requests:
            execute_concurrent(self.session(), requests, concurrency=concurrency, raise_on_first_error=True)
        return sum(len(rows) for _, rows in writes)

    def read_all(self, cql: str, parameters: Sequence[Sequence[Any]], concurrency: int = 64) -> list[list[Any]]:
        """Run one prepared query per parameter tuple, concurrently; the rows of each, in order.

        A batch of trades touching 500 symbols reads 500 partitions back: one after the other, the
        round trips alone took about a second."""
        from cassandra.concurrent import execute_concurrent_with_args

        if not parameters:
            return []
        results = execute_concurrent_with_args(self.session(), self.prepare(cql), parameters, concurrency=concurrency,
                                               raise_on_first_error=True)
        return [list(result.result_or_exc) for result in results]

    def schema_version(self) -> int:
        """The highest migration applied to the keyspace."""
        rows = self.session().execute(self.prepare("SELECT version FROM schema_migrations"))
        return max((row.version for row in rows), default=0)

    def close(self) -> None:
        with self._lock:
            if self._cluster is not None:
                self._cluster.shutdown()
            self._cluster = self._session = None
            self._prepared.clear()



def cassandra_cluster(settings: Settings, **overrides: Any) -> CassandraCluster:
    """The cluster the settings name, with their credentials and TLS files (``overrides``: e.g.
    shorter timeouts)."""
    return CassandraCluster(hosts=list(settings.cassandra_hosts), port=settings.cassandra_port,
                            keyspace=settings.keyspace, replication=settings.cassandra_replication,
                            consistency=settings.cassandra_consistency,
                            local_dc=settings.cassandra_local_dc, username=settings.cassandra_username,
                            password=settings.cassandra_password, tls=settings.cassandra_tls,
                            ssl_ca_file=path_text(settings.cassandra_ssl_ca_file),
                            ssl_cert_file=path_text(settings.cassandra_ssl_cert_file),
                            ssl_key_file=path_text(settings.cassandra_ssl_key_file),
                            ssl_check_hostname=settings.cassandra_ssl_check_hostname, hot_days=settings.hot_days,
                            hot_days_aggregates=settings.hot_days_aggregates, **overrides)


def driver_ms(value: dt.datetime) -> int:
    """Milliseconds UTC of a timestamp the driver read (it returns naive UTC datetimes)."""
    return round(value.replace(tzinfo=dt.UTC).timestamp() * 1000)


def cql_date(day: dt.date) -> Any:
    """``day`` as the driver's own ``Date``, which it sends as is (a plain ``date`` is converted on
    every bind): for writers that build many rows of the same few days."""
    from cassandra.util import Date

    return Date(day)


def _requests(writes: Sequence[tuple[PreparedStatement, Sequence[Sequence[Any]]]]) -> list[tuple[Any, Sequence[Any]]]:
    """The rows as (statement, parameters) pairs: one unlogged batch per partition and ``BATCH_ROWS``.

    Without a known partition key (the driver could not tell) a row goes alone, since a batch
    spanning partitions would cost the coordinator more than the requests it saves."""
    from cassandra.query import BatchStatement, BatchType

    requests: list[tuple[Any, Sequence[Any]]] = []
    by_partition: dict[tuple[Any, ...], list[tuple[PreparedStatement, Sequence[Any]]]] = {}
    for statement, rows in writes:
        key = statement.routing_key_indexes
        for row in rows:
            if key:
                by_partition.setdefault(tuple(row[i] for i in key), []).append((statement, row))
            else:
                requests.append((statement, row))
    for group in by_partition.values():
        if len(group) == 1:
            requests.append(group[0])
            continue
        for start in range(0, len(group), BATCH_ROWS):
            batch = BatchStatement(batch_type=BatchType.UNLOGGED)
            for statement, row in group[start:start + BATCH_ROWS]:
                batch.add(statement, row)
            requests.append((batch, ()))
    return requests


def _await_schema_agreement(session: Session, hosts: Sequence[Any], timeout_s: float = 60.0) -> None:
    """Wait until each node reports the same schema version of its own.

    Each node is asked itself: the driver's own agreement check reads one node's gossip view of
    the others, which can lag behind what they really hold."""
    deadline = time.monotonic() + timeout_s
    while True:
        versions = {str(h.endpoint): session.execute("SELECT schema_version FROM system.local", host=h).one()[0]
                    for h in hosts}
        if len(set(versions.values())) == 1:
            return
        if time.monotonic() > deadline:
            raise CassandraUnavailable(f"the Cassandra nodes disagree on the schema after {timeout_s:.0f} s: {versions}")
        time.sleep(0.2)
