"""Extremes that must still work: 4,096 channels, 1x1 maps, batches, float16 and uint8 models,
and a 100-megapixel photo resized by ``--size``.

Expected values come from ``onnx.reference.ReferenceEvaluator`` or numpy on the same tensors,
not from fmviz.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import textwrap
import time
import zlib
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from PIL import Image

from fmviz.cli import main
from tests import models

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "corpus"
OK_IMAGE = CORPUS / "images" / "ok.png"


def run_ok(args, capfd) -> None:
    code = main([str(a) for a in args])
    captured = capfd.readouterr()
    assert code == 0, captured.err
    assert "Error" not in captured.err


def manifest_of(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def decode(path: Path) -> Image.Image:
    with Image.open(path) as picture:
        picture.load()
        return picture.copy()


# ----------------------------------------------------------------------------- 4,096 channels


def wide_model(channels: int = 4096) -> onnx.ModelProto:
    """[1, 3, 4, 4] -> ``wide`` (1x1 conv, 3 -> ``channels``) -> Relu ``wide_out``."""
    rng = np.random.default_rng(41)
    conv, inits = models.conv(rng, "wide", "input", "wide_pre", 3, channels, kernel=(1, 1))
    return models.make_model(
        [conv, models.relu("relu", "wide_pre", "wide_out")],
        [models.tensor_input("input", [1, 3, 4, 4])],
        [models.tensor_input("wide_out", [1, channels, 4, 4])],
        inits,
    )


def test_4096_channels_show_the_256_strongest(tmp_path, capfd):
    model = wide_model()
    path = models.save(model, tmp_path / "wide.onnx")
    x = np.random.default_rng(2).standard_normal((1, 3, 4, 4)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    started = time.perf_counter()
    run_ok(["run", path, tmp_path / "x.npy", "-o", tmp_path / "out"], capfd)
    elapsed = time.perf_counter() - started
    layer = manifest_of(tmp_path / "out" / "x")["layers"][0]
    (expected,) = models.reference_outputs(model, {"input": x}, ["wide_out"])
    assert layer["channels"] == 4096 and layer["shape"] == [1, 4096, 4, 4]
    assert len(layer["channel_stats"]["max"]) == 4096
    np.testing.assert_allclose(
        layer["channel_stats"]["max"], expected[0].max(axis=(1, 2)), rtol=1e-4, atol=1e-5
    )
    shown = layer["shown_channels"]
    assert len(shown) == 256 == len(set(shown))
    energy = np.abs(expected[0]).mean(axis=(1, 2))
    # the shown channels are the strongest: none left out is stronger than the weakest shown
    assert energy[np.setdiff1d(np.arange(4096), shown)].max() <= energy[shown].min() + 1e-5
    assert layer["grid"]["rows"] * layer["grid"]["cols"] >= 256
    grid = decode(tmp_path / "out" / "x" / layer["files"]["grid"])
    g = layer["grid"]
    assert grid.size == (
        g["cols"] * (g["tile_width"] + g["gap"]) + g["gap"],
        g["rows"] * (g["tile_height"] + g["gap"]) + g["gap"],
    )
    assert decode(tmp_path / "out" / "x" / layer["files"]["heatmap"]).size[0] >= grid.size[0]
    assert elapsed < 30


def test_4096_channels_can_all_be_shown(tmp_path, capfd):
    path = models.save(wide_model(), tmp_path / "wide.onnx")
    np.save(tmp_path / "x.npy", np.ones((3, 4, 4), np.float32))
    out = tmp_path / "out"
    run_ok(["run", path, tmp_path / "x.npy", "-o", out, "--max-channels", "5000"], capfd)
    layer = manifest_of(tmp_path / "out" / "x")["layers"][0]
    assert sorted(layer["shown_channels"]) == list(range(4096))
    assert decode(tmp_path / "out" / "x" / layer["files"]["grid"]).size[0] > 1000


# ----------------------------------------------------------------------------- 1x1 maps


def pointwise_model() -> onnx.ModelProto:
    """[1, 3, 1, 1] -> ``p1`` (1x1, 8 ch) -> Relu -> GlobalAveragePool -> ``p2`` (1x1, 2 ch)."""
    rng = np.random.default_rng(42)
    c1, i1 = models.conv(rng, "p1", "input", "p1_out", 3, 8, kernel=(1, 1))
    c2, i2 = models.conv(rng, "p2", "pooled", "p2_out", 8, 2, kernel=(1, 1))
    return models.make_model(
        [
            c1,
            models.relu("r1", "p1_out", "r1_out"),
            helper.make_node("GlobalAveragePool", ["r1_out"], ["pooled"], name="pool"),
            c2,
        ],
        [models.tensor_input("input", [1, 3, 1, 1])],
        [models.tensor_input("p2_out", [1, 2, 1, 1])],
        i1 + i2,
    )


def test_1x1_maps_are_drawn_as_a_strip_of_upscaled_cells(tmp_path, capfd):
    path = models.save(pointwise_model(), tmp_path / "point.onnx")
    run_ok(["run", path, OK_IMAGE, "-o", tmp_path / "out"], capfd)
    manifest = manifest_of(tmp_path / "out" / "ok")
    assert [layer["shape"] for layer in manifest["layers"]] == [[1, 8, 1, 1], [1, 2, 1, 1]]
    for layer in manifest["layers"]:
        grid = layer["grid"]
        assert layer["view"] == "strip" and layer["scale"]["normalize"] == "layer"
        assert grid["tile_height"] == grid["tile_width"] == grid["scale"] >= 8  # not 1 pixel
        assert len(grid["channels"]) == layer["channels"]
        folder = tmp_path / "out" / "ok"
        pictures = {kind: decode(folder / name) for kind, name in layer["files"].items()}
        assert "overlay" not in pictures  # one value per channel says nothing about where
        assert min(pictures["grid"].size) > 8


# ----------------------------------------------------------------------------- batches


def test_batch_statistics_cover_the_batch_and_pictures_show_the_first_item(tmp_path, capfd):
    model = models.conv_bn_relu()  # [N, 3, 16, 16]
    path = models.save(model, tmp_path / "cbr.onnx")
    rng = np.random.default_rng(3)
    batch = rng.standard_normal((4, 3, 16, 16)).astype(np.float32)
    batch[1:] *= 5  # the other items are much stronger than the first
    np.save(tmp_path / "batch.npy", batch)
    np.save(tmp_path / "first.npy", batch[:1])
    inputs = [tmp_path / "batch.npy", tmp_path / "first.npy"]
    run_ok(["run", path, *inputs, "-o", tmp_path / "out"], capfd)
    together = manifest_of(tmp_path / "out" / "batch")
    alone = manifest_of(tmp_path / "out" / "first")
    assert together["input"]["tensor_shape"] == [4, 3, 16, 16]
    expected = models.reference_outputs(model, {"input": batch}, ["relu1_out", "relu2_out"])
    for layer, first_layer, want in zip(together["layers"], alone["layers"], expected, strict=True):
        assert layer["shape"][0] == 4
        stats = layer["stats"]
        assert stats["max"] == pytest.approx(float(want.max()), rel=1e-4)
        assert stats["mean"] == pytest.approx(float(want.mean()), rel=1e-3)
        assert stats["zero_fraction"] == pytest.approx(float((want == 0).mean()), abs=1e-6)
        np.testing.assert_allclose(
            layer["channel_stats"]["max"], want.max(axis=(0, 2, 3)), rtol=1e-4, atol=1e-6
        )
        assert stats["max"] > first_layer["stats"]["max"]  # the batch, not the first item
        for kind in ("grid", "heatmap"):  # pictures: the first item only
            a = np.asarray(decode(tmp_path / "out" / "batch" / layer["files"][kind]))
            b = np.asarray(decode(tmp_path / "out" / "first" / first_layer["files"][kind]))
            if kind == "grid":  # the heatmap's colour scale prints the (batch) range
                np.testing.assert_array_equal(a, b)
            assert a.shape == b.shape


# ----------------------------------------------------------------------------- dtypes


def cast_model(elem: int, name: str) -> onnx.ModelProto:
    """``input`` of type ``elem`` [N, 3, 16, 16] -> Cast(float) -> ``conv`` -> Relu ``relu_out``."""
    rng = np.random.default_rng(43)
    conv, inits = models.conv(rng, "conv", "x_float", "conv_out", 3, 4)
    return models.make_model(
        [
            helper.make_node("Cast", ["input"], ["x_float"], name="to_float", to=TensorProto.FLOAT),
            conv,
            models.relu("relu", "conv_out", "relu_out"),
        ],
        [models.tensor_input("input", ["N", 3, 16, 16], elem)],
        [models.tensor_input("relu_out", ["N", 4, 16, 16])],
        inits,
        name=name,
    )


def test_float16_model(tmp_path, capfd):
    model = cast_model(TensorProto.FLOAT16, "fp16")
    path = models.save(model, tmp_path / "fp16.onnx")
    # float16 values stored as float32: the cast to the model's float16 is exact
    x = np.random.default_rng(4).standard_normal((3, 16, 16)).astype(np.float16)
    x = x.astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    run_ok(["run", path, OK_IMAGE, tmp_path / "x.npy", "-o", tmp_path / "out"], capfd)
    image = manifest_of(tmp_path / "out" / "ok")
    tensor = manifest_of(tmp_path / "out" / "x")
    assert image["input"]["tensor_dtype"] == "float16"
    assert tensor["input"]["preprocess"]["cast"] == "float32->float16"
    (want,) = models.reference_outputs(model, {"input": x[None].astype(np.float16)}, ["relu_out"])
    assert tensor["layers"][0]["stats"]["max"] == pytest.approx(float(want.max()), rel=1e-4)
    overlay = decode(tmp_path / "out" / "ok" / image["layers"][0]["files"]["overlay"])
    assert overlay.size == (256 + 92, 256)  # 16x16 upscaled 16 times, plus its colour bar


def test_uint8_model(tmp_path, capfd):
    model = cast_model(TensorProto.UINT8, "u8")
    path = models.save(model, tmp_path / "u8.onnx")
    pixels = np.asarray(Image.open(OK_IMAGE).convert("RGB"))  # 16x16, like the model
    np.save(tmp_path / "u8.npy", pixels.transpose(2, 0, 1).copy())
    run_ok(["run", path, OK_IMAGE, tmp_path / "u8.npy", "-o", tmp_path / "out"], capfd)
    image = manifest_of(tmp_path / "out" / "ok")
    tensor = manifest_of(tmp_path / "out" / "u8")
    assert image["input"]["tensor_dtype"] == "uint8"
    assert image["input"]["preprocess"]["preset"] == "raw"
    feed = {"input": pixels.transpose(2, 0, 1)[None].copy()}
    (want,) = models.reference_outputs(model, feed, ["relu_out"])
    for manifest in (image, tensor):  # the image, fed raw, is exactly the uint8 tensor
        assert manifest["layers"][0]["stats"]["max"] == pytest.approx(float(want.max()), rel=1e-5)


# ----------------------------------------------------------------------------- 100 megapixels


def uniform_png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """An RGB PNG of one colour, written fast: one deflate block of rows, repeated.

    After a full flush deflate forgets its history, so the compressed form of the same rows
    is the same bytes every time; the zlib checksum is computed over the real data.
    """
    row = b"\x00" + bytes(rgb) * width  # filter type 0, then the pixels
    per_block = 64
    blocks, rest = divmod(height, per_block)
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = deflate.compress(row * per_block) + deflate.flush(zlib.Z_FULL_FLUSH)
    tail = deflate.compress(row * rest) + deflate.flush(zlib.Z_FINISH)
    adler = 1
    for _ in range(blocks):
        adler = zlib.adler32(row * per_block, adler)
    adler = zlib.adler32(row * rest, adler)
    idat = b"\x78\xda" + block * blocks + tail + struct.pack(">I", adler)

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="peak memory from /proc")
def test_100_megapixel_photo_resized_by_size(tmp_path):
    photo = tmp_path / "photo.png"
    photo.write_bytes(uniform_png(10_000, 10_000, (90, 140, 200)))
    assert photo.stat().st_size < 1_000_000
    model = models.save(models.dynamic_hw(), tmp_path / "dynamic.onnx")  # [N, 3, H, W]
    out = tmp_path / "out"
    # A child process, so its peak memory is its own.
    script = textwrap.dedent(
        f"""
        import time
        from fmviz.cli import main
        started = time.perf_counter()
        code = main(["run", {str(model)!r}, {str(photo)!r}, "--size", "64",
                     "--max-pixels", "200000000", "-o", {str(out)!r}, "-q"])
        seconds = time.perf_counter() - started
        # VmHWM: this process's own peak (ru_maxrss would include the parent's, kept over exec)
        with open("/proc/self/status") as status:
            peak = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
        print(code, seconds, peak)
        """
    )
    paths = [str(ROOT), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.stderr == "", result.stderr
    code, seconds, peak_kb = result.stdout.split()
    assert int(code) == 0
    manifest = manifest_of(out / "photo")
    preprocess = manifest["input"]["preprocess"]
    assert preprocess["size"] == [10_000, 10_000]
    assert preprocess["resized_to"] == [64, 64]
    assert preprocess["reduced_by"] == 4  # Image.reduce before the float conversion
    assert manifest["input"]["tensor_shape"] == [1, 3, 64, 64]
    layer = manifest["layers"][0]
    overlay = decode(out / "photo" / layer["files"]["overlay"])
    assert overlay.size == (2048 + 92, 2048)  # the long side capped at 2048, plus the bar
    assert decode(out / "photo" / layer["files"]["grid"]).size[0] > 0
    # 10^8 RGB pixels decode to 300 MB; without the reduction the float copies took ~2.4 GB.
    assert int(peak_kb) < 1_200_000, f"peak {int(peak_kb) / 1024:.0f} MB"
    assert float(seconds) < 60, f"{float(seconds):.1f} s"
