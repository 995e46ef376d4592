"""The Dagster instance pricepipe writes: the user's own file left alone, the project's kept current,
and PostgreSQL storage chosen by one setting."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
import yaml

from pricepipe_assets.cli import instance
from pricepipe_assets.settings import Settings, SettingsError


def settings_in(tmp_path: Path) -> Settings:
    return Settings.from_env({"PRICEPIPE_STATE_DIR": str(tmp_path / "state")})


def test_a_dagster_yaml_the_user_put_in_dagster_home_is_never_overwritten(tmp_path: Path) -> None:
    home = tmp_path / "mine"
    home.mkdir()
    (home / "dagster.yaml").write_text("run_coordinator: {}\n")
    chosen, said = instance.dagster_home(settings_in(tmp_path), {"DAGSTER_HOME": str(home)})
    assert chosen == home
    assert (home / "dagster.yaml").read_text() == "run_coordinator: {}\n"
    assert said == f"[run] dagster: DAGSTER_HOME {home} keeps its own dagster.yaml (not overwritten)"


def test_an_instance_the_user_keeps_without_dagster_yaml_is_left_on_dagsters_defaults(tmp_path: Path) -> None:
    home = tmp_path / "mine"
    (home / "storage").mkdir(parents=True)
    _, said = instance.dagster_home(settings_in(tmp_path), {"DAGSTER_HOME": str(home)})
    assert not (home / "dagster.yaml").exists()
    assert "left as it is" in said


def project_dagster_yaml() -> str:
    return (instance.repo_root() / "infra" / "dagster" / "dagster.yaml").read_text()


def test_a_postgres_url_puts_the_instance_storage_in_that_database_without_writing_the_url(tmp_path: Path) -> None:
    url = "postgresql://dagster:secret@127.0.0.14:5432/dagster"
    settings = Settings.from_env({"PRICEPIPE_STATE_DIR": str(tmp_path / "state"), "PRICEPIPE_DAGSTER_POSTGRES_URL": url})
    home, _ = instance.dagster_home(settings, {})
    text = (home / "dagster.yaml").read_text()
    assert text.startswith(instance.PROJECT_MARK + project_dagster_yaml())
    assert yaml.safe_load(text)["storage"] == {"postgres": {"postgres_url": {"env": "PRICEPIPE_DAGSTER_POSTGRES_URL"}}}
    assert "secret" not in text
    assert "storage" not in yaml.safe_load(instance.project_dagster_yaml(settings_in(tmp_path)))


def test_a_dagster_postgres_url_that_is_not_one_is_a_configuration_error() -> None:
    with pytest.raises(SettingsError, match="PRICEPIPE_DAGSTER_POSTGRES_URL: expected a URL starting with one of postgresql://"):
        Settings.from_env({"PRICEPIPE_DAGSTER_POSTGRES_URL": "mysql://x@y/z"})


def test_a_new_dagster_home_gets_the_projects_file_and_keeps_following_it(tmp_path: Path) -> None:
    home = tmp_path / "new"
    instance.dagster_home(settings_in(tmp_path), {"DAGSTER_HOME": str(home)})
    written = (home / "dagster.yaml").read_text()
    assert written == instance.PROJECT_MARK + project_dagster_yaml()
    with dg.DagsterInstance.from_config(str(home)) as dagster_instance:
        assert type(dagster_instance.run_coordinator).__name__ == "QueuedRunCoordinator"
    (home / "dagster.yaml").write_text(instance.PROJECT_MARK + "# the project's file of an older version\n")
    instance.dagster_home(settings_in(tmp_path), {"DAGSTER_HOME": str(home)})
    assert (home / "dagster.yaml").read_text() == written


def test_the_default_dagster_home_always_has_the_projects_current_file(tmp_path: Path) -> None:
    default = tmp_path / "state" / "dagster"
    default.mkdir(parents=True)
    (default / "dagster.yaml").write_text("telemetry: {enabled: true}\n")  # copied by an older pricepipe, unmarked
    home, said = instance.dagster_home(settings_in(tmp_path), {})
    assert home == default
    assert (default / "dagster.yaml").read_text() == instance.PROJECT_MARK + project_dagster_yaml()
    assert said == f"[run] dagster: home {default} with the project's dagster.yaml"
