"""Text for people: shapes, channel lists and percentages as they read, and model- and
file-supplied text made safe to show (on a terminal, in one line, in Markdown).

A model can name a layer ``"\\x1b[2J"`` (clear the screen) or ``"a\\r\\nError: ..."`` (fake a
line); a file name can hold a newline or bytes that are not UTF-8. :func:`visible` writes every
control character as an escape (``\\x1b``, ``\\n``, ``\\r``, ``\\t``, ``\\u202e``) and a byte of a
non-UTF-8 name as ``\\xff``, so what is printed is exactly one line of plain characters.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

# C0 and C1 controls, DEL, line/paragraph separators, bidi overrides and isolates, lone
# surrogates (the undecodable bytes of a file name).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(found: re.Match) -> str:
    char = found.group()
    code = ord(char)
    if char in _NAMED:
        return _NAMED[char]
    if 0xDC80 <= code <= 0xDCFF:  # surrogateescape: the byte that was not UTF-8
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def visible(text) -> str:
    """``text`` with every control character escaped: safe on a terminal, always one line."""
    return _UNSAFE.sub(_escape, str(text))


_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+!|~])")


def markdown_cell(text) -> str:
    """Text that renders literally in a Markdown table cell (GitHub job summaries): controls
    escaped, Markdown punctuation backslash-escaped (no links, images or emphasis), HTML
    brackets as entities, whitespace runs as one space."""
    value = "" if text is None else visible(text)
    value = _MARKDOWN.sub(r"\\\1", value)
    value = value.replace("<", "&lt;").replace(">", "&gt;")
    return " ".join(value.split())


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
