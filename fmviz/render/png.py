"""PNG files: every picture fmviz writes is encoded here (numpy row filters plus a deflate
that releases the GIL) and written atomically.

Three kinds of picture, as :func:`encode_png` sees them::

    uint8 [H, W] + palette [N, 3] (N <= 256)   colour type 3 (indices, PLTE chunk): grids,
                                                 heatmaps, series views
    uint8 [H, W]                                 colour type 0 (8-bit greyscale)
    uint8 [H, W, 3]                              colour type 2 (8-bit RGB): overlays

Every row of a picture gets the same PNG filter, computed by numpy for the whole image at once:
"Up" (each byte minus the byte above it) for RGB, and for palette pictures "Sub" (minus the
byte to the left) with isal or "Up" with zlib (:data:`FILTER`). benchmarks/NOTES.md ("A
GIL-releasing PNG encoder") has the measurements behind these choices and each backend's level.

The deflate is python-isal (Intel's ISA-L, several times faster than zlib for about the same
size) where it is installed, else the standard library's zlib. Both release the GIL while they
compress, so pictures encoded on a thread pool use every core. :data:`BACKEND` says which one
is used ("isal" or "zlib"); tests and benchmarks may set it to "zlib" to force the fallback.
The pixels written are the same either way, only the compressed bytes differ.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from ..io import atomic_write_bytes

try:  # python-isal publishes wheels for CPython on x86-64 and arm64 (pyproject.toml)
    from isal import isal_zlib
except ImportError:  # pragma: no cover - depends on the platform
    isal_zlib = None  # type: ignore[assignment]

__all__ = ["BACKEND", "ISAL_AVAILABLE", "encode_png", "save_png", "write_png"]

ISAL_AVAILABLE = isal_zlib is not None

#: The deflate used by :func:`encode_png`: "isal" (python-isal) or "zlib" (standard library).
BACKEND = "isal" if ISAL_AVAILABLE else "zlib"

# Levels, measured on the pictures of fmviz runs (benchmarks/png_encode.py).
ISAL_LEVEL = 2  # isal levels run 0-3
ZLIB_LEVEL = 1
ZLIB_STRATEGY = zlib.Z_RLE  # only runs of one repeated byte: all that filtered pictures offer

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_FILTERS = {"none": 0, "sub": 1, "up": 2}
#: The row filter of each backend and colour type, measured on the pictures of fmviz runs
#: (benchmarks/NOTES.md): isal finds the repeats of palette pictures best after Sub, zlib's
#: Z_RLE after Up; photos (RGB) deflate best after Up with either.
FILTER = {"isal": {0: "sub", 2: "up", 3: "sub"}, "zlib": {0: "up", 2: "up", 3: "up"}}


def encode_png(pixels: np.ndarray, palette: np.ndarray | None = None) -> bytes:
    """The PNG file (bytes) of ``pixels``: see the module docstring for the accepted shapes.

    ``palette``, for a uint8 [H, W] array of indices, is an [N, 3] array of RGB values
    (0..255) with 1 <= N <= 256; every index must be below N.
    """
    pixels, palette, colour_type = _check(pixels, palette)
    backend = BACKEND
    if backend not in FILTER:
        raise ValueError(f"unknown PNG backend {backend!r} (expected 'isal' or 'zlib')")
    return _encode(pixels, palette, colour_type, FILTER[backend][colour_type], backend)


def write_png(path, pixels: np.ndarray, palette: np.ndarray | None = None) -> None:
    """Encode ``pixels`` (see :func:`encode_png`) and write the file atomically at ``path``.

    The file appears complete or not at all (temporary file in the same folder, then rename).
    """
    atomic_write_bytes(Path(path), encode_png(pixels, palette))


# ----------------------------------------------------------------------------------- internals


def _check(pixels, palette) -> tuple[np.ndarray, np.ndarray | None, int]:
    pixels = np.asarray(pixels)
    if pixels.dtype != np.uint8:
        raise ValueError(f"PNG pixels must be uint8, not {pixels.dtype}")
    if pixels.ndim == 3 and pixels.shape[2] == 3:
        colour_type = 2
    elif pixels.ndim == 2:
        colour_type = 0 if palette is None else 3
    else:
        raise ValueError(f"PNG pixels must be [H, W] or [H, W, 3], not {list(pixels.shape)}")
    if pixels.shape[0] < 1 or pixels.shape[1] < 1:
        raise ValueError(f"a PNG needs at least one pixel, not {list(pixels.shape)}")
    if pixels.shape[0] > 2**31 - 1 or pixels.shape[1] > 2**31 - 1:
        raise ValueError(f"too large for a PNG: {list(pixels.shape)}")
    if palette is not None:
        if colour_type != 3:
            raise ValueError("a palette needs [H, W] indices, not RGB pixels")
        palette = np.asarray(palette)
        if palette.ndim != 2 or palette.shape[1] != 3 or not 1 <= palette.shape[0] <= 256:
            raise ValueError(f"a PNG palette must be [N, 3] with N <= 256, not "
                             f"{list(palette.shape)}")
        if palette.dtype != np.uint8:
            if (not np.issubdtype(palette.dtype, np.integer)
                    or palette.min() < 0 or palette.max() > 255):
                raise ValueError("PNG palette entries must be integers in 0..255")
            palette = palette.astype(np.uint8)
        if palette.shape[0] < 256 and int(pixels.max()) >= palette.shape[0]:
            raise ValueError(f"palette index {int(pixels.max())} is beyond the "
                             f"{palette.shape[0]} colours of the palette")
    return pixels, palette, colour_type


def _filtered(pixels: np.ndarray, kind: str) -> np.ndarray:
    """The rows PNG deflates: [H, 1 + W * channels], each row's filter-type byte first.

    Filters work on bytes, modulo 256 (uint8 subtraction wraps), and treat the pixels left of
    the first column and the row above the first row as zeros.
    """
    height = pixels.shape[0]
    flat = pixels.reshape(height, -1)
    bpp = 1 if pixels.ndim == 2 else pixels.shape[2]  # bytes per pixel
    rows = np.empty((height, 1 + flat.shape[1]), dtype=np.uint8)
    rows[:, 0] = _FILTERS[kind]
    if kind == "none":
        rows[:, 1:] = flat
    elif kind == "up":
        rows[0, 1:] = flat[0]
        np.subtract(flat[1:], flat[:-1], out=rows[1:, 1:])
    elif kind == "sub":
        rows[:, 1:1 + bpp] = flat[:, :bpp]
        np.subtract(flat[:, bpp:], flat[:, :-bpp], out=rows[:, 1 + bpp:])
    else:
        raise ValueError(f"unknown PNG filter {kind!r}")
    return rows


def _deflate(data, backend: str, level: int | None = None) -> bytes:
    """A zlib stream (header, deflate, Adler-32) of ``data``, as PNG's IDAT holds it."""
    if backend == "isal":
        if isal_zlib is None:
            raise RuntimeError("the isal PNG backend needs python-isal, which is not installed")
        return isal_zlib.compress(data, ISAL_LEVEL if level is None else level)
    if backend == "zlib":
        deflate = zlib.compressobj(ZLIB_LEVEL if level is None else level, zlib.DEFLATED, 15, 9,
                                   ZLIB_STRATEGY)
        return deflate.compress(data) + deflate.flush()
    raise ValueError(f"unknown PNG backend {backend!r} (expected 'isal' or 'zlib')")


def _chunk(kind: bytes, body: bytes) -> list[bytes]:
    """A chunk's parts: length and type, body, CRC (joined once, with the file's other parts)."""
    crc = zlib.crc32(body, zlib.crc32(kind))
    return [struct.pack(">I", len(body)) + kind, body, struct.pack(">I", crc)]


def _encode(pixels: np.ndarray, palette: np.ndarray | None, colour_type: int, kind: str,
            backend: str, level: int | None = None) -> bytes:
    height, width = pixels.shape[:2]
    rows = _filtered(pixels, kind)
    idat = _deflate(rows.data.cast("B"), backend, level)
    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)  # no interlace
    parts = [_SIGNATURE, *_chunk(b"IHDR", header)]
    if palette is not None:
        parts += _chunk(b"PLTE", np.ascontiguousarray(palette).tobytes())
    parts += [*_chunk(b"IDAT", idat), *_chunk(b"IEND", b"")]
    return b"".join(parts)


def save_png(image: Image.Image, path: str | Path) -> None:
    """Write a Pillow image ("P" palette pictures and "RGB" overlays; other modes are
    converted to RGB) as PNG with :func:`encode_png`, atomically."""
    if image.mode == "P":
        # the whole palette, also the entries a picture does not use: readers of a grid
        # (scripts, the gallery) may look a colour up by its index
        palette = np.asarray(image.getpalette() or [0, 0, 0], dtype=np.uint8).reshape(-1, 3)
        write_png(Path(path), np.asarray(image), palette[:256])
        return
    if image.mode == "L":
        write_png(Path(path), np.asarray(image))
        return
    write_png(Path(path), np.asarray(image.convert("RGB") if image.mode != "RGB" else image))
