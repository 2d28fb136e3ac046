"""fmviz.graph: loading, layer discovery, activation following, selection and exposing.

Captured tensors are checked against ``onnx.reference.ReferenceEvaluator`` run on a model whose
outputs are appended here, independently of ``fmviz.graph.expose``.
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, external_data_helper, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from fmviz.errors import ModelError, OptionError
from fmviz.graph import Layer, UnreachableLayer, analyse, load_model, select_layers
from fmviz.graph.edits import expose
from fmviz.graph.index import topological_order
from fmviz.graph.layers import find_layers
from fmviz.session import open_session
from tests import models


class Exp(NamedTuple):
    name: str
    op: str
    pre: str
    post: str
    activation: str | None
    channels: int
    kernel: tuple
    stride: tuple
    groups: int = 1


K3, S1, S2 = (3, 3), (1, 1), (2, 2)

EXPECTED: dict[str, list[Exp]] = {
    "conv_bn_relu": [
        Exp("conv1", "Conv", "conv1_out", "relu1_out", "Relu", 8, K3, S1),
        Exp("conv2", "Conv", "conv2_out", "relu2_out", "Relu", 4, K3, S2),
    ],
    "conv_bias_add_relu": [Exp("conv", "Conv", "conv_out", "relu_out", "Relu", 6, K3, S1)],
    "relu6_clip": [
        Exp("conv1", "Conv", "conv1_out", "relu6_out", "ReLU6", 4, K3, S1),
        Exp("conv2", "Conv", "conv2_out", "clip_out", "Clip", 4, K3, S1),
    ],
    "silu": [Exp("conv", "Conv", "conv_out", "silu_out", "SiLU", 4, K3, S1)],
    "hardswish_hsigmoid": [Exp("conv", "Conv", "conv_out", "hswish_out", "HardSwish", 4, K3, S1)],
    "hardswish_clip": [Exp("conv", "Conv", "conv_out", "hswish_out", "HardSwish", 4, K3, S1)],
    "mish": [Exp("conv", "Conv", "conv_out", "mish_out", "Mish", 4, K3, S1)],
    "gelu_erf": [Exp("conv", "Conv", "conv_out", "gelu_out", "Gelu", 4, K3, S1)],
    "no_activation": [
        Exp("conv_a", "Conv", "conv_a_out", "bn_out", None, 4, K3, S1),
        Exp("conv_b", "Conv", "conv_b_out", "conv_b_out", None, 4, (1, 1), S1),
    ],
    "depthwise": [
        Exp("stem", "Conv", "stem_out", "stem_relu", "Relu", 8, K3, S1),
        Exp("dw", "Conv", "dw_out", "dw_relu", "Relu", 8, K3, S1, groups=8),
        Exp("pw", "Conv", "pw_out", "output", "Relu", 4, (1, 1), S1),
    ],
    "conv_transpose": [
        Exp("deconv", "ConvTranspose", "deconv_out", "relu_out", "Relu", 6, (4, 4), S2, groups=2)
    ],
    "conv1d": [
        Exp("conv1", "Conv", "conv1_out", "relu1_out", "Relu", 4, (5,), (1,)),
        Exp("conv2", "Conv", "output", "output", None, 8, (3,), (2,)),
    ],
    "conv3d": [Exp("conv", "Conv", "conv_out", "relu_out", "Relu", 4, (3, 3, 3), (1, 1, 1))],
    "nhwc": [Exp("conv", "Conv", "conv_out", "relu_out", "Relu", 4, K3, S1)],
    "dynamic_hw": [Exp("conv", "Conv", "conv_out", "relu_out", "Relu", 8, K3, S2)],
    "extra_inputs": [Exp("conv", "Conv", "conv_out", "relu_out", "Relu", 4, K3, S1)],
    "conv_in_if": [Exp("conv_main", "Conv", "conv_main_out", "main_out", "Relu", 4, K3, S1)],
    "only_if": [],
    "nested_if": [],
    "awkward_names": [
        Exp(layer, "Conv", pre, post, None if pre == post else "Relu", 4, K3, S1)
        for layer, _node, pre, post in models.AWKWARD_LAYERS
    ],
    "no_conv": [],
    "output_already": [
        Exp("conv1", "Conv", "conv1_out", "relu_out", "Relu", 4, K3, S1),
        Exp("conv2", "Conv", "output", "output", None, 4, K3, S1),
    ],
    "qlinear_conv": [Exp("qconv", "QLinearConv", "qconv_out", "qconv_out", None, 4, K3, S1)],
    "conv_integer": [Exp("iconv", "ConvInteger", "iconv_out", "iconv_out", None, 4, K3, S2)],
}

# (builder keyword arguments, expected activation name) for single_activation().
SINGLE = [((op,), {}, op) for op in models.SINGLE_ACTIVATIONS] + [
    (("LeakyRelu",), {"alpha": 0.2}, "LeakyRelu"),
    (("Clip",), {}, "ReLU6"),
    (("Clip",), {"min": -1.0, "max": 1.0}, "Clip"),
    (("Clip",), {"min": 0.0, "max": 1.0}, "Clip"),
]


def _single(args, kwargs):
    return models.single_activation(*args, **kwargs)


def _actual(layer: Layer) -> Exp:
    return Exp(
        layer.name,
        layer.op,
        layer.pre_tensor,
        layer.post_tensor,
        layer.activation,
        layer.channels,
        layer.kernel,
        layer.stride,
        layer.groups,
    )


def _load(model: onnx.ModelProto, tmp_path, name: str = "model.onnx"):
    return load_model(models.save(model, tmp_path / name))


# ----------------------------------------------------------------------------- layers


def test_every_builder_has_expectations():
    assert set(EXPECTED) == set(models.BUILDERS)


@pytest.mark.parametrize("builder", sorted(EXPECTED))
def test_layers_found(builder, tmp_path):
    mg = _load(models.BUILDERS[builder](), tmp_path)
    assert [_actual(layer) for layer in mg.layers] == EXPECTED[builder]
    assert [layer.index for layer in mg.layers] == list(range(len(mg.layers)))


@pytest.mark.parametrize(("args", "kwargs", "activation"), SINGLE, ids=lambda v: str(v))
def test_single_activation_layers(args, kwargs, activation, tmp_path):
    mg = _load(_single(args, kwargs), tmp_path)
    assert [_actual(layer) for layer in mg.layers] == [
        Exp("conv", "Conv", "conv_out", "act_out", activation, 4, K3, S1)
    ]


def test_bn_then_silu(tmp_path):
    mg = _load(models.silu(bn=True), tmp_path)
    assert [(lay.post_tensor, lay.activation) for lay in mg.layers] == [("silu_out", "SiLU")]


def test_shapes_static_and_symbolic(tmp_path):
    mg = _load(models.conv_bn_relu(), tmp_path)
    assert [(lay.pre_shape, lay.post_shape) for lay in mg.layers] == [
        (("N", 8, 16, 16), ("N", 8, 16, 16)),
        (("N", 4, 8, 8), ("N", 4, 8, 8)),
    ]
    assert mg.layers[1].shape("pre") == ("N", 4, 8, 8)
    mg = _load(models.conv_bn_relu(batch=3, size=32), tmp_path, "fixed.onnx")
    assert mg.layers[1].post_shape == (3, 4, 16, 16)
    dyn = _load(models.dynamic_hw(), tmp_path, "dyn.onnx").layers[0].post_shape
    assert len(dyn) == 4 and dyn[:2] == ("N", 8) and not isinstance(dyn[2], int)


def test_layer_json_and_stage_helpers(tmp_path):
    layer = _load(models.conv_bn_relu(), tmp_path).layers[1]
    assert layer.tensor("pre") == "conv2_out" and layer.tensor("post") == "relu2_out"
    assert layer.activation_at("pre") is None and layer.activation_at("post") == "Relu"
    assert layer.to_json("pre") == {
        "index": 1,
        "name": "conv2",
        "op": "Conv",
        "tensor": "conv2_out",
        "activation": "Relu",
        "channels": 4,
        "kernel": [3, 3],
        "stride": [2, 2],
        "groups": 1,
        "shape": ["N", 4, 8, 8],
    }


def test_model_info_and_inputs(tmp_path):
    path = models.save(models.extra_inputs(), tmp_path / "extra.onnx")
    mg = load_model(path)
    assert [(i.name, i.shape, i.dtype) for i in mg.inputs] == [
        ("input", (1, 3, 16, 16), np.dtype("float32")),
        ("scale", (1,), np.dtype("float32")),
        ("steps", (1,), np.dtype("int64")),
    ]
    info = mg.to_json()
    assert info["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert (info["opset"], info["ir_version"]) == (17, 8)
    assert info["inputs"][2] == {"name": "steps", "shape": [1], "dtype": "int64"}


def test_weights_listed_as_inputs_are_not_inputs(tmp_path):
    model = models.conv_bn_relu()
    for tensor in model.graph.initializer:  # old exporters did this
        model.graph.input.append(
            helper.make_tensor_value_info(tensor.name, tensor.data_type, list(tensor.dims))
        )
    mg = _load(model, tmp_path)
    assert [i.name for i in mg.inputs] == ["input"]
    assert [lay.post_tensor for lay in mg.layers] == ["relu1_out", "relu2_out"]


def test_channels_and_kernel_from_weights_without_shape_inference():
    """find_layers without shapes (inference failed) falls back to the weights."""
    layers = find_layers(models.conv_transpose(), shapes={})
    assert [(lay.channels, lay.kernel, lay.groups) for lay in layers] == [(6, (4, 4), 2)]
    layers = find_layers(models.qlinear_conv(), shapes={})
    assert [(lay.channels, lay.kernel) for lay in layers] == [(4, (3, 3))]


# ----------------------------------------------------------------------------- activations


def _chain_model(tail, output, inits=(), opset=17):
    return models.conv_followed_by(tail, output, inits, opset=opset)


def _layer_of(model) -> tuple[str, str | None]:
    (layer,) = find_layers(model)
    return layer.post_tensor, layer.activation


def test_affine_chain_to_activation():
    tail = [
        helper.make_node("Mul", ["conv_out", "per_channel"], ["m"]),
        helper.make_node("Sub", ["m", "scalar"], ["s"]),
        helper.make_node("Div", ["s", "scalar"], ["d"]),
        helper.make_node("Relu", ["d"], ["r"]),
        helper.make_node("Relu", ["r"], ["r2"]),  # the chain stops at the first activation
    ]
    inits = [models.const("per_channel", np.ones((4, 1, 1))), models.const("scalar", 2.0)]
    assert _layer_of(_chain_model(tail, "r2", inits)) == ("r", "Relu")


@pytest.mark.parametrize(
    ("tail", "inits", "expected"),
    [
        pytest.param(  # c / x is not affine in x
            [
                helper.make_node("Div", ["two", "conv_out"], ["d"]),
                helper.make_node("Relu", ["d"], ["r"]),
            ],
            [models.const("two", 2.0)],
            ("conv_out", None),
            id="const-div-by-x",
        ),
        pytest.param(  # one value per column is not per channel
            [
                helper.make_node("Mul", ["conv_out", "cols"], ["m"]),
                helper.make_node("Relu", ["m"], ["r"]),
            ],
            [models.const("cols", np.ones((1, 1, 1, 8)))],
            ("conv_out", None),
            id="per-column-mul",
        ),
        pytest.param(  # two consumers, no x * gate(x) join: stop at the conv output
            [
                helper.make_node("Relu", ["conv_out"], ["r"]),
                helper.make_node("Sigmoid", ["conv_out"], ["s"]),
                helper.make_node("Add", ["r", "s"], ["o"]),
            ],
            [],
            ("conv_out", None),
            id="fork",
        ),
        pytest.param(  # SiLU whose x also feeds a third node
            [
                helper.make_node("Sigmoid", ["conv_out"], ["s"]),
                helper.make_node("Mul", ["conv_out", "s"], ["m"]),
                helper.make_node("Add", ["m", "conv_out"], ["o"]),
            ],
            [],
            ("conv_out", None),
            id="silu-with-extra-user",
        ),
        pytest.param(  # x * x is not a gated activation
            [helper.make_node("Mul", ["conv_out", "conv_out"], ["o"])],
            [],
            ("conv_out", None),
            id="square",
        ),
        pytest.param(
            [
                helper.make_node("Identity", ["conv_out"], ["i"]),
                helper.make_node("LeakyRelu", ["i"], ["o"]),
            ],
            [],
            ("o", "LeakyRelu"),
            id="identity-leakyrelu",
        ),
        pytest.param(  # x * sigmoid(beta * x)
            [
                helper.make_node("Mul", ["conv_out", "beta"], ["bx"]),
                helper.make_node("Sigmoid", ["bx"], ["s"]),
                helper.make_node("Mul", ["conv_out", "s"], ["o"]),
            ],
            [models.const("beta", 1.702)],
            ("o", "Swish"),
            id="swish-beta",
        ),
        pytest.param(  # x * Clip(x + 3, 0, 6) without the /6
            [
                helper.make_node("Add", ["conv_out", "three"], ["a"]),
                helper.make_node("Clip", ["a", "zero", "six"], ["c"]),
                helper.make_node("Mul", ["c", "conv_out"], ["o"]),
            ],
            [models.const("three", 3.0), models.const("zero", 0.0), models.const("six", 6.0)],
            ("o", "HardSwish"),
            id="hardswish-no-div",
        ),
        pytest.param(  # GELU with the 0.5 on the identity side
            [
                helper.make_node("Mul", ["conv_out", "half"], ["h"]),
                helper.make_node("Div", ["conv_out", "sqrt2"], ["d"]),
                helper.make_node("Erf", ["d"], ["e"]),
                helper.make_node("Add", ["e", "one"], ["e1"]),
                helper.make_node("Mul", ["h", "e1"], ["o"]),
            ],
            [
                models.const("half", 0.5),
                models.const("sqrt2", np.sqrt(2)),
                models.const("one", 1.0),
            ],
            ("o", "Gelu"),
            id="gelu-half-first",
        ),
        pytest.param(  # GELU whose trailing 0.5 comes first: 0.5 * (x * (erf + 1))
            [
                helper.make_node("Div", ["conv_out", "sqrt2"], ["d"]),
                helper.make_node("Erf", ["d"], ["e"]),
                helper.make_node("Add", ["e", "one"], ["e1"]),
                helper.make_node("Mul", ["conv_out", "e1"], ["p"]),
                helper.make_node("Mul", ["half", "p"], ["o"]),
            ],
            [
                models.const("half", 0.5),
                models.const("sqrt2", np.sqrt(2)),
                models.const("one", 1.0),
            ],
            ("o", "Gelu"),
            id="gelu-half-last-swapped",
        ),
        pytest.param(  # 6 / y after hard-swish is not the /6: stop at the product
            [
                helper.make_node("Add", ["conv_out", "three"], ["a"]),
                helper.make_node("Clip", ["a", "zero", "six"], ["c"]),
                helper.make_node("Mul", ["conv_out", "c"], ["p"]),
                helper.make_node("Div", ["six", "p"], ["o"]),
            ],
            [models.const("three", 3.0), models.const("zero", 0.0), models.const("six", 6.0)],
            ("p", "HardSwish"),
            id="hardswish-reversed-div",
        ),
        pytest.param(  # bias as a Constant node rather than an initializer
            [
                helper.make_node(
                    "Constant", [], ["k"], value=models.const("kv", np.ones((4, 1, 1)))
                ),
                helper.make_node("Add", ["k", "conv_out"], ["a"]),
                helper.make_node("Elu", ["a"], ["o"]),
            ],
            [],
            ("o", "Elu"),
            id="constant-node-bias",
        ),
    ],
)
def test_follow_activation_cases(tail, inits, expected):
    output = tail[-1].output[0]
    assert _layer_of(_chain_model(tail, output, inits)) == expected


_AFFINE = ["Identity", "BatchNormalization", "AddScalar", "SubChannel", "MulChannel", "DivScalar"]
_ACTIVATIONS = ["none", "Relu", "Tanh", "PRelu", "ReLU6", "SiLU", "Mish", "HardSwish"]


@settings(
    max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(
    steps=st.lists(st.sampled_from(_AFFINE), max_size=3),
    activation=st.sampled_from(_ACTIVATIONS),
)
def test_follow_activation_property(steps, activation):
    """Any chain of per-channel affine steps followed by one activation is walked to its end."""
    nodes, inits, x = [], [], "conv_out"
    for i, step in enumerate(steps):
        out = f"step{i}"
        if step == "BatchNormalization":
            node, params = models.batchnorm(np.random.default_rng(i), f"bn{i}", x, out, 4)
            nodes.append(node)
            inits += params
            x = out
            continue
        if step == "Identity":
            nodes.append(helper.make_node("Identity", [x], [out]))
        else:
            op, kind = step[:3], step[3:]
            value = np.full((4, 1, 1) if kind == "Channel" else (), 1.5, np.float32)
            inits.append(models.const(f"k{i}", value))
            nodes.append(helper.make_node(op, [x, f"k{i}"], [out]))
        x = out
    expected = (x, None)
    if activation in ("Relu", "Tanh"):
        nodes.append(helper.make_node(activation, [x], ["act"]))
        expected = ("act", activation)
    elif activation == "PRelu":
        inits.append(models.const("slope", np.full((4, 1, 1), 0.1)))
        nodes.append(helper.make_node("PRelu", [x, "slope"], ["act"]))
        expected = ("act", "PRelu")
    elif activation == "ReLU6":
        inits += [models.const("lo", 0.0), models.const("hi", 6.0)]
        nodes.append(helper.make_node("Clip", [x, "lo", "hi"], ["act"]))
        expected = ("act", "ReLU6")
    elif activation == "SiLU":
        nodes += [
            helper.make_node("Sigmoid", [x], ["g"]),
            helper.make_node("Mul", ["g", x], ["act"]),
        ]
        expected = ("act", "SiLU")
    elif activation == "Mish":
        nodes += [
            helper.make_node("Softplus", [x], ["sp"]),
            helper.make_node("Tanh", ["sp"], ["g"]),
            helper.make_node("Mul", [x, "g"], ["act"]),
        ]
        expected = ("act", "Mish")
    elif activation == "HardSwish":
        nodes += [
            helper.make_node("HardSigmoid", [x], ["g"], alpha=1 / 6, beta=0.5),
            helper.make_node("Mul", [x, "g"], ["act"]),
        ]
        expected = ("act", "HardSwish")
    # a consumer after the activation that is neither affine nor an activation is not absorbed
    nodes.append(helper.make_node("Neg", [expected[0]], ["after"]))
    assert _layer_of(models.conv_followed_by(nodes, "after", inits)) == expected


# ----------------------------------------------------------------------------- correctness


def _split_grouped_conv_transpose(model: onnx.ModelProto) -> None:
    """onnx.reference's ConvTranspose ignores ``group``; rewrite grouped ones as Split +
    one ConvTranspose per group + Concat, in place, so the reference stays independent."""
    graph = model.graph
    weights = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    nodes = []
    for node in graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        group = attrs.pop("group", 1)
        if node.op_type != "ConvTranspose" or group == 1:
            nodes.append(node)
            continue
        w = weights[node.input[1]]
        b = weights[node.input[2]] if len(node.input) > 2 else None
        cin, cout = w.shape[0] // group, w.shape[1]
        parts = [f"{node.name}.x{g}" for g in range(group)]
        outs = [f"{node.name}.y{g}" for g in range(group)]
        graph.initializer.append(models.const(f"{node.name}.split", [cin] * group, np.int64))
        nodes.append(
            helper.make_node("Split", [node.input[0], f"{node.name}.split"], parts, axis=1)
        )
        for g in range(group):
            inputs = [parts[g], f"{node.name}.w{g}"]
            graph.initializer.append(models.init(inputs[1], w[g * cin : (g + 1) * cin]))
            if b is not None:
                inputs.append(f"{node.name}.b{g}")
                graph.initializer.append(models.init(inputs[2], b[g * cout : (g + 1) * cout]))
            nodes.append(helper.make_node("ConvTranspose", inputs, [outs[g]], **attrs))
        nodes.append(helper.make_node("Concat", outs, [node.output[0]], axis=1))
    del graph.node[:]
    graph.node.extend(nodes)


def _reference(model: onnx.ModelProto, tensors: list[str], feeds: dict) -> dict:
    ref = onnx.ModelProto()
    ref.CopyFrom(model)
    existing = {o.name for o in ref.graph.output}
    for name in tensors:
        if name not in existing:
            ref.graph.output.append(helper.make_empty_tensor_value_info(name))
            existing.add(name)
    _split_grouped_conv_transpose(ref)
    values = ReferenceEvaluator(ref).run(tensors, feeds)
    return dict(zip(tensors, values, strict=True))


def _check_captures(
    model: onnx.ModelProto, tmp_path, feeds: dict | None = None, reference=None
) -> int:
    """Capture every pre and post tensor through fmviz and compare with the reference run of
    ``reference`` (default: ``model``; the reference evaluator needs nodes in order)."""
    mg = _load(model, tmp_path)
    tensors = list(dict.fromkeys(t for lay in mg.layers for t in (lay.pre_tensor, lay.post_tensor)))
    assert tensors, "model has no layer to capture"
    session = open_session(expose(mg, tensors), ["CPUExecutionProvider"])
    original = [o.name for o in model.graph.output]
    assert session.outputs == original + [t for t in tensors if t not in original]
    feeds = feeds if feeds is not None else models.random_input(model, seed=7)
    got = session.run(feeds, tensors)
    want = _reference(reference or model, tensors, feeds)
    for name in tensors:
        assert got[name].shape == want[name].shape, name
        assert got[name].dtype == want[name].dtype, name
        if np.issubdtype(want[name].dtype, np.floating):
            np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-4, err_msg=name)
        else:  # quantized rounding may differ by one step
            diff = np.abs(got[name].astype(np.int64) - want[name].astype(np.int64))
            assert diff.max() <= 1, name
    # the activation really was applied where one was found
    for lay in mg.layers:
        if lay.activation in ("Relu", "ReLU6"):
            assert got[lay.post_tensor].min() >= 0 and got[lay.pre_tensor].min() < 0
    return len(tensors)


@pytest.mark.parametrize("builder", sorted(b for b, exp in EXPECTED.items() if exp))
def test_captured_tensors_match_reference(builder, tmp_path):
    model = models.BUILDERS[builder]()
    feeds = models.random_input(model, seed=7)
    if "flag" in feeds:
        for flag in (True, False):
            feeds["flag"] = np.array(flag)
            _check_captures(model, tmp_path, feeds)
    else:
        _check_captures(model, tmp_path, feeds)


@pytest.mark.parametrize(("args", "kwargs", "activation"), SINGLE, ids=lambda v: str(v))
def test_single_activation_captures_match_reference(args, kwargs, activation, tmp_path):
    assert _check_captures(_single(args, kwargs), tmp_path) == 2


def test_dynamic_batch_and_size_captures(tmp_path):
    model = models.dynamic_hw()
    feeds = models.random_input(model, seed=3, dims={"N": 3, "H": 11, "W": 24})
    assert feeds["input"].shape == (3, 3, 11, 24)
    _check_captures(model, tmp_path, feeds)


# ----------------------------------------------------------------------------- expose


def _outputs(data: bytes) -> list[str]:
    proto = onnx.ModelProto()
    proto.ParseFromString(data)
    return [o.name for o in proto.graph.output]


def test_expose_dedups_skips_empty_and_keeps_proto(tmp_path):
    mg = _load(models.output_already(), tmp_path)
    before = mg.proto.SerializeToString()
    data = expose(mg, ["relu_out", "conv1_out", "", "conv1_out", "output"])
    assert _outputs(data) == ["relu_out", "output", "conv1_out"]
    assert mg.proto.SerializeToString() == before
    parsed = onnx.ModelProto()
    parsed.ParseFromString(data)
    assert parsed.ir_version == 8
    # nothing exposed: the same model (the weights spliced back in, every field kept)
    unchanged = onnx.ModelProto()
    unchanged.ParseFromString(expose(mg, []))
    assert unchanged == mg.proto


def test_expose_copies_known_types():
    model = models.conv_bn_relu()
    typed = helper.make_tensor_value_info("conv1_out", TensorProto.FLOAT, ["N", 8, 16, 16])
    model.graph.value_info.append(typed)
    proto = onnx.ModelProto()
    proto.ParseFromString(expose(analyse(model), ["conv1_out", "relu1_out"]))
    added = {o.name: o for o in proto.graph.output}
    assert added["conv1_out"] == typed
    assert not added["relu1_out"].type.HasField("tensor_type")
    assert len(model.graph.output) == 1


def test_expose_accepts_a_generator():
    model = models.many_layers(3)
    data = expose(analyse(model), (f"conv{i}_out" for i in range(3)))
    assert _outputs(data) == ["relu2_out", "conv0_out", "conv1_out", "conv2_out"]


# ----------------------------------------------------------------------------- order


def test_shuffled_nodes_are_ordered(tmp_path):
    model = models.many_layers(6)
    ordered = models.many_layers(6)
    nodes = list(model.graph.node)
    rng = np.random.default_rng(5)
    order = rng.permutation(len(nodes))
    assert list(order) != sorted(order)
    del model.graph.node[:]
    model.graph.node.extend(nodes[i] for i in order)
    mg = _load(model, tmp_path)
    assert [lay.name for lay in mg.layers] == [f"conv{i}" for i in range(6)]
    assert [lay.post_tensor for lay in mg.layers] == [f"relu{i}_out" for i in range(6)]
    _check_captures(model, tmp_path, reference=ordered)


def test_file_order_kept_where_valid(tmp_path):
    model = models.no_activation()
    nodes = {n.name: n for n in model.graph.node}
    del model.graph.node[:]
    model.graph.node.extend(nodes[n] for n in ["conv_b", "conv_a", "bn", "residual", "relu"])
    assert [lay.name for lay in _load(model, tmp_path).layers] == ["conv_b", "conv_a"]


def test_order_respects_subgraph_reads():
    """The If reads ``main_out`` only inside its branches; it must still come after its producer."""
    model = models.conv_in_if()
    nodes = list(reversed(model.graph.node))
    order = topological_order(nodes)
    assert [n.name for n in order] == ["conv_main", "main_relu", "branch"]


# ----------------------------------------------------------------------------- selection


@pytest.fixture(scope="module")
def eight_layers(tmp_path_factory):
    return load_model(
        models.save(models.many_layers(8), tmp_path_factory.mktemp("m") / "m.onnx")
    ).layers


def _names(layers):
    return [lay.name for lay in layers]


def test_select_globs_regex_and_union(eight_layers):
    assert select_layers(eight_layers, [], "post") == list(eight_layers)
    assert _names(select_layers(eight_layers, ["conv[12]"], "post")) == ["conv1", "conv2"]
    assert _names(select_layers(eight_layers, ["relu3_*"], "post")) == ["conv3"]
    assert _names(select_layers(eight_layers, ["conv4_out"], "pre")) == ["conv4"]
    assert _names(select_layers(eight_layers, ["re:^conv[0-2]$"], "post")) == [
        "conv0",
        "conv1",
        "conv2",
    ]
    assert _names(select_layers(eight_layers, ["re:7"], "post")) == ["conv7"]
    assert _names(select_layers(eight_layers, ["conv5", "conv1", "conv5"], "post")) == [
        "conv1",
        "conv5",
    ]


def test_select_is_case_sensitive(eight_layers):
    with pytest.raises(OptionError):
        select_layers(eight_layers, ["CONV1"], "post")


def test_select_no_match_names_layers(eight_layers):
    with pytest.raises(OptionError) as info:
        select_layers(eight_layers, ["conv1", "nope*"], "post")
    assert info.value.for_cli() == (
        "--layers 'nope*' matches no layer; layers are 'conv0', 'conv1', 'conv2', 'conv3', "
        "'conv4' (and 3 more) ('fmviz layers MODEL' lists them all)"
    )
    with pytest.raises(OptionError) as info:
        select_layers(eight_layers[:2], ["x"], "pre")
    assert info.value.for_cli() == (
        "--layers 'x' matches no layer; layers are 'conv0', 'conv1' "
        "('fmviz layers MODEL' lists them all)"
    )


def test_select_invalid_regex(eight_layers):
    with pytest.raises(OptionError) as info:
        select_layers(eight_layers, ["re:conv(["], "post")
    assert info.value.for_cli().startswith("--layers 're:conv([': invalid regular expression (")


def test_select_on_model_without_layers(tmp_path):
    mg = _load(models.only_if(), tmp_path)
    assert select_layers(mg.layers, [], "post") == []
    with pytest.raises(OptionError) as info:
        select_layers(mg.layers, ["*"], "post")
    assert info.value.for_cli() == "--layers '*' matches no layer: the model has no reachable layer"


# ----------------------------------------------------------------------------- unreachable


def test_unreachable_in_if(tmp_path):
    mg = _load(models.conv_in_if(), tmp_path)
    assert _names(mg.layers) == ["conv_main"]
    assert sorted(mg.unreachable, key=lambda u: u.name) == [
        UnreachableLayer("else_conv", "Conv", "branch", "If", "else_branch"),
        UnreachableLayer("then_conv", "Conv", "branch", "If", "then_branch"),
    ]
    assert mg.unreachable[0].to_json().keys() == {"name", "op", "parent", "parent_op", "subgraph"}


def test_unreachable_only_if_and_nested(tmp_path):
    mg = _load(models.only_if(), tmp_path)
    assert mg.layers == [] and len(mg.unreachable) == 2
    mg = _load(models.nested_if(), tmp_path, "nested.onnx")
    assert mg.layers == []
    assert sorted(mg.unreachable, key=lambda u: u.name) == [
        UnreachableLayer("deep_out", "Conv", "outer", "If", "then_branch"),
        UnreachableLayer("inner_else_conv", "Conv", "outer", "If", "then_branch"),
        UnreachableLayer("outer_else_conv", "Conv", "outer", "If", "else_branch"),
    ]


# ----------------------------------------------------------------------------- load errors


def _error(path) -> str:
    with pytest.raises(ModelError) as info:
        load_model(path)
    return info.value.for_cli()


def test_load_missing_folder_and_empty(tmp_path):
    assert _error(tmp_path / "absent.onnx") == f"{tmp_path / 'absent.onnx'}: no such file"
    assert _error(tmp_path) == f"{tmp_path}: is a folder, not an ONNX model file"
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    assert _error(empty) == f"{empty}: empty file, not an ONNX model"


@pytest.mark.parametrize(
    "data",
    [
        np.random.default_rng(0).bytes(256),
        b"hello, this is not an ONNX model\n",
        b'{"nodes": []}\n',
    ],
    ids=["random-bytes", "text", "json"],
)
def test_load_garbage(data, tmp_path):
    path = tmp_path / "bad.onnx"
    path.write_bytes(data)
    assert _error(path) == f"{path}: not an ONNX model (cannot parse it as protobuf)"


def test_load_protobuf_that_is_not_a_model(tmp_path):
    path = tmp_path / "tensor.onnx"
    path.write_bytes(onnx.ModelProto(producer_name="x", doc_string="no graph").SerializeToString())
    assert _error(path) == f"{path}: not an ONNX model (no graph, opset or IR version)"


def _external(model: onnx.ModelProto, location: str, tensor: str = "conv1.w") -> onnx.ModelProto:
    for init in model.graph.initializer:
        if init.name == tensor:
            external_data_helper.set_external_data(init, location=location)
            init.ClearField("raw_data")
            init.data_location = TensorProto.EXTERNAL
    return model


def _weight_bytes(tensor: str = "conv1.w") -> bytes:
    init = next(t for t in models.conv_bn_relu().graph.initializer if t.name == tensor)
    return numpy_helper.to_array(init).astype("<f4").tobytes()


def test_external_data_inside_folder_loads(tmp_path):
    (tmp_path / "weights.bin").write_bytes(_weight_bytes())
    model = _external(models.conv_bn_relu(), "weights.bin")
    path = models.save(model, tmp_path / "model.onnx")
    mg = load_model(path)
    assert _names(mg.layers) == ["conv1", "conv2"]
    session = open_session(expose(mg, ["conv1_out"]), ["CPUExecutionProvider"])
    feeds = models.random_input(models.conv_bn_relu(), 1)
    want = _reference(models.conv_bn_relu(), ["conv1_out"], feeds)["conv1_out"]
    np.testing.assert_allclose(session.run(feeds, ["conv1_out"])["conv1_out"], want, atol=1e-4)


@pytest.mark.parametrize("where", ["parent", "absolute", "symlink"])
def test_external_data_outside_folder_refused(where, tmp_path):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(_weight_bytes())
    folder = tmp_path / "model"
    folder.mkdir()
    if where == "parent":
        location = "../secret.bin"
    elif where == "absolute":
        location = str(secret)
    else:
        (folder / "link.bin").symlink_to(secret)
        location = "link.bin"
    path = models.save(_external(models.conv_bn_relu(), location), folder / "m.onnx")
    assert _error(path) == (
        f"{path}: external data {location!r} of tensor 'conv1.w' points outside the model's "
        "folder; refusing to read it"
    )


def test_external_data_missing(tmp_path):
    path = models.save(_external(models.conv_bn_relu(), "gone.bin"), tmp_path / "m.onnx")
    assert _error(path) == f"{path}: external data file 'gone.bin' is missing"


@pytest.mark.parametrize(
    ("shape", "affine"),
    [((4, 1, 1), True), ((1, 4, 1, 1), True), ((1,), True), ((4,), False), ((1, 1, 4), False)],
)
def test_only_constants_broadcast_along_channels_are_affine(tmp_path, shape, affine):
    """A [C] constant scales the last spatial axis (broadcasting aligns from the right)."""
    scale = numpy_helper.from_array(np.full(shape, 2.0, dtype=np.float32), "scale")
    tail = [
        helper.make_node("Mul", ["conv_out", "scale"], ["scaled"], name="mul"),
        helper.make_node("Relu", ["scaled"], ["act"], name="relu"),
    ]
    model = models.conv_followed_by(tail, "act", [scale], channels=4)
    layer = load_model(models.save(model, tmp_path / "m.onnx")).layers[0]
    assert (layer.post_tensor, layer.activation) == (
        ("act", "Relu") if affine else ("conv_out", None)
    )


@pytest.mark.parametrize("kind", ["reshape", "unsqueeze", "cast"])
def test_bias_written_as_a_constant_subexpression_is_followed(kind, tmp_path):
    """Exporters emit biases as Reshape(Constant, Constant), Unsqueeze or Cast of initializers:
    still a per-channel constant, so ``post`` is the Relu after it (with the bias applied)."""
    model = models.conv_bias_subexpression(kind)
    mg = _load(model, tmp_path)
    (layer,) = mg.layers
    assert (layer.pre_tensor, layer.post_tensor, layer.activation) == (
        "conv_out", "relu_out", "Relu")
    feeds = models.random_input(model, seed=4)
    (expected,) = models.reference_outputs(model, feeds, ["relu_out"])
    session = open_session(expose(mg, [layer.post_tensor]), ["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(feeds, ["relu_out"])["relu_out"], expected,
                               rtol=1e-5, atol=1e-6)
    assert (expected > 0).any() and (expected == 0).any()
