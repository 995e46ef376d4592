"""`pricepipe run`: the platform over the real servers or real clusters, one code server, the user's
Dagster instance left alone, and a Ctrl-C that returns promptly even with the chart page open."""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import pandas as pd
import requests

from api.server import UVICORN_HTTP
from pricepipe_assets.cli import instance, supervisor
from pricepipe_assets.cli.supervisor import Child, children
from pricepipe_assets.defs.resources import CassandraResource, KafkaResource
from pricepipe_assets.settings import Settings
from pricepipe_assets_tests.support.kline_files import KLINE_COLUMNS, kline_file

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def processes_mentioning(text: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if text.encode() in (proc / "cmdline").read_bytes():
                    pids.append(int(proc.name))
            except OSError:
                continue
    return pids


def descendants_running(root: int, words: str) -> list[int]:
    """Processes under ``root`` (at any depth) whose command line contains ``words``."""
    parents: dict[int, int] = {}
    commands: dict[int, str] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                parents[int(proc.name)] = int((proc / "stat").read_text().rsplit(") ", 1)[1].split()[1])
                commands[int(proc.name)] = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except (OSError, IndexError, ValueError):
                continue

    def under(pid: int) -> bool:
        while pid in parents and pid != root:
            pid = parents[pid]
        return pid == root

    return [pid for pid, command in commands.items() if words in command and pid != root and under(pid)]


class Lines:
    """A child's output read on a thread, so that a test can wait for a line with a deadline."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.seen: list[str] = []
        self._queue: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=lambda: [self._queue.put(line) for line in process.stdout or ()],
                                        daemon=True)
        self._reader.start()

    def until(self, prefix: str, timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            self.seen.append(line)
            if line.startswith(prefix):
                return line
        raise AssertionError(f"no line starting with {prefix!r} within {timeout_s:.0f} s:\n{''.join(self.seen)}")

    def everything(self) -> str:
        """All that was printed, once the process has ended."""
        self._reader.join(timeout=10)
        while not self._queue.empty():
            self.seen.append(self._queue.get())
        return "".join(self.seen)


def isolated_env(tmp_path: Path, **variables: str) -> dict[str, str]:
    """The environment of a platform of this test's own: state, lake and Dagster home under ``tmp_path``,
    free ports, and Kafka and Cassandra on closed ports unless the test says otherwise."""
    settings = {"STATE_DIR": str(tmp_path / "state"), "LAKE_URI": str(tmp_path / "lake"),
                "DAGSTER_PORT": str(free_port()), "API_PORT": str(free_port()),
                "KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}", "CASSANDRA_PORT": str(free_port()),
                "TOPIC_PREFIX": f"test.{tmp_path.name}.", **variables}
    return {**os.environ, "DAGSTER_HOME": str(tmp_path / "dagster"),
            **{f"PRICEPIPE_{name}": value for name, value in settings.items()}}


def test_run_against_clusters_elsewhere_starts_no_local_server_says_so_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    env = isolated_env(tmp_path, KAFKA_BOOTSTRAP="10.255.255.1:9092", CASSANDRA_HOSTS="10.255.255.1",
                       CASSANDRA_PORT="9042")
    run = subprocess.Popen([str(BIN / "pricepipe"), "run"], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    lines = Lines(run)
    try:
        lines.until("[run] dagster:", 60)
    finally:
        run.send_signal(signal.SIGINT)
        interrupted = time.monotonic()
        run.wait(timeout=60)
    output = lines.everything()
    assert time.monotonic() - interrupted < supervisor.STOP_TIMEOUT_S, output
    assert run.returncode == 0, output
    assert "[run] kafka: using 10.255.255.1:9092 (not started here)" in output
    assert "[run] cassandra: using 10.255.255.1 port 9042 (not started here)" in output
    assert f"[run] hdfs: not needed, the lake is the local folder {tmp_path / 'lake'}" in output
    assert "[infra]" not in output and "already serves" not in output
    assert not (tmp_path / "state" / "run").exists()  # where the launcher keeps the pid files of what it starts
    assert output.rstrip().endswith("[run] stopped")


def wait_until(what: str, check: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (requests.RequestException, OSError):
            pass
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {timeout_s:.0f} s")


LOCATIONS = """{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus
  locationOrLoadError { __typename } } } } }"""


def test_the_webserver_and_the_daemon_load_the_code_from_one_code_server(tmp_path: Path) -> None:
    env = isolated_env(tmp_path)
    settings = Settings.from_env(env)
    home, _ = instance.dagster_home(settings, env)
    env["DAGSTER_HOME"] = str(home)
    instance.prepare_instance(env, BIN, tmp_path / "instance.log")
    port = supervisor.free_port()
    server = supervisor.code_server(settings, BIN, port)
    workspace = supervisor.write_workspace(tmp_path / "workspace.yaml", port, "pricepipe")
    dagster = [c for c in children(settings, BIN, workspace) if c.name in ("dagster-webserver", "dagster-daemon")]
    procs = [server, *dagster]
    try:
        server.start(env, instance.repo_root())
        assert supervisor.wait_port("127.0.0.1", port, 60, lambda: not server.failed())
        for child in dagster:
            child.start(env, instance.repo_root())
        graphql = f"http://127.0.0.1:{settings.dagster_port}/graphql"
        wait_until("the location loaded in the webserver", lambda: requests.post(graphql, json={"query": LOCATIONS}, timeout=5)
                   .json()["data"]["workspaceOrError"]["locationEntries"] == [
                       {"name": "pricepipe", "loadStatus": "LOADED", "locationOrLoadError": {"__typename": "RepositoryLocation"}}],
                   60)
        wait_until("the daemon evaluating the location's sensors",
                   lambda: "Checking for new runs for sensor" in dagster[1].log.read_text(), 60)
        assert all(not child.failed() for child in procs)
        for child in dagster:
            assert descendants_running(child.process.pid, "dagster api grpc") == [], child.name
        assert len(descendants_running(server.process.pid, "dagster api grpc")) == 1
    finally:
        supervisor.stop_all(procs)
    for child in procs:
        # The whole group is gone, the code server's own server included: killed members of a group
        # whose leader was reaped are reaped by init a moment later, so give them that moment.
        wait_until(f"{child.name}'s process group gone", lambda pid=child.process.pid: _group_gone(pid), 10)


def _group_gone(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_the_api_stops_within_its_graceful_timeout_while_a_chart_page_holds_its_stream(tmp_path: Path) -> None:
    """The API's own command, uvicorn with two workers, serving a response that never ends, as the
    chart page's live stream: stopping it must not wait for that response."""
    settings = Settings.from_env(isolated_env(tmp_path, API_WORKERS="2"))
    (api,) = [child for child in children(settings, BIN, tmp_path / "workspace.yaml") if child.name == "api"]
    api.command[api.command.index("api.app:app")] = "pricepipe_assets_tests.infra.endless_stream:app"
    api.start(os.environ, instance.repo_root())
    try:
        wait_until("the API's port", lambda: supervisor.wait_port("127.0.0.1", settings.api_port, 1, lambda: True), 30)
        with socket.create_connection(("127.0.0.1", settings.api_port), timeout=10) as browser:
            browser.sendall(b"GET /stream HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n")
            assert b"event: tick" in browser.recv(4096) + browser.recv(4096)
            stopping = time.monotonic()
            supervisor.stop_all([api])  # the connection stays open meanwhile, as a browser's tab would keep it
            took = time.monotonic() - stopping
    finally:
        supervisor.stop_all([api], timeout_s=0)
    assert took < supervisor.API_GRACEFUL_SHUTDOWN_S + 4
    assert api.process.returncode == 0  # it ended by itself, not by the SIGKILL after STOP_TIMEOUT_S


def test_children_are_stopped_together_within_one_timeout(tmp_path: Path) -> None:
    stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"
    procs = [Child(f"stubborn-{n}", [sys.executable, "-c", stubborn], tmp_path / f"{n}.log") for n in range(3)]
    for child in procs:
        child.start(os.environ, tmp_path)
    wait_until("every child ignoring SIGTERM", lambda: all(c.log.read_text() == "ready\n" for c in procs), 30)
    stopping = time.monotonic()
    supervisor.stop_all(procs, timeout_s=2)
    assert time.monotonic() - stopping < 4  # one after another, it would take 6 s
    assert [c.process.returncode for c in procs] == [-signal.SIGKILL] * 3


def test_run_starts_the_api_with_the_configured_workers_and_a_graceful_shutdown_timeout() -> None:
    def api_command(environ: dict[str, str]) -> list[str]:
        (api,) = [child for child in children(Settings.from_env(environ), Path("/venv/bin"), Path("/ws.yaml"))
                  if child.name == "api"]
        return api.command

    def option(command: list[str], name: str) -> str:
        return command[command.index(name) + 1]

    assert option(api_command({"PRICEPIPE_API_WORKERS": "3"}), "--workers") == "3"
    assert option(api_command({}), "--workers") == str(os.cpu_count() or 1)
    assert option(api_command({}), "--timeout-graceful-shutdown") == str(supervisor.API_GRACEFUL_SHUTDOWN_S)
    assert option(api_command({}), "--http") == UVICORN_HTTP  # the limits against hostile requests


def test_run_binds_the_dagster_ui_and_the_api_to_loopback_unless_each_is_opened_on_its_own() -> None:
    def host(environ: dict[str, str], name: str, flag: str) -> str:
        (child,) = [c for c in children(Settings.from_env(environ), Path("/venv/bin"), Path("/ws.yaml")) if c.name == name]
        return child.command[child.command.index(flag) + 1]

    assert host({}, "dagster-webserver", "-h") == "127.0.0.1"
    assert host({}, "api", "--host") == "127.0.0.1"
    api_open = {"PRICEPIPE_API_BIND_HOST": "0.0.0.0"}
    assert host(api_open, "api", "--host") == "0.0.0.0"
    assert host(api_open, "dagster-webserver", "-h") == "127.0.0.1"  # opening the API never opens the UI
SOURCE_DAY = "2024-01-01"


def _wait_for(what: str, check: Callable[[], bool], timeout_s: float, run: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert run.poll() is None, f"pricepipe run ended while waiting for {what}"
        try:
            if check():
                return
        except (requests.RequestException, KeyError, ValueError):
            pass
        time.sleep(2)
    raise AssertionError(f"{what}: not within {timeout_s:.0f} s")


def _sensor_runs(dagster_home: Path) -> list[dg.DagsterRun]:
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        return [run for run in instance.get_runs() if run.tags.get("dagster/sensor_name")]


def test_run_brings_the_platform_up_and_data_flows_from_feed_to_api_then_ctrl_c_stops_everything(
    kafka: KafkaResource, cassandra: CassandraResource, shared_data: Path, tmp_path: Path
) -> None:
    """`pricepipe run` as `make run` starts it, offline: the feed replays a real day from the local
    mirror, the daemon's sensors launch runs (through the one code server) that fill Cassandra, and
    the API answers with the source's candles and price; Ctrl-C with the chart page's live stream
    open then returns within the stop timeout and leaves no process behind."""
    ui_port, api_port = free_port(), free_port()
    dagster_home = tmp_path / "dagster"
    env = {**os.environ, "PRICEPIPE_DAGSTER_PORT": str(ui_port), "PRICEPIPE_API_PORT": str(api_port),
           "DAGSTER_HOME": str(dagster_home), "PRICEPIPE_STATE_DIR": str(tmp_path / "state"),
           "PRICEPIPE_TOPIC_PREFIX": kafka.topic_prefix, "PRICEPIPE_KEYSPACE": cassandra.keyspace,
           "PRICEPIPE_LAKE_URI": str(tmp_path / "lake"), "PRICEPIPE_SYMBOLS": "BTCUSDT",
           # offline: no exchange answers on a closed port, so the feed replays one day of the local mirror
           "PRICEPIPE_BINANCE_REST_URL": f"http://127.0.0.1:{free_port()}",
           "PRICEPIPE_BINANCE_DUMPS_URL": (shared_data / "binance").as_uri(), "PRICEPIPE_REPLAY_HISTORY_DAYS": "1",
           "PRICEPIPE_REPLAY_START": SOURCE_DAY, "PRICEPIPE_REPLAY_END": SOURCE_DAY, "PRICEPIPE_REPLAY_TRADES": ""}
    source = pd.read_csv(kline_file(shared_data, "BTCUSDT", SOURCE_DAY), header=None,
                         names=KLINE_COLUMNS)
    run = subprocess.Popen([str(Path(sys.executable).parent / "pricepipe"), "run"], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    api = f"http://127.0.0.1:{api_port}"
    browser = socket.socket()
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            line = run.stdout.readline()
            assert line, f"pricepipe run ended early:\n{''.join(lines)}"
            lines.append(line)
            if line.startswith("[run] logs in"):
                break
        printed = "".join(lines)
        for expected in (f"Dagster UI  http://127.0.0.1:{ui_port}", f"chart page  {api}/", f"API docs    {api}/docs",
                         "health      kafka ok, cassandra ok", "[run] kafka: the local server already serves",
                         f"[run] dagster: home {dagster_home} with the project's dagster.yaml"):
            assert expected in printed, printed
        assert requests.get(f"http://127.0.0.1:{ui_port}/server_info", timeout=10).status_code == 200

        _wait_for("the last candle's close as the price", lambda: requests.get(
            f"{api}/BTCUSDT/price", timeout=10).json()["last"] == source["close"].iloc[-1], 300, run)
        candles = requests.get(f"{api}/candles/BTCUSDT?start={SOURCE_DAY}&end={SOURCE_DAY}", timeout=30).json()["candles"]
        assert len(candles) == len(source) == 1440
        assert [c["close"] for c in candles] == source["close"].tolist()
        assert [c["volume"] for c in candles] == source["volume"].tolist()
        _wait_for("succeeded sensor-launched runs", lambda: any(
            r.status == dg.DagsterRunStatus.SUCCESS and r.tags["dagster/sensor_name"] == "candles_1m_sensor"
            for r in _sensor_runs(dagster_home)), 240, run)  # the day's candles gather for PRICEPIPE_LAKE_BATCH_WAIT_S
        assert len(descendants_running(run.pid, "dagster code-server start")) == 1
        assert len(descendants_running(run.pid, "dagster api grpc")) == 1
        browser.connect(("127.0.0.1", api_port))
        browser.sendall(b"GET /stream/BTCUSDT HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n")
        assert browser.recv(4096).startswith(b"HTTP/1.1 200")
    finally:
        run.send_signal(signal.SIGINT)
        interrupted = time.monotonic()
        output, _ = run.communicate(timeout=90)
        browser.close()
    assert time.monotonic() - interrupted < supervisor.STOP_TIMEOUT_S, output
    assert run.returncode == 0, "".join(lines) + output
    assert output.rstrip().endswith("[run] stopped")
    assert "stopped kafka" not in output  # it was already serving, so it is not this command's to stop
    assert processes_mentioning(str(ui_port)) == [] and processes_mentioning(str(api_port)) == []
    assert "exchanges unreachable" in (tmp_path / "state" / "logs" / "feed.log").read_text()
    assert all(r.status != dg.DagsterRunStatus.FAILURE for r in _sensor_runs(dagster_home))


