"""``pricepipe run``: the whole local platform in one foreground command.

Starts the local servers that are not already serving, brings topics and schema up to date,
then runs the Dagster webserver, the Dagster daemon and the API as child processes, each in a
process group of its own so that Ctrl-C is handled here, once: children get SIGTERM, then
SIGKILL if they linger, and the servers this command started are stopped last.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from pricepipe_assets.settings import Settings

STOP_TIMEOUT_S = 20.0


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

    def start(self, env: dict[str, str], cwd: Path) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(self.command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            env=env, cwd=cwd, start_new_session=True)

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM the child's process group, SIGKILL it after ``timeout_s``."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        try:  # grandchildren (e.g. Dagster's code server) share the group; make sure none is left
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def repo_root() -> Path:
    """The checkout pricepipe runs from (``workspace.yaml`` lives there)."""
    return Path(__file__).resolve().parents[1]


def dagster_home(settings: Settings) -> Path:
    """``$DAGSTER_HOME``, or ``<state dir>/dagster``, with the project's ``dagster.yaml`` in it."""
    home = Path(os.environ.get("DAGSTER_HOME") or settings.state_dir / "dagster")
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(repo_root() / "infra" / "dagster" / "dagster.yaml", home / "dagster.yaml")
    return home


def prepare_instance(env: dict[str, str], bin_dir: Path, log: Path) -> None:
    """Create or upgrade the Dagster instance's storage before any Dagster process starts.

    The webserver and the daemon start together; on a new ``DAGSTER_HOME`` each would create the
    SQLite storage itself, and two creations at once can leave its schema table with two heads,
    after which the code location fails to load in the process that lost.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        subprocess.run([str(bin_dir / "dagster"), "instance", "migrate"], stdout=out, stderr=subprocess.STDOUT,
                       stdin=subprocess.DEVNULL, env=env, cwd=repo_root(), check=True, timeout=300)


def children(settings: Settings, bin_dir: Path) -> list[Child]:
    logs = settings.state_dir / "logs"
    return [
        Child("dagster-webserver",
              [str(bin_dir / "dagster-webserver"), "-w", "workspace.yaml", "-h", settings.bind_host,
               "-p", str(settings.dagster_port)], logs / "dagster-webserver.log"),
        Child("dagster-daemon", [str(bin_dir / "dagster-daemon"), "run", "-w", "workspace.yaml"],
              logs / "dagster-daemon.log"),
        Child("api",
              [str(bin_dir / "uvicorn"), "api.app:app", "--host", settings.bind_host, "--port", str(settings.api_port),
               "--workers", str(settings.api_workers)],
              logs / "api.log"),
        Child("feed", [str(bin_dir / "pricepipe"), "feed", "--source", "auto"], logs / "feed.log", may_finish=True),
    ]


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

    headers = {"X-API-Key": settings.api_key} if settings.api_key else {}
    try:
        health = requests.get(f"{api}/health", headers=headers, timeout=10).json()
    except (requests.RequestException, ValueError) as error:
        return f"API did not answer /health ({type(error).__name__})"
    return ", ".join(f"{name} {'ok' if health.get(name) else 'NOT ANSWERING'}" for name in ("kafka", "cassandra"))


def run(settings: Settings, echo: Callable[[str], None] = print) -> int:
    """Run the platform until interrupted; returns the exit code."""
    from infra.local import launcher

    layout = launcher.Layout(settings.state_dir, settings.cache_dir)
    wanted = ["kafka", "cassandra"] + (["hdfs"] if settings.lake_uri.startswith("webhdfs://") else [])
    started = [name for name in wanted if not launcher.is_ready(launcher.SERVERS[name])]
    stopping = False

    def interrupt(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    procs: list[Child] = []
    try:
        if started:
            launcher.up(started, layout, echo)
        env = {**os.environ, "DAGSTER_HOME": str(dagster_home(settings))}
        bin_dir = Path(sys.executable).parent
        prepare_instance(env, bin_dir, settings.state_dir / "logs" / "dagster-instance.log")
        procs = children(settings, bin_dir)
        for child in procs:
            if stopping:
                break
            child.start(env, repo_root())
        ui = f"http://{settings.bind_host}:{settings.dagster_port}"
        api = f"http://{settings.bind_host}:{settings.api_port}"
        everything_alive = lambda: not stopping and not any(c.failed() for c in procs)  # noqa: E731
        if _wait_http(f"{ui}/server_info", 180, everything_alive) and _wait_http(f"{api}/health", 60, everything_alive):
            echo(f"[run] Dagster UI  {ui}")
            echo(f"[run] chart page  {api}/")
            echo(f"[run] API docs    {api}/docs")
            echo(f"[run] health      {_health_summary(api, settings)}")
            echo(f"[run] logs in {settings.state_dir / 'logs'}; Ctrl-C stops everything this command started")
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
        for child in reversed(procs):
            child.stop()
        if started:
            launcher.down(started, layout, echo)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        echo("[run] stopped")
