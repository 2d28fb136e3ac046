"""fmviz.inputs.tensors and the feeds for a model's other inputs (fmviz.inputs.build_feeds)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper

from fmviz.errors import InputError, OptionError
from fmviz.graph import ModelInput, load_model
from fmviz.inputs import InputOptions, PreparedInput, build_feeds, load_input
from fmviz.inputs.tensors import read_tensor
from fmviz.model import open_model
from tests import models

IMAGE = ModelInput("input", ("N", 3, 16, 16), np.dtype(np.float32))



def cast_error(path, source: str, target: str) -> str:
    return (
        f"{path}: dtype {source} cannot be cast exactly to the model's {target} "
        f"(save it as {target}, e.g. with array.astype(np.{target}))"
    )

def load(path, tgt=IMAGE):
    return load_input(path, tgt, InputOptions())


def save_npy(path: Path, array) -> Path:
    np.save(path, array)
    return path


# ----------------------------------------------------------------------------- .npy / .npz


def test_npy_with_batch_dim_is_fed_as_is(tmp_path):
    array = np.random.default_rng(0).standard_normal((2, 3, 16, 16)).astype(np.float32)
    prepared = load(save_npy(tmp_path / "x.npy", array))
    assert prepared.kind == "tensor"
    assert prepared.array.dtype == np.float32
    np.testing.assert_array_equal(prepared.array, array)  # no scaling, no resizing
    assert prepared.preprocess["batch_added"] is False
    assert prepared.preprocess["cast"] is None
    assert prepared.overlay_picture() is None


def test_npy_without_batch_dim_gets_one(tmp_path):
    array = np.random.default_rng(1).standard_normal((3, 16, 16)).astype(np.float32) * 100
    prepared = load(save_npy(tmp_path / "x.npy", array))
    assert prepared.array.shape == (1, 3, 16, 16)
    np.testing.assert_array_equal(prepared.array[0], array)
    assert prepared.preprocess["batch_added"] is True
    assert prepared.preprocess["source_shape"] == [3, 16, 16]


def test_npz_with_one_array(tmp_path):
    array = np.arange(3 * 16 * 16, dtype=np.float32).reshape(1, 3, 16, 16)
    path = tmp_path / "one.npz"
    np.savez(path, whatever=array)
    np.testing.assert_array_equal(load(path).array, array)
    compressed = tmp_path / "one_c.npz"
    np.savez_compressed(compressed, array)
    np.testing.assert_array_equal(load(compressed).array, array)


def test_npz_with_two_arrays_is_an_exact_error(tmp_path):
    path = tmp_path / "two.npz"
    np.savez(path, a=np.zeros((3, 16, 16)), b=np.ones((3, 16, 16)))
    with pytest.raises(InputError) as info:
        load(path)
    assert info.value.for_cli() == f"{path}: holds 2 arrays (a, b); fmviz needs exactly one"
    empty = tmp_path / "none.npz"
    np.savez(empty)
    with pytest.raises(InputError) as info:
        load(empty)
    assert info.value.for_cli() == f"{empty}: holds 0 arrays (none); fmviz needs exactly one"


class _Payload:
    """Unpickling this creates a folder: proof that something was unpickled."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def _pickled_npy(path: Path, marker: Path) -> Path:
    np.save(path, np.array([_Payload(marker), 1], dtype=object), allow_pickle=True)
    return path


def test_pickled_payload_really_runs_when_unpickled(tmp_path):
    # sanity check of the payload the next tests rely on
    marker = tmp_path / "ran"
    np.load(_pickled_npy(tmp_path / "sanity.npy", marker), allow_pickle=True)
    assert marker.is_dir()


def test_object_npy_is_refused_and_never_unpickled(tmp_path):
    marker = tmp_path / "pwned"
    path = _pickled_npy(tmp_path / "evil.npy", marker)
    with pytest.raises(InputError) as info:
        load(path)
    assert str(info.value) == f"{path}: holds Python objects, not numbers (fmviz never unpickles)"
    assert not marker.exists()


def test_object_array_inside_npz_is_refused_and_never_unpickled(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.npz"
    np.savez(path, x=np.array([_Payload(marker), 1], dtype=object))
    with pytest.raises(InputError) as info:
        load(path)
    assert info.value.for_cli() == f"{path}: array 'x' holds Python objects (fmviz never unpickles)"
    assert not marker.exists()


def test_non_numeric_dtype_is_refused(tmp_path):
    path = save_npy(tmp_path / "s.npy", np.array(["a", "b"]))
    with pytest.raises(InputError) as info:
        read_tensor(path)
    assert info.value.for_cli() == f"{path}: dtype <U1 is not numeric"


def test_garbage_npy_is_refused(tmp_path):
    path = tmp_path / "junk.npy"
    path.write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(InputError) as info:
        load(path)
    assert info.value.for_cli().startswith(f"{path}: not a valid .npy/.npz file (")
    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")
    with pytest.raises(InputError) as info:
        load(empty)
    assert info.value.for_cli() == f"{empty}: empty file, not a .npy/.npz file"
    text = tmp_path / "text.npy"
    text.write_text("1,2,3\n")
    with pytest.raises(InputError) as info:
        load(text)
    assert info.value.for_cli() == f"{text}: not a .npy or .npz file (no NumPy or zip signature)"


def test_raw_pickle_file_is_refused_and_never_unpickled(tmp_path):
    import pickle

    marker = tmp_path / "pwned"
    path = tmp_path / "raw.npy"
    path.write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(InputError) as info:
        load(path)
    assert str(info.value) == f"{path}: holds a Python pickle, not numbers (fmviz never unpickles)"
    assert not marker.exists()


@pytest.mark.parametrize(
    "shape, shown", [((3, 8, 8), "[3, 8, 8]"), ((2, 4, 16, 16), "[2, 4, 16, 16]"), ((16,), "[16]")]
)
def test_wrong_shape_is_an_exact_error(tmp_path, shape, shown):
    path = save_npy(tmp_path / "bad.npy", np.zeros(shape, np.float32))
    with pytest.raises(InputError) as info:
        load(path)
    assert info.value.for_cli() == (
        f"{path}: tensor shape {shown} does not fit input 'input' [N, 3, 16, 16]"
    )


def test_unknown_dims_are_shown_as_question_marks(tmp_path):
    path = save_npy(tmp_path / "bad.npy", np.zeros((1, 2, 3), np.float32))
    with pytest.raises(InputError) as info:
        load(path, ModelInput("x", (None, 5, None), np.dtype(np.float32)))
    assert str(info.value) == f"{path}: tensor shape [1, 2, 3] does not fit input 'x' [?, 5, ?]"


def test_float64_is_cast_to_float32_only_when_exact(tmp_path):
    exact = np.random.default_rng(2).standard_normal((1, 3, 16, 16)).astype(np.float32)
    prepared = load(save_npy(tmp_path / "d.npy", exact.astype(np.float64)))
    assert prepared.array.dtype == np.float32
    np.testing.assert_array_equal(prepared.array, exact)
    assert prepared.preprocess["cast"] == "float64->float32"
    assert prepared.preprocess["source_dtype"] == "float64"

    rounded = save_npy(tmp_path / "r.npy", np.full((1, 3, 16, 16), 0.1))  # 0.1 is no float32
    with pytest.raises(InputError) as info:
        load(rounded)
    assert info.value.for_cli() == (
        f"{rounded}: dtype float64 cannot be cast exactly to the model's float32 "
        "(save it as float32, e.g. with array.astype(np.float32))"
    )


def test_float_overflowing_float16_is_an_error(tmp_path):
    path = save_npy(tmp_path / "big.npy", np.full((1, 3, 16, 16), 1e6))
    with pytest.raises(InputError) as info:
        load(path, ModelInput("input", ("N", 3, 16, 16), np.dtype(np.float16)))
    assert info.value.for_cli() == cast_error(path, "float64", "float16")


INT_IMAGE = ModelInput("input", ("N", 3, 4, 4), np.dtype(np.int64))


def test_float_to_int64_must_be_exact(tmp_path):
    exact = np.arange(48, dtype=np.float64).reshape(1, 3, 4, 4)
    prepared = load(save_npy(tmp_path / "ok.npy", exact), INT_IMAGE)
    assert prepared.array.dtype == np.int64
    np.testing.assert_array_equal(prepared.array, exact.astype(np.int64))
    inexact = exact + 0.5
    path = save_npy(tmp_path / "half.npy", inexact)
    with pytest.raises(InputError) as info:
        load(path, INT_IMAGE)
    assert info.value.for_cli() == cast_error(path, "float64", "int64")


def test_int_to_float32_must_be_exact(tmp_path):
    fine = np.full((1, 3, 16, 16), 2**24, dtype=np.int64)
    assert load(save_npy(tmp_path / "fine.npy", fine)).array.dtype == np.float32
    path = save_npy(tmp_path / "lossy.npy", fine + 1)  # 2**24 + 1 has no float32
    with pytest.raises(InputError) as info:
        load(path)
    assert info.value.for_cli() == cast_error(path, "int64", "float32")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_tensor_is_an_error(tmp_path, bad):
    array = np.zeros((1, 3, 16, 16), np.float32)
    array[0, 1, 2, 3] = bad
    path = save_npy(tmp_path / "nan.npy", array)
    with pytest.raises(InputError) as info:
        load(path)
    assert info.value.for_cli() == f"{path}: tensor holds 1 NaN or infinite values"


def test_tensor_runs_through_the_model(tmp_path):
    model_path = models.save(models.conv_bn_relu(), tmp_path / "m.onnx")
    array = np.random.default_rng(3).standard_normal((2, 3, 16, 16)).astype(np.float32)
    capture = open_model(model_path, ("cpu",)).capture(save_npy(tmp_path / "x.npy", array))
    assert capture["conv1"].shape == (2, 8, 16, 16)  # the batch of 2 is kept


# ----------------------------------------------------------------------------- feeds


@pytest.fixture
def extra_model(tmp_path) -> Path:
    return models.save(models.extra_inputs(), tmp_path / "extra.onnx")


@pytest.fixture
def image(tmp_path) -> Path:
    from PIL import Image

    path = tmp_path / "pic.png"
    pixels = np.random.default_rng(4).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def test_extra_inputs_get_zeros_with_a_notice(extra_model, image):
    model = open_model(extra_model, ("cpu",))
    prepared, feeds, record, notices = _prepare(model, image)
    np.testing.assert_array_equal(feeds["scale"], np.zeros(1, np.float32))
    assert feeds["scale"].dtype == np.float32
    np.testing.assert_array_equal(feeds["steps"], np.zeros(1, np.int64))
    assert feeds["steps"].dtype == np.int64
    assert feeds["input"] is prepared.array
    assert record == {
        "scale": {"source": "zeros", "shape": [1], "dtype": "float32"},
        "steps": {"source": "zeros", "shape": [1], "dtype": "int64"},
    }
    assert notices == [
        "input 'scale' [1] float32 gets zeros (set it with --feed scale=FILE.npy|NUMBER)",
        "input 'steps' [1] int64 gets zeros (set it with --feed steps=FILE.npy|NUMBER)",
    ]
    capture = model.capture(image)  # onnxruntime accepts the feeds
    assert list(capture.notices) == notices
    assert capture.feeds == record


def test_feed_number_and_file(extra_model, image, tmp_path):
    steps = save_npy(tmp_path / "steps.npy", np.array([7], dtype=np.int64))
    options = InputOptions(feeds=(("scale", "2.5"), ("steps", str(steps))))
    model = open_model(extra_model, ("cpu",))
    _, feeds, record, notices = _prepare(model, image, options)
    np.testing.assert_array_equal(feeds["scale"], np.array([2.5], np.float32))
    np.testing.assert_array_equal(feeds["steps"], np.array([7], np.int64))
    assert notices == []
    assert record["scale"] == {"source": "number", "value": 2.5, "shape": [1], "dtype": "float32"}
    assert record["steps"] == {"source": str(steps), "shape": [1], "dtype": "int64"}
    # the fed values reach the model: output = relu_out * scale, steps_out = steps + 1
    session = model.runner.exposing(["relu_out", "output", "steps_out"])
    out = session.run(feeds)
    np.testing.assert_allclose(out["output"], out["relu_out"] * 2.5, rtol=1e-6)
    np.testing.assert_array_equal(out["steps_out"], [8.0])


def test_feed_file_is_checked_like_an_input(extra_model, image, tmp_path):
    wrong = save_npy(tmp_path / "wrong.npy", np.array([1.5]))
    model = open_model(extra_model, ("cpu",))
    with pytest.raises(InputError) as info:
        _prepare(model, image, InputOptions(feeds=(("steps", str(wrong)),)))
    assert info.value.for_cli() == cast_error(wrong, "float64", "int64")
    with pytest.raises(InputError) as info:
        _prepare(model, image, InputOptions(feeds=(("steps", str(tmp_path / "absent.npy")),)))
    assert info.value.for_cli() == f"{tmp_path / 'absent.npy'}: no such file"


def test_feed_unknown_name_is_an_exact_error(extra_model, image):
    model = open_model(extra_model, ("cpu",))
    with pytest.raises(OptionError) as info:
        _prepare(model, image, InputOptions(feeds=(("bogus", "1"),)))
    assert info.value.for_cli() == (
        "--feed bogus: the model has no input 'bogus' (inputs: 'input', 'scale', 'steps')"
    )
    with pytest.raises(OptionError) as info:
        _prepare(model, image, InputOptions(feeds=(("input", "1"),)))
    assert info.value.for_cli() == "--feed input: that is the input the file is fed to"


@pytest.mark.parametrize("value", ["1.5", "nan", "1e30", "inf"])
def test_feed_number_must_fit_an_integer_input(extra_model, image, value):
    model = open_model(extra_model, ("cpu",))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy RuntimeWarning on the way
        with pytest.raises(OptionError) as info:
            _prepare(model, image, InputOptions(feeds=(("steps", value),)))
    assert info.value.for_cli() == f"--feed steps={value}: not exactly representable as int64"


@pytest.mark.parametrize("value", ["inf", "-inf", "nan"])
def test_non_finite_feed_number_is_recorded_as_json_safe_text(extra_model, image, value):
    import json

    model = open_model(extra_model, ("cpu",))
    _, feeds, record, _ = _prepare(model, image, InputOptions(feeds=(("scale", value),)))
    assert record["scale"]["value"] == str(float(value))
    json.dumps(record, allow_nan=False)  # the manifest is written with allow_nan=False


def _shared_batch_model():
    """``input`` [N, 3, 8, 8] -> conv; ``mask`` [N, 5] and ``other`` [M, 2] pass through."""
    rng = np.random.default_rng(5)
    c, inits = models.conv(rng, "conv", "input", "conv_out", 3, 4)
    nodes = [
        c,
        models.relu("relu", "conv_out", "relu_out"),
        helper.make_node("Identity", ["mask"], ["mask_out"], name="mask_id"),
        helper.make_node("Identity", ["other"], ["other_out"], name="other_id"),
    ]
    return models.make_model(
        nodes,
        [
            models.tensor_input("input", ["N", 3, 8, 8]),
            models.tensor_input("mask", ["N", 5]),
            models.tensor_input("other", ["M", 2], TensorProto.INT64),
        ],
        [
            models.tensor_input("relu_out", ["N", 4, 8, 8]),
            models.tensor_input("mask_out", ["N", 5]),
            models.tensor_input("other_out", ["M", 2], TensorProto.INT64),
        ],
        inits,
    )


def test_symbolic_batch_shared_with_the_primary_input_follows_it(tmp_path):
    model_path = models.save(_shared_batch_model(), tmp_path / "shared.onnx")
    graph = load_model(model_path)
    primary = graph.inputs[0]
    array = np.zeros((3, 3, 8, 8), np.float32)
    prepared = PreparedInput(path=Path("x.npy"), kind="tensor", array=array, preprocess={})
    feeds, record, notices = build_feeds(graph.inputs, primary, prepared.array, InputOptions())
    assert feeds["mask"].shape == (3, 5)  # N is the primary's batch
    assert feeds["other"].shape == (1, 2)  # M is not shared: 1
    assert feeds["other"].dtype == np.int64
    assert record["mask"]["shape"] == [3, 5]
    assert len(notices) == 2
    # and the whole thing runs
    capture = open_model(model_path, ("cpu",)).capture(save_npy(tmp_path / "b3.npy", array))
    assert capture["conv"].shape == (3, 4, 8, 8)


def _prepare(model, source, options=None):
    """The prepared input, its feeds, their record and the notices (as fmviz run makes them)."""
    prepared = model.prepare(source, options)
    feeds, record, notices = model.feeds(prepared, options)
    return prepared, feeds, record, prepared.notices + notices
