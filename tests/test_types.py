"""The package type-checks: mypy (configured in pyproject.toml) is clean on fmviz/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_mypy_is_clean_on_the_package():
    pytest.importorskip("mypy", reason="mypy comes with the test extra: pip install '.[test]'")
    cache = ROOT / ".mypy_cache"
    done = subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", str(cache)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "Success" in done.stdout
