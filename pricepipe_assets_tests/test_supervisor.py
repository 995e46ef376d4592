"""`pricepipe run` brings up Dagster and the API over the real servers and Ctrl-C stops all of it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import pandas as pd
import requests

from pricepipe_assets.resources import CassandraResource, KafkaResource
from pricepipe_assets.settings import Settings
from pricepipe_assets.supervisor import children


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


SOURCE_DAY = "2024-01-01"
KLINES = "binance/data/spot/daily/klines/{symbol}/1m/{symbol}-1m-{day}.zip"
KLINE_COLUMNS = ["open_time", "open", "high", "low", "close", "volume", "close_time", "quote_volume", "trades",
                 "taker_buy_base", "taker_buy_quote", "ignore"]


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
    mirror, the daemon's sensors launch runs that fill Cassandra, and the API answers with the source's
    candles and price; Ctrl-C then leaves no process behind."""
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
    source = pd.read_csv(shared_data / KLINES.format(symbol="BTCUSDT", day=SOURCE_DAY), header=None,
                         names=KLINE_COLUMNS)
    run = subprocess.Popen([str(Path(sys.executable).parent / "pricepipe"), "run"], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    api = f"http://127.0.0.1:{api_port}"
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
                         "health      kafka ok, cassandra ok"):
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
            for r in _sensor_runs(dagster_home)), 120, run)
    finally:
        run.send_signal(signal.SIGINT)
        output, _ = run.communicate(timeout=90)
    assert run.returncode == 0, "".join(lines) + output
    assert output.rstrip().endswith("[run] stopped")
    assert "stopped kafka" not in output  # it was already serving, so it is not this command's to stop
    assert processes_mentioning(str(ui_port)) == [] and processes_mentioning(str(api_port)) == []
    assert "exchanges unreachable" in (tmp_path / "state" / "logs" / "feed.log").read_text()
    assert all(r.status != dg.DagsterRunStatus.FAILURE for r in _sensor_runs(dagster_home))


def test_run_starts_the_api_with_the_configured_number_of_uvicorn_workers() -> None:
    def api_command(environ: dict[str, str]) -> list[str]:
        (api,) = [child for child in children(Settings.from_env(environ), Path("/venv/bin")) if child.name == "api"]
        return api.command

    assert api_command({"PRICEPIPE_API_WORKERS": "3"})[-2:] == ["--workers", "3"]
    assert api_command({})[-2:] == ["--workers", str(os.cpu_count() or 1)]
