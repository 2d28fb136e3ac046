"""Crashes in native code (a SIGSEGV inside onnxruntime) must not end fmviz silently.

:func:`enable_faulthandler` makes Python print the stack on a fatal signal, to stderr.
:func:`named_call` runs a function inside a frame whose name is a message: a fatal signal's
stack dump shows it as one line (``File ..., line N in <message>``), the only way to say
something at that point, since no Python code runs after such a signal. The CLI uses it to point
at ``--debug``; a scan to name the batch that was running.
"""

from __future__ import annotations

import contextlib
import faulthandler
import sys
import types
from collections.abc import Callable
from typing import Any

from .text import visible

CRASH_HINT = (
    "<- fmviz crashed in native code (onnxruntime?); run again with --debug for every "
    "thread's stack"
)


def enable_faulthandler(debug: bool = False) -> None:
    """Dump the stack (every thread's with ``debug``) to stderr on a fatal signal; a no-op when
    it is already enabled (under pytest) or stderr has no file descriptor."""
    if faulthandler.is_enabled():
        return
    # stderr replaced by an object without a file descriptor: nothing to enable
    with contextlib.suppress(AttributeError, ValueError, OSError):
        faulthandler.enable(file=sys.stderr, all_threads=debug)


def _call(function, args, kwargs):
    return function(*args, **kwargs)


def named_call(label: str, function: Callable[..., Any], *args, **kwargs) -> Any:
    """``function(*args, **kwargs)``, run in a frame named ``label`` (one line, escaped)."""
    code = _call.__code__.replace(co_name=visible(label)[:300])
    return types.FunctionType(code, {"__builtins__": __builtins__})(function, args, kwargs)
