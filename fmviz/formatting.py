"""Numbers, shapes and channel lists as people read them (terminal, Markdown, HTML, errors)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def format_shape(shape: Sequence[int | str | None] | None) -> str:
    """``[N, 3, 224, 224]``: symbolic dims by name, unknown ones as ``?``."""
    if shape is None:
        return "?"
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def channel_ranges(channels: Iterable[int], limit: int | None = None, dash: str = "-") -> str:
    """``0-3, 7, 9-10`` for sorted channel indices; past about ``limit`` channels the list ends
    with ``..., (N in all)``."""
    items = sorted({int(c) for c in channels})
    parts: list[str] = []
    shown = i = 0
    while i < len(items):
        j = i
        while j + 1 < len(items) and items[j + 1] == items[j] + 1:
            j += 1
        parts.append(str(items[i]) if i == j else f"{items[i]}{dash}{items[j]}")
        shown += j - i + 1
        i = j + 1
        if limit is not None and shown >= limit and i < len(items):
            return ", ".join(parts) + f", ... ({len(items)} in all)"
    return ", ".join(parts)


def percent(part: float, whole: float) -> str:
    """``12.5%`` of ``part`` in ``whole`` (``0%`` when there is no whole)."""
    return f"{100 * part / whole:.1f}%" if whole else "0%"
