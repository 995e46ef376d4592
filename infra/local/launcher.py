"""Start, stop and inspect single-node Kafka (KRaft), Cassandra 5.0 and HDFS on 127.0.0.1.

There is no Docker here, so each server runs from its official Apache artifacts resolved from
Maven Central by the POMs in ``infra/local/maven/`` into a cache outside the repository. Every
JVM is started in its own session with a pid file, so ``down`` stops exactly what ``up``
started and nothing else. A server counts as up only after a real client round trip.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from infra.local import postgres, spark_standalone
from infra.local.jvm import classpath_dir, find_java
from infra.local.server_types import InfraError, Layout, Process, Server, log_tail
from infra.local.servers import SERVERS, command, environment, is_ready, port_in_use, prepare, read_pid, resolve, rss_mb

__all__ = ["SERVERS", "InfraError", "Layout", "down", "is_ready", "log_tail", "read_pid", "rss_mb", "status", "up"]


def _spawn(server: Server, process: Process, layout: Layout, java: str, lib: Path) -> subprocess.Popen[bytes]:
    taken = [port for port in process.ports if port_in_use(port, server.host)]
    if taken:
        raise InfraError(
            f"{server.name}: port {', '.join(map(str, taken))} on {server.host} is already in use by a process pricepipe did not "
            "start. Stop that process (or point PRICEPIPE_* at it and skip this server) and try again."
        )
    log = layout.log_file(server, process)
    layout.pid_file(process).parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        child = subprocess.Popen(
            command(server, process, layout, java, lib),
            env={**os.environ, **environment(server, layout, lib)},
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=layout.data(server),
            start_new_session=True,
            **postgres.as_owner(server),
        )
    layout.pid_file(process).write_text(str(child.pid))
    return child


def _library(server: Server, layout: Layout) -> Path:
    """Where a kind's jars or programs are: Maven-resolved, the installed pyspark's, or Debian's."""
    if server.kind == "spark":
        return spark_standalone.spark_home()
    if server.kind == "postgres":
        return postgres.bin_dir()
    return classpath_dir(layout.cache_dir, server.kind)


def _wait_ready(server: Server, layout: Layout, children: Sequence[subprocess.Popen[bytes]], started: float) -> None:
    """Poll until a client round trip succeeds; a JVM that exits meanwhile is reported with its log.

    The servers start together and are waited on one after another, so a quick server's deadline
    may pass while a slower one is awaited: it still gets its round trip before it counts as late."""
    deadline = started + server.start_timeout_s
    while True:
        for process, child in zip(server.processes, children, strict=True):
            if child.poll() is not None:
                layout.pid_file(process).unlink(missing_ok=True)
                log = layout.log_file(server, process)
                raise InfraError(f"{server.name}: {process.name} died during start (exit {child.returncode}); "
                                 f"last lines of {log}:\n{log_tail(log)}")
        if is_ready(server):
            return
        if time.monotonic() >= deadline:
            break
        time.sleep(1)
    logs = "\n".join(f"--- {layout.log_file(server, p)}\n{log_tail(layout.log_file(server, p))}" for p in server.processes)
    raise InfraError(f"{server.name} did not answer within {server.start_timeout_s:.0f}s; its logs end with:\n{logs}")


def up(names: Iterable[str], layout: Layout, echo: Callable[[str], None] = print,
       catalog: Mapping[str, Server] = SERVERS) -> None:
    """Start the named servers of ``catalog`` (those already running are left alone) and wait until each serves."""
    servers = resolve(names, catalog)
    java = find_java()
    pending: list[tuple[Server, list[subprocess.Popen[bytes]], float]] = []
    for server in servers:
        running = [read_pid(layout, p) for p in server.processes]
        if all(running):
            echo(f"[infra] {server.name}: already running (pid {', '.join(map(str, running))})")
            continue
        if any(running):
            stop_server(server, layout, echo)
        lib = _library(server, layout)
        prepare(server, layout, java, lib)
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


def stop_server(server: Server, layout: Layout, echo: Callable[[str], None] = print) -> None:
    """Signal each process this launcher started for ``server`` to stop, SIGKILL after its ``stop_timeout_s``."""
    stop_servers([server], layout, echo)


def stop_servers(servers: Sequence[Server], layout: Layout, echo: Callable[[str], None] = print) -> None:
    """Signal every process of ``servers`` at once, then wait for each, SIGKILL after its ``stop_timeout_s``.

    All at once because a KRaft broker stopped after the others never completes its controlled
    shutdown: the controller quorum it would report to is already gone."""
    signalled = []
    for server in servers:
        for process in reversed(server.processes):
            pid = read_pid(layout, process)
            if pid is not None:
                os.kill(pid, server.stop_signal)
                signalled.append((server, process, pid))
    for server, process, pid in signalled:
        deadline = time.monotonic() + server.stop_timeout_s
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


def down(names: Iterable[str], layout: Layout, echo: Callable[[str], None] = print,
         catalog: Mapping[str, Server] = SERVERS) -> None:
    """Stop the named servers of ``catalog``, only the processes this launcher started."""
    running = []
    for server in reversed(resolve(names, catalog)):
        if any(read_pid(layout, p) for p in server.processes):
            running.append(server)
        else:
            echo(f"[infra] {server.name}: not running")
    stop_servers(running, layout, echo)


def status(names: Iterable[str], layout: Layout, echo: Callable[[str], None] = print,
           catalog: Mapping[str, Server] = SERVERS) -> bool:
    """Print one line per server; True when every named server runs and answers."""
    healthy = True
    for server in resolve(names, catalog):
        parts = []
        for process in server.processes:
            pid = read_pid(layout, process)
            memory = rss_mb(pid) if pid else None
            parts.append(f"{process.name} pid {pid} rss {memory:.0f} MiB" if pid and memory else f"{process.name} stopped")
        running = all(read_pid(layout, p) for p in server.processes)
        ready = running and is_ready(server)
        healthy &= ready
        state = "serving" if ready else ("starting or unresponsive" if running else "stopped")
        echo(f"{server.name:<12} {state:<24} {'; '.join(parts)}")
        echo(f"{'':<12} data {layout.data(server)}  logs {layout.logs(server)}")
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
