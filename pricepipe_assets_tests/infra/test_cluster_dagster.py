"""Two Dagster webservers and a daemon sharing one instance on the local cluster's PostgreSQL.

Each webserver has a Dagster home of its own, written by `pricepipe`'s own instance code from the
settings (the project's dagster.yaml with the PostgreSQL storage block), as two machines would have;
one code server serves the code to all. A run launched through one webserver's GraphQL is queued,
dequeued by the daemon and finished, and the other webserver sees it and its events; the daemon
beside one webserver is healthy as the other sees it. Each test has a database of its own.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from infra.local import cluster, launcher, postgres
from pricepipe_assets.cli import instance, supervisor
from pricepipe_assets.cli.supervisor import Child
from pricepipe_assets.settings import Settings
from pricepipe_assets.storage.cassandra import cassandra_cluster

BIN = Path(sys.executable).parent
JOB = "candles_1d_job"  # no message on its topic: the run reads nothing and finishes in seconds
LAUNCH = """mutation($job: String!) { launchRun(executionParams: {selector: {repositoryLocationName: "pricepipe",
  repositoryName: "__repository__", jobName: $job}, runConfigData: {}}) {
  __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }"""
RUN = """query($id: ID!) { runOrError(runId: $id) { __typename ... on Run { status jobName
  eventConnection { events { __typename ... on ErrorEvent { error { message } } } } } } }"""
DAEMONS = "{ instance { daemonHealth { allDaemonStatuses { daemonType healthy } } } }"


@pytest.fixture
def database(cluster_layout: launcher.Layout) -> Iterator[str]:
    """A database of this test's own on the cluster's server, dropped afterwards."""
    import psycopg2

    name = f"test_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(postgres.URL)
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE {name}")
        yield postgres.URL.rsplit("/", 1)[0] + f"/{name}"
        with admin.cursor() as cursor:
            cursor.execute(f"DROP DATABASE {name} WITH (FORCE)")
    finally:
        admin.close()


def _environment(tmp_path: Path, machine: str, database: str, unique: str) -> dict[str, str]:
    """One machine's environment: its own Dagster home, state and webserver port, the shared instance."""
    return {**os.environ, **cluster.environment(), "DAGSTER_HOME": str(tmp_path / machine / "dagster"),
            "PRICEPIPE_DAGSTER_POSTGRES_URL": database, "PRICEPIPE_STATE_DIR": str(tmp_path / machine / "state"),
            "PRICEPIPE_DAGSTER_PORT": str(supervisor.free_port()), "PRICEPIPE_LAKE_URI": str(tmp_path / "lake"),
            "PRICEPIPE_TOPIC_PREFIX": f"test.{unique}.", "PRICEPIPE_KEYSPACE": f"test_{unique}"}


def _graphql(settings: Settings, query: str, **variables: str) -> dict[str, Any]:
    response = requests.post(f"http://127.0.0.1:{settings.dagster_port}/graphql",
                             json={"query": query, "variables": variables}, timeout=30)
    response.raise_for_status()
    return response.json()["data"]


def _wait_for(what: str, check: Any, timeout_s: float) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            answer = check()
            if answer:
                return answer
        except (requests.RequestException, OSError, KeyError, TypeError):
            pass
        time.sleep(1)
    raise AssertionError(f"{what}: not within {timeout_s:.0f} s")


def _launch(settings: Settings) -> str:
    launched = _graphql(settings, LAUNCH, job=JOB)["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    return launched["run"]["runId"]


def _finished(settings: Settings, run_id: str) -> dict[str, Any] | None:
    run = _graphql(settings, RUN, id=run_id)["runOrError"]
    return run if run.get("status") in ("SUCCESS", "FAILURE", "CANCELED") else None


def _errors(run: dict[str, Any]) -> list[str]:
    """What the run's failed steps said, for a failure message that says why."""
    return [e["error"]["message"] for e in run["eventConnection"]["events"] if (e.get("error") or {}).get("message")]


def test_two_webservers_and_a_daemon_on_one_postgresql_instance_see_each_others_runs(
        database: str, tmp_path: Path) -> None:
    unique = uuid.uuid4().hex[:10]
    machines = {name: _environment(tmp_path, name, database, unique) for name in ("a", "b")}
    settings = {name: Settings.from_env(env) for name, env in machines.items()}
    for name, env in machines.items():
        home, _ = instance.dagster_home(settings[name], env)
        assert "postgres_url" in (home / "dagster.yaml").read_text()
    instance.prepare_instance(machines["a"], BIN, tmp_path / "instance.log")
    port = supervisor.free_port()
    server = supervisor.code_server(settings["a"], BIN, port)
    workspace = supervisor.write_workspace(tmp_path / "workspace.yaml", port, "pricepipe")
    processes: dict[str, Child] = {}
    for name in machines:
        for child in supervisor.children(settings[name], BIN, workspace):
            if child.name == "dagster-webserver" or (name == "a" and child.name == "dagster-daemon"):
                processes[f"{child.name} {name}"] = child
    try:
        server.start(machines["a"], instance.repo_root())
        assert supervisor.wait_port("127.0.0.1", port, 120, lambda: not server.failed())
        for label, child in processes.items():
            child.start(machines[label.rsplit(" ", 1)[1]], instance.repo_root())
        for name in machines:
            _wait_for(f"webserver {name}", lambda name=name: _graphql(settings[name], DAEMONS), 120)

        from_a = _launch(settings["a"])
        seen_by_b = _wait_for("A's run finished, as B sees it", lambda: _finished(settings["b"], from_a), 180)
        assert (seen_by_b["status"], seen_by_b["jobName"]) == ("SUCCESS", JOB), _errors(seen_by_b)
        assert {"RunStartEvent", "RunSuccessEvent"} <= {e["__typename"] for e in seen_by_b["eventConnection"]["events"]}
        from_b = _launch(settings["b"])
        seen_by_a = _wait_for("B's run finished, as A sees it", lambda: _finished(settings["a"], from_b), 180)
        assert seen_by_a["status"] == "SUCCESS", _errors(seen_by_a)
        daemons = _graphql(settings["b"], DAEMONS)["instance"]["daemonHealth"]["allDaemonStatuses"]
        assert {d["daemonType"] for d in daemons if d["healthy"]} >= {"SENSOR", "QUEUED_RUN_COORDINATOR"}, daemons
        assert all(not child.failed() for child in [server, *processes.values()])
    finally:
        supervisor.stop_all([server, *processes.values()])
        keyspace = cassandra_cluster(settings["a"])
        keyspace.session().execute(f"DROP KEYSPACE IF EXISTS {settings['a'].keyspace}")
        keyspace.close()
