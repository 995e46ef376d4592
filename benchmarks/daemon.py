"""A real `dagster-daemon` in a Dagster home of its own, for the benchmarks that time sensor-driven runs,
and the stream worker and the API beside it, as `pricepipe run` starts them.

The daemon starts its code server (`dagster api grpc`) and, through it, one process per run, all
in the daemon's process group. Stopping only the daemon leaves those behind: a code server that
outlives the benchmark, and run processes still writing into the Dagster home while it is being
removed. So the whole group is stopped and waited for, and only then is the home removed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from pricepipe_assets.cli.supervisor import children
from pricepipe_assets.settings import Settings

REPO = Path(__file__).resolve().parents[1]
DAGSTER_YAML = REPO / "infra" / "dagster" / "dagster.yaml"


def group_members(group: int) -> list[int]:
    """The live processes of a process group, zombies excluded (from /proc, so children of children count)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == group:
            members.append(int(entry.name))
    return members


def stop_group(process: subprocess.Popen[bytes], grace_s: float = 30) -> None:
    """SIGTERM the process group led by ``process``, SIGKILL what is left after ``grace_s``, and wait for all."""
    group = process.pid
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(group, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait_s
        while group_members(group) and time.monotonic() < deadline:
            process.poll()
            time.sleep(0.1)
        if not group_members(group):
            break
    process.wait()
    if group_members(group):
        raise RuntimeError(f"processes of group {group} survived SIGKILL: {group_members(group)}")


@contextmanager
def running_daemon(workspace: Path, variables: Mapping[str, str], *, prefix: str) -> Iterator[Path]:
    """A daemon over ``workspace`` in a fresh Dagster home (with the project's `dagster.yaml`); yields the home.

    ``variables`` are added to the daemon's environment (its code server and runs inherit them).
    The daemon's output goes to `daemon.log` in the home, which is removed once every process is gone.
    """
    home = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        shutil.copy(DAGSTER_YAML, home / "dagster.yaml")
        daemon = Path(sys.executable).parent / "dagster-daemon"
        with (home / "daemon.log").open("wb") as log:
            process = subprocess.Popen([str(daemon), "run", "-w", str(workspace)], cwd=REPO,
                                       env={**os.environ, **variables, "DAGSTER_HOME": str(home)},
                                       stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            yield home
        finally:
            stop_group(process)
    finally:
        shutil.rmtree(home)


@contextmanager
def running_process(command: list[str], variables: Mapping[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``command`` from the checkout, with ``variables`` added to the environment and its output in
    ``log``, until the block ends; then terminated and waited for, so nothing outlives the benchmark."""
    with log.open("wb") as output:
        process = subprocess.Popen(command, cwd=REPO, env={**os.environ, **variables}, stdout=output,
                                   stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        process.terminate()
        process.wait(60)


def running_stream_worker(variables: Mapping[str, str], log: Path) -> contextlib.AbstractContextManager[
        subprocess.Popen[bytes]]:
    """`pricepipe stream`, as `pricepipe run` starts it beside the daemon; give it the daemon's
    ``DAGSTER_HOME`` in ``variables`` so its materializations reach the same instance."""
    return running_process([str(Path(sys.executable).parent / "pricepipe"), "stream"], variables, log)


def wait_for(condition: Callable[[], bool], home: Path, what: str, timeout_s: float = 240, every_s: float = 0.2) -> None:
    """Poll ``condition`` until it holds; on timeout, raise with the end of the daemon's log, which says why."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            log = home / "daemon.log"
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:]) if log.exists() else ""
            raise RuntimeError(f"{what} did not happen within {timeout_s:.0f} s; the daemon's log ends:\n{tail}")
        time.sleep(every_s)


def api_launch(keyspace: str, host: str) -> tuple[list[str], dict[str, str], int]:
    """The API's command and environment as `pricepipe run` starts it, over ``keyspace``, on a free
    port of ``host``, with one worker (so a per-worker limit is the server's) and no API key; and
    the port."""
    with socket.socket() as free:
        free.bind((host, 0))
        port = free.getsockname()[1]
    variables = {**{k: v for k, v in os.environ.items() if k != "PRICEPIPE_API_KEY"}, "PRICEPIPE_KEYSPACE": keyspace,
                 "PRICEPIPE_API_BIND_HOST": host, "PRICEPIPE_API_PORT": str(port), "PRICEPIPE_API_WORKERS": "1"}
    command = next(child.command for child in children(Settings.from_env(variables), Path(sys.executable).parent,
                                                          REPO / "workspace.yaml") if child.name == "api")
    return command, variables, port
