"""Model- and file-supplied text made safe to show: on a terminal, in one line, in Markdown.

A model can name a layer ``"\\x1b[2J"`` (clear the screen) or ``"a\\r\\nError: ..."`` (fake a
line); a file name can hold a newline or bytes that are not UTF-8. :func:`visible` writes every
control character as an escape (``\\x1b``, ``\\n``, ``\\r``, ``\\t``, ``\\u202e``) and a byte of a
non-UTF-8 name as ``\\xff``, so what is printed is exactly one line of plain characters.
"""

from __future__ import annotations

import re

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
