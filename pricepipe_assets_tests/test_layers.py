"""Imports point one way: contract <- Kafka and storage clients <- sources, transforms, forecasting <-
the stream worker <- Dagster definitions <- the local servers (infra/) <- the CLI and the code
location; the API uses the contract, the clients and the settings only, the local servers the
settings only; and no module imports itself through others, nor any part of the code itself
through other parts. The benchmarks use what is installed, never the tests' helpers.

Every import is read, the ones inside functions and under ``TYPE_CHECKING`` too, since a lazy
import is still a dependency. docs/architecture.md describes the same layers.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "pricepipe_assets"
# Everything the import graph covers: the package, the web process and the local servers.
ROOTS = (PACKAGE, "api", "infra")

# The layer of each top-level part, lowest first; a module may import its own part and lower layers.
LAYERS: dict[str, int] = {
    "setting_values": 0,
    "settings": 1, "contract": 1,
    "kafka": 2, "storage": 2, "alerts": 2,
    "sources": 3, "transforms": 3, "forecasting": 3,
    "stream": 4,
    "defs": 5,
    # The local servers, beside the package: only the CLI (above them) starts them; they read the settings.
    "infra": 6,
    "cli": 7, "definitions": 7,
}
# What the parts beside the package may use of it: the web process no Dagster, no sources, no
# models; the local servers only the settings, so that `cli -> infra -> settings` points one way.
MAY_IMPORT: dict[str, set[str]] = {"api": {"settings", "contract", "kafka", "storage"},
                                   "infra": {"setting_values", "settings"}}


def _part(module: str) -> str:
    """``pricepipe_assets.storage.lake`` -> ``storage``; any other module -> its top-level package."""
    parts = module.split(".")
    return parts[1] if parts[0] == PACKAGE and len(parts) > 1 else parts[0]


def _module_name(path: Path, base: Path = REPO) -> str:
    """``<base>/infra/local/launcher.py`` -> ``infra.local.launcher``; a package's ``__init__`` is the package."""
    parts = path.relative_to(base).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, base: Path = REPO) -> set[str]:
    """Every module ``path`` names, and each ``module.name`` it imports from one (which may be a module
    too); relative imports are resolved against the module's own package."""
    package = _module_name(path, base).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            anchor = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join([*anchor, *([node.module] if node.module else [])])
            modules.add(module)
            modules.update(f"{module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
    return modules


def _module_files(root: str, base: Path = REPO) -> list[Path]:
    return sorted((base / root).rglob("*.py"))


def _violations(root: str) -> list[str]:
    found = []
    for path in _module_files(root):
        rel = path.relative_to(REPO).with_suffix("")
        own = _part(_module_name(path))
        for module in _imports(path):
            part = _part(module)
            if part not in LAYERS or part == own:
                continue
            if own in LAYERS and LAYERS[part] >= LAYERS[own]:
                found.append(f"{rel}: {module} (layer {LAYERS[part]} from layer {LAYERS[own]})")
            elif own in MAY_IMPORT and part not in MAY_IMPORT[own]:
                found.append(f"{rel}: {module}")
    return found


def _import_graph(roots: Iterable[str], base: Path = REPO) -> dict[str, set[str]]:
    """Module -> the modules of ``roots`` it imports. ``from a.b import c`` is an edge to ``a.b.c``
    when that is a module, and to ``a.b`` in any case, since Python runs ``a/b/__init__.py`` first."""
    files = {_module_name(path, base): path for root in roots for path in _module_files(root, base)}
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        targets = set()
        for name in _imports(path, base):
            while name and name not in files:
                name = name.rpartition(".")[0]
            if name and name != module:
                targets.add(name)
        graph[module] = targets
    return graph


def _part_graph(graph: Mapping[str, set[str]]) -> dict[str, set[str]]:
    """The same imports between parts (``_part``): a part's modules may import each other, but two
    parts that import each other, even through different modules, have no direction."""
    parts: dict[str, set[str]] = {}
    for module, targets in graph.items():
        parts.setdefault(_part(module), set()).update(_part(target) for target in targets)
    return {part: targets - {part} for part, targets in parts.items()}


def _cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan's algorithm), sorted: each
    holds at least one import cycle, and every cycle lies within one of them."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def test_every_part_of_the_package_has_a_layer() -> None:
    parts = {p.name.removesuffix(".py") for p in (REPO / PACKAGE).iterdir()
             if p.name != "__init__.py" and (p.suffix == ".py" or (p / "__init__.py").is_file())}
    assert parts <= set(LAYERS), f"parts without a layer: {sorted(parts - set(LAYERS))}"


def test_package_imports_point_down_the_layers_only() -> None:
    assert _violations(PACKAGE) == []


def test_the_api_imports_only_the_contract_the_clients_and_the_settings() -> None:
    assert _violations("api") == []


def test_the_local_servers_import_only_the_settings() -> None:
    assert _violations("infra") == []


def test_no_module_imports_itself_through_others() -> None:
    assert _cycles(_import_graph(ROOTS)) == []


def test_no_part_imports_itself_through_other_parts() -> None:
    assert _cycles(_part_graph(_import_graph(ROOTS))) == []


def _plant(base: Path, modules: Mapping[str, str]) -> None:
    for name, source in modules.items():
        path = base / f"{name.replace('.', '/')}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)


def test_the_cycle_check_finds_a_cycle_through_a_lazy_and_a_relative_import(tmp_path: Path) -> None:
    _plant(tmp_path, {"planted.__init__": "", "planted.low": "def later():\n    from planted.high import X\n",
                      "planted.high": "from .middle import Y\nX = 1\n", "planted.middle": "from . import low\n",
                      "planted.apart": "import planted.low\n"})
    assert _cycles(_import_graph(["planted"], tmp_path)) == [["planted.high", "planted.low", "planted.middle"]]


def test_the_cycle_check_finds_two_packages_that_import_each_other_through_different_modules(tmp_path: Path) -> None:
    _plant(tmp_path, {"front.__init__": "", "front.cli": "import back.servers\n", "front.settings": "",
                      "back.__init__": "", "back.servers": "from front.settings import *\n"})
    graph = _import_graph(["front", "back"], tmp_path)
    assert _cycles(graph) == []
    assert _cycles(_part_graph(graph)) == [["back", "front"]]


@pytest.mark.parametrize("module", ["api.app", "pricepipe_assets.contract.records", "pricepipe_assets.storage.cassandra",
                                    "pricepipe_assets.kafka.batches"])
def test_the_lower_layers_and_the_web_process_run_without_dagster(module: str) -> None:
    check = f"import {module}, sys; assert 'dagster' not in sys.modules, 'dagster was imported'"
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr


def test_no_module_is_over_400_lines() -> None:
    long = {str(p.relative_to(REPO)): n for root in ROOTS
            for p in _module_files(root) if (n := len(p.read_text().splitlines())) > 400}
    assert long == {}


def test_the_benchmarks_import_only_the_installed_package_and_their_own_helpers() -> None:
    """A benchmark measures what is installed; the tests' helpers are not, and may change with the tests."""
    installed = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    allowed = {name.removesuffix("*") for name in installed} | {"benchmarks"}
    first_party = {p.name.removesuffix(".py") for p in REPO.iterdir()
                   if p.suffix == ".py" or (p.is_dir() and any(p.glob("*.py")))}
    assert "pricepipe_assets_tests" in first_party - allowed
    found = sorted(f"{path.relative_to(REPO)}: {module}" for path in _module_files("benchmarks")
                   for module in _imports(path)
                   if module.split(".")[0] in first_party - allowed)
    assert found == []
