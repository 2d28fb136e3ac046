"""Tiny ONNX models built in code, one per graph pattern fmviz must handle.

Plain functions (no pytest here) so every test module, benchmark or notebook can use them. Each
builder returns an ``onnx.ModelProto`` with deterministic weights, opset 17 unless noted, IR
version 8 (onnx >= 1.23 writes IR 14, which onnxruntime 1.31 refuses), float32 tensors and one
image-like input named ``"input"`` unless noted. Node and tensor names are documented per builder:
tests rely on them.

``save(model, path)`` writes one to disk; ``random_input(model, seed)`` makes a feed dict for it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

IR_VERSION = 8
OPSET = 17
FLOAT = TensorProto.FLOAT

# Symbolic dimensions ``random_input`` resolves when not told otherwise (any other name -> 1).
# Height and width differ so that a swapped H/W shows up.
DEFAULT_DIMS = {"N": 2, "H": 16, "W": 20}

# Opset each single activation op needs (the rest exist at opset 17).
_OPSET_FOR = {"Gelu": 20, "Mish": 18}


# ----------------------------------------------------------------------------- helpers


def save(model: onnx.ModelProto, path: str | os.PathLike) -> Path:
    """Write ``model`` to ``path`` (parent folders created) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.SerializeToString())
    return path


def make_model(
    nodes: Sequence[onnx.NodeProto],
    inputs: Sequence[onnx.ValueInfoProto],
    outputs: Sequence[onnx.ValueInfoProto],
    initializers: Sequence[onnx.TensorProto] = (),
    opset: int = OPSET,
    name: str = "fmviz-test",
    check: bool = True,
) -> onnx.ModelProto:
    """A model at ``opset`` with IR version 8; checked with onnx.checker unless ``check=False``."""
    graph = helper.make_graph(list(nodes), name, list(inputs), list(outputs), list(initializers))
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="fmviz-tests"
    )
    model.ir_version = IR_VERSION
    if check:
        onnx.checker.check_model(model)
    return model


def tensor_input(name: str, shape: Sequence[int | str | None], elem=FLOAT) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, list(shape))


def init(name: str, array: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(array), name)


def const(name: str, value, dtype=np.float32) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value, dtype=dtype), name)


def _weights(rng: np.random.Generator, shape: Sequence[int]) -> np.ndarray:
    fan_in = int(np.prod(shape[1:])) or 1
    return (rng.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32)


def conv(
    rng: np.random.Generator,
    name: str,
    x: str,
    out: str,
    cin: int,
    cout: int,
    kernel: Sequence[int] = (3, 3),
    stride: Sequence[int] | None = None,
    pads: Sequence[int] | None = None,
    group: int = 1,
    bias: bool = True,
) -> tuple[onnx.NodeProto, list[onnx.TensorProto]]:
    """A Conv node ``name`` reading ``x`` and writing ``out``, weights ``<name>.w`` / ``<name>.b``.

    ``pads`` defaults to "same" padding for odd kernels (k // 2 on every side).
    """
    kernel = list(kernel)
    w = init(f"{name}.w", _weights(rng, [cout, cin // group, *kernel]))
    inits = [w]
    inputs = [x, w.name]
    if bias:
        b = init(f"{name}.b", (rng.standard_normal(cout) * 0.1).astype(np.float32))
        inits.append(b)
        inputs.append(b.name)
    if pads is None:
        pads = [k // 2 for k in kernel] * 2
    attrs = {"kernel_shape": kernel, "pads": list(pads), "group": group}
    if stride is not None:
        attrs["strides"] = list(stride)
    return helper.make_node("Conv", inputs, [out], name=name, **attrs), inits


def batchnorm(
    rng: np.random.Generator, name: str, x: str, out: str, channels: int
) -> tuple[onnx.NodeProto, list[onnx.TensorProto]]:
    params = [
        init(f"{name}.scale", rng.uniform(0.5, 1.5, channels).astype(np.float32)),
        init(f"{name}.bias", (rng.standard_normal(channels) * 0.1).astype(np.float32)),
        init(f"{name}.mean", (rng.standard_normal(channels) * 0.1).astype(np.float32)),
        init(f"{name}.var", rng.uniform(0.5, 1.5, channels).astype(np.float32)),
    ]
    node = helper.make_node(
        "BatchNormalization", [x] + [p.name for p in params], [out], name=name, epsilon=1e-5
    )
    return node, params


def relu(name: str, x: str, out: str) -> onnx.NodeProto:
    return helper.make_node("Relu", [x], [out], name=name)


# ----------------------------------------------------------------------------- builders


def conv_bn_relu(batch: int | str = "N", size: int = 16, channels_in: int = 3) -> onnx.ModelProto:
    """conv1 (3x3, 8 ch) -> bn1 -> relu1 -> conv2 (3x3 stride 2, 4 ch) -> relu2 -> pool.

    Layers: ``conv1`` pre ``conv1_out`` post ``relu1_out``; ``conv2`` pre ``conv2_out`` post
    ``relu2_out``. Output ``output`` [batch, 4, 1, 1].
    """
    rng = np.random.default_rng(1)
    c1, i1 = conv(rng, "conv1", "input", "conv1_out", channels_in, 8)
    bn, i2 = batchnorm(rng, "bn1", "conv1_out", "bn1_out", 8)
    c2, i3 = conv(rng, "conv2", "relu1_out", "conv2_out", 8, 4, stride=(2, 2))
    nodes = [
        c1,
        bn,
        relu("relu1", "bn1_out", "relu1_out"),
        c2,
        relu("relu2", "conv2_out", "relu2_out"),
        helper.make_node("GlobalAveragePool", ["relu2_out"], ["output"], name="pool"),
    ]
    return make_model(
        nodes,
        [tensor_input("input", [batch, channels_in, size, size])],
        [tensor_input("output", [batch, 4, 1, 1])],
        i1 + i2 + i3,
    )


def conv_bias_add_relu() -> onnx.ModelProto:
    """Exporter style: ``conv`` (no bias) -> ``bias_add`` (Add of a [C,1,1] initializer) -> Relu.

    Layer ``conv``: pre ``conv_out``, post ``relu_out``, 6 channels, activation ``Relu``.
    """
    rng = np.random.default_rng(2)
    c, inits = conv(rng, "conv", "input", "conv_out", 3, 6, bias=False)
    bias = const("bias", rng.standard_normal((6, 1, 1)) * 0.1)
    nodes = [
        c,
        helper.make_node("Add", ["conv_out", "bias"], ["biased"], name="bias_add"),
        relu("relu", "biased", "relu_out"),
    ]
    return make_model(
        nodes,
        [tensor_input("input", ["N", 3, 16, 16])],
        [tensor_input("relu_out", ["N", 6, 16, 16])],
        inits + [bias],
    )


def relu6_clip() -> onnx.ModelProto:
    """``conv1`` -> Clip(0, 6) (post ``relu6_out``, ``ReLU6``); ``conv2`` -> Clip(-1, 1) (post
    ``clip_out``, ``Clip``). Bounds are initializer inputs (opset >= 11 style)."""
    rng = np.random.default_rng(3)
    c1, i1 = conv(rng, "conv1", "input", "conv1_out", 3, 4)
    c2, i2 = conv(rng, "conv2", "relu6_out", "conv2_out", 4, 4)
    consts = [const("zero", 0.0), const("six", 6.0), const("lo", -1.0), const("hi", 1.0)]
    nodes = [
        c1,
        helper.make_node("Clip", ["conv1_out", "zero", "six"], ["relu6_out"], name="relu6"),
        c2,
        helper.make_node("Clip", ["conv2_out", "lo", "hi"], ["clip_out"], name="clip"),
    ]
    return make_model(
        nodes,
        [tensor_input("input", ["N", 3, 16, 16])],
        [tensor_input("clip_out", ["N", 4, 16, 16])],
        i1 + i2 + consts,
    )


def _gated(
    seed: int, gate_nodes, gate_inits, out_nodes=(), output="act_out", bn=False, opset=OPSET
) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    c, inits = conv(rng, "conv", "input", "conv_out", 3, 4)
    nodes = [c]
    if bn:
        b, bi = batchnorm(rng, "bn", "conv_out", "x", 4)
        nodes.append(b)
        inits += bi
    else:
        nodes.append(helper.make_node("Identity", ["conv_out"], ["x"], name="identity"))
    nodes += list(gate_nodes) + list(out_nodes)
    return make_model(
        nodes,
        [tensor_input("input", ["N", 3, 16, 16])],
        [tensor_input(output, ["N", 4, 16, 16])],
        inits + list(gate_inits),
        opset=opset,
    )


def silu(bn: bool = False) -> onnx.ModelProto:
    """``conv`` -> (bn or Identity) -> x * Sigmoid(x). Post ``silu_out``, activation ``SiLU``."""
    nodes = [
        helper.make_node("Sigmoid", ["x"], ["sig"], name="sigmoid"),
        helper.make_node("Mul", ["x", "sig"], ["silu_out"], name="mul"),
    ]
    return _gated(4, nodes, [], output="silu_out", bn=bn)


def hardswish_hsigmoid() -> onnx.ModelProto:
    """``conv`` -> Identity -> x * HardSigmoid(x). Post ``hswish_out``, ``HardSwish``."""
    nodes = [
        helper.make_node("HardSigmoid", ["x"], ["hsig"], name="hsig", alpha=1 / 6, beta=0.5),
        helper.make_node("Mul", ["x", "hsig"], ["hswish_out"], name="mul"),
    ]
    return _gated(5, nodes, [], output="hswish_out")


def hardswish_clip() -> onnx.ModelProto:
    """``conv`` -> Identity -> x * Clip(x + 3, 0, 6) / 6. Post ``hswish_out``, ``HardSwish``."""
    nodes = [
        helper.make_node("Add", ["x", "three"], ["plus3"], name="add3"),
        helper.make_node("Clip", ["plus3", "zero", "six"], ["clipped"], name="clip"),
        helper.make_node("Mul", ["x", "clipped"], ["prod"], name="mul"),
        helper.make_node("Div", ["prod", "six"], ["hswish_out"], name="div6"),
    ]
    consts = [const("three", 3.0), const("zero", 0.0), const("six", 6.0)]
    return _gated(6, nodes, consts, output="hswish_out")


def mish() -> onnx.ModelProto:
    """``conv`` -> Identity -> x * Tanh(Softplus(x)). Post ``mish_out``, ``Mish``."""
    nodes = [
        helper.make_node("Softplus", ["x"], ["sp"], name="softplus"),
        helper.make_node("Tanh", ["sp"], ["th"], name="tanh"),
        helper.make_node("Mul", ["x", "th"], ["mish_out"], name="mul"),
    ]
    return _gated(7, nodes, [], output="mish_out")


def gelu_erf() -> onnx.ModelProto:
    """``conv`` -> Identity -> (x * (Erf(x / sqrt2) + 1)) * 0.5. Post ``gelu_out``, ``Gelu``."""
    nodes = [
        helper.make_node("Div", ["x", "sqrt2"], ["scaled"], name="div"),
        helper.make_node("Erf", ["scaled"], ["erf"], name="erf"),
        helper.make_node("Add", ["erf", "one"], ["erf1"], name="add1"),
        helper.make_node("Mul", ["x", "erf1"], ["prod"], name="mul"),
        helper.make_node("Mul", ["prod", "half"], ["gelu_out"], name="half"),
    ]
    consts = [const("sqrt2", np.sqrt(2.0)), const("one", 1.0), const("half", 0.5)]
    return _gated(8, nodes, consts, output="gelu_out")


SINGLE_ACTIVATIONS = (
    "LeakyRelu",
    "PRelu",
    "Elu",
    "Selu",
    "Celu",
    "Sigmoid",
    "Tanh",
    "HardSigmoid",
    "HardSwish",
    "Softplus",
    "Softsign",
    "Gelu",
    "Mish",
)


def single_activation(op: str, **attrs) -> onnx.ModelProto:
    """``conv`` (3 -> 4 ch) -> one ``op`` node named ``act`` -> ``act_out``.

    PRelu gets a [4,1,1] slope initializer; Clip takes ``min``/``max`` keywords (default 0, 6) as
    initializer inputs. Gelu is built at opset 20 and Mish at 18 (where they appear).
    """
    rng = np.random.default_rng(9)
    c, inits = conv(rng, "conv", "input", "conv_out", 3, 4)
    inputs = ["conv_out"]
    if op == "PRelu":
        inits.append(const("slope", rng.uniform(0.05, 0.3, (4, 1, 1))))
        inputs.append("slope")
    elif op == "Clip":
        inits += [
            const("clip_min", attrs.pop("min", 0.0)),
            const("clip_max", attrs.pop("max", 6.0)),
        ]
        inputs += ["clip_min", "clip_max"]
    node = helper.make_node(op, inputs, ["act_out"], name="act", **attrs)
    return make_model(
        [c, node],
        [tensor_input("input", ["N", 3, 16, 16])],
        [tensor_input("act_out", ["N", 4, 16, 16])],
        inits,
        opset=_OPSET_FOR.get(op, OPSET),
    )


def no_activation() -> onnx.ModelProto:
    """``conv_a`` -> ``bn`` -> Add(., ``conv_b`` output) -> Relu: the Add joins two branches, so it
    is not an activation step. ``conv_a`` post ``bn_out`` and ``conv_b`` post ``conv_b_out``, both
    with activation None."""
    rng = np.random.default_rng(10)
    ca, ia = conv(rng, "conv_a", "input", "conv_a_out", 3, 4)
    bn, ib = batchnorm(rng, "bn", "conv_a_out", "bn_out", 4)
    cb, ic = conv(rng, "conv_b", "input", "conv_b_out", 3, 4, kernel=(1, 1))
    nodes = [
        ca,
        bn,
        cb,
        helper.make_node("Add", ["bn_out", "conv_b_out"], ["sum"], name="residual"),
        relu("relu", "sum", "output"),
    ]
    return make_model(
        nodes,
        [tensor_input("input", ["N", 3, 16, 16])],
        [tensor_input("output", ["N", 4, 16, 16])],
        ia + ib + ic,
    )


def depthwise() -> onnx.ModelProto:
    """``stem`` (3 -> 8) -> Relu; ``dw`` (group 8, 3x3) -> Relu; ``pw`` (1x1, 8 -> 4) -> Relu.

    Posts ``stem_relu``, ``dw_relu``, ``output``."""
    rng = np.random.default_rng(11)
    s, i1 = conv(rng, "stem", "input", "stem_out", 3, 8)
    d, i2 = conv(rng, "dw", "stem_relu", "dw_out", 8, 8, group=8)
    p, i3 = conv(rng, "pw", "dw_relu", "pw_out", 8, 4, kernel=(1, 1))
    nodes = [
        s,
        relu("stem_act", "stem_out", "stem_relu"),
        d,
        relu("dw_act", "dw_out", "dw_relu"),
        p,
        relu("pw_act", "pw_out", "output"),
    ]
    return make_model(
        nodes,
        [tensor_input("input", ["N", 3, 16, 16])],
        [tensor_input("output", ["N", 4, 16, 16])],
        i1 + i2 + i3,
    )


def conv_transpose() -> onnx.ModelProto:
    """Input [N, 4, 8, 8] -> ``deconv`` (ConvTranspose, group 2, kernel 4, stride 2, pads 1,
    4 -> 6 channels, out 16x16) -> Relu. Pre ``deconv_out``, post ``relu_out``."""
    rng = np.random.default_rng(12)
    w = init("deconv.w", _weights(rng, [4, 3, 4, 4]))  # [C_in, C_out / group, kH, kW]
    b = init("deconv.b", (rng.standard_normal(6) * 0.1).astype(np.float32))
    nodes = [
        helper.make_node(
            "ConvTranspose",
            ["input", w.name, b.name],
            ["deconv_out"],
            name="deconv",
            kernel_shape=[4, 4],
            strides=[2, 2],
            pads=[1, 1, 1, 1],
            group=2,
        ),
        relu("relu", "deconv_out", "relu_out"),
    ]
    return make_model(
        nodes,
        [tensor_input("input", ["N", 4, 8, 8])],
        [tensor_input("relu_out", ["N", 6, 16, 16])],
        [w, b],
    )


def conv1d() -> onnx.ModelProto:
    """Input [N, 2, 32] -> ``conv1`` (k5, 4 ch) -> Relu -> ``conv2`` (k3 stride 2 pad 1, 8 ch).

    ``conv1`` post ``relu1_out``; ``conv2`` has no activation: post == pre == ``output``."""
    rng = np.random.default_rng(13)
    c1, i1 = conv(rng, "conv1", "input", "conv1_out", 2, 4, kernel=(5,))
    c2, i2 = conv(rng, "conv2", "relu1_out", "output", 4, 8, kernel=(3,), stride=(2,), pads=(1, 1))
    nodes = [c1, relu("relu1", "conv1_out", "relu1_out"), c2]
    return make_model(
        nodes,
        [tensor_input("input", ["N", 2, 32])],
        [tensor_input("output", ["N", 8, 16])],
        i1 + i2,
    )


def conv3d() -> onnx.ModelProto:
    """Input [N, 1, 4, 8, 8] -> ``conv`` (3x3x3, 4 ch) -> Relu (post ``relu_out``)."""
    rng = np.random.default_rng(14)
    c, inits = conv(rng, "conv", "input", "conv_out", 1, 4, kernel=(3, 3, 3))
    return make_model(
        [c, relu("relu", "conv_out", "relu_out")],
        [tensor_input("input", ["N", 1, 4, 8, 8])],
        [tensor_input("relu_out", ["N", 4, 4, 8, 8])],
        inits,
    )


def nhwc() -> onnx.ModelProto:
    """Input [N, 16, 16, 3] -> Transpose(0,3,1,2) -> ``conv`` (4 ch) -> Relu (post ``relu_out``)."""
    rng = np.random.default_rng(15)
    c, inits = conv(rng, "conv", "nchw", "conv_out", 3, 4)
    nodes = [
        helper.make_node("Transpose", ["input"], ["nchw"], name="to_nchw", perm=[0, 3, 1, 2]),
        c,
        relu("relu", "conv_out", "relu_out"),
    ]
    return make_model(
        nodes,
        [tensor_input("input", ["N", 16, 16, 3])],
        [tensor_input("relu_out", ["N", 4, 16, 16])],
        inits,
    )


def dynamic_hw() -> onnx.ModelProto:
    """Input [N, 3, H, W] -> ``conv`` (3x3 stride 2, 8 ch) -> Relu (post ``relu_out``)."""
    rng = np.random.default_rng(16)
    c, inits = conv(rng, "conv", "input", "conv_out", 3, 8, stride=(2, 2))
    return make_model(
        [c, relu("relu", "conv_out", "relu_out")],
        [tensor_input("input", ["N", 3, "H", "W"])],
        [tensor_input("relu_out", ["N", 8, None, None])],
        inits,
    )


def extra_inputs() -> onnx.ModelProto:
    """Inputs ``input`` [1,3,16,16] float, ``scale`` [1] float, ``steps`` [1] int64.

    ``conv`` -> Relu (post ``relu_out``) -> Mul(``scale``) -> ``output``; ``steps`` -> Cast ->
    Add(1) -> side output ``steps_out``."""
    rng = np.random.default_rng(17)
    c, inits = conv(rng, "conv", "input", "conv_out", 3, 4)
    nodes = [
        c,
        relu("relu", "conv_out", "relu_out"),
        helper.make_node("Mul", ["relu_out", "scale"], ["output"], name="scale_mul"),
        helper.make_node("Cast", ["steps"], ["steps_f"], name="cast", to=FLOAT),
        helper.make_node("Add", ["steps_f", "one"], ["steps_out"], name="steps_add"),
    ]
    return make_model(
        nodes,
        [
            tensor_input("input", [1, 3, 16, 16]),
            tensor_input("scale", [1]),
            tensor_input("steps", [1], TensorProto.INT64),
        ],
        [tensor_input("output", [1, 4, 16, 16]), tensor_input("steps_out", [1])],
        inits + [const("one", [1.0])],
    )


def _branch(rng, graph_name: str, conv_name: str, x: str, out: str, cin: int = 4, name=None):
    c, inits = conv(rng, conv_name, x, f"{conv_name}_out", cin, 4)
    nodes = [c, relu(f"{conv_name}_relu", f"{conv_name}_out", out)]
    return helper.make_graph(nodes, graph_name, [], [tensor_input(out, [1, 4, 16, 16])], inits)


def conv_in_if() -> onnx.ModelProto:
    """``conv_main`` -> Relu (post ``main_out``) feeds an If ``branch`` on the bool input ``flag``
    whose ``then_branch`` holds Conv ``then_conv`` and ``else_branch`` Conv ``else_conv``: one
    reachable layer, two unreachable ones. Output ``output``."""
    rng = np.random.default_rng(18)
    c, inits = conv(rng, "conv_main", "input", "conv_main_out", 3, 4)
    then_g = _branch(rng, "then", "then_conv", "main_out", "then_out")
    else_g = _branch(rng, "else", "else_conv", "main_out", "else_out")
    nodes = [
        c,
        relu("main_relu", "conv_main_out", "main_out"),
        helper.make_node(
            "If", ["flag"], ["output"], name="branch", then_branch=then_g, else_branch=else_g
        ),
    ]
    return make_model(
        nodes,
        [tensor_input("input", [1, 3, 16, 16]), tensor_input("flag", [], TensorProto.BOOL)],
        [tensor_input("output", [1, 4, 16, 16])],
        inits,
    )


def only_if() -> onnx.ModelProto:
    """Every Conv inside the If ``branch`` (``then_conv``, ``else_conv``): no reachable layer."""
    rng = np.random.default_rng(19)
    then_g = _branch(rng, "then", "then_conv", "input", "then_out", cin=3)
    else_g = _branch(rng, "else", "else_conv", "input", "else_out", cin=3)
    node = helper.make_node(
        "If", ["flag"], ["output"], name="branch", then_branch=then_g, else_branch=else_g
    )
    return make_model(
        [node],
        [tensor_input("input", [1, 3, 16, 16]), tensor_input("flag", [], TensorProto.BOOL)],
        [tensor_input("output", [1, 4, 16, 16])],
    )


def nested_if() -> onnx.ModelProto:
    """If ``outer`` whose then_branch holds an If ``inner`` with an unnamed Conv (output
    ``deep_out``) in its then_branch and Conv ``inner_else_conv`` in its else_branch; the outer
    else_branch holds Conv ``outer_else_conv``. Nothing reachable; three unreachable, each
    reported under ``outer``."""
    rng = np.random.default_rng(20)
    deep_w = init("deep.w", _weights(rng, [4, 3, 3, 3]))
    deep = helper.make_graph(
        [helper.make_node("Conv", ["input", deep_w.name], ["deep_out"], pads=[1, 1, 1, 1])],
        "deep",
        [],
        [tensor_input("deep_out", [1, 4, 16, 16])],
        [deep_w],
    )
    inner_else = _branch(rng, "inner_else", "inner_else_conv", "input", "ie_out", cin=3)
    inner = helper.make_node(
        "If", ["flag"], ["inner_out"], name="inner", then_branch=deep, else_branch=inner_else
    )
    outer_then = helper.make_graph(
        [inner], "outer_then", [], [tensor_input("inner_out", [1, 4, 16, 16])]
    )
    outer_else = _branch(rng, "outer_else", "outer_else_conv", "input", "oe_out", cin=3)
    node = helper.make_node(
        "If", ["flag"], ["output"], name="outer", then_branch=outer_then, else_branch=outer_else
    )
    return make_model(
        [node],
        [tensor_input("input", [1, 3, 16, 16]), tensor_input("flag", [], TensorProto.BOOL)],
        [tensor_input("output", [1, 4, 16, 16])],
    )


# Layer names of awkward_names(), in order, and their pre/post tensors.
AWKWARD_LAYERS = (
    # (layer name, node name, pre tensor, post tensor)
    (
        "/features/0/Conv",
        "/features/0/Conv",
        "/features/0/Conv_output_0",
        "/features/1/Relu_output_0",
    ),
    ("../../etc/passwd", "../../etc/passwd", "..", "a b"),
    ("../../tmp/evil", "", "../../tmp/evil", "../../tmp/evil"),
    ("conv/1", "conv/1", "c/1", "r/1"),
    ("conv:1", "conv:1", "c:1", "r:1"),
    ("a b", "a b", "/", "output"),
)


def awkward_names() -> onnx.ModelProto:
    """Six chained convs (4 ch, 8x8) whose names try to escape a folder or collide when cleaned
    to ``[A-Za-z0-9._-]`` (``conv/1`` and ``conv:1``); one node has an empty name so its layer is
    named after its output tensor. See ``AWKWARD_LAYERS`` for (layer, node, pre, post)."""
    rng = np.random.default_rng(21)
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    x = "input"
    for i, (_layer, node_name, pre, post) in enumerate(AWKWARD_LAYERS):
        c, ci = conv(rng, f"w{i}", x, pre, 4, 4)
        c.name = node_name
        nodes.append(c)
        inits += ci
        if post != pre:
            nodes.append(relu(f"relu {i}" if i != 1 else "", pre, post))
        x = post
    return make_model(
        nodes,
        [tensor_input("input", ["N", 4, 8, 8])],
        [tensor_input("output", ["N", 4, 8, 8])],
        inits,
    )


def no_conv() -> onnx.ModelProto:
    """``input`` [N, 4] MatMul a [4, 3] weight -> ``output``: no layer at all."""
    rng = np.random.default_rng(22)
    w = init("w", _weights(rng, [4, 3]))
    return make_model(
        [helper.make_node("MatMul", ["input", "w"], ["output"], name="matmul")],
        [tensor_input("input", ["N", 4])],
        [tensor_input("output", ["N", 3])],
        [w],
    )


def output_already() -> onnx.ModelProto:
    """``conv1`` -> Relu -> ``relu_out`` (a graph output, also read by ``conv2``); ``conv2`` has
    no activation and writes the graph output ``output``. Outputs: ``relu_out``, ``output``."""
    rng = np.random.default_rng(23)
    c1, i1 = conv(rng, "conv1", "input", "conv1_out", 3, 4)
    c2, i2 = conv(rng, "conv2", "relu_out", "output", 4, 4)
    nodes = [c1, relu("relu", "conv1_out", "relu_out"), c2]
    return make_model(
        nodes,
        [tensor_input("input", ["N", 3, 16, 16])],
        [tensor_input("relu_out", ["N", 4, 16, 16]), tensor_input("output", ["N", 4, 16, 16])],
        i1 + i2,
    )


def qlinear_conv() -> onnx.ModelProto:
    """QuantizeLinear -> ``qconv`` (QLinearConv, uint8 x, int8 w, 3 -> 4 ch, 3x3) ->
    DequantizeLinear -> ``output``, opset 19. Pre = post = ``qconv_out`` (uint8), activation
    None."""
    rng = np.random.default_rng(24)
    w = rng.integers(-20, 20, (4, 3, 3, 3)).astype(np.int8)
    inits = [
        const("x_scale", 0.02),
        const("x_zp", 128, np.uint8),
        init("qconv.w", w),
        const("w_scale", 0.01),
        const("w_zp", 0, np.int8),
        const("y_scale", 0.05),
        const("y_zp", 128, np.uint8),
        init("qconv.b", rng.integers(-100, 100, 4).astype(np.int32)),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["input", "x_scale", "x_zp"], ["x_q"], name="quant"),
        helper.make_node(
            "QLinearConv",
            ["x_q", "x_scale", "x_zp", "qconv.w", "w_scale", "w_zp", "y_scale", "y_zp", "qconv.b"],
            ["qconv_out"],
            name="qconv",
            kernel_shape=[3, 3],
            pads=[1, 1, 1, 1],
        ),
        helper.make_node(
            "DequantizeLinear", ["qconv_out", "y_scale", "y_zp"], ["output"], name="dequant"
        ),
    ]
    return make_model(
        nodes,
        [tensor_input("input", [1, 3, 8, 8])],
        [tensor_input("output", [1, 4, 8, 8])],
        inits,
        opset=19,  # onnx.reference implements DequantizeLinear from opset 19 on
    )


def conv_integer() -> onnx.ModelProto:
    """QuantizeLinear -> ``iconv`` (ConvInteger, uint8 x and w, 3 -> 4 ch, 3x3 stride 2) ->
    int32 ``iconv_out`` -> Cast -> Mul(scale) -> ``output``, opset 19. Pre = post =
    ``iconv_out``."""
    rng = np.random.default_rng(25)
    inits = [
        const("x_scale", 0.02),
        const("x_zp", 128, np.uint8),
        init("iconv.w", rng.integers(100, 156, (4, 3, 3, 3)).astype(np.uint8)),
        const("w_zp", 128, np.uint8),
        const("out_scale", 0.02 * 0.01),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["input", "x_scale", "x_zp"], ["x_q"], name="quant"),
        helper.make_node(
            "ConvInteger",
            ["x_q", "iconv.w", "x_zp", "w_zp"],
            ["iconv_out"],
            name="iconv",
            kernel_shape=[3, 3],
            strides=[2, 2],
            pads=[1, 1, 1, 1],
        ),
        helper.make_node("Cast", ["iconv_out"], ["iconv_f"], name="cast", to=FLOAT),
        helper.make_node("Mul", ["iconv_f", "out_scale"], ["output"], name="rescale"),
    ]
    return make_model(
        nodes,
        [tensor_input("input", [1, 3, 8, 8])],
        [tensor_input("output", [1, 4, 4, 4])],
        inits,
        opset=19,
    )


def many_layers(n: int, channels: int = 4, size: int = 8) -> onnx.ModelProto:
    """A chain of ``n`` blocks ``conv{i}`` -> ``relu{i}``; layer i has pre ``conv{i}_out`` and
    post ``relu{i}_out``. Input [N, channels, size, size]; output is the last post tensor."""
    rng = np.random.default_rng(26)
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    x = "input"
    for i in range(n):
        c, ci = conv(rng, f"conv{i}", x, f"conv{i}_out", channels, channels)
        nodes += [c, relu(f"relu{i}", f"conv{i}_out", f"relu{i}_out")]
        inits += ci
        x = f"relu{i}_out"
    return make_model(
        nodes,
        [tensor_input("input", ["N", channels, size, size])],
        [tensor_input(x, ["N", channels, size, size])],
        inits,
    )


def conv_followed_by(
    tail: Sequence[onnx.NodeProto],
    output: str,
    initializers: Sequence[onnx.TensorProto] = (),
    channels: int = 4,
    opset: int = OPSET,
) -> onnx.ModelProto:
    """``conv`` (3 -> ``channels``, 3x3, pre ``conv_out``) followed by the given ``tail`` nodes,
    with ``output`` the graph output. For ad-hoc activation-chain cases."""
    rng = np.random.default_rng(27)
    c, inits = conv(rng, "conv", "input", "conv_out", 3, channels)
    return make_model(
        [c, *tail],
        [tensor_input("input", ["N", 3, 8, 8])],
        [tensor_input(output, ["N", None, None, None])],
        inits + list(initializers),
        opset=opset,
    )


# ----------------------------------------------------------------------------- inputs


def reference_outputs(
    model: onnx.ModelProto, feeds: dict, names: Sequence[str]
) -> list[np.ndarray]:
    """The tensors ``names`` computed by onnx's reference evaluator, independently of
    onnxruntime (on a copy of ``model`` whose outputs are exactly ``names``)."""
    from onnx.reference import ReferenceEvaluator

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    del copy.graph.output[:]
    for name in names:
        copy.graph.output.append(helper.make_empty_tensor_value_info(name))
    return ReferenceEvaluator(copy).run(None, feeds)


def random_input(
    model: onnx.ModelProto, seed: int = 0, dims: dict[str, int] | None = None
) -> dict[str, np.ndarray]:
    """A feed for every graph input that is not an initializer.

    Symbolic dims come from ``dims``, then ``DEFAULT_DIMS``, else 1. Floats are standard normal,
    integers in 0..9, bools random; the If models' ``flag`` is therefore random too: pass your
    own value where it matters.
    """
    rng = np.random.default_rng(seed)
    sizes = {**DEFAULT_DIMS, **(dims or {})}
    initializers = {t.name for t in model.graph.initializer}
    feeds: dict[str, np.ndarray] = {}
    for info in model.graph.input:
        if info.name in initializers:
            continue
        tensor_type = info.type.tensor_type
        shape = []
        for dim in tensor_type.shape.dim:
            if dim.HasField("dim_value"):
                shape.append(dim.dim_value)
            else:
                shape.append(sizes.get(dim.dim_param, 1))
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tensor_type.elem_type))
        if dtype.kind == "f":
            value = rng.standard_normal(shape).astype(dtype)
        elif dtype.kind == "b":
            value = rng.random(shape) < 0.5
        elif dtype.kind in "iu":
            value = rng.integers(0, 10, shape).astype(dtype)
        else:
            raise ValueError(f"random_input: unsupported dtype {dtype} for {info.name}")
        feeds[info.name] = np.asarray(value)
    return feeds


# Every builder that takes no argument, by name: handy for parametrised tests.
BUILDERS = {
    "conv_bn_relu": conv_bn_relu,
    "conv_bias_add_relu": conv_bias_add_relu,
    "relu6_clip": relu6_clip,
    "silu": silu,
    "hardswish_hsigmoid": hardswish_hsigmoid,
    "hardswish_clip": hardswish_clip,
    "mish": mish,
    "gelu_erf": gelu_erf,
    "no_activation": no_activation,
    "depthwise": depthwise,
    "conv_transpose": conv_transpose,
    "conv1d": conv1d,
    "conv3d": conv3d,
    "nhwc": nhwc,
    "dynamic_hw": dynamic_hw,
    "extra_inputs": extra_inputs,
    "conv_in_if": conv_in_if,
    "only_if": only_if,
    "nested_if": nested_if,
    "awkward_names": awkward_names,
    "no_conv": no_conv,
    "output_already": output_already,
    "qlinear_conv": qlinear_conv,
    "conv_integer": conv_integer,
}


def conv_bias_subexpression(kind: str) -> onnx.ModelProto:
    """Exporter style bias written as a constant subexpression, then Relu.

    ``kind``: ``reshape`` (``Add(conv_out, Reshape(Constant [6], Constant [3]))``), ``unsqueeze``
    (``Unsqueeze(Unsqueeze(initializer [6]))`` to ``[6, 1, 1]``) or ``cast`` (``Cast`` of a
    float64 ``[1, 6, 1, 1]`` initializer). Layer ``conv``: pre ``conv_out``, post ``relu_out``,
    6 channels, activation ``Relu``.
    """
    rng = np.random.default_rng(3)
    c, inits = conv(rng, "conv", "input", "conv_out", 3, 6, bias=False)
    values = (rng.standard_normal(6) * 0.5).astype(np.float32)
    nodes = [c]
    if kind == "reshape":
        nodes += [
            helper.make_node("Constant", [], ["bias_flat"], value=numpy_helper.from_array(values)),
            helper.make_node("Constant", [], ["bias_shape"],
                             value=numpy_helper.from_array(np.array([6, 1, 1], np.int64))),
            helper.make_node("Reshape", ["bias_flat", "bias_shape"], ["bias"]),
        ]
    elif kind == "unsqueeze":
        inits += [init("bias_flat", values), const("axes", [1, 2], np.int64)]
        nodes += [helper.make_node("Unsqueeze", ["bias_flat", "axes"], ["bias"])]
    elif kind == "cast":
        inits += [init("bias64", values.astype(np.float64).reshape(1, 6, 1, 1))]
        nodes += [helper.make_node("Cast", ["bias64"], ["bias"], to=FLOAT)]
    else:
        raise ValueError(kind)
    nodes += [
        helper.make_node("Add", ["conv_out", "bias"], ["biased"], name="bias_add"),
        relu("relu", "biased", "relu_out"),
    ]
    return make_model(
        nodes,
        [tensor_input("input", ["N", 3, 16, 16])],
        [tensor_input("relu_out", ["N", 6, 16, 16])],
        inits,
    )
