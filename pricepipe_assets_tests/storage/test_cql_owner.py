"""Every CQL statement of the platform and the API is written in ``pricepipe_assets/storage/``.

One owner per table means a schema change is made, and reviewed, in one module, and the
consistency, preparation and partition-key discipline of every statement can be read there.
``infra/`` is outside the rule: it is local server tooling, which runs its own CQL to wait for
Cassandra and to set up roles before any pricepipe code runs.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
OWNER = REPO / "pricepipe_assets" / "storage"

# A statement's opening words, case-insensitively: a keyword followed by the shape CQL gives it,
# so prose such as "delete this line" or "create or upgrade" is not mistaken for a statement.
_SCHEMA_OBJECT = r"(TABLE|KEYSPACE|(CUSTOM\s+)?INDEX|TYPE|ROLE|USER|MATERIALIZED\s+VIEW|FUNCTION|AGGREGATE|TRIGGER)"
CQL = re.compile(
    r"\s*("
    r"SELECT\s+.+?\s+FROM\s+\w"
    r"|INSERT\s+INTO\s+\w"
    r"|UPDATE\s+[\w.]+\s+(USING\s+.+?\s+)?SET\s"
    r"|DELETE\s+(.+?\s+)?FROM\s+\w"
    rf"|(CREATE|ALTER|DROP)\s+(OR\s+REPLACE\s+)?{_SCHEMA_OBJECT}\s"
    r"|TRUNCATE\s+(TABLE\s+)?\w"
    r"|BEGIN\s+(UNLOGGED\s+|COUNTER\s+)?BATCH\b"
    r")",
    re.IGNORECASE | re.DOTALL,
)


def _docstrings(tree: ast.AST) -> set[int]:
    """The ids of the docstring nodes of the module, its classes and its functions."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def _text(node: ast.AST) -> str | None:
    """The text a string expression builds: a literal, an f-string with each replacement field as
    a placeholder name, or a ``+`` of those; None for anything else."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(part.value if isinstance(part, ast.Constant) else "field" for part in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _text(node.left), _text(node.right)
        return None if left is None or right is None else left + right
    return None


def cql_strings(path: Path) -> list[str]:
    """``path:line`` of every string in ``path`` that reads as a CQL statement, docstrings aside."""
    tree = ast.parse(path.read_text(), filename=str(path))
    skipped = _docstrings(tree)
    lines = set()
    for node in ast.walk(tree):
        if id(node) not in skipped and (text := _text(node)) is not None and CQL.match(text):
            lines.add(node.lineno)
    return [f"{path}:{line}" for line in sorted(lines)]


def _sources_outside_storage() -> list[Path]:
    sources = [*(REPO / "pricepipe_assets").rglob("*.py"), *(REPO / "api").rglob("*.py")]
    return [path for path in sources if not path.is_relative_to(OWNER)]


def test_no_cql_statement_is_written_outside_the_storage_package() -> None:
    sources = _sources_outside_storage()
    assert len(sources) > 40
    assert [hit for path in sources for hit in cql_strings(path)] == []


def test_the_storage_package_holds_statements_the_check_recognises() -> None:
    """The pattern matches the statements it is meant to keep in ``storage/``, so the test above
    passes because they moved, not because it recognises nothing."""
    assert len([hit for path in OWNER.rglob("*.py") for hit in cql_strings(path)]) > 30


def test_the_check_finds_planted_statements_and_ignores_prose(tmp_path: Path) -> None:
    planted = tmp_path / "planted.py"
    planted.write_text(
        '"""SELECT a FROM b in a docstring is prose."""\n'
        'ROWS = "select ts, price from trades WHERE symbol = ?"\n'
        'UPDATE = f"UPDATE {table} SET actual = ? WHERE symbol = ?"\n'
        'DDL = ("\\nCREATE TABLE IF NOT EXISTS t "\n'
        '       "(k int PRIMARY KEY)")\n'
        'DROP = "DROP " + "TABLE t"\n'
        'BATCH = "BEGIN UNLOGGED BATCH INSERT INTO t (k) VALUES (1) APPLY BATCH"\n'
        'HELP = "delete this line to keep your own edits; create or upgrade the storage; update the cache"\n'
        'DELETE = "DELETE FROM api_keys WHERE name = ?"\n'
        'TRUNCATE = "truncate candles"\n')
    assert cql_strings(planted) == [f"{planted}:{line}" for line in (2, 3, 4, 6, 7, 9, 10)]
