"""The Docker Compose file, checked without Docker: no Docker engine runs here, so what can be
checked offline is that every pricepipe container runs a command this checkout accepts with
settings it parses, that the data flows (a feed publishes), and that the services hang together."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest
import yaml

from pricepipe_assets.cli.main import build_parser
from pricepipe_assets.settings import Settings

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "infra" / "docker-compose.yml"


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())["services"]


def _pricepipe_services(services: dict[str, Any]) -> dict[str, Any]:
    return {name: spec for name, spec in services.items() if spec.get("image") == "pricepipe:local"}


def test_every_pricepipe_container_runs_a_command_this_checkout_accepts(services: dict[str, Any]) -> None:
    pricepipe = _pricepipe_services(services)
    assert set(pricepipe) == {"dagster-webserver", "dagster-daemon", "feed", "api"}
    for name, spec in pricepipe.items():
        program, *arguments = spec["command"]
        if program == "pricepipe":
            build_parser().parse_args(arguments)
        elif program == "uvicorn":
            module, attribute = arguments[0].split(":")
            assert hasattr(importlib.import_module(module), attribute), name
        else:
            assert program in {"dagster-webserver", "dagster-daemon"}, name
            assert (REPO / arguments[arguments.index("-w") + 1]).is_file(), name


def test_the_feed_publishes_and_every_setting_given_is_one_pricepipe_parses(services: dict[str, Any]) -> None:
    feed = services["feed"]
    assert feed["command"][:3] == ["pricepipe", "feed", "--source"]
    for spec in _pricepipe_services(services).values():
        environment = {name: str(value) for name, value in spec["environment"].items()}
        known = {f"PRICEPIPE_{name.upper()}" for name in Settings.__dataclass_fields__}
        assert set(environment) <= known
        settings = Settings.from_env(environment)
        assert settings.kafka_bootstrap == "kafka:9092" and settings.cassandra_hosts == ("cassandra",)


def test_every_dependency_is_a_service_of_the_file(services: dict[str, Any]) -> None:
    for name, spec in services.items():
        depends = spec.get("depends_on", [])
        assert set(depends) <= set(services), name
