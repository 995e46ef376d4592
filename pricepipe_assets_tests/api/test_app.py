"""The web process stands on the contract and the storage clients only."""

from __future__ import annotations

import subprocess
import sys


def test_the_api_imports_no_dagster() -> None:
    code = "import api.app, sys; print(sorted(m for m in sys.modules if m.split('.')[0].startswith('dagster')))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env={"PRICEPIPE_API_KEY": "", "PATH": ""})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
