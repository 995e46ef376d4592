"""The Dagster instance pricepipe's processes share: which home, which ``dagster.yaml``, which storage.

One place decides it for ``pricepipe run`` and for ``pricepipe dagster-instance`` (what a container
or a second machine runs before its Dagster processes start), so both write the same file from the
same settings: the project's instance settings, on SQLite by default or on PostgreSQL when
``PRICEPIPE_DAGSTER_POSTGRES_URL`` is set.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from pathlib import Path

from pricepipe_assets.settings import Settings

# First line of the dagster.yaml this command writes: a file with it is the project's and is kept
# in step with infra/dagster/dagster.yaml; a file without it is someone's own and is never touched.
PROJECT_MARK = ("# written by `pricepipe run` from infra/dagster/dagster.yaml and kept in step with it; "
                "delete this line to keep your own edits\n")


def repo_root() -> Path:
    """The checkout pricepipe runs from: the project's ``pyproject.toml`` and ``infra/dagster`` are read there."""
    return Path(__file__).resolve().parents[2]


def project_dagster_yaml(settings: Settings) -> str:
    """The project's ``dagster.yaml`` for these settings: SQLite under the Dagster home by default,
    the PostgreSQL database of ``PRICEPIPE_DAGSTER_POSTGRES_URL`` when that is set."""
    folder = repo_root() / "infra" / "dagster"
    text = PROJECT_MARK + (folder / "dagster.yaml").read_text()
    if settings.dagster_postgres_url:
        text += (folder / "postgres-storage.yaml").read_text()
    return text


def dagster_home(settings: Settings, environ: Mapping[str, str]) -> tuple[Path, str]:
    """The Dagster home to run with, and one line saying whose ``dagster.yaml`` it uses.

    The default home (``<state dir>/dagster``) is the project's: its file follows the project's on
    every start, so an upgrade takes effect. A ``DAGSTER_HOME`` the user chose gets the project's
    file only while it has none of its own and holds nothing else (or holds the file this command
    wrote before); an instance the user set up stays exactly as they configured it.
    """
    chosen = environ.get("DAGSTER_HOME")
    home = Path(chosen) if chosen else settings.state_dir / "dagster"
    target = home / "dagster.yaml"
    ours = target.is_file() and target.read_text().startswith(PROJECT_MARK)
    if chosen and target.exists() and not ours:
        return home, f"[run] dagster: DAGSTER_HOME {home} keeps its own dagster.yaml (not overwritten)"
    if chosen and not target.exists() and home.is_dir() and any(home.iterdir()):
        return home, f"[run] dagster: DAGSTER_HOME {home} has an instance without dagster.yaml; left as it is"
    home.mkdir(parents=True, exist_ok=True)
    project = project_dagster_yaml(settings)
    if not ours or target.read_text() != project:
        target.write_text(project)
    return home, f"[run] dagster: home {home} with the project's dagster.yaml"


def prepare_instance(env: Mapping[str, str], bin_dir: Path, log: Path) -> None:
    """Create or upgrade the Dagster instance's storage before any Dagster process starts.

    The webserver and the daemon start together; on a new ``DAGSTER_HOME`` each would create the
    SQLite storage itself, and two creations at once can leave its schema table with two heads,
    after which the code location fails to load in the process that lost. It runs in a session of its
    own, like the children, so that a Ctrl-C meanwhile ends the platform here instead of killing
    the migration halfway.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        subprocess.run([str(bin_dir / "dagster"), "instance", "migrate"], stdout=out, stderr=subprocess.STDOUT,
                       stdin=subprocess.DEVNULL, env=dict(env), cwd=repo_root(), check=True, timeout=300,
                       start_new_session=True)
