"""Every tensor rank renders (3-D convolutions, [N, C] strips, empty maps), extra model inputs
get feeds, and convolutions inside ``If`` branches can be threaded out (fmviz.graph.controlflow)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper
from PIL import Image

import models as tm
from fmviz.cli import main
from fmviz.errors import OptionError
from fmviz.graph import Layer, ModelInput, analyse, load_model
from fmviz.graph.controlflow import thread_if_outputs
from fmviz.graph.edits import expose
from fmviz.inputs import InputOptions, PreparedInput, build_feeds
from fmviz.model import Model, open_model
from fmviz.probes import make_probes
from fmviz.render.layer import render_layer
from fmviz.stats import summarize
from fmviz.visualize import RenderOptions, RunOptions, write_outputs

F32 = np.dtype(np.float32)
I64 = np.dtype(np.int64)


def fake_input(array: np.ndarray | None = None, picture=None) -> PreparedInput:
    array = np.zeros((1, 3, 8, 8), np.float32) if array is None else array
    return PreparedInput(Path("x.npy"), "tensor", array, {}, picture=picture)


LAYER = Layer(0, "conv", "Conv", "c", "c", None, (3, 3), (1, 1), 1, 4)
(PROBE,) = make_probes(analyse(tm.conv_bn_relu()), [LAYER], "post")


# ----------------------------------------------------------------------------- 3-D


def test_conv3d_renders_a_max_projection_over_depth(tmp_path):
    model = tm.conv3d()
    model_path = tm.save(model, tmp_path / "c3d.onnx")
    rng = np.random.default_rng(0)
    volume = rng.standard_normal((1, 1, 4, 8, 8)).astype(np.float32)
    np.save(tmp_path / "vol.npy", volume)
    out = tmp_path / "out"
    assert main(["run", str(model_path), str(tmp_path / "vol.npy"), "-o", str(out), "-q"]) == 0
    manifest = json.loads((out / "vol" / "manifest.json").read_text())
    (entry,) = manifest["layers"]
    assert entry["view"] == "max-projection over depth"
    assert entry["shape"] == [1, 4, 4, 8, 8]
    assert set(entry["files"]) == {"grid", "heatmap"}

    (relu,) = tm.reference_outputs(model, {"input": volume}, ["relu_out"])
    projection = relu[0].max(axis=1)  # [C, H, W], independent of fmviz
    grid = np.asarray(Image.open(out / "vol" / entry["files"]["grid"]))
    layout = entry["grid"]
    scale, gap = layout["scale"], layout["gap"]
    for k, channel in enumerate(layout["channels"]):
        r, c = divmod(k, layout["cols"])
        y = gap + r * (layout["tile_height"] + gap)
        x = gap + c * (layout["tile_width"] + gap)
        tile = grid[y : y + layout["tile_height"] : scale, x : x + layout["tile_width"] : scale]
        plane = projection[channel]
        lo, hi = plane.min(), plane.max()
        expected = np.rint((plane - lo) / (hi - lo) * 249)
        keep = np.ones(tile.shape, dtype=bool)
        if layout.get("label_box"):  # the channel number's corner box holds no values
            bw, bh = layout["label_box"]
            keep[: -(-bh // scale), : -(-bw // scale)] = False
        np.testing.assert_allclose(tile[keep], expected[keep], atol=1)
    assert entry["stats"]["max"] == pytest.approx(float(relu.max()), rel=1e-5)


# ----------------------------------------------------------------------------- every rank


@pytest.mark.parametrize(
    ("shape", "view", "files"),
    [
        ((), "strip", {"grid", "heatmap"}),
        ((7,), "strip", {"grid", "heatmap"}),
        ((2, 40), "strip", {"grid", "heatmap"}),  # [N, C]
        ((1, 3, 12), "series", {"series"}),  # [N, C, L]
        ((1, 3, 5, 6), None, {"grid", "heatmap"}),
        ((1, 3, 2, 5, 6), "max-projection over depth", {"grid", "heatmap"}),
        ((1, 2, 2, 2, 5, 6), "max-projection over depth", {"grid", "heatmap"}),
        ((1, 4, 0), "empty", set()),
        ((1, 4, 0, 0), "empty", set()),
        ((0, 4, 5, 5), "empty", set()),
    ],
)
def test_no_rank_crashes(tmp_path, shape, view, files):
    rng = np.random.default_rng(1)
    array = rng.standard_normal(shape).astype(np.float32)
    result = render_layer(array, PROBE, fake_input(), tmp_path, "000-conv", RenderOptions())
    assert result.get("view") == view
    assert set(result["files"]) == files
    for name in result["files"].values():
        image = Image.open(tmp_path / name)
        assert min(image.size) > 1
        assert len(np.unique(np.asarray(image))) > (2 if array.size > 1 else 1)
    summarize(array.reshape(1, -1) if array.ndim < 2 else array)  # statistics cope too


def test_n_c_strip_shows_every_channel_with_its_value(tmp_path):
    values = np.array([[0.1, -3.0, 0.2, 5.0, 0.0, 1.0]], np.float32)
    result = render_layer(values, PROBE, fake_input(), tmp_path, "s",
                          RenderOptions(max_channels=3))
    assert result["view"] == "strip"
    assert result["shown_channels"] == [0, 1, 2, 3, 4, 5]  # all, in channel order
    assert result["ranges"][0] == [-5.0, 5.0]  # both signs weigh: centred on 0
    assert result["scale"] == {"kind": "diverging", "normalize": "layer", "lo": -3.0, "hi": 5.0}
    grid = np.asarray(Image.open(tmp_path / result["files"]["grid"]))
    x0, y0 = result["strip_origin"]
    g = result["grid"]
    cells = [grid[y0 + g["gap"] + g["tile_height"] // 2,
                  x0 + g["gap"] + k * (g["tile_width"] + g["gap"]) + g["tile_width"] // 2]
             for k in range(6)]
    np.testing.assert_array_equal(cells, np.rint((values[0].astype(np.float64) + 5) / 10 * 249))


def test_3d_layer_with_an_image_gets_no_overlay(tmp_path):
    picture = Image.new("RGB", (8, 8), (10, 20, 30))
    array = np.random.default_rng(2).random((1, 2, 3, 8, 8)).astype(np.float32)
    result = render_layer(array, PROBE, fake_input(picture=picture), tmp_path, "p",
                          RenderOptions())
    assert "overlay" not in result["files"]


# ----------------------------------------------------------------------------- feeds


def _inputs(*items) -> list[ModelInput]:
    return [ModelInput(name, shape, dtype) for name, shape, dtype in items]


def test_state_and_sample_rate_inputs_get_zeros_with_notices():
    inputs = _inputs(
        ("audio", ("batch", "L"), F32),
        ("state", (2, "batch", 64), F32),
        ("h0", (1, 1, 64), F32),
        ("sr", (), I64),
        ("sr1", (1,), I64),
        ("flag", None, np.dtype(bool)),
    )
    prepared = PreparedInput(Path("a.wav"), "series", np.zeros((3, 100), np.float32), {})
    feeds, record, notices = build_feeds(inputs, inputs[0], prepared.array, InputOptions())
    assert feeds["state"].shape == (2, 3, 64)  # the batch symbol follows the audio's batch
    assert feeds["h0"].shape == (1, 1, 64) and feeds["h0"].dtype == np.float32
    assert feeds["sr"].shape == () and feeds["sr"].dtype == np.int64
    assert feeds["sr1"].shape == (1,)
    assert record["sr"] == {"source": "zeros", "shape": [], "dtype": "int64"}
    assert len(notices) == 5
    assert "input 'sr' [] int64 gets zeros (set it with --feed sr=FILE.npy|NUMBER)" in notices


def test_feed_numbers_and_files(tmp_path):
    inputs = _inputs(("x", (1, 2, 10), F32), ("sr", (), I64), ("h", (1, 1, 4), F32),
                     ("flag", (), np.dtype(bool)))
    np.save(tmp_path / "h.npy", np.arange(4, dtype=np.float64).reshape(1, 4))
    prepared = PreparedInput(Path("s.csv"), "series", np.zeros((1, 2, 10), np.float32), {})
    options = InputOptions(feeds=(("sr", "16000"), ("h", str(tmp_path / "h.npy")),
                                  ("flag", "1")))
    feeds, record, notices = build_feeds(inputs, inputs[0], prepared.array, options)
    assert feeds["sr"] == 16000 and feeds["sr"].dtype == np.int64
    np.testing.assert_array_equal(feeds["h"], [[[0, 1, 2, 3]]])
    assert feeds["h"].dtype == np.float32
    assert bool(feeds["flag"]) is True
    assert record["sr"] == {"source": "number", "value": 16000.0, "shape": [], "dtype": "int64"}
    assert notices == []
    with pytest.raises(OptionError, match="not exactly representable as int64"):
        build_feeds(inputs, inputs[0], prepared.array, InputOptions(feeds=(("sr", "0.5"),)))
    with pytest.raises(OptionError, match="that is the input the file is fed to"):
        build_feeds(inputs, inputs[0], prepared.array, InputOptions(feeds=(("x", "1"),)))


# ----------------------------------------------------------------------------- control flow


def sr_if_model() -> onnx.ModelProto:
    """Raw audio [1, 64] and int64 ``sr`` []: If(sr == 16000) runs ``conv16k`` (k5 s2 ->
    Relu -> ``conv16k_b`` k3), else ``conv8k`` (k3): every convolution is inside the If."""
    rng = np.random.default_rng(5)
    a, ia = tm.conv(rng, "conv16k", "x3", "a_out", 1, 4, kernel=(5,), stride=(2,), pads=(2, 2))
    b, ib = tm.conv(rng, "conv16k_b", "a_relu", "b_out", 4, 6, kernel=(3,))
    then_g = helper.make_graph(
        [a, tm.relu("relu_a", "a_out", "a_relu"), b], "then", [],
        [tm.tensor_input("b_out", [1, 6, 32])], ia + ib,
    )
    c, ic = tm.conv(rng, "conv8k", "x3", "c_out", 1, 6, kernel=(3,), stride=(2,), pads=(1, 1))
    else_g = helper.make_graph([c], "else", [], [tm.tensor_input("c_out", [1, 6, 32])], ic)
    nodes = [
        helper.make_node("Unsqueeze", ["audio", "axis1"], ["x3"], name="unsqueeze"),
        helper.make_node("Equal", ["sr", "k16"], ["is16k"], name="is16k"),
        helper.make_node("If", ["is16k"], ["feat"], name="by_rate", then_branch=then_g,
                         else_branch=else_g),
    ]
    return tm.make_model(
        nodes,
        [tm.tensor_input("audio", [1, 64]), tm.tensor_input("sr", [], TensorProto.INT64)],
        [tm.tensor_input("feat", [1, 6, 32])],
        [tm.const("axis1", [1], np.int64), tm.const("k16", 16000, np.int64)],
    )


@pytest.mark.parametrize("builder", [tm.only_if, tm.conv_in_if, tm.nested_if])
def test_thread_if_outputs_exposes_branch_convolutions(builder):
    model = builder()
    before = model.SerializeToString()
    threaded, layers = thread_if_outputs(model, start_index=10)
    assert model.SerializeToString() == before  # the input is not changed
    onnx.checker.check_model(threaded)
    inner = [u.name for u in load_model_from(model).unreachable]
    assert sorted(layer.name for layer in layers) == sorted(inner)
    assert [layer.index for layer in layers] == list(range(10, 10 + len(layers)))
    main_values = {out for node in threaded.graph.node for out in node.output}
    assert {layer.post_tensor for layer in layers} <= main_values  # outputs of the If itself

    tensors = list(dict.fromkeys(t for layer in layers for t in (layer.pre_tensor,
                                                                  layer.post_tensor)))
    session = ort.InferenceSession(expose(analyse(threaded), tensors),
                                   providers=["CPUExecutionProvider"])
    original = ort.InferenceSession(before, providers=["CPUExecutionProvider"])
    feeds = tm.random_input(model)
    for flag in (True, False):
        feeds["flag"] = np.array(flag)
        outputs = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds),
                           strict=True))
        (expected,) = original.run(None, feeds)
        np.testing.assert_array_equal(outputs[threaded.graph.output[0].name], expected)
        ran = [layer for layer in layers if outputs[layer.post_tensor].size]
        assert ran, "the branch that ran exposes its convolutions"
        for layer in layers:
            value = outputs[layer.post_tensor]
            if value.size == 0:  # the branch that did not run: [1, C, 0, 0], no fake zeros
                assert value.shape == (1, layer.channels, 0, 0)
        # the branch's final convolution output is what the If returned
        last = [layer for layer in ran if outputs[layer.post_tensor].shape == expected.shape]
        assert any(np.array_equal(outputs[layer.post_tensor], expected) for layer in last)


def load_model_from(model: onnx.ModelProto):
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        return load_model(tm.save(model, Path(folder) / "m.onnx"))


def test_sample_rate_if_model_end_to_end_with_feed(tmp_path):
    model = sr_if_model()
    graph = load_model(tm.save(model, tmp_path / "vad.onnx"))
    assert graph.layers == [] and len(graph.unreachable) == 3
    # How graph.load_model should hook it in: thread, then append the layers.
    threaded, extra = thread_if_outputs(graph.proto, start_index=len(graph.layers))
    graph = dataclasses.replace(graph, proto=threaded, layers=graph.layers + extra,
                                unreachable=[])
    assert [layer.name for layer in extra] == ["conv16k", "conv16k_b", "conv8k"]
    assert [layer.activation for layer in extra] == ["Relu", None, None]

    audio = np.sin(np.arange(64) / 3).astype(np.float32)[np.newaxis]
    np.save(tmp_path / "clip.npy", audio)
    fmviz_model = Model(graph, providers=("cpu",))
    options = InputOptions(feeds=(("sr", "16000"),))
    capture = fmviz_model.capture(tmp_path / "clip.npy", options=options)
    (a_relu, b_out) = tm.reference_outputs(
        model_then(model), {"audio": audio}, ["a_relu", "b_out"]
    )
    np.testing.assert_allclose(capture["conv16k"], a_relu, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(capture["conv16k_b"], b_out, rtol=1e-5, atol=1e-5)
    assert capture["conv8k"].shape == (1, 6, 0)  # the other branch did not run

    manifest = write_outputs(fmviz_model, [capture], tmp_path, RunOptions(out=tmp_path))
    entries = {entry["name"]: entry for entry in manifest["layers"]}
    assert entries["conv16k"]["view"] == "series"
    assert entries["conv16k"]["time_axis"]["method"] == "length-ratio"  # inside If: no walk
    assert entries["conv8k"]["view"] == "empty" and entries["conv8k"]["files"] == {}
    assert entries["conv8k"]["stats"]["max"] is None
    assert manifest["input"]["feeds"]["sr"]["value"] == 16000.0
    assert (tmp_path / entries["conv16k_b"]["files"]["series"]).is_file()


def model_then(model: onnx.ModelProto) -> onnx.ModelProto:
    """The sr model's then branch as a plain model (for an independent reference)."""
    (if_node,) = [n for n in model.graph.node if n.op_type == "If"]
    then_g = next(a.g for a in if_node.attribute if a.name == "then_branch")
    nodes = [model.graph.node[0], *then_g.node]
    return tm.make_model(
        nodes,
        [tm.tensor_input("audio", [1, 64])],
        [tm.tensor_input("b_out", [1, 6, 32])],
        [*model.graph.initializer, *then_g.initializer],
    )


def test_model_without_if_comes_back_unchanged():
    model = tm.conv1d()
    threaded, layers = thread_if_outputs(model)
    assert layers == []
    assert threaded.SerializeToString() == model.SerializeToString()


def test_open_model_reports_if_only_models_by_subgraph(tmp_path):
    path = tm.save(sr_if_model(), tmp_path / "m.onnx")
    model = open_model(path)
    reason = model._no_layers_reason()
    assert "If 'by_rate'" in reason


def test_per_channel_bias_inside_an_if_branch_still_reaches_the_activation():
    """Conv -> Add([C,1,1] bias) -> Relu inside a branch: post is the Relu, as in the main graph."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(3)
    weight = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    bias = numpy_helper.from_array(np.ones((4, 1, 1), np.float32), "bias")
    branch = helper.make_graph(
        [
            helper.make_node("Conv", ["input", "w"], ["c"], name="inner_conv"),
            helper.make_node("Add", ["c", "bias"], ["biased"]),
            helper.make_node("Relu", ["biased"], ["r"]),
        ],
        "then", [], [helper.make_tensor_value_info("r", TensorProto.FLOAT, None)],
        [weight, bias],
    )
    other = helper.make_graph(
        [helper.make_node("Identity", ["input"], ["same"])],
        "else", [], [helper.make_tensor_value_info("same", TensorProto.FLOAT, None)],
    )
    model = tm.make_model(
        [helper.make_node("If", ["flag"], ["out"], then_branch=branch, else_branch=other)],
        [tm.tensor_input("input", [1, 3, 8, 8]), tm.tensor_input("flag", [], TensorProto.BOOL)],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)],
        check=False,
    )
    _, layers = thread_if_outputs(model)
    assert [(layer.name, layer.activation) for layer in layers] == [("inner_conv", "Relu")]
