"""PNG encoders side by side on the pictures of real `fmviz run`s (issue 16, item 1).

    python benchmarks/png_encode.py              # both runs, 5 repetitions
    python benchmarks/png_encode.py --reps 3 --explore   # + every filter and level
    python benchmarks/png_encode.py --quick --reps 1     # smoke test (tests/test_png.py)

Makes its inputs under benchmarks/work/png/ (git-ignored) with today's fmviz:
``python -m fmviz run`` on models/digits_cnn.onnx (the three samples/digit-*.png) and on the
64-layer detector of benchmarks/models.py (the model benchmarks/run.py builds) fed a 640x640
photo (samples/coffee.jpg centre-cropped square and resized). The written PNGs are read back as
arrays (palette pictures as indices + palette, overlays as RGB), then each encoder writes all of
them to memory:

- ``pillow-1``: Pillow at compress_level=1 (what fmviz uses for palette pictures);
- ``fmviz-today``: fmviz.render's encoders (Pillow level 1 for palette, ``rgb_png`` for RGB);
- ``png-zlib`` / ``png-isal``: fmviz.png with each backend.

Each is timed on one thread (CPU seconds, median of --reps, interleaved) and over a pool of 2
threads right after (wall seconds: a deflate that releases the GIL shows as the 2-thread wall
time falling towards half the 1-thread one, if 2 cores are free). Every output is decoded
once and checked against the input pixels.
A Python thread spinning beside one long encoding call shows whether each encoder releases the
GIL (a control that keeps it shows the difference). ``--explore`` also times every row filter
and level of fmviz.png on each kind of picture, which is how fmviz.png's choices were made.
Prints markdown tables.
"""

from __future__ import annotations

import argparse
import io
import math
import os
import statistics
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from PIL import Image  # noqa: E402

import models as bench_models  # noqa: E402  (benchmarks/models.py)
from fmviz.render import png  # noqa: E402

WORK = HERE / "work" / "png"


# ------------------------------------------------------------------------------------ inputs


def photo(work: Path, size: int) -> Path:
    path = work / f"coffee-{size}.jpg"
    if not path.exists():
        with Image.open(ROOT / "samples" / "coffee.jpg") as image:
            image = image.convert("RGB")
            side = min(image.size)
            left, top = (image.size[0] - side) // 2, (image.size[1] - side) // 2
            square = image.crop((left, top, left + side, top + side))
            square.resize((size, size), Image.BICUBIC).save(path, quality=92)
    return path


def fmviz_run(out: Path, model: Path, inputs: list[Path]) -> Path:
    done = out / ".complete"
    if not done.exists():
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        subprocess.run([sys.executable, "-m", "fmviz", "run", str(model), *map(str, inputs),
                        "-o", str(out), "-q"], check=True, env=env, cwd=ROOT)
        done.touch()
    return out


def load(folder: Path) -> list[tuple[str, np.ndarray, np.ndarray | None]]:
    """(name, pixels, palette or None) of every PNG under ``folder``."""
    pictures = []
    for path in sorted(folder.rglob("*.png")):
        with Image.open(path) as image:
            image.load()
            if image.mode == "P":
                palette = np.array(image.getpalette(), dtype=np.uint8).reshape(-1, 3)
                pictures.append((path.name, np.asarray(image).copy(), palette))
            elif image.mode in ("RGB", "L"):
                pictures.append((path.name, np.asarray(image).copy(), None))
            else:
                raise SystemExit(f"{path}: unexpected mode {image.mode}")
    return pictures


def inputs(work: Path = WORK, quick: bool = False) -> dict[str, list]:
    """The pictures of the two runs; --quick: the tiny detector of run.py --quick, at 128 px."""
    work.mkdir(parents=True, exist_ok=True)
    if quick:
        detector = bench_models.build("detector", work.parent / "models", "-tiny", width=0.25,
                                      size=128)
    else:
        detector = bench_models.build("detector", work.parent / "models")
    tag = "-quick" if quick else ""
    runs = {
        "digits": fmviz_run(work / "digits", ROOT / "models" / "digits_cnn.onnx",
                            sorted((ROOT / "samples").glob("digit-*.png"))),
        "detector": fmviz_run(work / f"detector{tag}", detector,
                              [photo(work, 128 if quick else 640)]),
    }
    return {name: load(folder) for name, folder in runs.items()}


# ---------------------------------------------------------------------------------- encoders


def pillow_1(pixels, palette) -> bytes:
    image = Image.fromarray(pixels)
    if palette is not None:
        image.putpalette(palette.ravel().tolist())
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def fmviz_today(pixels, palette) -> bytes:
    if pixels.ndim == 3:
        return previous_rgb_png(pixels)
    return pillow_1(pixels, palette)


def png_backend(backend: str) -> Callable:
    def encode(pixels, palette) -> bytes:
        png.BACKEND = backend
        return png.encode_png(pixels, palette)
    return encode


def png_variant(backend: str, kind: str, level: int, strategy: int | None = None) -> Callable:
    def encode(pixels, palette) -> bytes:
        pixels, palette, colour_type = png._check(pixels, palette)
        saved = png.ZLIB_STRATEGY
        if strategy is not None:
            png.ZLIB_STRATEGY = strategy
        try:
            return png._encode(pixels, palette, colour_type, kind, backend, level)
        finally:
            png.ZLIB_STRATEGY = saved
    return encode


ENCODERS = {
    "pillow-1": pillow_1,
    "fmviz-today": fmviz_today,
    "png-zlib": png_backend("zlib"),
    "png-isal": png_backend("isal"),
}


# ---------------------------------------------------------------------------------- timing


def encode_all(encode: Callable, pictures, threads: int) -> tuple[float, float, int]:
    """(CPU seconds, wall seconds, bytes) to encode every picture."""
    cpu, wall = time.process_time(), time.perf_counter()
    if threads == 1:
        total = sum(len(encode(p, pal)) for _, p, pal in pictures)
    else:
        with ThreadPoolExecutor(threads) as pool:
            total = sum(map(len, pool.map(lambda item: encode(item[1], item[2]), pictures)))
    return time.process_time() - cpu, time.perf_counter() - wall, total


def check(encode: Callable, pictures) -> None:
    for name, pixels, palette in pictures:
        with Image.open(io.BytesIO(encode(pixels, palette))) as image:
            back = np.asarray(image)
            assert np.array_equal(back, pixels), name
            if palette is not None:
                got = np.array(image.getpalette(), dtype=np.uint8).reshape(-1, 3)
                assert np.array_equal(got[: len(palette)], palette), name


def measure(encoders: dict[str, Callable], pictures, reps: int,
            pool: int | None = 2) -> dict[str, dict[str, float]]:
    """Per encoder, medians over ``reps``: CPU and wall seconds on one thread, and (``pool``)
    wall seconds over a pool of ``pool`` threads with the ratio of the two walls taken within
    each repetition. Encoders interleaved (order rotated each repetition), and each one's pool
    run right after its one-thread run, so that the load of a shared machine hits both alike.
    """
    names = list(encoders)
    samples: dict[str, list[tuple[float, ...]]] = {n: [] for n in names}
    sizes = {}
    for n in names:  # warm-up
        encode_all(encoders[n], pictures[:4], 1)
    for rep in range(reps):
        for n in names[rep % len(names):] + names[: rep % len(names)]:
            cpu1, wall1, sizes[n] = encode_all(encoders[n], pictures, 1)
            cpu2, wall2 = (encode_all(encoders[n], pictures, pool)[:2] if pool
                           else (math.nan, math.nan))
            samples[n].append((cpu1, wall1, cpu2, wall2, wall2 / wall1))
    keys = ("cpu1", "wall1", "cpu2", "wall2", "ratio")
    return {n: {k: statistics.median(s[i] for s in samples[n]) for i, k in enumerate(keys)}
            | {"bytes": sizes[n]} for n in names}


def table(title: str, pictures, reps: int, encoders: dict[str, Callable]) -> str:
    raw = sum(p.nbytes for _, p, _ in pictures)
    result = measure(encoders, pictures, reps)
    base = result["pillow-1"]["cpu1"]
    lines = [f"{title}: {len(pictures)} files, {raw / 1e6:.1f} MB of pixels", "",
             "| Encoder | MB written | CPU s, 1 thread | CPU / Pillow | wall s, 1 thread "
             "| wall s, 2 threads | 2 threads / 1 thread (wall) |",
             "|---|---|---|---|---|---|---|"]
    for n in encoders:
        r = result[n]
        lines.append(f"| {n} | {r['bytes'] / 1e6:.2f} | {r['cpu1']:.3f} | "
                     f"{r['cpu1'] / base:.2f}x | {r['wall1']:.3f} | {r['wall2']:.3f} "
                     f"| {r['ratio']:.2f}x |")
    return "\n".join(lines)


def beside_share(encode: Callable, pictures) -> float:
    """CPU seconds a pure-Python thread gets while ``encode`` runs on the main thread, over the
    encoding's wall seconds. An encoder that holds the GIL leaves it near 0 whatever the load;
    one that releases it lets it run on a free core (up to 1.0, less on a busy machine).
    """
    done = threading.Event()
    spent = []

    def spin():
        start = time.thread_time()
        while not done.is_set():
            sum(range(200))
        spent.append(time.thread_time() - start)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(0.0005)
    try:
        thread = threading.Thread(target=spin)
        thread.start()
        wall = time.perf_counter()
        for _, pixels, palette in pictures:
            encode(pixels, palette)
        wall = time.perf_counter() - wall
        done.set()
        thread.join()
    finally:
        sys.setswitchinterval(interval)
    return spent[0] / wall


_TABLE = bytes(range(255, -1, -1))


def holds_gil(pixels, palette) -> bytes:
    """Control for :func:`beside_share`: C work of similar length that keeps the GIL."""
    data = pixels.tobytes()
    for _ in range(6):
        data = data.translate(_TABLE)  # bytes methods never release the GIL
    return data


def beside_table(pictures, reps: int) -> str:
    """:func:`beside_share` of each encoder on one long call: the largest palette and RGB
    pictures, each tiled down to about 40 MB (a call of 40 to 900 ms; with calls shorter than
    the switch interval the spinning thread runs between calls whoever holds the GIL)."""
    big = []
    for kind in ("palette", "RGB"):
        members = [p for p in pictures if (p[2] is not None) == (kind == "palette")]
        _, pixels, palette = max(members, key=lambda p: p[1].size)
        reps_down = max(1, 40_000_000 // pixels.size)
        big.append((kind, np.tile(pixels, (reps_down,) + (1,) * (pixels.ndim - 1)), palette))
    encoders = dict(ENCODERS, **{"control (holds the GIL)": holds_gil})
    lines = ["CPU seconds a spinning Python thread got per wall second of one long encoding call "
             "(median of reps; near 0 = the GIL is held; up to 1 where a core is free)", "",
             "| Encoder | " + " | ".join(f"{kind}, {p.shape[1]}x{p.shape[0]}"
                                       for kind, p, _ in big) + " |",
             "|---|" + "---|" * len(big)]
    for n, encode in encoders.items():
        shares = [statistics.median(beside_share(encode, [item]) for _ in range(reps))
                  for item in big]
        lines.append(f"| {n} | " + " | ".join(f"{x:.2f}" for x in shares) + " |")
    return "\n".join(lines)


def explore(title: str, pictures, reps: int) -> str:
    variants: dict[str, Callable] = {}
    for kind in ("none", "sub", "up"):
        for level in (0, 1, 2, 3):
            variants[f"isal {level}, {kind}"] = png_variant("isal", kind, level)
        variants[f"zlib 1, {kind}"] = png_variant("zlib", kind, 1, 0)
        variants[f"zlib Z_RLE, {kind}"] = png_variant("zlib", kind, 1, 3)
    result = measure(variants, pictures, reps, pool=None)
    lines = [f"{title}: {len(pictures)} files", "", "| Deflate, filter | MB | CPU s |",
             "|---|---|---|"]
    for n, r in result.items():
        lines.append(f"| {n} | {r['bytes'] / 1e6:.2f} | {r['cpu1']:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--quick", action="store_true",
                        help="a tiny detector at 128 px: a smoke test, the figures mean nothing")
    parser.add_argument("--work", type=Path, default=WORK,
                        help="folder for the runs (the detector model goes beside it)")
    parser.add_argument("--runs", nargs="+", choices=["digits", "detector"],
                        default=["digits", "detector"])
    parser.add_argument("--explore", action="store_true",
                        help="also time every filter and level of fmviz.png")
    args = parser.parse_args(argv)
    if not png.ISAL_AVAILABLE:
        raise SystemExit("python-isal is not installed: nothing to compare")
    runs = inputs(args.work, args.quick)
    import isal

    print(f"# PNG encoders: {os.cpu_count()} CPUs, python-isal {isal.__version__}, "
          f"zlib {png.zlib.ZLIB_RUNTIME_VERSION}, Pillow {Image.__version__}")
    for run, pictures in runs.items():
        if run not in args.runs:
            continue
        for encode in ENCODERS.values():
            check(encode, pictures)
        groups = {
            "all": pictures,
            "palette (grid, heatmap)": [p for p in pictures if p[2] is not None],
            "RGB (overlay)": [p for p in pictures if p[1].ndim == 3],
        }
        for group, members in groups.items():
            if not members:
                continue
            print()
            print(table(f"{run}, {group}", members, args.reps, ENCODERS))
            if args.explore and group != "all":
                print()
                print(explore(f"{run}, {group}", members, args.reps))
        if run == "detector":
            print()
            print(beside_table(pictures, args.reps))
    return 0


# fmviz's RGB encoder before fmviz.render.png (kept here as the baseline it is compared with)
def previous_rgb_png(pixels: np.ndarray) -> bytes:
    """Encode uint8 [H, W, 3] as a PNG: every row "Up"-filtered, then zlib's run-length strategy.

    Pillow tries all five PNG filters on every row of an RGB image and then searches for
    repeated strings; overlays are photos, where neither pays. One fixed Up filter (each byte
    minus the byte above it), computed by numpy, and ``Z_RLE`` (which only looks for runs of a
    repeated byte) were the best balance of the variants measured on overlays of photos
    (benchmarks/NOTES.md): the smallest files on the detector benchmark, within 4% of the
    smallest on the sample photos, and 21% and 36% less time than Sub with level 1.
    """
    height, width, _ = pixels.shape
    rows = np.empty((height, 1 + width * 3), dtype=np.uint8)
    rows[:, 0] = 2  # filter type 2: Up
    flat = pixels.reshape(height, width * 3)
    rows[0, 1:] = flat[0]  # the row above the first is taken as zeros
    np.subtract(flat[1:], flat[:-1], out=rows[1:, 1:], casting="unsafe")  # mod 256
    deflate = zlib.compressobj(1, zlib.DEFLATED, 15, 9, zlib.Z_RLE)
    idat = deflate.compress(memoryview(rows)) + deflate.flush()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body
            + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    return b"".join(
        (
            b"\x89PNG\r\n\x1a\n",
            chunk(b"IHDR", header),
            chunk(b"IDAT", idat),
            chunk(b"IEND", b""),
        )
    )


if __name__ == "__main__":
    raise SystemExit(main())

