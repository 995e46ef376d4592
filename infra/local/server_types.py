"""What a local server is and where it keeps its state: the types every kind of server shares.

A server's description (``Server``, its JVMs as ``Process``), its folders (``Layout``), where the
templates and Maven modules are (``CONF``, ``MAVEN``) and the error the launcher reports with
(``InfraError``, often quoting a log's last lines) are used by
the generic servers (``servers``) and by each kind with code of its own (``postgres``,
``spark_standalone``), which ``servers`` dispatches to; kept here so that none of them imports
another to reach these types.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import signal
from collections.abc import Callable
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
    host: str = HOST
    # The Maven module, templates and readiness check it shares with its kind (default: its name).
    kind: str = ""
    # Nodes of the cluster it belongs to: it counts as ready only once it sees all of them.
    nodes: int = 1
    # Template values that differ from the single node's (see servers.SINGLE_NODE_VALUES).
    values: tuple[tuple[str, str], ...] = ()
    # Seconds from the stop signal to SIGKILL.
    stop_timeout_s: float = 60
    # The signal that asks it to stop; PostgreSQL's SIGTERM would wait for every client to leave.
    stop_signal: int = signal.SIGTERM
    # A system user it must run as when the launcher is root (PostgreSQL refuses root).
    run_as: str = ""
    # Templates (under conf/) appended to its kind's configuration, e.g. a TLS listener's settings.
    fragments: tuple[str, ...] = ()
    # Arguments added to the kind's storage format command (templates too), e.g. Kafka's SCRAM users.
    format_args: tuple[str, ...] = ()
    # Template values that are credentials: kept out of the repr, so no log or traceback shows them.
    secrets: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    # Its own readiness check, for a server that only answers clients with credentials.
    ready: Callable[[Server], bool] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.kind:
            object.__setattr__(self, "kind", self.name)


@dataclass(frozen=True)
class Layout:
    """Where one server keeps its data, rendered configuration, logs and pid files."""

    state_dir: Path
    cache_dir: Path

    def data(self, server: Server) -> Path:
        if server.run_as and os.geteuid() == 0:
            # Root's state folder is closed to other users: the data goes to the run-as user's home,
            # one folder per state folder so that two layouts never share it.
            digest = hashlib.sha256(str(self.state_dir.resolve()).encode()).hexdigest()[:12]
            return Path(pwd.getpwnam(server.run_as).pw_dir) / "pricepipe" / digest / server.name
        return self.state_dir / "servers" / server.name / "data"

    def conf(self, server: Server) -> Path:
        return self.state_dir / "servers" / server.name / "conf"

    def logs(self, server: Server) -> Path:
        return self.state_dir / "servers" / server.name / "logs"

    def log_file(self, server: Server, process: Process) -> Path:
        return self.logs(server) / f"{process.name}.out"

    def pid_file(self, process: Process) -> Path:
        return self.state_dir / "run" / f"{process.name}.pid"


def log_tail(path: Path, lines: int = 25) -> str:
    """The last ``lines`` of a server's log, which an error quotes so that it says why the server failed."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log written)"

