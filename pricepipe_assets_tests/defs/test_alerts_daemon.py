"""A real ``dagster-daemon`` evaluating the alert sensors, stopped and started again in the middle of
an incident: the webhook still receives exactly one opening and one resolution."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import dagster as dg
import pytest

from pricepipe_assets_tests.support.alert_receivers import HttpReceiver, serve_http

REPO = Path(__file__).resolve().parents[2]
SENSOR = "asset_alerts_sensor"
CODE = """import dagster as dg

from pricepipe_assets.defs.alerts import build_alert_sensors
from pricepipe_assets.settings import get_settings

defs = dg.Definitions(sensors=build_alert_sensors(get_settings(), interval_s=1))
"""

pytestmark = pytest.mark.timeout(420)


@pytest.fixture()
def http_receiver() -> Iterator[HttpReceiver]:
    yield from serve_http()


def _start_daemon(home: Path, url: str, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "DAGSTER_HOME": str(home), "PRICEPIPE_ALERT_WEBHOOK_URL": url,
           "PYTHONPATH": os.pathsep.join([str(REPO), str(home)])}
    with log.open("ab") as out:
        return subprocess.Popen([str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w",
                                 str(home / "workspace.yaml")], cwd=home, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def _stop(daemon: subprocess.Popen[bytes]) -> None:
    """Stops the daemon and the code server it started (its own process group, nothing else)."""
    if daemon.poll() is None:
        os.killpg(daemon.pid, signal.SIGTERM)
        try:
            daemon.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait()


def _last_tick(instance: dg.DagsterInstance) -> float:
    states = [s for s in instance.all_instigator_state() if s.name == SENSOR]
    data = states[0].instigator_data if states else None
    return float(getattr(data, "last_tick_timestamp", None) or 0.0)


def _tick_statuses(instance: dg.DagsterInstance) -> list[str]:
    """What the UI shows for the sensor's recent ticks (newest first): the instance's tick records."""
    [state] = [s for s in instance.all_instigator_state() if s.name == SENSOR]
    ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=20)
    return [tick.skip_reason or "" for tick in ticks]


def _wait(condition: Callable[[], bool], what: str, log: Path, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}; daemon log:\n{log.read_text()[-4000:]}")
        time.sleep(0.5)


def _gap_report(instance: dg.DagsterInstance, missing: int) -> None:
    instance.report_runless_asset_event(dg.AssetCheckEvaluation(
        asset_key=dg.AssetKey("candles_lake"), check_name="candles_lake_gaps", passed=missing == 0,
        severity=dg.AssetCheckSeverity.WARN, metadata={"missing_minutes": missing}))


def test_a_daemon_restarted_mid_incident_sends_one_opening_and_one_resolution(
        tmp_path: Path, http_receiver: HttpReceiver) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    (home / "alert_location.py").write_text(CODE)
    (home / "workspace.yaml").write_text("load_from:\n  - python_module:\n      module_name: alert_location\n"
                                         f"      working_directory: {home}\n      location_name: alerts_test\n")
    log = tmp_path / "daemon.log"
    instance = dg.DagsterInstance.from_config(str(home))

    def events() -> list[tuple[str, str]]:
        return [(body["event"], body["key"]) for body in http_receiver.bodies]

    key = "check:candles_lake:candles_lake_gaps"

    daemon = _start_daemon(home, http_receiver.url, log)
    try:
        _wait(lambda: _last_tick(instance) > 0, "the daemon's first tick", log)
        _gap_report(instance, 10)
        _wait(lambda: events() == [("open", key)], "the incident opened", log)
        _wait(lambda: f"1 open: {key}" in _tick_statuses(instance), "the UI's tick history shows the incident", log)
        _stop(daemon)
        restarted = time.time()
        daemon = _start_daemon(home, http_receiver.url, log)
        _wait(lambda: _last_tick(instance) > restarted + 2, "the restarted daemon ticked a few times", log)
        assert events() == [("open", key)], "the restarted daemon did not open the incident again"
        _gap_report(instance, 0)
        _wait(lambda: len(events()) == 2, "the incident resolved", log)
        time.sleep(3)
        assert events() == [("open", key), ("resolve", key)]
    finally:
        _stop(daemon)
        instance.dispose()
