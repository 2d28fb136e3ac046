"""Write the bad-input corpus (and the few good files it is checked against).

    python tests/corpus/make_corpus.py            # (re)write tests/corpus/{models,images,...}
    python tests/corpus/make_corpus.py OUT_DIR    # write it somewhere else

Deterministic: fixed seeds, fixed bytes, no clock. The expected outcome of every file (exit
code and exact ``Error:`` line) is in ``expected.json`` beside this script, and
``tests/test_bad_inputs.py`` runs each case through ``fmviz.cli.main``. The files are small
(about 150 KB in all) and committed, so a reader can open them; run this script again after
changing it (``test_corpus_matches_generator`` checks that the committed set is complete).

Layout (paths relative to this folder, which is the working directory of every case)::

    models/   ONNX files: broken, wrong type, external data, no convolution, good ones
    images/   broken images, decompression bombs, odd modes that must work
    tensors/  .npy/.npz: wrong shape/dtype, object arrays (a pickle exploit), NaN, ...
    series/   CSV/TSV/WAV: empty, ragged, non-numeric, unsupported WAV formats, ...
    paths/    a file where a folder is expected, a folder where a file is expected
"""

from __future__ import annotations

import io
import json
import pickle
import struct
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests import models  # noqa: E402

# Marker file the pickle exploit in tensors/object.npy would create (relative to the working
# directory of whoever unpickles it). fmviz must never create it.
PICKLE_MARKER = "PICKLE-EXPLOIT-RAN"
SUBFOLDERS = ("models", "images", "tensors", "series", "paths")


class Exploit:
    """Unpickling this calls ``open(PICKLE_MARKER, "w")``: proof that a loader unpickled it."""

    def __reduce__(self):
        import builtins

        return (builtins.open, (PICKLE_MARKER, "w"))


# ----------------------------------------------------------------------------- helpers


def _write(path: Path, data: bytes | str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)


def _png_bytes(image: Image.Image, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **params)
    return buffer.getvalue()


def _image_bytes(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_header_only(width: int, height: int, mode: int = 2) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` (8-bit, colour type ``mode``) with
    one compressed row of zeros: a decompression bomb as Pillow sees it when opening."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, mode, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64, 9)
    chunks = _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + chunks


def gif_header_only(width: int, height: int) -> bytes:
    """A GIF whose logical screen and one frame claim ``width`` x ``height``."""
    screen = b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\x00" * 6
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0) + b"\x02\x02\x44\x01\x00"
    return screen + frame + b"\x3b"


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=array.dtype.hasobject)
    return buffer.getvalue()


def _npz(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(2020, 1, 1, 0, 0, 0))
            zf.writestr(info, _npy(array))
    return buffer.getvalue()


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0)), data)
    return buffer.getvalue()


def _wav(
    fmt_tag: int,
    channels: int,
    bits: int,
    samples: bytes,
    rate: int = 8000,
    block_align: int | None = None,
    fmt_size: int = 16,
    with_data: bool = True,
) -> bytes:
    if block_align is None:
        block_align = channels * bits // 8
    fmt = struct.pack("<HHIIHH", fmt_tag, channels, rate, rate * block_align, block_align, bits)
    fmt = fmt[:fmt_size] if fmt_size < 16 else fmt + b"\x00" * (fmt_size - 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", fmt_size) + fmt
    if with_data:
        body += b"data" + struct.pack("<I", len(samples)) + samples
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _external(model: onnx.ModelProto, tensor_name: str, location: str) -> onnx.ModelProto:
    """``model`` with initializer ``tensor_name`` moved to external data at ``location``."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    for tensor in model.graph.initializer:
        if tensor.name == tensor_name:
            size = len(numpy_helper.to_array(tensor).tobytes())
            tensor.ClearField("float_data")
            tensor.ClearField("raw_data")
            tensor.data_location = TensorProto.EXTERNAL
            for key, value in (("location", location), ("offset", "0"), ("length", str(size))):
                entry = tensor.external_data.add()
                entry.key, entry.value = key, value
            return model
    raise KeyError(tensor_name)


def _to_external(tensor: TensorProto, location: str, length: int | None = None) -> None:
    """Move ``tensor``'s data to external data at ``location`` (offset 0)."""
    size = len(numpy_helper.to_array(tensor).tobytes())
    tensor.ClearField("float_data")
    tensor.ClearField("int64_data")
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"),
                       ("length", str(size if length is None else length))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value


def _sparse_bias_model(ok: onnx.ModelProto, location: str | None) -> onnx.ModelProto:
    """``ok`` with the bias of conv1 ("conv1.b", 8 floats) as a sparse initializer whose values
    (when ``location`` is given) are external data at ``location``."""
    model = onnx.ModelProto.FromString(ok.SerializeToString())
    bias = next(t for t in model.graph.initializer if t.name == "conv1.b")
    dense = numpy_helper.to_array(bias)
    model.graph.initializer.remove(bias)
    values = numpy_helper.from_array(dense, "conv1.b")
    indices = numpy_helper.from_array(np.arange(dense.size, dtype=np.int64), "conv1.b_indices")
    sparse = helper.make_sparse_tensor(values, indices, list(dense.shape))
    if location is not None:
        _to_external(sparse.values, location)
    model.graph.sparse_initializer.append(sparse)
    return model


def _rank1_input_model() -> onnx.ModelProto:
    """Input ``flat`` [48] -> Reshape [1, 3, 4, 4] -> Conv: no input of rank >= 2 to feed."""
    rng = np.random.default_rng(5)
    c, inits = models.conv(rng, "conv", "image", "conv_out", 3, 4)
    shape = models.const("shape", [1, 3, 4, 4], np.int64)
    return models.make_model(
        [helper.make_node("Reshape", ["flat", "shape"], ["image"], name="reshape"), c],
        [models.tensor_input("flat", [48])],
        [models.tensor_input("conv_out", [1, 4, 4, 4])],
        inits + [shape],
    )


def _unknown_op_model() -> onnx.ModelProto:
    rng = np.random.default_rng(6)
    c, inits = models.conv(rng, "conv", "input", "conv_out", 3, 4)
    node = helper.make_node("NoSuchOp", ["conv_out"], ["output"], name="mystery")
    return models.make_model(
        [c, node],
        [models.tensor_input("input", ["N", 3, 16, 16])],
        [models.tensor_input("output", ["N", 4, 16, 16])],
        inits,
        check=False,
    )


def _mismatched_weights_model() -> onnx.ModelProto:
    """A Conv whose weights expect 5 input channels while the input declares 3."""
    rng = np.random.default_rng(7)
    c, inits = models.conv(rng, "conv", "input", "conv_out", 5, 4)
    return models.make_model(
        [c],
        [models.tensor_input("input", ["N", 3, 16, 16])],
        [models.tensor_input("conv_out", ["N", 4, 16, 16])],
        inits,
        check=False,
    )


def _uint8_model() -> onnx.ModelProto:
    """uint8 [N, 3, 16, 16] -> Cast(float) -> ``conv`` -> Relu: an integer-input image model."""
    rng = np.random.default_rng(8)
    c, inits = models.conv(rng, "conv", "x_f", "conv_out", 3, 4)
    return models.make_model(
        [
            helper.make_node("Cast", ["input"], ["x_f"], name="cast", to=TensorProto.FLOAT),
            c,
            models.relu("relu", "conv_out", "relu_out"),
        ],
        [models.tensor_input("input", ["N", 3, 16, 16], TensorProto.UINT8)],
        [models.tensor_input("relu_out", ["N", 4, 16, 16])],
        inits,
    )


def _string_side_input_model() -> onnx.ModelProto:
    """``conv_bn_relu``-like model with a second, string-typed input ``label`` it ignores."""
    rng = np.random.default_rng(9)
    c, inits = models.conv(rng, "conv", "input", "conv_out", 3, 4)
    return models.make_model(
        [
            c,
            models.relu("relu", "conv_out", "relu_out"),
            helper.make_node("Identity", ["label"], ["label_out"], name="label_id"),
        ],
        [
            models.tensor_input("input", ["N", 3, 16, 16]),
            models.tensor_input("label", [1], TensorProto.STRING),
        ],
        [
            models.tensor_input("relu_out", ["N", 4, 16, 16]),
            models.tensor_input("label_out", [1], TensorProto.STRING),
        ],
        inits,
    )


# ----------------------------------------------------------------------------- the corpus


def build_models(root: Path) -> None:
    d = root / "models"
    ok = models.conv_bn_relu()  # input [N, 3, 16, 16], layers conv1, conv2
    ok_bytes = ok.SerializeToString()
    _write(d / "ok.onnx", ok_bytes)
    _write(d / "dynamic.onnx", models.dynamic_hw().SerializeToString())  # [N, 3, H, W]
    _write(d / "series.onnx", models.conv1d().SerializeToString())  # [N, 2, 32]
    _write(d / "extra.onnx", models.extra_inputs().SerializeToString())
    _write(d / "uint8.onnx", _uint8_model().SerializeToString())

    _write(d / "empty.onnx", b"")
    _write(d / "truncated.onnx", ok_bytes[: len(ok_bytes) // 2])
    _write(d / "random.onnx", np.random.default_rng(1).bytes(2048))
    _write(d / "png.onnx", _png_bytes(Image.new("RGB", (8, 8), (200, 30, 30))))
    _write(d / "json.onnx", json.dumps({"model": "resnet50", "layers": [1, 2, 3]}) + "\n")
    _write(d / "text.onnx", "this is not a model\n")
    _write(d / "no-graph.onnx", onnx.ModelProto(ir_version=8).SerializeToString())
    _write(d / "no-conv.onnx", models.no_conv().SerializeToString())
    _write(d / "only-if.onnx", models.only_if().SerializeToString())
    _write(d / "nested-if.onnx", models.nested_if().SerializeToString())
    _write(d / "rank1-input.onnx", _rank1_input_model().SerializeToString())
    _write(d / "string-input.onnx", _string_side_input_model().SerializeToString())
    _write(d / "unknown-op.onnx", _unknown_op_model().SerializeToString())
    _write(d / "mismatched-weights.onnx", _mismatched_weights_model().SerializeToString())
    ir14 = onnx.ModelProto.FromString(ok_bytes)
    ir14.ir_version = 99
    _write(d / "ir99.onnx", ir14.SerializeToString())
    # Found by fuzzing (tests/test_fuzz.py): a name that is not UTF-8, an attribute with no
    # type, an input of an element type onnx does not know.
    # "conv1_out" (length 9) -> "\x80onv1_out": protobuf hands such a string field back as bytes
    _write(d / "bad-utf8.onnx", ok_bytes.replace(b"\x09conv1_out", b"\x09\x80onv1_out", 1))
    no_type = onnx.ModelProto.FromString(ok_bytes)
    next(a for a in no_type.graph.node[0].attribute if a.name == "group").type = 0
    _write(d / "untyped-attribute.onnx", no_type.SerializeToString())
    odd_elem = onnx.ModelProto.FromString(ok_bytes)
    odd_elem.graph.input[0].type.tensor_type.elem_type = 29
    _write(d / "unknown-elem-type.onnx", odd_elem.SerializeToString())
    # Issue 17, class 5: declared shapes far beyond any memory (refused before allocating).
    huge_extra = onnx.ModelProto.FromString(models.extra_inputs().SerializeToString())
    scale = next(i for i in huge_extra.graph.input if i.name == "scale")
    del scale.type.tensor_type.shape.dim[:]
    for size in (100_000, 100_000, 100):
        scale.type.tensor_type.shape.dim.add().dim_value = size
    _write(d / "huge-extra.onnx", huge_extra.SerializeToString())
    huge_primary = onnx.ModelProto.FromString(ok_bytes)
    dims = huge_primary.graph.input[0].type.tensor_type.shape.dim
    dims[0].dim_value, dims[2].dim_value, dims[3].dim_value = 1, 100_000, 100_000
    _write(d / "huge-primary.onnx", huge_primary.SerializeToString())
    (d / "folder.onnx").mkdir(parents=True, exist_ok=True)
    _write(d / "folder.onnx" / "README", "A folder named like a model file.\n")

    # External data: the weights of conv1 ("conv1.w", 3x3x3x8 float32 = 864 bytes).
    weights = numpy_helper.to_array(
        next(t for t in ok.graph.initializer if t.name == "conv1.w")
    ).tobytes()
    _write(d / "secret.bin", weights)  # exists, but outside the folders below
    ext_ok = d / "external-ok"
    _write(ext_ok / "model.onnx", _external(ok, "conv1.w", "weights.bin").SerializeToString())
    _write(ext_ok / "weights.bin", weights)
    for folder, location in (
        ("external-parent", "../secret.bin"),
        ("external-absolute", "/etc/passwd"),
        ("external-missing", "weights.bin"),
        ("external-sneaky", "sub/../../secret.bin"),
    ):
        _write(d / folder / "model.onnx", _external(ok, "conv1.w", location).SerializeToString())

    # Issue 17, class 2: every tensor that can carry external data is checked the same way.
    bias = numpy_helper.to_array(next(t for t in ok.graph.initializer if t.name == "conv1.b"))
    _write(d / "bias.bin", bias.tobytes())  # outside the folders below, like secret.bin
    sparse_ok = d / "external-sparse-ok"
    _write(sparse_ok / "model.onnx", _sparse_bias_model(ok, "bias.bin").SerializeToString())
    _write(sparse_ok / "bias.bin", bias.tobytes())
    _write(d / "external-sparse-parent" / "model.onnx",
           _sparse_bias_model(ok, "../bias.bin").SerializeToString())
    # onnxruntime resolved this one against the working folder, which holds models/bias.bin
    _write(d / "external-sparse-cwd" / "model.onnx",
           _sparse_bias_model(ok, "models/bias.bin").SerializeToString())
    _write(d / "external-nul" / "model.onnx",
           _external(ok, "conv1.w", "weights\x00.bin").SerializeToString())
    attribute = onnx.ModelProto.FromString(ok_bytes)
    value = numpy_helper.from_array(weights_array := np.zeros(216, np.float32), "const")
    _to_external(value, "../secret.bin", len(weights_array.tobytes()))
    attribute.graph.node.append(
        helper.make_node("Constant", [], ["unused_const"], name="const", value=value)
    )
    _write(d / "external-attribute" / "model.onnx", attribute.SerializeToString())
    branch = models.only_if()
    then_branch = next(a.g for a in branch.graph.node[0].attribute if a.name == "then_branch")
    _to_external(then_branch.initializer[0], "../secret.bin")
    _write(d / "external-subgraph" / "model.onnx", branch.SerializeToString())
    short = d / "external-short"
    _write(short / "model.onnx", _external(ok, "conv1.w", "weights.bin").SerializeToString())
    _write(short / "weights.bin", weights[: len(weights) // 2])
    lying = onnx.ModelProto.FromString(ok_bytes)
    _to_external(next(t for t in lying.graph.initializer if t.name == "conv1.w"), "weights.bin",
                 length=8)
    _write(d / "external-wrong-length" / "model.onnx", lying.SerializeToString())
    _write(d / "external-wrong-length" / "weights.bin", weights)


def build_images(root: Path) -> None:
    d = root / "images"
    rng = np.random.default_rng(2)
    noise = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), "RGB")
    gradient = np.add.outer(np.arange(16), np.arange(16)).astype(np.uint8) * 8
    rgb = Image.fromarray(np.stack([gradient, gradient[::-1], 255 - gradient], axis=2), "RGB")

    _write(d / "ok.png", _png_bytes(rgb))
    noise_png = _png_bytes(noise)
    noise_jpg = _image_bytes(noise, "JPEG", quality=90)
    _write(d / "empty.png", b"")
    _write(d / "truncated.png", noise_png[: len(noise_png) // 2])
    _write(d / "truncated.jpg", noise_jpg[: len(noise_jpg) // 2])
    _write(d / "random.png", np.random.default_rng(3).bytes(1500))
    _write(d / "text.png", "hello, I am a text file with a .png name\n")
    _write(d / "png-named.jpg", _png_bytes(rgb))  # mislabelled but valid: must work
    _write(d / "jpeg-named.png", _image_bytes(rgb, "JPEG", quality=95))  # likewise
    _write(d / "bomb.png", png_header_only(100_000, 100_000))  # over Pillow's hard stop
    _write(d / "bomb-warn.png", png_header_only(10_000, 10_000))  # over Pillow's warning limit
    _write(d / "bomb.gif", gif_header_only(65_535, 65_535))
    _write(d / "zero-size.png", png_header_only(0, 0))
    bad_crc = bytearray(_png_bytes(rgb))
    bad_crc[29] ^= 0xFF  # inside the IHDR CRC
    _write(d / "bad-crc.png", bytes(bad_crc))

    # Modes that must work.
    ramp16 = (np.add.outer(np.arange(16), np.arange(16)) * 2000).astype(np.uint16)
    _write(d / "grey16.png", _png_bytes(Image.fromarray(ramp16)))
    rgb16 = np.stack([ramp16, ramp16[::-1], 65535 - ramp16], axis=2).astype(">u2")
    _write(d / "rgb48.png", _rgb48_png(rgb16))
    _write(d / "cmyk.jpg", _image_bytes(rgb.convert("CMYK"), "JPEG", quality=95))
    _write(d / "cmyk.tif", _image_bytes(rgb.convert("CMYK"), "TIFF"))
    _write(d / "palette.png", _png_bytes(rgb.convert("P", palette=Image.ADAPTIVE, colors=16)))
    _write(
        d / "palette-transparent.png",
        _png_bytes(rgb.convert("P", palette=Image.ADAPTIVE, colors=16), transparency=0),
    )
    rgba = rgb.copy()
    rgba.putalpha(Image.fromarray(gradient))
    _write(d / "rgba.png", _png_bytes(rgba))
    _write(d / "la.png", _png_bytes(rgba.convert("LA")))
    _write(d / "bilevel.png", _png_bytes(rgb.convert("1")))
    floats = Image.fromarray(gradient.astype(np.float32) / 255)
    _write(d / "float.tif", _image_bytes(floats, "TIFF"))
    frames = [rgb, rgb.rotate(90), rgb.rotate(180)]
    _write(
        d / "animated.gif",
        _image_bytes(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50),
    )
    _write(
        d / "animated.png",
        _image_bytes(frames[0], "PNG", save_all=True, append_images=frames[1:], duration=50),
    )
    _write(
        d / "animated.webp",
        _image_bytes(frames[0], "WEBP", save_all=True, append_images=frames[1:], lossless=True),
    )
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    _write(d / "exif-rotated.jpg", _image_bytes(rgb.crop((0, 0, 16, 8)), "JPEG", exif=exif))
    _write(d / "tiny.bmp", _image_bytes(rgb.resize((3, 2)), "BMP"))


def _rgb48_png(values: np.ndarray) -> bytes:
    """A 16-bit-per-channel RGB PNG (Pillow cannot write one), built chunk by chunk."""
    height, width, _ = values.shape
    ihdr = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    rows = b"".join(b"\x00" + values[y].tobytes() for y in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(rows, 9))
        + _chunk(b"IEND", b"")
    )


def build_tensors(root: Path) -> None:
    d = root / "tensors"
    rng = np.random.default_rng(4)
    good = rng.standard_normal((3, 16, 16)).astype(np.float32)
    _write(d / "ok.npy", _npy(good))
    _write(d / "batch4.npy", _npy(rng.standard_normal((4, 3, 16, 16)).astype(np.float32)))
    _write(d / "float16.npy", _npy(good.astype(np.float16)))
    _write(d / "big-endian.npy", _npy(good.astype(">f4")))
    _write(d / "ok.npz", _npz({"x": good}))

    _write(d / "wrong-shape.npy", _npy(np.zeros((1, 3, 8, 8), np.float32)))
    _write(d / "wrong-rank.npy", _npy(np.zeros((16, 16), np.float32)))
    _write(d / "scalar.npy", _npy(np.float32(1.0)))
    _write(d / "batch0.npy", _npy(np.zeros((0, 3, 16, 16), np.float32)))
    _write(d / "complex.npy", _npy(good.astype(np.complex64)))
    _write(d / "strings.npy", _npy(np.full((3, 16, 16), "abc")))
    _write(d / "datetime.npy", _npy(np.zeros((3, 16, 16), "datetime64[s]")))
    _write(d / "structured.npy", _npy(np.zeros((3, 16, 16), [("a", "<f4"), ("b", "<f4")])))
    exploit = np.empty((1,), dtype=object)
    exploit[0] = Exploit()
    _write(d / "object.npy", _npy(exploit))
    _write(d / "object.npz", _npz({"x": exploit}))
    _write(d / "pickle.npy", pickle.dumps(Exploit(), protocol=2))  # a bare pickle named .npy
    nan = good.copy()
    nan[0, 0, :3] = np.nan
    _write(d / "nan.npy", _npy(nan))
    inf = good.copy()
    inf[2, 5, 5] = -np.inf
    _write(d / "inf.npy", _npy(inf))
    _write(d / "inexact-int.npy", _npy(np.full((3, 16, 16), 2**24 + 1, np.int64)))
    _write(d / "overflow.npy", _npy(np.full((3, 16, 16), 1e300, np.float64)))
    _write(d / "two-arrays.npz", _npz({"a": good, "b": good}))
    _write(d / "no-arrays.npz", _zip({}))
    _write(d / "text-member.npz", _zip({"notes.txt": b"not an array\n"}))
    _write(d / "corrupt-member.npz", _zip({"x.npy": _npy(good)[:100]}))
    ok_npy = _npy(good)
    _write(d / "empty.npy", b"")
    _write(d / "truncated.npy", ok_npy[: len(ok_npy) // 2])
    _write(d / "header-only.npy", ok_npy[:128])
    _write(d / "random.npy", np.random.default_rng(5).bytes(512))
    _write(d / "text.npy", "1 2 3\n4 5 6\n")
    # Issue 17, class 4: headers that declare far more than the file holds (a 10 GiB array in a
    # few hundred bytes): refused from the header, before numpy allocates or inflates anything.
    huge = np.lib.format.header_data_from_array_1_0(good)
    huge["shape"] = (1, 3, 30_000, 30_000)
    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(head, huge)
    _write(d / "huge-header.npy", head.getvalue() + b"\x00" * 64)
    deflated = io.BytesIO()
    with zipfile.ZipFile(deflated, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        info = zipfile.ZipInfo("x.npy", date_time=(2020, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        zf.writestr(info, head.getvalue() + b"\x00" * 4096)
    _write(d / "huge-member.npz", deflated.getvalue())
    _write(d / "fractions.npy", _npy(np.full((3, 16, 16), 0.5, np.float32)))  # for uint8.onnx


def build_series(root: Path) -> None:
    d = root / "series"
    t = np.arange(40)
    rows = "\n".join(f"{np.sin(i / 5):.4f},{np.cos(i / 5):.4f}" for i in t)
    _write(d / "ok.csv", "a,b\n" + rows + "\n")
    _write(d / "empty.csv", b"")
    _write(d / "blank-lines.csv", "\n\n  \n")
    _write(d / "header-only.csv", "a,b\n")
    _write(d / "ragged.csv", "1,2\n3,4\n5\n6,7\n")
    _write(d / "bad-cell.csv", "a,b\n1,2\n3,abc\n")
    _write(d / "empty-cell.csv", "1,2\n3,\n5,6\n")
    _write(d / "nan.csv", "1,2\n3,nan\n")
    _write(d / "inf.tsv", "1\t2\n-inf\t4\n")
    _write(d / "binary.csv", bytes(range(128, 256)) * 4)
    _write(d / "nul.csv", "1,2\n3,\x004\n")
    _write(d / "three-columns.csv", "1,2,3\n4,5,6\n")
    _write(d / "unterminated.csv", '1,"2\n3,4\n')

    pcm = (np.sin(np.arange(64) / 4) * 20000).astype("<i2")
    stereo = np.stack([pcm, pcm[::-1]], axis=1).tobytes()
    _write(d / "stereo.wav", _wav(1, 2, 16, stereo))
    _write(d / "mono.wav", _wav(1, 1, 16, pcm.tobytes()))
    _write(d / "empty.wav", b"")
    _write(d / "text.wav", "RIFF? no, just text pretending to be audio\n")
    _write(d / "truncated-fmt.wav", _wav(1, 2, 16, stereo)[:30])
    _write(d / "no-data.wav", _wav(1, 2, 16, b"", with_data=False))
    _write(d / "no-samples.wav", _wav(1, 2, 16, b""))
    _write(d / "adpcm.wav", _wav(2, 2, 4, b"\x00" * 64, block_align=2))
    _write(d / "pcm12.wav", _wav(1, 2, 12, b"\x00" * 64, block_align=4))
    _write(d / "zero-channels.wav", _wav(1, 0, 16, b"\x00" * 64, block_align=0))
    _write(d / "bad-block-align.wav", _wav(1, 2, 16, stereo, block_align=3))
    _write(d / "rf64.wav", b"RF64" + _wav(1, 2, 16, stereo)[4:])
    nan_samples = np.array([[0.1, np.nan]] * 8, "<f4").tobytes()
    _write(d / "nan.wav", _wav(3, 2, 32, nan_samples))


def build_paths(root: Path) -> None:
    d = root / "paths"
    _write(d / "a-file", "a file where a folder is expected\n")
    (d / "folder.png").mkdir(parents=True, exist_ok=True)
    _write(d / "folder.png" / "README", "A folder named like an image.\n")
    _write(d / "notes.txt", "an input of no known kind\n")


def build(root: Path) -> list[Path]:
    """Write the whole corpus under ``root``; returns the files written, sorted."""
    root = Path(root)
    build_models(root)
    build_images(root)
    build_tensors(root)
    build_series(root)
    build_paths(root)
    return sorted(p for sub in SUBFOLDERS for p in (root / sub).rglob("*") if p.is_file())


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE
    written = build(target)
    total = sum(p.stat().st_size for p in written)
    print(f"{len(written)} files, {total} bytes under {target}")
