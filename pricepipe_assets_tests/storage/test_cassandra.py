"""CassandraResource against the real local Cassandra 5.0."""

from __future__ import annotations

import datetime as dt
import ssl

import pytest
from cassandra import AuthenticationFailed

from pricepipe_assets.defs.resources import CassandraResource
from pricepipe_assets.defs.resources.cassandra import BATCH_ROWS, CassandraUnavailable
from pricepipe_assets.settings import Settings
from pricepipe_assets.storage.cassandra import cassandra_cluster
from pricepipe_assets.storage.cassandra_schema import MIGRATIONS


def test_migrations_apply_once_and_twice_is_harmless(cassandra: CassandraResource) -> None:
    session = cassandra.session()  # the first connection migrates
    assert cassandra.schema_version() == MIGRATIONS[-1].version
    assert cassandra.migrate() == []

    second = CassandraResource(hosts=cassandra.hosts, port=cassandra.port, keyspace=cassandra.keyspace)
    try:
        assert second.migrate() == []
    finally:
        second.close()

    tables = {row.table_name for row in session.execute(
        "SELECT table_name FROM system_schema.tables WHERE keyspace_name = %s", (cassandra.keyspace,))}
    assert {"schema_migrations", "candles"} <= tables


def test_a_connection_to_a_current_schema_runs_no_migration_and_a_behind_one_migrates(
    cassandra: CassandraResource, monkeypatch: pytest.MonkeyPatch
) -> None:
    cassandra.session()  # migrated
    applied: list[str] = []
    monkeypatch.setattr(CassandraResource, "_migrate", lambda self, session: applied.append(self.keyspace) or [])
    current = CassandraResource(hosts=cassandra.hosts, port=cassandra.port, keyspace=cassandra.keyspace)
    try:
        current.session()
    finally:
        current.close()
    assert applied == []

    cassandra.session().execute("DELETE FROM schema_migrations WHERE version = %s", (MIGRATIONS[-1].version,))
    behind = CassandraResource(hosts=cassandra.hosts, port=cassandra.port, keyspace=cassandra.keyspace)
    try:
        behind.session()
    finally:
        behind.close()
    assert applied == [cassandra.keyspace]


def test_prepared_statement_writes_and_reads_a_candle(cassandra: CassandraResource) -> None:
    insert = cassandra.prepare(
        "INSERT INTO candles (symbol, interval, bucket, open_time, close_time, exchange, open, high, low, close,"
        " volume, quote_volume, trades) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )
    assert cassandra.prepare(insert.query_string) is insert
    open_time = dt.datetime(2024, 1, 1, 0, 0, tzinfo=dt.UTC)
    row = ("BTCUSDT", "1m", open_time.date(), open_time, open_time + dt.timedelta(seconds=59.999), "binance",
           42283.58, 42298.62, 42261.02, 42298.61, 35.92724, 1519032.2, 1327)
    cassandra.session().execute(insert, row)
    cassandra.session().execute(insert, row)  # an upsert: the same key twice is still one row
    rows = list(cassandra.session().execute(
        cassandra.prepare("SELECT close, trades FROM candles WHERE symbol = ? AND interval = ? AND bucket = ?"),
        ("BTCUSDT", "1m", open_time.date()),
    ))
    assert [(r.close, r.trades) for r in rows] == [(42298.61, 1327)]


def test_unreachable_cassandra_is_a_clear_error() -> None:
    resource = CassandraResource(hosts=["127.0.0.1"], port=1, keyspace="nowhere")
    with pytest.raises(CassandraUnavailable, match="no Cassandra node answered at 127.0.0.1:1"):
        resource.session()


def test_a_refused_login_and_an_untrusted_or_misnamed_certificate_are_named_in_one_line() -> None:
    resource = CassandraResource(hosts=["10.0.0.5"], username="feed", password="pw", tls=True, ssl_ca_file="/ca.pem")
    refused = AuthenticationFailed('Failed to authenticate to 10.0.0.5:9042: Error from server: code=0100 '
                                   '[Bad credentials] message="Provided username feed and/or password are incorrect"')
    assert resource._unavailable({"10.0.0.5:9042": refused}) == (
        "Cassandra at 10.0.0.5:9042 refused user 'feed': wrong user name or password "
        "(PRICEPIPE_CASSANDRA_USERNAME, PRICEPIPE_CASSANDRA_PASSWORD)")
    untrusted = PermissionError(1, "Tried connecting to [('10.0.0.5', 9042)]. Last error: [SSL: CERTIFICATE_VERIFY_FAILED] "
                                   "certificate verify failed: unable to get local issuer certificate (_ssl.c:1006)")
    assert resource._unavailable({"10.0.0.5:9042": untrusted}) == (
        "Cassandra at 10.0.0.5:9042: the node's certificate is not signed by PRICEPIPE_CASSANDRA_SSL_CA_FILE (/ca.pem)")
    misnamed = PermissionError(1, "Tried connecting to [('10.0.0.5', 9042)]. Last error: [SSL: CERTIFICATE_VERIFY_FAILED] "
                                  "certificate verify failed: IP address mismatch, certificate is not valid for "
                                  "'10.0.0.5'. (_ssl.c:1006)")
    assert resource._unavailable({"10.0.0.5:9042": misnamed}) == (
        "Cassandra at 10.0.0.5:9042: the node's certificate does not name the address connected to "
        "(PRICEPIPE_CASSANDRA_SSL_CHECK_HOSTNAME)")


def test_write_all_stores_every_row_of_big_and_single_row_partitions(cassandra: CassandraResource) -> None:
    """Rows go as unlogged batches per partition (bounded in rows) or alone; every one arrives, once."""
    insert = ("INSERT INTO trades (symbol, bucket, ts, trade_id, exchange, side, size, price) "
              "VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
    day = dt.date(2026, 5, 8)
    start = int(dt.datetime(2026, 5, 8, tzinfo=dt.UTC).timestamp() * 1000)
    big = [("BTCUSD_PERP", day, start + i, str(i), "binance", "buy", 1.0 + i, 80_000.0) for i in range(2 * BATCH_ROWS + 7)]
    alone = [(f"ALONE{i}", day, start, "1", "binance", "sell", 2.0, 3.0) for i in range(3)]
    assert cassandra.write_all(insert, [*big, *alone, *big[:5]]) == len(big) + len(alone) + 5

    select = cassandra.prepare("SELECT trade_id, size FROM trades WHERE symbol = ? AND bucket = ?")
    stored = list(cassandra.session().execute(select, ("BTCUSD_PERP", day)))
    assert sorted((int(r.trade_id), r.size) for r in stored) == [(int(r[3]), r[6]) for r in big]
    for symbol, *_ in alone:
        assert [r.size for r in cassandra.session().execute(select, (symbol, day))] == [2.0]


def test_tls_settings_give_a_verifying_context_and_none_without_tls() -> None:
    assert cassandra_cluster(Settings.from_env({}))._ssl_context() is None
    context = cassandra_cluster(Settings.from_env({"PRICEPIPE_CASSANDRA_TLS": "true"}))._ssl_context()
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    unchecked = Settings.from_env({"PRICEPIPE_CASSANDRA_TLS": "true", "PRICEPIPE_CASSANDRA_SSL_CHECK_HOSTNAME": "no"})
    assert not cassandra_cluster(unchecked)._ssl_context().check_hostname
