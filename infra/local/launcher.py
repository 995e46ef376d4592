"""Start, stop and inspect single-node Kafka (KRaft), Cassandra 5.0 and HDFS on 127.0.0.1.

There is no Docker here, so each server runs from its official Apache artifacts resolved from
Maven Central by the POMs in ``infra/local/maven/`` into a cache outside the repository. Every
JVM is started in its own session with a pid file, so ``down`` stops exactly what ``up``
started and nothing else. A server counts as up only after a real client round trip.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
CONF = HERE / "conf"
MAVEN = HERE / "maven"
HOST = "127.0.0.1"


class InfraError(RuntimeError):
    """A local server could not be prepared, started or stopped; the message says why and what to do."""


@dataclass(frozen=True)
class Process:
    """One JVM of a server: its main class, heap, ports and the arguments it is started with."""

    name: str
    main_class: str
    heap_mb: int
    ports: tuple[int, ...]
    args: tuple[str, ...] = ()


@dataclass(frozen=True)
class Server:
    """A local server: the Maven module that holds its classpath and the JVMs that make it up."""

    name: str
    processes: tuple[Process, ...]
    start_timeout_s: float
    client_ports: tuple[int, ...]
    endpoints: tuple[str, ...] = field(default=())


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
DEFAULT_SERVERS = ("kafka", "cassandra", "hdfs")


def resolve(names: Iterable[str]) -> list[Server]:
    """Map ``kafka|cassandra|hdfs|all`` to servers, keeping a stable order."""
    wanted: set[str] = set()
    for name in names:
        if name == "all":
            wanted.update(DEFAULT_SERVERS)
        elif name in SERVERS:
            wanted.add(name)
        else:
            raise InfraError(f"unknown server {name!r}: choose from {', '.join(SERVERS)} or all")
    return [SERVERS[name] for name in DEFAULT_SERVERS if name in wanted]


# --- Java and Maven ---------------------------------------------------------------------------


def _java_major(java: str) -> int | None:
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30).stderr
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2)) if major == 1 and match.group(2) else major


def find_java() -> str:
    """A Java 17 binary: ``PRICEPIPE_JAVA_HOME``, ``JAVA_HOME``, the system JDK 17, or ``java`` on PATH."""
    candidates: list[str] = []
    for variable in ("PRICEPIPE_JAVA_HOME", "JAVA_HOME"):
        home = os.environ.get(variable)
        if home:
            candidates.append(str(Path(home) / "bin" / "java"))
    candidates += sorted(str(p) for p in Path("/usr/lib/jvm").glob("*17*/bin/java"))
    on_path = shutil.which("java")
    if on_path:
        candidates.append(on_path)
    seen = []
    for java in candidates:
        if java in seen or not Path(java).exists():
            continue
        seen.append(java)
        if _java_major(java) == 17:
            return java
    found = ", ".join(f"{j} (Java {_java_major(j)})" for j in seen) or "no java at all"
    raise InfraError(
        "Java 17 is required to run Kafka, Cassandra 5.0 and HDFS locally, but found "
        f"{found}. Install it (Debian: apt-get install openjdk-17-jdk-headless) or set PRICEPIPE_JAVA_HOME."
    )


def classpath_dir(cache_dir: Path, module: str) -> Path:
    """The folder of a module's jars, resolved once per POM content (a POM change resolves again)."""
    pom = MAVEN / module / "pom.xml"
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()[:12]
    target = cache_dir / "lib" / f"{module}-{digest}"
    if (target / ".complete").exists():
        return target
    mvn = shutil.which("mvn")
    if mvn is None:
        raise InfraError("Maven (mvn) is needed to fetch the servers' jars: apt-get install maven")
    print(f"[infra] resolving {module} jars from Maven Central into {target} ...", flush=True)
    shutil.rmtree(target, ignore_errors=True)
    result = subprocess.run(
        [mvn, "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
         f"-DoutputDirectory={target}", "-DincludeScope=runtime"],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-20:])
        raise InfraError(f"Maven could not resolve the {module} jars (exit {result.returncode}):\n{tail}")
    (target / ".complete").write_text(digest)
    return target


# --- state folders, templates and pid files -----------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """Where one server keeps its data, rendered configuration, logs and pid files."""

    state_dir: Path
    cache_dir: Path

    def data(self, server: Server) -> Path:
        return self.state_dir / "servers" / server.name / "data"

    def conf(self, server: Server) -> Path:
        return self.state_dir / "servers" / server.name / "conf"

    def logs(self, server: Server) -> Path:
        return self.state_dir / "servers" / server.name / "logs"

    def log_file(self, server: Server, process: Process) -> Path:
        return self.logs(server) / f"{process.name}.out"

    def pid_file(self, process: Process) -> Path:
        return self.state_dir / "run" / f"{process.name}.pid"


def _render(template: Path, target: Path, data_dir: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(template.read_text().replace("@DATA@", str(data_dir)))


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
    if process.main_class.encode() not in cmdline:
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


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((HOST, port)) == 0


def log_tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log written)"


# --- per-server preparation and readiness ------------------------------------------------------


def _java_args(server: Server, process: Process, layout: Layout, lib: Path) -> list[str]:
    classpath = f"{lib}/*"
    heap = [f"-Xms{min(process.heap_mb, 256)}m", f"-Xmx{process.heap_mb}m"]
    logs = layout.logs(server)
    if server is KAFKA:
        return [*heap, "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:InitiatingHeapOccupancyPercent=35",
                "-Djava.awt.headless=true", f"-Dlog4j2.configurationFile=file:{CONF / 'kafka' / 'log4j2.properties'}",
                f"-Dkafka.logs.dir={logs}", "-cp", classpath, process.main_class,
                str(layout.conf(server) / "server.properties")]
    if server is CASSANDRA:
        jamm = next(lib.glob("jamm-*.jar"))
        return [*heap, f"@{CONF / 'cassandra' / 'jvm17.flags'}", f"-javaagent:{jamm}",
                f"-Dcassandra.config=file://{layout.conf(server) / 'cassandra.yaml'}",
                f"-Dcassandra.storagedir={layout.data(server)}", f"-Dcassandra.logdir={logs}",
                f"-Dlogback.configurationFile={CONF / 'cassandra' / 'logback.xml'}",
                "-Dcassandra-foreground=yes", "-Dcassandra.jmx.local.port=7199",
                "-Dcassandra.skip_wait_for_gossip_to_settle=0", "-Dcassandra.superuser_setup_delay_ms=0",
                f"-Djna.tmpdir={layout.data(server) / 'tmp'}",
                "-cp", classpath, process.main_class]
    return [*heap, f"@{CONF / 'hdfs' / 'jdk17.flags'}", f"-Dhadoop.log.dir={logs}",
            "-cp", f"{layout.conf(server)}:{classpath}", process.main_class, *process.args]


def _prepare(server: Server, layout: Layout, java: str, lib: Path) -> None:
    """Render configuration and format storage the first time only."""
    data, conf = layout.data(server), layout.conf(server)
    for folder in (data, conf, layout.logs(server)):
        folder.mkdir(parents=True, exist_ok=True)
    if server is KAFKA:
        _render(CONF / "kafka" / "server.properties.in", conf / "server.properties", data)
        if not (data / "log-dirs" / "meta.properties").exists():
            cluster_id = _kafka_cluster_id()
            _run_once(server, layout, [java, "-Xmx256m", f"-Dlog4j2.configurationFile=file:{CONF / 'kafka' / 'log4j2.properties'}",
                                       "-cp", f"{lib}/*", "kafka.tools.StorageTool", "format", "-t", cluster_id,
                                       "-c", str(conf / "server.properties"), "--ignore-formatted"], "format")
    elif server is CASSANDRA:
        _render(CONF / "cassandra" / "cassandra.yaml.in", conf / "cassandra.yaml", data)
        (data / "tmp").mkdir(exist_ok=True)
    else:
        _render(CONF / "hdfs" / "core-site.xml.in", conf / "core-site.xml", data)
        _render(CONF / "hdfs" / "hdfs-site.xml.in", conf / "hdfs-site.xml", data)
        shutil.copy(CONF / "hdfs" / "log4j.properties", conf / "log4j.properties")
        if not (data / "name" / "current" / "VERSION").exists():
            _run_once(server, layout, [java, "-Xmx256m", f"@{CONF / 'hdfs' / 'jdk17.flags'}",
                                       f"-Dhadoop.log.dir={layout.logs(server)}", "-cp", f"{conf}:{lib}/*",
                                       HDFS.processes[0].main_class, "-format", "-force", "-nonInteractive"], "format")


def _kafka_cluster_id() -> str:
    """16 random bytes, base64url without padding, never starting with '-' (Kafka's own rule)."""
    import base64

    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def _run_once(server: Server, layout: Layout, command: Sequence[str], what: str) -> None:
    log = layout.logs(server) / f"{what}.out"
    with log.open("w") as out:
        result = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, timeout=300)
    if result.returncode != 0:
        raise InfraError(f"{server.name}: {what} failed (exit {result.returncode}); last lines of {log}:\n{log_tail(log)}")


def _kafka_ready() -> bool:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": f"{HOST}:9092", "socket.timeout.ms": 3000})
    metadata = admin.list_topics(timeout=3)
    return bool(metadata.brokers)


def _cassandra_ready() -> bool:
    from cassandra.cluster import Cluster

    cluster = Cluster([HOST], port=9042, connect_timeout=3, control_connection_timeout=3)
    try:
        session = cluster.connect()
        return session.execute("SELECT release_version FROM system.local", timeout=5).one() is not None
    finally:
        cluster.shutdown()


def _hdfs_ready() -> bool:
    """Out of safe mode with a live DataNode: a file can be written through WebHDFS and read back."""
    import requests

    base = f"http://{HOST}:9870/webhdfs/v1/tmp/.pricepipe-ready"
    created = requests.put(f"{base}?op=CREATE&overwrite=true&user.name=root", data=b"ok", timeout=5)
    if created.status_code != 201:
        return False
    return requests.get(f"{base}?op=OPEN&user.name=root", timeout=5).content == b"ok"


READY: dict[str, Callable[[], bool]] = {"kafka": _kafka_ready, "cassandra": _cassandra_ready, "hdfs": _hdfs_ready}


def is_ready(server: Server) -> bool:
    """One client round trip; any failure means not (yet) serving."""
    if not all(port_in_use(port) for port in server.client_ports):
        return False
    try:
        return READY[server.name]()
    except Exception:  # noqa: BLE001 - any client error means "not ready yet"
        return False


# --- up / down / status --------------------------------------------------------------------------


def _spawn(server: Server, process: Process, layout: Layout, java: str, lib: Path) -> subprocess.Popen[bytes]:
    taken = [port for port in process.ports if port_in_use(port)]
    if taken:
        raise InfraError(
            f"{server.name}: port {', '.join(map(str, taken))} on {HOST} is already in use by a process pricepipe did not "
            "start. Stop that process (or point PRICEPIPE_* at it and skip this server) and try again."
        )
    log = layout.log_file(server, process)
    layout.pid_file(process).parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        child = subprocess.Popen(
            [java, *_java_args(server, process, layout, lib)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=layout.data(server),
            start_new_session=True,
        )
    layout.pid_file(process).write_text(str(child.pid))
    return child


def _wait_ready(server: Server, layout: Layout, children: Sequence[subprocess.Popen[bytes]], started: float) -> None:
    """Poll until a client round trip succeeds; a JVM that exits meanwhile is reported with its log."""
    deadline = started + server.start_timeout_s
    while time.monotonic() < deadline:
        for process, child in zip(server.processes, children, strict=True):
            if child.poll() is not None:
                layout.pid_file(process).unlink(missing_ok=True)
                log = layout.log_file(server, process)
                raise InfraError(f"{server.name}: {process.name} died during start (exit {child.returncode}); "
                                 f"last lines of {log}:\n{log_tail(log)}")
        if is_ready(server):
            return
        time.sleep(1)
    logs = "\n".join(f"--- {layout.log_file(server, p)}\n{log_tail(layout.log_file(server, p))}" for p in server.processes)
    raise InfraError(f"{server.name} did not answer within {server.start_timeout_s:.0f}s; its logs end with:\n{logs}")


def up(names: Iterable[str], layout: Layout, echo: Callable[[str], None] = print) -> None:
    """Start the named servers (those already running are left alone) and wait until each serves."""
    servers = resolve(names)
    java = find_java()
    pending: list[tuple[Server, list[subprocess.Popen[bytes]], float]] = []
    for server in servers:
        running = [read_pid(layout, p) for p in server.processes]
        if all(running):
            echo(f"[infra] {server.name}: already running (pid {', '.join(map(str, running))})")
            continue
        if any(running):
            stop_server(server, layout, echo)
        lib = classpath_dir(layout.cache_dir, server.name)
        _prepare(server, layout, java, lib)
        started = time.monotonic()
        children = [_spawn(server, process, layout, java, lib) for process in server.processes]
        pending.append((server, children, started))
    failures = []
    for server, children, started in pending:
        try:
            _wait_ready(server, layout, children, started)
        except InfraError as error:
            failures.append(str(error))
            stop_server(server, layout, lambda _: None)
            continue
        echo(f"[infra] {server.name}: ready in {time.monotonic() - started:.1f}s at {', '.join(server.endpoints)}")
        echo(f"[infra]   data {layout.data(server)}  logs {layout.logs(server)}")
    if failures:
        raise InfraError("\n\n".join(failures))


def stop_server(server: Server, layout: Layout, echo: Callable[[str], None] = print, timeout_s: float = 60) -> None:
    """SIGTERM each JVM this launcher started for ``server``, SIGKILL after ``timeout_s``."""
    for process in reversed(server.processes):
        pid = read_pid(layout, process)
        if pid is None:
            continue
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and read_pid(layout, process) is not None:
            if _reap(pid):
                break
            time.sleep(0.2)
        else:
            if read_pid(layout, process) is not None:
                os.kill(pid, signal.SIGKILL)
        layout.pid_file(process).unlink(missing_ok=True)
        echo(f"[infra] {server.name}: stopped {process.name} (pid {pid})")


def _reap(pid: int) -> bool:
    """True once ``pid`` has exited (reaping it when it is our child)."""
    try:
        finished, _ = os.waitpid(pid, os.WNOHANG)
        return finished == pid
    except ChildProcessError:
        return not Path(f"/proc/{pid}").exists() or _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except (OSError, IndexError):
        return True


def down(names: Iterable[str], layout: Layout, echo: Callable[[str], None] = print) -> None:
    """Stop the named servers, only the processes this launcher started."""
    for server in reversed(resolve(names)):
        if not any(read_pid(layout, p) for p in server.processes):
            echo(f"[infra] {server.name}: not running")
            continue
        stop_server(server, layout, echo)


def status(names: Iterable[str], layout: Layout, echo: Callable[[str], None] = print) -> bool:
    """Print one line per server; True when every named server runs and answers."""
    healthy = True
    for server in resolve(names):
        parts = []
        for process in server.processes:
            pid = read_pid(layout, process)
            memory = rss_mb(pid) if pid else None
            parts.append(f"{process.name} pid {pid} rss {memory:.0f} MiB" if pid and memory else f"{process.name} stopped")
        running = all(read_pid(layout, p) for p in server.processes)
        ready = running and is_ready(server)
        healthy &= ready
        state = "serving" if ready else ("starting or unresponsive" if running else "stopped")
        echo(f"{server.name:<10} {state:<24} {'; '.join(parts)}")
        echo(f"{'':<10} data {layout.data(server)}  logs {layout.logs(server)}")
    return healthy


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m infra.local.launcher up|down|status [kafka|cassandra|hdfs|all]``."""
    from pricepipe_assets.settings import Settings

    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in ("up", "down", "status"):
        print("usage: launcher up|down|status [kafka|cassandra|hdfs|all ...]", file=sys.stderr)
        return 2
    settings = Settings.from_env()
    layout = Layout(settings.state_dir, settings.cache_dir)
    names = args[1:] or ["all"]
    try:
        if args[0] == "up":
            up(names, layout)
        elif args[0] == "down":
            down(names, layout)
        else:
            return 0 if status(names, layout) else 1
    except InfraError as error:
        print(f"[infra] error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
