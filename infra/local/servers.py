"""The local servers pricepipe can run on loopback: the single-node catalog, their templates and pid
files, how they are configured the first time, and how to tell that one really serves.

The single-node servers live on 127.0.0.1; the nodes of the local cluster (``infra.local.cluster``)
are the same kinds of server on addresses of their own, so both share every function here.

Kept apart from starting and stopping (``launcher``) because the supervisor, the benchmarks and
the tests ask these questions (is it ready? which pid is ours? which ports?) without starting anything.

What a server is and where its state goes (``Server``, ``Layout``) is in ``server_types``, shared
with the kinds that have code of their own (``postgres``, ``spark_standalone``), which this module
dispatches to.
"""

from __future__ import annotations

import base64
import shutil
import socket
import subprocess
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from infra.local import postgres, spark_standalone
from infra.local.server_types import CONF, HOST, InfraError, Layout, Process, Server, log_tail

KAFKA = Server(
    name="kafka",
    processes=(Process("kafka", "kafka.Kafka", 512, (9092, 9093)),),
    start_timeout_s=120,
    client_ports=(9092,),
    endpoints=("bootstrap 127.0.0.1:9092",),
)
CASSANDRA = Server(
    name="cassandra",
    processes=(Process("cassandra", "org.apache.cassandra.service.CassandraDaemon", 1024, (9042, 7000, 7199)),),
    start_timeout_s=240,
    client_ports=(9042,),
    endpoints=("CQL 127.0.0.1:9042",),
)
HDFS = Server(
    name="hdfs",
    processes=(
        Process("namenode", "org.apache.hadoop.hdfs.server.namenode.NameNode", 512, (8020, 9870)),
        Process("datanode", "org.apache.hadoop.hdfs.server.datanode.DataNode", 384, (9866, 9864, 9867)),
    ),
    start_timeout_s=120,
    client_ports=(9870,),
    endpoints=("hdfs://127.0.0.1:8020", "webhdfs://127.0.0.1:9870"),
)
SERVERS: dict[str, Server] = {server.name: server for server in (KAFKA, CASSANDRA, HDFS)}
# What the templates hold for the single-node servers; a cluster node overrides some in Server.values.
SINGLE_NODE_VALUES = {"HOST": HOST, "NODE_ID": "1", "VOTERS": f"1@{HOST}:9093", "REPLICAS": "1", "MIN_ISR": "1",
                      "CLUSTER_NAME": "pricepipe-local", "SEEDS": f"{HOST}:7000", "JMX_PORT": "7199",
                      "LISTENER": "PLAINTEXT", "CONTROLLER_PROTOCOL": "PLAINTEXT",
                      "AUTHENTICATOR": "AllowAllAuthenticator"}


def resolve(names: Iterable[str], catalog: Mapping[str, Server] = SERVERS) -> list[Server]:
    """Map server names, kinds (``kafka`` is every broker) or ``all`` to servers, in the catalog's order."""
    wanted: set[str] = set()
    for name in names:
        matched = {server.name for server in catalog.values() if name in ("all", server.name, server.kind)}
        if not matched:
            choices = dict.fromkeys([s.kind for s in catalog.values()] + [s.name for s in catalog.values()])
            raise InfraError(f"unknown server {name!r}: choose from {', '.join(choices)} or all")
        wanted |= matched
    return [server for server in catalog.values() if server.name in wanted]


# --- state folders, templates and pid files -----------------------------------------------------


def template_values(server: Server, layout: Layout) -> dict[str, str]:
    """The ``@NAME@`` values of ``server``'s templates."""
    return {**SINGLE_NODE_VALUES, **dict(server.values), **dict(server.secrets), "DATA": str(layout.data(server))}


def _fill(text: str, values: Mapping[str, str]) -> str:
    for name, value in values.items():
        text = text.replace(f"@{name}@", value)
    return text


def _render(template: Path, target: Path, values: Mapping[str, str], fragments: Sequence[str] = ()) -> None:
    """``template`` with its values, then each fragment's (paths under conf/) appended."""
    parts: tuple[Path | str, ...] = (template.relative_to(CONF), *fragments)
    text = "".join(_fill((CONF / part).read_text(), values) for part in parts)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)


def read_pid(layout: Layout, process: Process) -> int | None:
    """The pid this launcher started for ``process``, if that process is still alive."""
    path = layout.pid_file(process)
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        path.unlink(missing_ok=True)
        return None
    program = process.main_class.encode()
    if not any(arg == program or arg.endswith(b"/" + program) for arg in cmdline):
        path.unlink(missing_ok=True)  # the pid was reused by something else: not ours to stop
        return None
    return pid


def rss_mb(pid: int) -> float | None:
    """Resident memory of a process in MiB, from /proc."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def port_in_use(port: int, host: str = HOST) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


# --- per-server preparation and readiness ------------------------------------------------------


def command(server: Server, process: Process, layout: Layout, java: str, lib: Path) -> list[str]:
    """The program and arguments that start ``process``; ``lib`` is its kind's jars or programs."""
    if server.kind == "postgres":
        return postgres.command(server, layout, lib)
    if server.kind == "spark":
        return [java, *spark_standalone.java_args(server, process, layout, lib)]
    return [java, *java_args(server, process, layout, lib)]


def environment(server: Server, layout: Layout, lib: Path) -> dict[str, str]:
    """What the process needs in its environment beside the launcher's own."""
    return spark_standalone.environment(server, layout, lib) if server.kind == "spark" else {}


def java_args(server: Server, process: Process, layout: Layout, lib: Path) -> list[str]:
    classpath = f"{lib}/*"
    heap = [f"-Xms{min(process.heap_mb, 256)}m", f"-Xmx{process.heap_mb}m"]
    logs = layout.logs(server)
    if server.kind == "kafka":
        return [*heap, "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:InitiatingHeapOccupancyPercent=35",
                "-Djava.awt.headless=true", f"-Dlog4j2.configurationFile=file:{CONF / 'kafka' / 'log4j2.properties'}",
                f"-Dkafka.logs.dir={logs}", "-cp", classpath, process.main_class,
                str(layout.conf(server) / "server.properties")]
    if server.kind == "cassandra":
        jamm = next(lib.glob("jamm-*.jar"))
        return [*heap, f"@{CONF / 'cassandra' / 'jvm17.flags'}", f"-javaagent:{jamm}",
                f"-Dcassandra.config=file://{layout.conf(server) / 'cassandra.yaml'}",
                f"-Dcassandra.storagedir={layout.data(server)}", f"-Dcassandra.logdir={logs}",
                f"-Dlogback.configurationFile={CONF / 'cassandra' / 'logback.xml'}",
                "-Dcassandra-foreground=yes", f"-Dcassandra.jmx.local.port={template_values(server, layout)['JMX_PORT']}",
                "-Dcassandra.skip_wait_for_gossip_to_settle=0", "-Dcassandra.superuser_setup_delay_ms=0",
                f"-Djna.tmpdir={layout.data(server) / 'tmp'}",
                "-cp", classpath, process.main_class]
    return [*heap, f"@{CONF / 'hdfs' / 'jdk17.flags'}", f"-Dhadoop.log.dir={logs}",
            "-cp", f"{layout.conf(server)}:{classpath}", process.main_class, *process.args]


def prepare(server: Server, layout: Layout, java: str, lib: Path) -> None:
    """Render configuration and format storage the first time only."""
    data, conf, values = layout.data(server), layout.conf(server), template_values(server, layout)
    for folder in (data, conf, layout.logs(server)):
        folder.mkdir(parents=True, exist_ok=True)
    if server.kind == "kafka":
        _render(CONF / "kafka" / "server.properties.in", conf / "server.properties", values, server.fragments)
        if not (data / "log-dirs" / "meta.properties").exists():
            cluster_id = _kafka_cluster_id(layout)
            _run_once(server, layout, [java, "-Xmx256m", f"-Dlog4j2.configurationFile=file:{CONF / 'kafka' / 'log4j2.properties'}",
                                       "-cp", f"{lib}/*", "kafka.tools.StorageTool", "format", "-t", cluster_id,
                                       "-c", str(conf / "server.properties"), "--ignore-formatted",
                                       *(_fill(arg, values) for arg in server.format_args)], "format")
    elif server.kind == "postgres":
        postgres.prepare(server, layout, lib)
    elif server.kind == "spark":
        (data / "work").mkdir(exist_ok=True)
    elif server.kind == "cassandra":
        _render(CONF / "cassandra" / "cassandra.yaml.in", conf / "cassandra.yaml", values, server.fragments)
        (data / "tmp").mkdir(exist_ok=True)
    else:
        _render(CONF / "hdfs" / "core-site.xml.in", conf / "core-site.xml", values)
        _render(CONF / "hdfs" / "hdfs-site.xml.in", conf / "hdfs-site.xml", values)
        shutil.copy(CONF / "hdfs" / "log4j.properties", conf / "log4j.properties")
        if not (data / "name" / "current" / "VERSION").exists():
            _run_once(server, layout, [java, "-Xmx256m", f"@{CONF / 'hdfs' / 'jdk17.flags'}",
                                       f"-Dhadoop.log.dir={layout.logs(server)}", "-cp", f"{conf}:{lib}/*",
                                       HDFS.processes[0].main_class, "-format", "-force", "-nonInteractive"], "format")


def _kafka_cluster_id(layout: Layout) -> str:
    """The cluster id every broker of this layout is formatted with, made once and kept in its state.

    16 random bytes, base64url without padding, never starting with '-' (Kafka's own rule)."""
    path = layout.state_dir / "kafka-cluster-id"
    if path.exists():
        return path.read_text().strip()
    text = "-"
    while text.startswith("-"):
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return text


def _run_once(server: Server, layout: Layout, command: Sequence[str], what: str) -> None:
    log = layout.logs(server) / f"{what}.out"
    with log.open("w") as out:
        result = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, timeout=300)
    if result.returncode != 0:
        raise InfraError(f"{server.name}: {what} failed (exit {result.returncode}); last lines of {log}:\n{log_tail(log)}")


def _kafka_ready(server: Server) -> bool:
    """The broker answers a metadata request that lists every broker of its cluster."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": f"{server.host}:9092", "socket.timeout.ms": 3000})
    metadata = admin.list_topics(timeout=3)
    return len(metadata.brokers) >= server.nodes


def _cassandra_ready(server: Server) -> bool:
    """The node answers CQL itself and knows every other node of its ring, all on one schema version:
    once each node says so, the ring is what ``nodetool status`` would show as all UN."""
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
    from cassandra.policies import WhiteListRoundRobinPolicy

    only_this_node = ExecutionProfile(load_balancing_policy=WhiteListRoundRobinPolicy([server.host]))
    cluster = Cluster([server.host], port=9042, connect_timeout=3, control_connection_timeout=3,
                      execution_profiles={EXEC_PROFILE_DEFAULT: only_this_node})
    try:
        session = cluster.connect()
        local = session.execute("SELECT schema_version FROM system.local", timeout=5).one()
        peers = list(session.execute("SELECT host_id, schema_version FROM system.peers", timeout=5))
        return (local is not None and len(peers) >= server.nodes - 1
                and all(peer.host_id and peer.schema_version == local.schema_version for peer in peers))
    finally:
        cluster.shutdown()


def _hdfs_ready(server: Server) -> bool:
    """Out of safe mode with a live DataNode: a file can be written through WebHDFS and read back."""
    import requests

    base = f"http://{HOST}:9870/webhdfs/v1/tmp/.pricepipe-ready"
    created = requests.put(f"{base}?op=CREATE&overwrite=true&user.name=root", data=b"ok", timeout=5)
    if created.status_code != 201:
        return False
    return requests.get(f"{base}?op=OPEN&user.name=root", timeout=5).content == b"ok"


READY: dict[str, Callable[[Server], bool]] = {"kafka": _kafka_ready, "cassandra": _cassandra_ready, "hdfs": _hdfs_ready,
                                              "spark": spark_standalone.ready, "postgres": postgres.ready}


def is_ready(server: Server) -> bool:
    """One client round trip; any failure means not (yet) serving."""
    if not all(port_in_use(port, server.host) for port in server.client_ports):
        return False
    try:
        return (server.ready or READY[server.kind])(server)
    except Exception:  # noqa: BLE001 - any client error means "not ready yet"
        return False
