"""load_image normalises 8-bit pictures through per-channel tables and others plane by plane:
its tensors must be the same bits as the formula applied to every pixel in float64 and cast
once, which is what fmviz computed before (issue 16). The expected tensors are computed here
with Pillow and numpy only: decode, orient, convert, resize, then the float64 formula.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from fmviz.errors import InputError
from fmviz.graph import ModelInput
from fmviz.inputs import InputOptions, load_input

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "corpus" / "images"
GOOD_CORPUS = [
    "animated.gif", "animated.png", "animated.webp", "bilevel.png", "cmyk.jpg", "cmyk.tif",
    "exif-rotated.jpg", "float.tif", "grey16.png", "jpeg-named.png", "la.png", "ok.png",
    "palette-transparent.png", "palette.png", "png-named.jpg", "rgb48.png", "rgba.png",
    "tiny.bmp",
]
PICTURES = [CORPUS / name for name in GOOD_CORPUS] + sorted((ROOT / "samples").glob("*.jpg"))
AFFINE = {"unit": (1 / 255, 0.0), "imagenet": (1 / 255, 0.0), "signed": (2 / 255, -1.0),
          "raw": (1.0, 0.0)}
IMAGENET = (np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225]))


def reference_pixels(path: Path, channels: int, size) -> np.ndarray:
    """float64 [H, W, C] on the 0..255 scale, as fmviz's SPEC describes the decoding."""
    image = Image.open(path)
    image.seek(0)
    image.load()
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        values = np.asarray(image, dtype=np.float32)
        if image.mode.startswith("I;16") or (image.mode == "I" and values.max() > 255):
            values = values / np.float32(257.0)
        if size is not None and size != image.size:
            values = np.asarray(Image.fromarray(values, "F").resize(size, Image.BILINEAR))
        planes = [values] * min(channels, 3) + [np.full(values.shape, 255.0)] * (channels == 4)
        return np.stack(planes, axis=2).astype(np.float64)
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    image = image.convert({1: "L", 3: "RGB", 4: "RGBA"}[channels])
    if size is not None and size != image.size:
        image = image.resize(size, Image.BILINEAR)
    return np.asarray(image, dtype=np.float64).reshape(image.size[1], image.size[0], channels)


def expected(path, channels, size, preset, mean, std, bgr, layout, dtype, batch):
    """The tensor, or None where an integer dtype must be refused."""
    x = reference_pixels(path, channels, size)
    scale, offset = AFFINE[preset]
    if preset == "imagenet" and mean is None:
        # one channel: the means of ImageNet's; four: R, G, B, then R's again (np.resize)
        mean = IMAGENET[0] if channels != 1 else IMAGENET[0][:1] * 0 + IMAGENET[0].mean()
        std = IMAGENET[1] if channels != 1 else IMAGENET[1][:1] * 0 + IMAGENET[1].mean()
    m = np.resize(np.asarray(mean, float), channels) * 255 * scale + offset \
        if mean is not None else np.zeros(channels)
    s = np.resize(np.asarray(std, float), channels) * 255 * scale if std is not None \
        else np.ones(channels)
    y = (x * scale + offset - m) / s
    if bgr:
        y[..., :3] = y[..., 2::-1].copy()
    if layout == "NCHW":
        y = y.transpose(2, 0, 1)
    y = np.repeat(y[np.newaxis], batch, axis=0)
    if np.dtype(dtype).kind != "f":
        r = np.rint(y)
        info = np.iinfo(dtype)
        if not np.allclose(r, y, atol=1e-6) or r.min() < info.min or r.max() > info.max:
            return None
        y = r
    return np.ascontiguousarray(y.astype(dtype))


def check(path, shape, dtype=np.float32, **options):
    layout = "NHWC" if shape[3] in (1, 3, 4) and shape[1] not in (1, 3, 4) else "NCHW"
    channels = shape[3] if layout == "NHWC" else shape[1]
    height, width = (shape[1], shape[2]) if layout == "NHWC" else (shape[2], shape[3])
    size = (width, height) if isinstance(width, int) else None
    want = expected(path, channels, size, options.get("preset") or
                    ("unit" if np.dtype(dtype).kind == "f" else "raw"),
                    options.get("mean"), options.get("std"), options.get("bgr", False),
                    layout, dtype, shape[0] if isinstance(shape[0], int) else 1)
    target = ModelInput("input", shape, np.dtype(dtype))
    if want is None:
        with pytest.raises(InputError, match="not exact integers"):
            load_input(path, target, InputOptions(**options))
        return
    got = load_input(path, target, InputOptions(**options)).array
    assert got.dtype == want.dtype and got.shape == want.shape
    assert got.flags.c_contiguous
    # the same bits, not merely close
    assert np.array_equal(got.view(np.uint8), want.view(np.uint8)), path.name


@pytest.mark.parametrize("path", PICTURES, ids=lambda p: p.name)
@pytest.mark.parametrize("preset", ["unit", "imagenet", "signed", "raw"])
def test_every_preset_is_bit_exact(path, preset):
    for shape in [(1, 3, 24, 20), (1, 3, "H", "W"), (1, 1, 24, 20), (1, 4, 24, 20)]:
        check(path, shape, preset=preset)


@pytest.mark.parametrize("path", PICTURES, ids=lambda p: p.name)
def test_mean_std_bgr_nhwc_and_other_dtypes_are_bit_exact(path):
    check(path, (1, 3, 24, 20), mean=(0.5, 0.25, 0.125), std=(0.3, 0.7, 0.11))
    check(path, (1, 3, 24, 20), preset="signed", mean=(0.1,), std=(0.9,), bgr=True)
    check(path, (1, 24, 20, 3), preset="imagenet", bgr=True)
    check(path, (1, 24, 20, 4), mean=(0.2, 0.3, 0.4, 0.5), std=(1.5,))
    check(path, (2, 3, 24, 20), preset="imagenet")  # a static batch of copies
    check(path, (1, 3, 24, 20), dtype=np.float16, preset="imagenet")
    check(path, (1, 3, 24, 20), dtype=np.float64, preset="signed")


@pytest.mark.parametrize("path", PICTURES, ids=lambda p: p.name)
def test_integer_models(path):
    check(path, (1, 3, 24, 20), dtype=np.uint8)
    check(path, (1, 24, 20, 3), dtype=np.int32, bgr=True)
    check(path, (1, 3, 24, 20), dtype=np.int8)  # values over 127 are refused
    check(path, (1, 3, 24, 20), dtype=np.int16, preset="raw", mean=(0.5,), std=(1 / 255,))
    check(path, (1, 3, 24, 20), dtype=np.uint8, preset="unit")  # not integers: refused


def test_32_bit_integer_picture(tmp_path):
    values = np.arange(400, dtype=np.int32).reshape(20, 20) * 97
    path = tmp_path / "int32.tif"
    Image.fromarray(values, "I").save(path)
    assert Image.open(path).mode == "I"
    for preset in ("unit", "imagenet", "raw"):
        check(path, (1, 3, 24, 20), preset=preset)
        check(path, (1, 3, "H", "W"), preset=preset, bgr=True)


def test_random_pictures_every_value(tmp_path):
    """All 256 values of every channel occur, at the model's size and resized."""
    rng = np.random.default_rng(16)
    pixels = rng.permutation(np.arange(256 * 64 * 4) % 256).astype(np.uint8).reshape(128, 128, 4)
    for mode, cut in (("RGBA", 4), ("RGB", 3), ("L", 1)):
        path = tmp_path / f"{mode}.png"
        Image.fromarray(np.squeeze(pixels[..., :cut]), mode).save(path)
        for shape in [(1, 3, 128, 128), (1, 3, 50, 70), (1, 128, 128, 4), (1, 1, 128, 128)]:
            for preset in AFFINE:
                check(path, shape, preset=preset, bgr=shape[1] != 1 and shape[3] != 1)


@pytest.mark.parametrize("shape", [(1, 3, "H", "W"), (1, "H", "W", 3), (1, 3, 300, 500)])
def test_no_float64_copy_of_the_picture(tmp_path, shape):
    """Python-side memory of a load (numpy reports its buffers to tracemalloc) stays near the
    float32 tensor it returns: no float64 [H, W, C] temporaries (2x the tensor each). The
    encoded PNG, the decoded bytes and the tensor remain."""
    import tracemalloc

    pixels = np.random.default_rng(1).integers(0, 256, (400, 600, 3), dtype=np.uint8)
    path = tmp_path / "big.png"
    Image.fromarray(pixels, "RGB").save(path)
    target = ModelInput("input", shape, np.dtype(np.float32))
    load_input(path, target, InputOptions(preset="imagenet"))  # imports, caches
    tracemalloc.start()
    try:
        tensor = load_input(path, target, InputOptions(preset="imagenet", bgr=True)).array
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 3 * tensor.nbytes, (peak, tensor.nbytes)  # measured 1.9-2.3x (before: 7x)
