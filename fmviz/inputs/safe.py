"""Reading input files safely: only regular files, never blocking, never beyond a budget.

* :func:`open_regular` opens a file without blocking (``O_NONBLOCK``, so a FIFO named ``x.npy``
  cannot hang the open) and refuses anything but a regular file (FIFOs, devices such as
  ``/dev/zero`` behind a link, sockets), naming what it found.
* :func:`check_bytes` refuses an array before it is made when its declared size is over
  :data:`MAX_INPUT_BYTES` (``FMVIZ_MAX_INPUT_BYTES`` in the environment overrides it).
"""

from __future__ import annotations

import math
import os
import stat
from pathlib import Path
from typing import BinaryIO

from ..errors import InputError

# The most one input array (the file's own, the tensor fed, zeros for another input) may take.
MAX_INPUT_BYTES = 1 << 30


def max_input_bytes() -> int:
    """The budget for one input array: ``FMVIZ_MAX_INPUT_BYTES``, else :data:`MAX_INPUT_BYTES`."""
    value = os.environ.get("FMVIZ_MAX_INPUT_BYTES", "").strip()
    if value.isdigit() and int(value) > 0:
        return int(value)
    return MAX_INPUT_BYTES


def human_bytes(count: float) -> str:
    """``1536`` -> ``"1.5 KiB"``; exact bytes below 1 KiB."""
    if count < 1024:
        return f"{int(count)} bytes"
    for unit in ("KiB", "MiB", "GiB", "TiB", "PiB"):
        count /= 1024
        if count < 1024 or unit == "PiB":
            return f"{count:.1f} {unit}"
    return f"{count:.1f} PiB"  # not reached


def file_type(mode: int) -> str | None:
    """What a non-regular file is, in words; None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a special file"


def not_regular(path: Path | str, mode: int) -> InputError | None:
    """The error for ``path`` when ``mode`` is not a regular file's, else None."""
    kind = file_type(mode)
    if kind is None:
        return None
    return InputError(f"{path}: is {kind}, not a regular file; only regular files are inputs")


def check_regular(path: Path | str) -> None:
    """Refuse a missing or non-regular ``path`` (follows links, never opens it)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError as exc:
        raise InputError(f"{path}: no such file") from exc
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    error = not_regular(path, mode)
    if error is not None:
        raise error


def open_regular(path: Path | str) -> BinaryIO:
    """Open ``path`` for reading in binary; an :class:`InputError` unless it is a regular file.

    The file is opened with ``O_NONBLOCK`` (a FIFO opens at once instead of waiting for a
    writer), checked with ``fstat`` (so a file swapped after a first check is still caught),
    then switched back to blocking reads.
    """
    flags = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError as exc:
        raise InputError(f"{path}: no such file") from exc
    except IsADirectoryError as exc:
        raise InputError(f"{path}: is a folder, not an input file") from exc
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    try:
        error = not_regular(path, os.fstat(fd).st_mode)
        if error is not None:
            raise error
        if getattr(os, "O_NONBLOCK", 0):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def check_bytes(shape, itemsize: int, what: str, limit: int | None = None) -> None:
    """Refuse an array of ``shape`` and ``itemsize`` whose size is over the budget, before any
    of it is allocated: :class:`InputError` ``"WHAT would take 4.0 GiB, over the limit ..."``
    (``what`` names the file or input and the shape)."""
    limit = max_input_bytes() if limit is None else limit
    size = math.prod(int(d) for d in shape) * int(itemsize)
    if size > limit:
        raise InputError(
            f"{what} would take {human_bytes(size)}, over the limit of {human_bytes(limit)} "
            "for one input (FMVIZ_MAX_INPUT_BYTES raises it)"
        )
