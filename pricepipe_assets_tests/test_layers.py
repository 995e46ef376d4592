"""Imports point one way: contract <- Kafka and storage clients <- sources, transforms, forecasting <-
the stream worker <- Dagster definitions <- the CLI and the code location; the API uses the contract,
the clients and the settings only.

Every import in the package is read, the ones inside functions too, since a lazy import is still
a dependency. docs/architecture.md describes the same layers.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "pricepipe_assets"

# The layer of each top-level part, lowest first; a module may import its own part and lower layers.
LAYERS: dict[str, int] = {
    "setting_values": 0,
    "settings": 1, "contract": 1,
    "kafka": 2, "storage": 2,
    "sources": 3, "transforms": 3, "forecasting": 3,
    "stream": 4,
    "defs": 5,
    "cli": 6, "definitions": 6,
}
# What the web process may use: no Dagster, no sources, no models.
API_MAY_IMPORT = {"settings", "contract", "kafka", "storage"}


def _part(module: str) -> str | None:
    """``pricepipe_assets.storage.lake`` -> ``storage``; None for modules outside the package."""
    parts = module.split(".")
    return parts[1] if parts[0] == PACKAGE and len(parts) > 1 else None


def _imports(path: Path) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module)
            modules.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
    return modules


def _module_files(root: str) -> list[Path]:
    return sorted((REPO / root).rglob("*.py"))


def _violations(root: str, allowed: dict[str, set[str]] | None = None) -> list[str]:
    found = []
    for path in _module_files(root):
        rel = path.relative_to(REPO).with_suffix("")
        own = rel.parts[1] if root == PACKAGE and len(rel.parts) > 1 else None
        for module in _imports(path):
            part = _part(module)
            if part is None or part not in LAYERS or part == own:
                continue
            if root == PACKAGE:
                if own in LAYERS and LAYERS[part] >= LAYERS[own]:
                    found.append(f"{rel}: {module} (layer {LAYERS[part]} from layer {LAYERS[own]})")
            elif part not in API_MAY_IMPORT:
                found.append(f"{rel}: {module}")
    return found


def test_every_part_of_the_package_has_a_layer() -> None:
    parts = {p.name.removesuffix(".py") for p in (REPO / PACKAGE).iterdir()
             if p.name != "__init__.py" and (p.suffix == ".py" or (p / "__init__.py").is_file())}
    assert parts <= set(LAYERS), f"parts without a layer: {sorted(parts - set(LAYERS))}"


def test_package_imports_point_down_the_layers_only() -> None:
    assert _violations(PACKAGE) == []


def test_the_api_imports_only_the_contract_the_clients_and_the_settings() -> None:
    assert _violations("api") == []


@pytest.mark.parametrize("module", ["api.app", "pricepipe_assets.contract.records", "pricepipe_assets.storage.cassandra",
                                    "pricepipe_assets.kafka.batches"])
def test_the_lower_layers_and_the_web_process_run_without_dagster(module: str) -> None:
    check = f"import {module}, sys; assert 'dagster' not in sys.modules, 'dagster was imported'"
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr


def test_no_module_is_over_400_lines() -> None:
    long = {str(p.relative_to(REPO)): n for root in (PACKAGE, "api", "infra")
            for p in _module_files(root) if (n := len(p.read_text().splitlines())) > 400}
    assert long == {}
