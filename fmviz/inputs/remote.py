"""Inputs named by fsspec URLs (``s3://``, ``gs://``, ``memory://``, ...), with the ``dask`` extra.

Local paths never come here: :func:`fmviz.inputs.collect.collect_inputs` keeps reading them.
A URL names a file or a folder (searched recursively for the input kinds fmviz reads, hidden
entries skipped, sorted, as for local folders). Reading a URL gives its bytes; a scan writes
them to a temporary file under the input's own name and reads that, so every loader and every
message is the one a local file gets. Credentials come from the usual environment of each
filesystem (``AWS_*``, ``GOOGLE_APPLICATION_CREDENTIALS``, ...).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Sequence

from ..errors import InputError, OptionError
from . import input_kind

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")
INSTALL_HINT = "pip install 'fmviz[dask]'"


def is_url(item: object) -> bool:
    """True for ``scheme://...`` strings other than ``file://`` (those are local paths)."""
    return isinstance(item, str) and bool(_URL.match(item)) and not item.startswith("file://")


def require_fsspec(what: str):
    try:
        import fsspec
    except ImportError:
        raise OptionError(None, f"{what} needs fsspec: {INSTALL_HINT}") from None
    return fsspec


def _filesystem(url: str):
    fsspec = require_fsspec(f"{url}: reading URLs")
    try:
        return fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as exc:  # unknown protocol, or its package is missing
        raise InputError(f"{url}: cannot open ({exc})") from None


def collect_urls(url: str) -> list[str]:
    """The input files a URL names: itself, or those below it when it is a folder."""
    fs, root = _filesystem(url)
    try:
        if fs.isdir(root):
            found = fs.find(root)
        elif fs.exists(root):
            return [url]
        else:
            raise InputError(f"{url}: no such file or folder")
    except InputError:
        raise
    except Exception as exc:  # network, permissions: the filesystem's own words
        raise InputError(f"{url}: cannot list ({type(exc).__name__}: {exc})") from None
    base = root.rstrip("/")
    files = []
    for path in found:
        relative = path[len(base):].lstrip("/") if path.startswith(base) else path
        parts = relative.split("/")
        if any(part.startswith(".") for part in parts) or input_kind(parts[-1]) is None:
            continue
        files.append(parts)
    files.sort()
    prefix = url.rstrip("/")  # the URL as the user spelled it, then each file below it
    return [f"{prefix}/{'/'.join(parts)}" for parts in files]


def fetch(urls: Sequence[str]) -> dict[str, bytes | str]:
    """Each URL's bytes, or a one-line reason it could not be read (concurrently per store)."""
    results: dict[str, bytes | str] = {}
    by_fs: dict[int, tuple[object, list[tuple[str, str]]]] = {}
    for url in urls:
        try:
            fs, path = _filesystem(url)
        except InputError as exc:
            results[url] = str(exc).split(": ", 1)[-1]
            continue
        by_fs.setdefault(id(fs), (fs, []))[1].append((url, path))
    for fs, pairs in by_fs.values():
        paths = [path for _, path in pairs]
        try:
            got = fs.cat(paths, on_error="return")  # type: ignore[attr-defined]
        except Exception as exc:
            got = {path: exc for path in paths}
        if not isinstance(got, dict):  # one path: some filesystems give the bytes
            got = {paths[0]: got}
        for url, path in pairs:
            value = got.get(path, FileNotFoundError(path))
            results[url] = value if isinstance(value, bytes) else _reason(value)
    return results


def _reason(exc: object) -> str:
    if isinstance(exc, FileNotFoundError):
        return "no such file"
    return f"cannot be read ({type(exc).__name__}: {exc})"


def url_name(url: str) -> str:
    """The file name a URL ends with (``s3://b/x/cat.jpg`` -> ``cat.jpg``)."""
    return posixpath.basename(url.split("://", 1)[-1].split("?", 1)[0]) or "input"
