"""Security basics that hold for the whole code base: CQL with values is always prepared, and
credentials reach Dagster as the names of their variables, never as their values."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from pricepipe_assets.defs.resources import build_resources
from pricepipe_assets.settings import Settings

REPO = Path(__file__).resolve().parents[1]
SECRET = "pw-7c1e0b9d-never-shown"


def _unprepared_calls_with_values(path: Path) -> list[str]:
    """``execute(<CQL text>, <values>)`` calls: values bound into unprepared text."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in {"execute", "execute_async"} and len(node.args) >= 2
                and isinstance(node.args[0], (ast.Constant, ast.JoinedStr, ast.BinOp))):
            found.append(f"{path}:{node.lineno}")
    return found


def test_every_cql_statement_with_values_is_a_prepared_statement() -> None:
    sources = [*(REPO / "pricepipe_assets").rglob("*.py"), *(REPO / "api").rglob("*.py")]
    assert len(sources) > 40
    assert [hit for path in sources for hit in _unprepared_calls_with_values(path)] == []


def test_the_check_finds_an_unprepared_statement_with_values(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("session.execute(\"SELECT * FROM candles WHERE symbol = %s\", (symbol,))\n"
                   "session.execute(prepared, (symbol,))\n")
    assert _unprepared_calls_with_values(bad) == [f"{bad}:1"]


def test_credentials_reach_dagster_resources_as_variable_names_only(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"PRICEPIPE_CASSANDRA_USERNAME": "pricepipe", "PRICEPIPE_CASSANDRA_PASSWORD": SECRET, "PRICEPIPE_CASSANDRA_TLS": "1",
           "PRICEPIPE_KAFKA_USERNAME": "pricepipe", "PRICEPIPE_KAFKA_PASSWORD": SECRET,
           "PRICEPIPE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "PRICEPIPE_KAFKA_SASL_MECHANISM": "PLAIN"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    resources = build_resources(Settings.from_env(env))
    for name in ("kafka", "cassandra"):
        assert isinstance(resources[name].password, dg.EnvVar)
        assert SECRET not in repr(resources[name])


SNAPSHOT = """
from dagster._core.remote_representation.external_data import RepositorySnap
from dagster._serdes import serialize_value
from pricepipe_assets.definitions import defs
print(serialize_value(RepositorySnap.from_def(defs.get_repository_def())))
"""


def test_no_secret_reaches_what_the_dagster_ui_is_sent(tmp_path: Path) -> None:
    """The code location's whole snapshot (assets' metadata and tags, jobs, sensors, schedules,
    resources' config), as the webserver receives it, holds none of the secrets' values."""
    secrets = {"PRICEPIPE_KAFKA_PASSWORD": SECRET + "-kafka", "PRICEPIPE_CASSANDRA_PASSWORD": SECRET + "-cassandra",
               "PRICEPIPE_API_KEY": SECRET + "-api",
               "PRICEPIPE_DAGSTER_POSTGRES_URL": f"postgresql://dagster:{SECRET}-pg@127.0.0.1:5432/dagster"}
    env = {**os.environ, **secrets, "DAGSTER_HOME": str(tmp_path), "PRICEPIPE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
           "PRICEPIPE_KAFKA_USERNAME": "pricepipe", "PRICEPIPE_CASSANDRA_USERNAME": "pricepipe",
           "PRICEPIPE_CASSANDRA_TLS": "true"}
    result = subprocess.run([sys.executable, "-c", SNAPSHOT], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert "PRICEPIPE_KAFKA_PASSWORD" in result.stdout  # the resources name the variable
    assert SECRET not in result.stdout + result.stderr
