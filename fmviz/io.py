"""Atomic file writes and file names that cannot escape the output folder."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from .errors import OutputError

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
MAX_NAME_CHARS = 120  # keeps NNN-<safe>.heatmap.png well under the 255-byte file-name limit


def safe_name(name: str, max_chars: int = MAX_NAME_CHARS) -> str:
    """Reduce a model-supplied name to ``[A-Za-z0-9._-]`` so it is one plain file-name part.

    Runs of other characters (``/``, spaces, ...) become ``_``; leading dots are dropped so the
    result is never ``.``, ``..`` or hidden; an empty result becomes ``layer``.
    """
    cleaned = _UNSAFE.sub("_", name).lstrip(".")
    if len(cleaned) > max_chars:
        cleaned = cleaned[:max_chars]
    return cleaned or "layer"


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# mkstemp creates files readable by their owner only; outputs get the usual 0o666 & ~umask.
_FILE_MODE = 0o666 & ~_current_umask()


def _describe_os_error(path: Path, exc: OSError) -> str:
    if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return f"{path}: no space left on device"
    if exc.errno == errno.EROFS:
        return f"{path}: read-only file system"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"{path}: permission denied"
    if exc.errno == errno.ENOTDIR:
        return f"{path}: cannot write (part of the path is a file, not a folder)"
    return f"{path}: cannot write ({exc.strerror or exc})"


@contextlib.contextmanager
def atomic_open(path: Path, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``path``; rename it into place only if the block succeeds.

    On any failure (including KeyboardInterrupt) the temporary file is removed, so a final name
    never holds a half-written file.
    """
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name[:60]}.", suffix=".part", dir=path.parent)
    except OSError as exc:
        raise OutputError(_describe_os_error(path, exc)) from exc
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except OSError as exc:
        _unlink_quietly(tmp)
        raise OutputError(_describe_os_error(path, exc)) from exc
    except BaseException:
        _unlink_quietly(tmp)
        raise


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_open(path, "wb") as handle:
        handle.write(data)


_SURROGATE = re.compile("[\ud800-\udfff]")


def printable_text(text: str) -> str:
    """``text`` as valid UTF-8: a byte of a file name that is not UTF-8 (Python hands it over as
    a lone surrogate, ``bad\\udcff.png``) is written ``\\xff``, as ``ls -b`` would show it."""
    def escape(found: re.Match) -> str:
        code = ord(found.group())
        return f"\\x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"\\u{code:04x}"

    return _SURROGATE.sub(escape, text)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` as UTF-8 (names that are not UTF-8 escaped, see :func:`printable_text`)."""
    atomic_write_bytes(path, printable_text(text).encode("utf-8"))


def atomic_write_with(path: Path, writer: Callable[[IO], None]) -> None:
    """Let ``writer`` fill a binary file handle, then rename the result into place."""
    with atomic_open(path, "wb") as handle:
        writer(handle)


def ensure_dir(path: Path) -> Path:
    """Create ``path`` (and parents); a clear error if it is a file or cannot be created."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{path}: exists and is not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(_describe_os_error(path, exc)) from exc
    if not os.access(path, os.W_OK | os.X_OK):
        raise OutputError(f"{path}: folder is not writable")
    return path


def input_folder(out: Path, name: str) -> Path:
    """Create (or reuse) the per-input folder ``out/name``, refusing one that leads outside OUT.

    ``name`` is one plain name (from :class:`StemAllocator`). A symbolic link planted at
    ``out/name`` (to anywhere, even inside OUT) is refused, never followed, and so is a folder
    that resolves outside OUT (a junction, a link in a parent swapped meanwhile): every output
    is written into a real folder inside OUT.
    """
    out = Path(out)
    folder = out / name
    if folder.is_symlink():
        raise OutputError(
            f"{folder}: is a symbolic link (to {os.readlink(folder)}); fmviz writes only into "
            f"real folders inside {out}: remove the link or choose another -o"
        )
    try:
        os.mkdir(folder)
    except FileExistsError:
        if folder.is_symlink():  # planted between the check and mkdir
            return input_folder(out, name)
        if not folder.is_dir():
            raise OutputError(f"{folder}: exists and is not a folder") from None
    except OSError as exc:
        raise OutputError(_describe_os_error(folder, exc)) from exc
    if not inside(out, folder) or Path(os.path.realpath(folder)).parent != Path(
        os.path.realpath(out)
    ):
        raise OutputError(
            f"{folder}: resolves to {os.path.realpath(folder)}, outside {out}; fmviz writes "
            "only inside its output folder"
        )
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"{folder}: folder is not writable")
    return folder


LOCK_NAME = ".fmviz.lock"


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (``folder/.fmviz.lock``, fcntl or msvcrt) while
    its outputs are written, so two runs into one OUT never mix their files: the second one
    gets an :class:`OutputError` saying the folder is busy. The lock file is opened without
    following links, and removed (on POSIX) while still locked when the writing is done; a run
    that locked a file removed meanwhile notices (the name no longer leads to it) and retries.
    """
    path = Path(folder) / LOCK_NAME
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    busy = OutputError(
        f"{folder}: another fmviz run is writing into this folder now; wait for it to finish "
        "or choose another -o"
    )
    for _attempt in range(5):
        try:
            fd = os.open(path, flags, 0o666)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise OutputError(f"{path}: is a symbolic link; not used as a lock") from exc
            raise OutputError(_describe_os_error(path, exc)) from exc
        try:
            if sys.platform == "win32":
                import msvcrt

                msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            else:
                import fcntl

                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise busy from None
        held = os.fstat(fd)
        try:
            current = os.lstat(path)
        except FileNotFoundError:
            current = None
        if current is not None and (current.st_ino, current.st_dev) == (held.st_ino,
                                                                       held.st_dev):
            break
        os.close(fd)  # locked a lock file the previous run had just removed: try again
    else:
        raise busy
    try:
        yield
    finally:
        if sys.platform != "win32":  # Windows cannot remove a file that is open
            with contextlib.suppress(OSError):
                os.unlink(path)
        os.close(fd)  # closing releases the lock


def inside(root: Path, candidate: Path) -> bool:
    """True when ``candidate`` resolves to ``root`` or somewhere below it."""
    root = Path(os.path.realpath(root))
    candidate = Path(os.path.realpath(candidate))
    return candidate == root or root in candidate.parents


class StemAllocator:
    """Gives each input its own sub-folder name; a repeated stem gets ``-2``, ``-3``, ..."""

    def __init__(self) -> None:
        self._used: set[str] = set()

    def allocate(self, stem: str) -> str:
        """``stem`` as it is (SPEC: ``OUT/<input-stem>/``), made unique within the run.

        A stem is one file name already, so it cannot climb out of OUT; only names made of
        dots ("", ".", "..", which name no new folder) become ``input``, and separators or NUL
        (possible only in stems given through the API) become ``_``.
        """
        base = stem
        for bad in {os.sep, os.altsep or os.sep, "\0"}:
            base = base.replace(bad, "_")
        if not base.strip("."):
            base = "input"
        name, n = base, 1
        while name.lower() in self._used:  # case-insensitive: safe on macOS/Windows filesystems
            n += 1
            name = f"{base}-{n}"
        self._used.add(name.lower())
        return name
