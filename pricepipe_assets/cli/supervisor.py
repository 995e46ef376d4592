"""``pricepipe run``: the whole platform in one foreground command, on local servers or real clusters.

Starts only the local servers the settings point at and that are not already serving (a real
cluster is used as configured), brings the Dagster instance up to date, then runs one Dagster code
server, the webserver and the daemon (both loading the code from that one server), the API and
the feed as child processes. Each child has a process group of its own so that Ctrl-C is
handled here, once: every child gets SIGTERM at the same time, SIGKILL if it lingers, and the
servers this command started are stopped last.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from api.server import UVICORN_HTTP
from infra.local import launcher, targets
from pricepipe_assets.cli.instance import dagster_home, prepare_instance, repo_root
from pricepipe_assets.settings import Settings

STOP_TIMEOUT_S = 20.0
# uvicorn otherwise waits for every open response to end, and the chart page's live stream never
# does: with a browser tab open, Ctrl-C would hang until the SIGKILL of STOP_TIMEOUT_S.
API_GRACEFUL_SHUTDOWN_S = 3
CODE_SERVER_HOST = "127.0.0.1"
CODE_SERVER_START_S = 180.0



@dataclass
class Child:
    """A long-running process of the platform and the log file its output goes to."""

    name: str
    command: list[str]
    log: Path
    may_finish: bool = False
    process: subprocess.Popen[bytes] | None = None

    def failed(self) -> bool:
        """Whether the child is gone in a way that ends the platform: any exit, or for a child that
        may finish (a replay reaching its last day), an exit with an error."""
        if self.process is None:
            return True
        code = self.process.poll()
        return code is not None and (code != 0 or not self.may_finish)

    def start(self, env: Mapping[str, str], cwd: Path) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(self.command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            env=dict(env), cwd=cwd, start_new_session=True)

    def terminate(self) -> bool:
        """SIGTERM the child's process group; False when there was nothing left to stop."""
        if self.process is None or self.process.poll() is not None:
            return False
        os.killpg(self.process.pid, signal.SIGTERM)
        return True

    def finish(self, deadline: float) -> None:
        """Wait for a terminated child until ``deadline`` (monotonic), then SIGKILL what is left of its group."""
        assert self.process is not None
        try:
            self.process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        try:  # grandchildren (the code server's own server and runs) share the group; make sure none is left
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def stop_all(procs: list[Child], timeout_s: float = STOP_TIMEOUT_S) -> None:
    """Stop every child within one shared ``timeout_s``: one after another, their shutdown times
    would add up, and Ctrl-C would take as long as all of them together."""
    terminated = [child for child in procs if child.terminate()]
    deadline = time.monotonic() + timeout_s
    for child in terminated:
        child.finish(deadline)


def code_location() -> tuple[str, str]:
    """The definitions module and the code location name declared in ``[tool.dagster]``, so the code
    server serves them under the name ``dagster dev`` uses (sensor cursors are kept per location)."""
    declared = tomllib.loads((repo_root() / "pyproject.toml").read_text())["tool"]["dagster"]
    return declared["module_name"], declared["code_location_name"]


def free_port() -> int:
    """A port for the code server, chosen at each start rather than configured: only this command's
    own children connect to it, so a fixed port could only collide with something else."""
    with socket.socket() as probe:
        probe.bind((CODE_SERVER_HOST, 0))
        return int(probe.getsockname()[1])


def write_workspace(path: Path, port: int, location_name: str) -> Path:
    """A workspace in which the webserver and the daemon find the code on the running code server
    instead of each starting a code server of their own."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"load_from:\n  - grpc_server:\n      host: {json.dumps(CODE_SERVER_HOST)}\n      port: {port}\n"
                    f"      location_name: {json.dumps(location_name)}\n")
    return path


def code_server(settings: Settings, bin_dir: Path, port: int) -> Child:
    """The one process that loads the definitions; the webserver, the daemon and the runs they
    launch all get the code from it, so it is imported once instead of once per Dagster process."""
    module, location_name = code_location()
    return Child("dagster-code-server",
                 [str(bin_dir / "dagster"), "code-server", "start", "-h", CODE_SERVER_HOST, "-p", str(port),
                  "-m", module, "-d", str(repo_root()), "--location-name", location_name],
                 settings.state_dir / "logs" / "dagster-code-server.log")


def children(settings: Settings, bin_dir: Path, workspace: Path) -> list[Child]:
    """The processes that start once the code server answers."""
    logs = settings.state_dir / "logs"
    return [
        Child("dagster-webserver",
              [str(bin_dir / "dagster-webserver"), "-w", str(workspace), "-h", settings.dagster_bind_host,
               "-p", str(settings.dagster_port)], logs / "dagster-webserver.log"),
        Child("dagster-daemon", [str(bin_dir / "dagster-daemon"), "run", "-w", str(workspace)],
              logs / "dagster-daemon.log"),
        Child("api",
              [str(bin_dir / "uvicorn"), "api.app:app", "--host", settings.api_bind_host, "--port", str(settings.api_port),
               "--timeout-graceful-shutdown", str(API_GRACEFUL_SHUTDOWN_S), "--workers", str(settings.api_workers),
               "--http", UVICORN_HTTP],
              logs / "api.log"),
        Child("stream", [str(bin_dir / "pricepipe"), "stream"], logs / "stream.log"),
        Child("feed", [str(bin_dir / "pricepipe"), "feed", "--source", "auto"], logs / "feed.log", may_finish=True),
    ]


def wait_port(host: str, port: int, timeout_s: float, alive: Callable[[], bool]) -> bool:
    """Whether ``host:port`` accepts connections within ``timeout_s`` while ``alive()`` holds.

    Enough for the code server: it loads the definitions before it opens its port.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and alive():
        with socket.socket() as sock:
            sock.settimeout(1)
            if sock.connect_ex((host, port)) == 0:
                return True
        time.sleep(0.2)
    return False


def _wait_http(url: str, timeout_s: float, alive: Callable[[], bool]) -> bool:
    import requests

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and alive():
        try:
            if requests.get(url, timeout=2).status_code < 500:
                return True
        except requests.RequestException:
            pass
        time.sleep(1)
    return False


def _health_summary(api: str, settings: Settings) -> str:
    """One line: what answers, as the API's /health sees it."""
    import requests

    if settings.api_auth and not settings.api_key:
        return "not asked: /health takes a key of `pricepipe api-key`, which this command does not hold"
    headers = {"X-API-Key": settings.api_key} if settings.api_key else {}
    try:
        health = requests.get(f"{api}/health", headers=headers, timeout=10).json()
    except (requests.RequestException, ValueError) as error:
        return f"API did not answer /health ({type(error).__name__})"
    return ", ".join(f"{name} {'ok' if health.get(name) else 'NOT ANSWERING'}" for name in ("kafka", "cassandra"))


def _start_platform(settings: Settings, env: Mapping[str, str], procs: list[Child],
                    alive: Callable[[], bool], echo: Callable[[str], None]) -> None:
    """Start the code server, then, once it serves, everything that loads code from it; ``procs``
    grows as children start so that an interruption at any point stops exactly those."""
    bin_dir = Path(sys.executable).parent
    logs = settings.state_dir / "logs"
    prepare_instance(env, bin_dir, logs / "dagster-instance.log")
    port = free_port()
    server = code_server(settings, bin_dir, port)
    procs.append(server)
    server.start(env, repo_root())
    if not wait_port(CODE_SERVER_HOST, port, CODE_SERVER_START_S, alive):
        if alive():
            raise RuntimeError(f"the Dagster code server did not open port {port} within {CODE_SERVER_START_S:.0f} s; "
                               f"last lines of {server.log}:\n{launcher.log_tail(server.log)}")
        return
    _, location_name = code_location()
    workspace = write_workspace(settings.state_dir / "dagster-workspace.yaml", port, location_name)
    for child in children(settings, bin_dir, workspace):
        if not alive():
            return
        procs.append(child)
        child.start(env, repo_root())
    ui = f"http://{settings.dagster_bind_host}:{settings.dagster_port}"
    api = f"http://{settings.api_bind_host}:{settings.api_port}"
    if _wait_http(f"{ui}/server_info", 180, alive) and _wait_http(f"{api}/livez", 60, alive):
        echo(f"[run] Dagster UI  {ui}")
        echo(f"[run] chart page  {api}/")
        echo(f"[run] API docs    {api}/docs")
        echo(f"[run] health      {_health_summary(api, settings)}")
        echo(f"[run] logs in {logs}; Ctrl-C stops everything this command started")


def run(settings: Settings, echo: Callable[[str], None] = print) -> int:
    """Run the platform until interrupted; returns the exit code."""
    layout = launcher.Layout(settings.state_dir, settings.cache_dir)
    servers = targets.plan(settings)
    for note in servers.notes:
        echo(note)
    started = [name for name in servers.local if not launcher.is_ready(launcher.SERVERS[name])]
    for name in servers.local:
        if name not in started:
            echo(f"[run] {name}: the local server already serves; left running at the end")
    stopping = False

    def interrupt(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    procs: list[Child] = []
    try:
        if started:
            launcher.up(started, layout, echo)
        home, note = dagster_home(settings, os.environ)
        echo(note)
        _start_platform(settings, {**os.environ, "DAGSTER_HOME": str(home)}, procs,
                        lambda: not stopping and not any(c.failed() for c in procs), echo)
        while not stopping:
            dead = [c for c in procs if c.failed()]
            if dead:
                for child in dead:
                    echo(f"[run] {child.name} exited; last lines of {child.log}:\n{launcher.log_tail(child.log)}")
                return 1
            time.sleep(0.5)
        return 0
    finally:
        echo("[run] stopping ...")
        stop_all(procs)
        if started:
            launcher.down(started, layout, echo)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        echo("[run] stopped")
