"""The secure servers: a Kafka broker that takes only SASL_SSL clients and a Cassandra node that takes
only TLS clients who log in, both on 127.0.0.21, for trying pricepipe's TLS and password settings.

A real cluster with TLS and passwords differs from the plain local servers in exactly the code
paths that are hard to test by reading: certificate checks, SASL handshakes, logins refused.
``pricepipe infra up --secure`` runs the same artifacts and templates as the single node, with the
security settings appended (``conf/kafka/sasl-ssl.properties.in``, ``conf/cassandra/client-tls.yaml.in``),
on an address of its own with the usual ports, so it runs beside the plain servers and the cluster.

Its first start makes a private CA and a certificate for the address (``infra.local.certs``) and
a random password per account, all under ``<state dir>/secure`` (mode 0700, files 0600). Kafka's
SCRAM users are written when its storage is formatted; Cassandra's application role is created
through the default superuser ``cassandra`` once the node serves, and that superuser's password is
then replaced by a generated one, so no account keeps a known password.
"""

from __future__ import annotations

import functools
import secrets
import shlex
import ssl
from pathlib import Path

from infra.local import certs
from infra.local.server_types import Layout, Process, Server
from pricepipe_assets.settings import Settings

HOST = "127.0.0.21"
KAFKA_PORT = 9092
CASSANDRA_PORT = 9042
# Cassandra binds JMX to 127.0.0.1 whatever its address: beside the single node's 7199 and the cluster's 7211-7213.
JMX_PORT = 7220
KAFKA_MECHANISM = "SCRAM-SHA-512"
APP_USER = "pricepipe"
BROKER_USER = "broker"
CASSANDRA_SUPERUSER = "cassandra"
# Accounts with a generated password: pricepipe's own on each server, the broker's towards itself,
# and Cassandra's superuser after its default password is replaced.
ACCOUNTS = ("kafka-pricepipe", "kafka-broker", "cassandra-pricepipe", "cassandra-superuser")


def layout(settings: Settings) -> Layout:
    """The secure servers' data, logs, certificates and passwords, apart from every other server's."""
    return Layout(settings.state_dir / "secure", settings.cache_dir)


def certs_dir(layout: Layout) -> Path:
    return layout.state_dir / "certs"


def ca_file(layout: Layout) -> Path:
    """The CA certificate clients must trust (``PRICEPIPE_*_SSL_CA_FILE``)."""
    return certs_dir(layout) / "ca.pem"


def keystore(layout: Layout) -> Path:
    """The servers' key and certificate, one PEM file as both servers read it."""
    return certs_dir(layout) / "node.pem"


def password_file(layout: Layout, account: str) -> Path:
    return layout.state_dir / "credentials" / f"{account}.password"


def password(layout: Layout, account: str) -> str:
    """An account's generated password; empty before the first ``prepare``."""
    try:
        return password_file(layout, account).read_text().strip()
    except FileNotFoundError:
        return ""


def prepare(layout: Layout) -> None:
    """Make the CA, the servers' certificate and the passwords the first time; later starts reuse them
    (Kafka's SCRAM users and Cassandra's roles were created with these passwords)."""
    layout.state_dir.mkdir(parents=True, exist_ok=True)
    layout.state_dir.chmod(0o700)
    if not keystore(layout).exists():
        certs.make_ca(certs_dir(layout), "pricepipe local secure CA")
        certs.issue(certs_dir(layout), keystore(layout), HOST, [HOST])
    for account in ACCOUNTS:
        if not password_file(layout, account).exists():
            certs.write_private(password_file(layout, account), secrets.token_urlsafe(24).encode())


def catalog(layout: Layout) -> dict[str, Server]:
    """The secure broker and node, configured with this layout's certificates and passwords."""
    tls = (("KEYSTORE", str(keystore(layout))), ("TRUSTSTORE", str(ca_file(layout))))
    kafka = Server(
        name="kafka", kind="kafka", host=HOST, start_timeout_s=180, client_ports=(KAFKA_PORT,), stop_timeout_s=30,
        processes=(Process("kafka", "kafka.Kafka", 256, (KAFKA_PORT, 9093)),),
        endpoints=(f"SASL_SSL {HOST}:{KAFKA_PORT} ({KAFKA_MECHANISM} or PLAIN)",),
        values=(("HOST", HOST), ("VOTERS", f"1@{HOST}:9093"), ("LISTENER", "SASL_SSL"), ("CONTROLLER_PROTOCOL", "SSL"),
                ("BROKER_USER", BROKER_USER), ("APP_USER", APP_USER), *tls),
        secrets=(("BROKER_PASSWORD", password(layout, "kafka-broker")),
                 ("APP_PASSWORD", password(layout, "kafka-pricepipe"))),
        fragments=("kafka/sasl-ssl.properties.in",),
        format_args=("--add-scram", f"{KAFKA_MECHANISM}=[name=@BROKER_USER@,password=@BROKER_PASSWORD@]",
                     "--add-scram", f"{KAFKA_MECHANISM}=[name=@APP_USER@,password=@APP_PASSWORD@]"),
        ready=functools.partial(_kafka_ready, layout))
    cassandra = Server(
        name="cassandra", kind="cassandra", host=HOST, start_timeout_s=300, client_ports=(CASSANDRA_PORT,),
        processes=(Process("cassandra", "org.apache.cassandra.service.CassandraDaemon", 512, (CASSANDRA_PORT, 7000)),),
        endpoints=(f"CQL over TLS {HOST}:{CASSANDRA_PORT}",),
        values=(("HOST", HOST), ("SEEDS", f"{HOST}:7000"), ("CLUSTER_NAME", "pricepipe-secure"),
                ("JMX_PORT", str(JMX_PORT)), ("AUTHENTICATOR", "PasswordAuthenticator"), *tls),
        fragments=("cassandra/client-tls.yaml.in",),
        ready=functools.partial(_cassandra_ready, layout))
    return {server.name: server for server in (kafka, cassandra)}


def environment(layout: Layout) -> dict[str, str]:
    """The ``PRICEPIPE_*`` variables that point pricepipe at the secure servers, passwords included."""
    return {"PRICEPIPE_KAFKA_BOOTSTRAP": f"{HOST}:{KAFKA_PORT}",
            "PRICEPIPE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "PRICEPIPE_KAFKA_SASL_MECHANISM": KAFKA_MECHANISM,
            "PRICEPIPE_KAFKA_USERNAME": APP_USER,
            "PRICEPIPE_KAFKA_PASSWORD": password(layout, "kafka-pricepipe"),
            "PRICEPIPE_KAFKA_SSL_CA_FILE": str(ca_file(layout)),
            "PRICEPIPE_CASSANDRA_HOSTS": HOST,
            "PRICEPIPE_CASSANDRA_USERNAME": APP_USER,
            "PRICEPIPE_CASSANDRA_PASSWORD": password(layout, "cassandra-pricepipe"),
            "PRICEPIPE_CASSANDRA_TLS": "true",
            "PRICEPIPE_CASSANDRA_SSL_CA_FILE": str(ca_file(layout))}


def exports(layout: Layout) -> str:
    """:func:`environment` as shell words, each password read from its file rather than shown."""
    files = {"PRICEPIPE_KAFKA_PASSWORD": password_file(layout, "kafka-pricepipe"),
             "PRICEPIPE_CASSANDRA_PASSWORD": password_file(layout, "cassandra-pricepipe")}
    return " ".join(f'{name}="$(cat {shlex.quote(str(files[name]))})"' if name in files
                    else f"{name}={shlex.quote(value)}" for name, value in environment(layout).items())


def _kafka_ready(layout: Layout, server: Server) -> bool:
    """pricepipe's user gets metadata over TLS, the broker's certificate checked against the local CA."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": f"{server.host}:{KAFKA_PORT}", "security.protocol": "SASL_SSL",
                         "sasl.mechanism": KAFKA_MECHANISM, "sasl.username": APP_USER,
                         "sasl.password": password(layout, "kafka-pricepipe"), "ssl.ca.location": str(ca_file(layout)),
                         "socket.timeout.ms": 3000})
    return bool(admin.list_topics(timeout=3).brokers)


def _run_cql(layout: Layout, user: str, secret: str, statements: list[str]) -> list[object]:
    """Run ``statements`` as ``user`` over TLS, verifying the node against the local CA; the last one's rows."""
    from cassandra.auth import PlainTextAuthProvider
    from cassandra.cluster import Cluster

    context = ssl.create_default_context(cafile=str(ca_file(layout)))
    cluster = Cluster([HOST], port=CASSANDRA_PORT, auth_provider=PlainTextAuthProvider(user, secret),
                      ssl_context=context, connect_timeout=3, control_connection_timeout=3)
    try:
        session = cluster.connect()
        rows: list[object] = []
        for statement in statements:
            rows = list(session.execute(statement, timeout=10))
        return rows
    finally:
        cluster.shutdown()


def _cassandra_ready(layout: Layout, server: Server) -> bool:
    """pricepipe's role reads ``system.local`` over TLS; on the first start, the roles are made first."""
    roles_made = layout.state_dir / "cassandra-roles-created"
    if not roles_made.exists():
        _make_roles(layout)
        roles_made.touch()
    return bool(_run_cql(layout, APP_USER, password(layout, "cassandra-pricepipe"),
                         ["SELECT release_version FROM system.local"]))


def _make_roles(layout: Layout) -> None:
    """pricepipe's login role, then a generated password for the default superuser. The superuser
    signs in with the default password on a fresh node, with the generated one when an earlier
    start got as far as replacing it; until the node has made the superuser, both fail and the
    readiness check tries again."""
    from cassandra.cluster import NoHostAvailable

    app, superuser = password(layout, "cassandra-pricepipe"), password(layout, "cassandra-superuser")
    # Role statements take no bind markers; the passwords are URL-safe tokens made here, never quotes.
    statements = [f"CREATE ROLE IF NOT EXISTS {APP_USER} WITH PASSWORD = '{app}' AND LOGIN = true",
                  f"ALTER ROLE {CASSANDRA_SUPERUSER} WITH PASSWORD = '{superuser}'"]
    try:
        _run_cql(layout, CASSANDRA_SUPERUSER, CASSANDRA_SUPERUSER, statements)
    except NoHostAvailable:
        _run_cql(layout, CASSANDRA_SUPERUSER, superuser, statements)
