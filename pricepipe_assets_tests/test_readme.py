"""The README's lists are the definitions' and the settings' own: a newcomer who reads that a sensor,
asset, topic, resource or setting exists finds it in the UI or in ``pricepipe config``, and the
README names every one of them."""

from __future__ import annotations

import re
from pathlib import Path

import dagster as dg
import pytest

from pricepipe_assets.settings import Settings

README = Path(__file__).resolve().parents[1] / "README.md"
NAME = re.compile(r"`([a-z][a-z0-9_]*)`")


def _named(text: str) -> set[str]:
    """Every lower-case identifier the text puts in backticks."""
    return set(NAME.findall(text))


def _table(text: str, header: str) -> list[str]:
    """The first column of the Markdown table whose header row starts with ``header``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append(line.split("|")[1].strip())
    return rows


@pytest.fixture(scope="module")
def readme() -> str:
    return README.read_text()


@pytest.fixture(scope="module")
def repository() -> dg.Definitions:
    from pricepipe_assets.definitions import defs

    return defs


def test_the_configuration_table_is_every_setting_in_order(readme: str) -> None:
    documented = [row.strip("`") for row in _table(readme, "| variable | default | meaning |")]
    assert documented == [name for name, _, _ in Settings.documentation()]


def test_the_resources_table_is_every_resource(readme: str, repository: dg.Definitions) -> None:
    named = {row.split("`")[1] for row in _table(readme, "| resource | what it gives assets |")}
    assert named == set(repository.resources)


@pytest.mark.parametrize("suffix", ["_sensor", "_schedule"])
def test_the_sensors_and_schedules_named_are_the_definitions(readme: str, repository: dg.Definitions,
                                                             suffix: str) -> None:
    repo = repository.get_repository_def()
    defined = {d.name for d in (repo.sensor_defs if suffix == "_sensor" else repo.schedule_defs)}
    assert {name for name in _named(readme) if name.endswith(suffix)} == defined


def test_every_asset_is_named_and_every_asset_like_name_is_an_asset(readme: str, repository: dg.Definitions) -> None:
    assets = {spec.key.to_user_string() for spec in repository.resolve_all_asset_specs()}
    named = _named(readme)
    assert assets - named == set()
    looks_like_an_asset = re.compile(r".+_(topic|archive|compaction|lake|live|feed|model|features)$")
    assert {name for name in named if looks_like_an_asset.match(name)} - assets == set()


def test_the_checks_catch_a_missing_name() -> None:
    text = "| resource | what it gives assets |\n| --- | --- |\n| `kafka` (`KafkaResource`) | x |\n"
    assert _table(text, "| resource |") == ["`kafka` (`KafkaResource`)"]
    assert "trades_topic" not in _named("the topics `candles_1m_topic`, ..., `deadletter_topic`")
