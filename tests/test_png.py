"""fmviz.png: every picture it encodes decodes (with Pillow) to the same pixels and palette.

Each test runs with both deflate backends, python-isal and the standard library's zlib; the
filters not chosen by default are checked too, so that a change of :data:`fmviz.render.png.FILTER`
stays safe. The filter-type byte of every row is read back from the decompressed IDAT.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from fmviz.render import png

BACKENDS = [
    "zlib",
    pytest.param("isal", marks=pytest.mark.skipif(not png.ISAL_AVAILABLE,
                                                  reason="python-isal not installed")),
]


@pytest.fixture(params=BACKENDS)
def backend(request, monkeypatch):
    monkeypatch.setattr(png, "BACKEND", request.param)
    return request.param


def decode(data: bytes) -> tuple[str, np.ndarray, np.ndarray | None]:
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        assert image.format == "PNG"
        palette = None
        if image.mode == "P":
            palette = np.array(image.getpalette(), dtype=np.uint8).reshape(-1, 3)
        return image.mode, np.asarray(image).copy(), palette


def chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, body) of every chunk, each CRC checked."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    out, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert crc == zlib.crc32(kind + body), kind
        out.append((kind, body))
        pos += 12 + length
    assert pos == len(data)
    return out


def row_filters(data: bytes, height: int) -> set[int]:
    idat = b"".join(body for kind, body in chunks(data) if kind == b"IDAT")
    raw = np.frombuffer(zlib.decompress(idat), dtype=np.uint8).reshape(height, -1)
    return set(raw[:, 0].tolist())


def check_roundtrip(pixels: np.ndarray, palette: np.ndarray | None = None) -> bytes:
    data = png.encode_png(pixels, palette)
    mode, back, got_palette = decode(data)
    if pixels.ndim == 3:
        assert mode == "RGB"
    else:
        assert mode == ("L" if palette is None else "P")
    assert back.shape == pixels.shape
    np.testing.assert_array_equal(back, pixels)
    if palette is not None:
        assert got_palette.shape == palette.shape
        np.testing.assert_array_equal(got_palette, palette)
        plte = [body for kind, body in chunks(data) if kind == b"PLTE"]
        assert plte == [palette.astype(np.uint8).tobytes()]
    return data


RNG = np.random.default_rng(16)
PALETTE = RNG.integers(0, 256, (256, 3), dtype=np.uint8)
SHAPES = [(1, 1), (1, 37), (41, 1), (3, 7), (9, 13), (2, 255), (17, 1001)]


def random_pixels(shape, kind: str) -> np.ndarray:
    full = shape if kind != "rgb" else (*shape, 3)
    return RNG.integers(0, 256, full, dtype=np.uint8)


@pytest.mark.parametrize("kind", ["grey", "palette", "rgb"])
@pytest.mark.parametrize("shape", SHAPES)
def test_small_and_odd_sizes_round_trip(backend, kind, shape):
    pixels = random_pixels(shape, kind)
    check_roundtrip(pixels, PALETTE if kind == "palette" else None)


def smooth(height: int, width: int, channels: int | None) -> np.ndarray:
    """A smooth picture with some large flat areas, like a heatmap or a photo."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    base = 127.5 + 100 * np.sin(x / 37.0) * np.cos(y / 23.0) + 27 * np.sin((x + y) / 91.0)
    base[height // 3: height // 2, :] = 7.0
    if channels is None:
        return np.clip(np.rint(base), 0, 255).astype(np.uint8)
    layers = [np.roll(base, 11 * c, axis=1) for c in range(channels)]
    return np.clip(np.rint(np.stack(layers, axis=2)), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("kind", ["grey", "palette", "rgb"])
def test_large_random_and_smooth_pictures(backend, kind):
    channels = 3 if kind == "rgb" else None
    palette = PALETTE if kind == "palette" else None
    big_random = random_pixels((643, 517), kind)
    data = check_roundtrip(big_random, palette)
    smooth_pixels = smooth(701, 643, channels)
    smooth_data = check_roundtrip(smooth_pixels, palette)
    # the smooth picture compresses; random bytes cannot (a broken filter would show here)
    assert len(smooth_data) < smooth_pixels.nbytes / 3
    assert len(data) > big_random.nbytes * 0.99


@pytest.mark.parametrize("kind", ["grey", "palette", "rgb"])
def test_wrap_around_differences(backend, kind):
    """0 under 255 and 255 under 0 (Up), 0 right of 255 and back (Sub): differences mod 256."""
    rows = np.zeros((6, 10), dtype=np.uint8)
    rows[0::2] = 255
    rows[:, ::2] ^= 255  # a checkerboard of 0 and 255: every neighbour differs by 255
    rows[5] = [0, 1, 254, 255, 0, 128, 127, 255, 1, 0]
    pixels = rows if kind != "rgb" else np.stack([rows, 255 - rows, rows[::-1]], axis=2)
    check_roundtrip(pixels, PALETTE if kind == "palette" else None)


@pytest.mark.parametrize("colours", [1, 2, 5, 100, 255])
def test_palette_shorter_than_256(backend, colours):
    palette = RNG.integers(0, 256, (colours, 3), dtype=np.uint8)
    pixels = RNG.integers(0, colours, (29, 31), dtype=np.uint8)
    pixels[0, 0] = colours - 1  # the last colour is used
    check_roundtrip(pixels, palette)
    check_roundtrip(pixels, palette.astype(np.int64))  # any integer dtype in 0..255


@pytest.mark.parametrize("filter_kind", ["none", "sub", "up"])
@pytest.mark.parametrize("kind", ["grey", "palette", "rgb"])
def test_every_filter_round_trips(backend, kind, filter_kind, monkeypatch):
    table = {b: dict(png.FILTER[b]) for b in png.FILTER}
    table[backend] = {t: filter_kind for t in table[backend]}
    monkeypatch.setattr(png, "FILTER", table)
    for shape in [(1, 1), (1, 9), (11, 1), (37, 53)]:
        pixels = random_pixels(shape, kind)
        data = check_roundtrip(pixels, PALETTE if kind == "palette" else None)
        assert row_filters(data, shape[0]) == {{"none": 0, "sub": 1, "up": 2}[filter_kind]}
    data = check_roundtrip(smooth(64, 65, 3 if kind == "rgb" else None),
                           PALETTE if kind == "palette" else None)
    assert row_filters(data, 64) == {{"none": 0, "sub": 1, "up": 2}[filter_kind]}


@pytest.mark.parametrize("kind", ["grey", "palette", "rgb"])
def test_each_backend_uses_its_own_filter(backend, kind):
    colour_type = {"grey": 0, "palette": 3, "rgb": 2}[kind]
    pixels = smooth(33, 47, 3 if kind == "rgb" else None)
    data = check_roundtrip(pixels, PALETTE if kind == "palette" else None)
    expected = {"none": 0, "sub": 1, "up": 2}[png.FILTER[backend][colour_type]]
    assert row_filters(data, 33) == {expected}
    header = dict(chunks(data))[b"IHDR"]
    assert struct.unpack(">IIBBBBB", header) == (47, 33, 8, colour_type, 0, 0, 0)


def test_both_backends_write_the_same_pixels(monkeypatch):
    if not png.ISAL_AVAILABLE:
        pytest.skip("python-isal not installed")
    pictures = [(smooth(120, 77, 3), None), (smooth(50, 301, None), PALETTE),
                (random_pixels((40, 41), "grey"), None)]
    for pixels, palette in pictures:
        decoded = {}
        encoded = {}
        for name in ("isal", "zlib"):
            monkeypatch.setattr(png, "BACKEND", name)
            encoded[name] = png.encode_png(pixels, palette)
            decoded[name] = decode(encoded[name])
        assert encoded["isal"] != encoded["zlib"]  # really two different deflates
        assert decoded["isal"][0] == decoded["zlib"][0]
        np.testing.assert_array_equal(decoded["isal"][1], decoded["zlib"][1])
        np.testing.assert_array_equal(decoded["isal"][1], pixels)


def test_default_backend_is_isal_when_installed():
    """python-isal is a dependency on this platform: it must load and be the default."""
    pytest.importorskip("isal", reason="python-isal has no wheel for this platform")
    assert png.ISAL_AVAILABLE and png.BACKEND == "isal"


def test_non_contiguous_input(backend):
    base = smooth(80, 90, 3)
    check_roundtrip(base[::2, 1::3])  # strided view
    check_roundtrip(base[:, :, 1].T, PALETTE)  # transposed, Fortran order


@settings(max_examples=40, deadline=None)
@given(height=st.integers(1, 40), width=st.integers(1, 40),
       kind=st.sampled_from(["grey", "palette", "rgb"]), seed=st.integers(0, 2**32 - 1),
       use_isal=st.booleans())
def test_property_round_trip(height, width, kind, seed, use_isal):
    rng = np.random.default_rng(seed)
    shape = (height, width) if kind != "rgb" else (height, width, 3)
    pixels = rng.integers(0, 256, shape, dtype=np.uint8)
    pixels[rng.random(shape) < 0.5] = 0  # runs and repeats too
    palette = rng.integers(0, 256, (256, 3), dtype=np.uint8) if kind == "palette" else None
    saved = png.BACKEND
    png.BACKEND = "isal" if use_isal and png.ISAL_AVAILABLE else "zlib"
    try:
        check_roundtrip(pixels, palette)
    finally:
        png.BACKEND = saved


def test_write_png_writes_atomically(tmp_path, backend, monkeypatch):
    import fmviz.io

    renames = []
    real_replace = fmviz.io.os.replace

    def spy(src, dst, *args, **kwargs):
        renames.append((str(src), str(dst)))
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(fmviz.io.os, "replace", spy)
    target = tmp_path / "pic.png"
    target.write_bytes(b"old")
    pixels = smooth(30, 40, None) % 200
    png.write_png(target, pixels, PALETTE[:200])
    mode, back, palette = decode(target.read_bytes())
    assert mode == "P"
    np.testing.assert_array_equal(back, pixels)
    np.testing.assert_array_equal(palette, PALETTE[:200])
    assert [d for _, d in renames] == [str(target)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pic.png"]  # no temporary left


def test_write_png_leaves_no_file_when_encoding_fails(tmp_path):
    target = tmp_path / "bad.png"
    with pytest.raises(ValueError):
        png.write_png(target, np.zeros((3, 3), dtype=np.float32))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("pixels", "palette", "message"),
    [
        (np.zeros((3, 3), dtype=np.uint16), None, "uint8"),
        (np.zeros((3, 3, 4), dtype=np.uint8), None, r"\[H, W\]"),
        (np.zeros((3,), dtype=np.uint8), None, r"\[H, W\]"),
        (np.zeros((0, 3), dtype=np.uint8), None, "at least one pixel"),
        (np.zeros((3, 0, 3), dtype=np.uint8), None, "at least one pixel"),
        (np.full((3, 3), 4, dtype=np.uint8), np.zeros((4, 3), dtype=np.uint8), "index 4"),
        (np.zeros((3, 3), dtype=np.uint8), np.zeros((257, 3), dtype=np.uint8), "N <= 256"),
        (np.zeros((3, 3), dtype=np.uint8), np.zeros((0, 3), dtype=np.uint8), "N <= 256"),
        (np.zeros((3, 3), dtype=np.uint8), np.zeros((4, 4), dtype=np.uint8), r"\[N, 3\]"),
        (np.zeros((3, 3), dtype=np.uint8), np.full((4, 3), 256), "0..255"),
        (np.zeros((3, 3), dtype=np.uint8), np.full((4, 3), 0.5), "0..255"),
        (np.zeros((3, 3, 3), dtype=np.uint8), np.zeros((4, 3), dtype=np.uint8), "RGB"),
    ],
)
def test_bad_arguments(pixels, palette, message):
    with pytest.raises(ValueError, match=message):
        png.encode_png(pixels, palette)


def test_unknown_backend(monkeypatch):
    monkeypatch.setattr(png, "BACKEND", "lz4")
    with pytest.raises(ValueError, match="lz4"):
        png.encode_png(np.zeros((2, 2), dtype=np.uint8))


def test_isal_backend_without_isal_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(png, "BACKEND", "isal")
    monkeypatch.setattr(png, "isal_zlib", None)
    with pytest.raises(RuntimeError, match="python-isal"):
        png.encode_png(np.zeros((2, 2), dtype=np.uint8))


@pytest.mark.skipif(not png.ISAL_AVAILABLE, reason="the benchmark compares python-isal")
def test_benchmark_runs_on_tiny_sizes(tmp_path):
    """benchmarks/png_encode.py --quick: real fmviz runs, every encoder checked, all tables."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, str(root / "benchmarks" / "png_encode.py"), "--quick", "--reps", "1",
         "--work", str(tmp_path / "png")],
        cwd=root, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for title in ("digits, all", "detector, palette", "detector, RGB"):
        assert title in done.stdout
    rows = [line for line in done.stdout.splitlines() if line.startswith("| png-isal |")]
    assert len(rows) == 7  # 6 tables + the GIL check
    assert "| control (holds the GIL) |" in done.stdout
