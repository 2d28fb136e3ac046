"""``fmviz filters``: weights read from the graph, drawn as tiles whose pixels decode back to the
weights' symmetric levels, and statistics (L2 norms, near-zero filters) equal to numpy's."""

from __future__ import annotations

import json

import numpy as np
from onnx import helper
from PIL import Image

from fmviz.cli import main
from fmviz.graph import load_model
from fmviz.graph.weights import conv_weights
from fmviz.render.filters import HEADER_H, _cell
from tests.models import init, make_model, save, tensor_input


def rgb_model():
    rng = np.random.default_rng(5)
    w1 = rng.standard_normal((6, 3, 3, 3)).astype(np.float32)
    w1[4] = 1e-12  # a near-zero filter
    w2 = rng.standard_normal((4, 6, 3, 3)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["input", "w1"], ["c1"], name="first", kernel_shape=[3, 3],
                         pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["c1", "w2"], ["c2"], name="second", kernel_shape=[3, 3],
                         pads=[1, 1, 1, 1]),
    ]
    return make_model(nodes, [tensor_input("input", [1, 3, 8, 8])],
                      [tensor_input("c2", [1, 4, 8, 8])], [init("w1", w1), init("w2", w2)]), w1, w2


def test_colour_templates_and_stats(tmp_path, capsys):
    model, w1, _ = rgb_model()
    path = save(model, tmp_path / "m.onnx")
    out = tmp_path / "f"
    assert main(["filters", str(path), "-o", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report == json.loads((out / "filters.json").read_text())
    (layer,) = report["layers"]  # default: the first convolution only
    assert layer["name"] == "first" and layer["kind"] == "colour"
    l2 = np.sqrt(np.square(w1.astype(np.float64)).reshape(6, -1).sum(axis=1))
    assert np.allclose(layer["l2"], l2, rtol=1e-6)
    assert np.allclose(layer["min"], w1.reshape(6, -1).min(axis=1), rtol=1e-6)
    assert layer["near_zero"] == [4]
    picture = np.asarray(Image.open(out / layer["files"]["filters"]).convert("RGB"))
    cell = _cell(3, 3)
    for c in range(6):
        x, y = 4 + c * (3 * cell + 3), HEADER_H
        tile = picture[y:y + 3 * cell:cell, x:x + 3 * cell:cell]  # one pixel per weight
        peak = 0.0 if c == 4 else float(np.abs(w1[c]).max())
        # the formula written out here: 0 at mid-grey, +-peak at 255 and 0 (numpy's round
        # halves to even, as the renderer's does)
        values = w1[c].astype(np.float64)
        want = (np.clip(np.round(127.5 + 127.5 * values / peak), 0, 255) if peak
                else np.full(values.shape, 128)).astype(np.uint8).transpose(1, 2, 0)
        assert np.array_equal(tile, want), c
        if peak:  # the strongest weight is at an end of the scale
            assert tile.max() == 255 or tile.min() == 0, c
    assert np.all(picture[HEADER_H:HEADER_H + 3 * cell, 4 + 4 * (3 * cell + 3)] == 128)


def test_other_layers_greyscale_and_1d(tmp_path, capsys):
    model, _, w2 = rgb_model()
    path = save(model, tmp_path / "m.onnx")
    assert main(["filters", str(path), "--layers", "second", "-o", str(tmp_path / "g"),
                 "--json"]) == 0
    (layer,) = json.loads(capsys.readouterr().out)["layers"]
    assert layer["kind"] == "greyscale" and layer["near_zero"] == []
    assert (tmp_path / "g" / layer["files"]["filters"]).exists()
    w = np.zeros((2, 3, 5), dtype=np.float32)
    w[0, 1] = [0, 1, 2, 1, 0]
    w[1] = 0.5
    one_d = make_model([helper.make_node("Conv", ["input", "w"], ["c"], name="k1d",
                                         kernel_shape=[5])],
                       [tensor_input("input", [1, 3, 32])], [tensor_input("c", [1, 2, 28])],
                       [init("w", w)])
    path = save(one_d, tmp_path / "s.onnx")
    assert main(["filters", str(path), "-o", str(tmp_path / "s"), "--json"]) == 0
    (layer,) = json.loads(capsys.readouterr().out)["layers"]
    assert layer["kind"] == "lines" and layer["weights_shape"] == [2, 3, 5]
    assert np.allclose(layer["l2"], [np.sqrt(6), np.sqrt(0.25 * 15)])


def test_conv_transpose_weights_by_output_channel(tmp_path):
    w = np.arange(2 * 3 * 2 * 2, dtype=np.float32).reshape(2, 3, 2, 2)  # [in 2, out 3, k, k]
    model = make_model([helper.make_node("ConvTranspose", ["input", "w"], ["y"], name="up",
                                         kernel_shape=[2, 2], strides=[2, 2])],
                       [tensor_input("input", [1, 2, 4, 4])], [tensor_input("y", [1, 3, 8, 8])],
                       [init("w", w)])
    graph = load_model(save(model, tmp_path / "t.onnx"))
    got = conv_weights(graph, graph.layers[0])
    assert got.shape == (3, 2, 2, 2)
    assert np.array_equal(got, w.transpose(1, 0, 2, 3))
