"""`pricepipe run` brings up Dagster and the API over the real servers and Ctrl-C stops all of it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

from pricepipe_assets.resources import CassandraResource, KafkaResource


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


def test_run_serves_ui_and_api_and_ctrl_c_stops_everything(
    kafka: KafkaResource, cassandra: CassandraResource, shared_data: Path, tmp_path: Path
) -> None:
    ui_port, api_port = free_port(), free_port()
    env = {**os.environ, "PRICEPIPE_DAGSTER_PORT": str(ui_port), "PRICEPIPE_API_PORT": str(api_port),
           "DAGSTER_HOME": str(tmp_path / "dagster"), "PRICEPIPE_STATE_DIR": str(tmp_path / "state"),
           "PRICEPIPE_TOPIC_PREFIX": kafka.topic_prefix, "PRICEPIPE_KEYSPACE": cassandra.keyspace,
           # offline: no exchange answers on a closed port, so the feed replays one day of the local mirror
           "PRICEPIPE_BINANCE_REST_URL": f"http://127.0.0.1:{free_port()}",
           "PRICEPIPE_BINANCE_DUMPS_URL": (shared_data / "binance").as_uri(), "PRICEPIPE_REPLAY_HISTORY_DAYS": "0",
           "PRICEPIPE_REPLAY_END": "2024-01-01", "PRICEPIPE_REPLAY_TRADES": ""}
    run = subprocess.Popen([str(Path(sys.executable).parent / "pricepipe"), "run"], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            line = run.stdout.readline()
            assert line, f"pricepipe run ended early:\n{''.join(lines)}"
            lines.append(line)
            if line.startswith("[run] logs in"):
                break
        assert any(f"Dagster UI  http://127.0.0.1:{ui_port}" in line for line in lines), lines
        assert requests.get(f"http://127.0.0.1:{ui_port}/server_info", timeout=10).status_code == 200
        assert requests.get(f"http://127.0.0.1:{api_port}/health", timeout=10).json()["cassandra"] is True
    finally:
        run.send_signal(signal.SIGINT)
        output, _ = run.communicate(timeout=90)
    assert run.returncode == 0, "".join(lines) + output
    assert output.rstrip().endswith("[run] stopped")
    assert "stopped kafka" not in output  # it was already serving, so it is not this command's to stop
    assert processes_mentioning(str(ui_port)) == [] and processes_mentioning(str(api_port)) == []
    assert "exchanges unreachable" in (tmp_path / "state" / "logs" / "feed.log").read_text()
