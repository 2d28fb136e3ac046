"""Files, folders and ``-`` (paths on stdin) as one ordered, de-duplicated list of inputs."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from ..errors import InputError
from . import input_kind


def collect_inputs(
    items: Sequence[str], stdin: TextIO | None = None, unique: bool = True
) -> list[Path]:
    """Files, folders and ``-`` (newline-separated paths on stdin) as one ordered list.

    Folders are searched recursively for the input kinds fmviz reads, hidden files and folders
    skipped, in sorted order; a path named here that does not exist is an :class:`InputError`
    (raised before anything runs). Paths read from stdin are taken as they are: one that does
    not exist is skipped later like any unreadable input. A file listed twice is scanned once
    (``unique=False``, as ``run`` wants: each time it is named).
    """
    paths: list[Path] = []
    for item in items:
        if item == "-":
            source = stdin if stdin is not None else sys.stdin
            for line in source:
                line = line.strip()
                if not line:
                    continue
                path = Path(line)
                paths.extend(_walk(path) if path.is_dir() else [path])
            continue
        path = Path(item)
        if not path.exists():
            raise InputError(f"{item}: no such file or folder")
        paths.extend(_walk(path) if path.is_dir() else [path])
    if not unique:
        return paths
    seen: dict[str, Path] = {}
    for path in paths:
        seen.setdefault(os.path.normpath(str(path)), path)
    return list(seen.values())


def _walk(folder: Path) -> list[Path]:
    """Input files below ``folder``, sorted, skipping hidden entries and symlink loops."""
    found: list[Path] = []
    seen: set[str] = set()
    for root, dirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith(".") and input_kind(name) is not None:
                found.append(Path(root) / name)
    return sorted(found, key=lambda p: p.relative_to(folder).parts)
