"""``fmviz layers``: receptive field and input-stride columns (by hand), 80 columns, --size."""

from __future__ import annotations

import io
import json

import numpy as np
from onnx import helper
from rich.console import Console

from fmviz.cli import main
from fmviz.graph import load_model
from fmviz.reports.console import print_layers
from tests.models import init, make_model, save, tensor_input

LONG = "a_rather_long_symbolic_dimension_name"


def chain_model(h: int | str = "height_of_the_input_picture", w: int | str = LONG):
    """conv k3 s2 p1 -> MaxPool k2 s2 -> conv k3 dilation 2 p2 -> conv k5 s3 p0, all 4 ch."""
    rng = np.random.default_rng(0)

    def weight(name, cin, k):
        return init(name, rng.standard_normal((4, cin, k, k)).astype(np.float32))

    nodes = [
        helper.make_node("Conv", ["input", "w1"], ["c1"], name="first_convolution_layer",
                         kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="r1"),
        helper.make_node("MaxPool", ["r1"], ["p1"], name="pool", kernel_shape=[2, 2],
                         strides=[2, 2]),
        helper.make_node("Conv", ["p1", "w2"], ["c2"], name="dilated_convolution_layer",
                         kernel_shape=[3, 3], dilations=[2, 2], pads=[2, 2, 2, 2]),
        helper.make_node("Conv", ["c2", "w3"], ["c3"], name="strided_convolution_layer",
                         kernel_shape=[5, 5], strides=[3, 3]),
    ]
    return make_model(
        nodes, [tensor_input("input", ["batch_dimension_symbol", 3, h, w])],
        [tensor_input("c3", ["batch_dimension_symbol", 4, None, None])],
        [weight("w1", 3, 3), weight("w2", 4, 3), weight("w3", 4, 5)],
    )


def test_receptive_fields_by_hand(tmp_path, capsys):
    path = save(chain_model(), tmp_path / "chain.onnx")
    assert main(["layers", str(path), "--json"]) == 0
    layers = json.loads(capsys.readouterr().out)["layers"]
    # conv1: size 3, stride 2. pool k2 s2: 3 + 2*(2-1) = 5, stride 4.
    # dilated conv k3 d2: 5 + 4*2*(3-1) = 21, stride 4. conv k5 s3: 21 + 4*(5-1) = 37, stride 12.
    assert [layer["receptive_field"] for layer in layers] == [[3, 3], [21, 21], [37, 37]]
    assert [layer["input_stride"] for layer in layers] == [[2, 2], [4, 4], [12, 12]]
    assert layers[0]["stride"] == [2, 2] and layers[2]["stride"] == [3, 3]  # the node's own


def test_narrow_terminal_keeps_every_name(tmp_path):
    graph = load_model(save(chain_model(), tmp_path / "chain.onnx"))
    document = {
        "model": graph.to_json(), "stage": "post",
        "layers": [dict(layer.to_json("post"), receptive_field=None, input_stride=None)
                   for layer in graph.layers],
        "unreachable": [],
    }
    out = io.StringIO()
    print_layers(document, Console(file=out, width=80, color_system=None))
    text = out.getvalue()
    assert all(len(line) <= 80 for line in text.splitlines())
    for layer in graph.layers:
        line = next(line for line in text.splitlines() if layer.name in line)
        assert line.startswith(f"{layer.index}  {layer.name}  Conv  4ch")
    assert LONG in text.replace("\n", "")


def test_size_resolves_symbolic_shapes(tmp_path, capsys):
    path = save(chain_model(), tmp_path / "chain.onnx")
    assert main(["layers", str(path), "--json", "--size", "96x64"]) == 0
    layers = json.loads(capsys.readouterr().out)["layers"]
    # H 64 -> conv s2 p1: 32 -> pool 16 -> dilated p2: 16 -> conv k5 s3: 4; W 96 -> 48, 24, 24, 7
    assert [layer["shape"] for layer in layers] == [
        ["batch_dimension_symbol", 4, 32, 48],
        ["batch_dimension_symbol", 4, 16, 24],
        ["batch_dimension_symbol", 4, 4, 7],
    ]
    assert main(["layers", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["layers"][0]["shape"][2] != 32
