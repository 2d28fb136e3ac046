"""The README's examples run as written."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent


def _python_block(heading: str) -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index(heading):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_python_api_example_runs(tmp_path, monkeypatch):
    for name in ("models", "samples"):
        (tmp_path / name).symlink_to(ROOT / name)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(_python_block("## Python API"), "README.md", "exec"), namespace)
    assert namespace["result"].inputs_scanned == 3
    assert namespace["maps"].shape[:2] == (1, namespace["probes"][0].channels)
    grid = np.asarray(Image.open(tmp_path / "layer0.png"))
    assert grid.shape[0] > 1 and grid.shape[1] > 1
