"""Benchmark models, built at run time with onnx.helper (never committed).

Random but deterministic weights (numpy's PCG64 with a fixed seed per model), opset 17, IR
version 8. BatchNormalization is kept as its own node after every convolution so that
onnxruntime's Conv+BN folding and Conv+activation fusion matter, as they do in exported models.

- :func:`resnet50`: ResNet-50 v1.5 shape (bottlenecks 3-4-6-3, stride on the 3x3), ReLU,
  residual Adds; input ``["N", 3, "H", "W"]`` (dynamic size: ``--size 1024`` works).
- :func:`mobilenet_v2`: MobileNetV2 shape (inverted residuals, depthwise 3x3, ReLU6 as
  ``Clip(0, 6)``, linear bottlenecks, residual Adds); input ``["N", 3, 224, 224]``.
- :func:`detector`: a YOLOv8n-like detector, 64 convolutions with SiLU written ``x*Sigmoid(x)``,
  C2f blocks (Split/Concat), SPPF, an upsampling neck and a decoupled head; input
  ``[1, 3, 640, 640]``.
- :func:`mobilenet_v3_small`: MobileNetV3-Small shape (Howard et al. 2019: 11 inverted residual
  blocks with 3x3/5x5 depthwise convolutions, squeeze-excitation of GlobalAveragePool, two 1x1
  convolutions and a ``HardSigmoid`` gate, ReLU in the first three blocks and HardSwish after),
  HardSwish written as the ONNX ``HardSwish`` op in even blocks and decomposed as PyTorch's older
  exports write it, ``x * Clip(x + 3, 0, 6) / 6``, in odd ones and the stem; a pooled head of
  1x1 convolutions (576 -> pool -> 1024 -> 1000); input ``["N", 3, 224, 224]``. Not in
  :data:`BUILDERS` (the full benchmark's model set is unchanged); ``build()`` makes it too.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8
BUILDER_VERSION = 1  # bump when a builder changes: cached files are rebuilt


class _Builder:
    """Accumulates nodes and initializers; names are unique and readable (``/stage/conv``)."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.count = 0
        self.convs = 0
        self._consts: dict[tuple, str] = {}

    def name(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}_{self.count}"

    def const(self, value, dtype=np.float32) -> str:
        array = np.asarray(value, dtype=dtype)
        key = (array.dtype.str, array.shape, array.tobytes())
        if key not in self._consts:
            name = f"const_{len(self._consts)}"
            self.inits.append(numpy_helper.from_array(array, name))
            self._consts[key] = name
        return self._consts[key]

    def node(self, op: str, inputs: Sequence[str], name: str, outputs=1, **attrs) -> list[str]:
        outs = [f"{name}_out{i}" if outputs > 1 else f"{name}_out" for i in range(outputs)]
        self.nodes.append(helper.make_node(op, list(inputs), outs, name=name, **attrs))
        return outs

    def conv(
        self, x: str, cin: int, cout: int, k: int = 1, s: int = 1, group: int = 1,
        name: str = "conv", bias: bool = False, gain: float = 2.0,
    ) -> str:
        self.convs += 1
        fan_in = cin // group * k * k
        w = (self.rng.standard_normal((cout, cin // group, k, k)) * np.sqrt(gain / fan_in))
        wname = f"{name}.weight"
        self.inits.append(numpy_helper.from_array(w.astype(np.float32), wname))
        inputs = [x, wname]
        if bias:
            b = (self.rng.standard_normal(cout) * 0.05).astype(np.float32)
            self.inits.append(numpy_helper.from_array(b, f"{name}.bias"))
            inputs.append(f"{name}.bias")
        pad = k // 2
        return self.node(
            "Conv", inputs, name, kernel_shape=[k, k], strides=[s, s], pads=[pad] * 4,
            group=group, dilations=[1, 1],
        )[0]

    def bn(self, x: str, c: int, name: str, gamma: float = 1.0) -> str:
        rng = self.rng
        params = {
            "scale": rng.uniform(0.8, 1.2, c) * gamma,
            "bias": rng.standard_normal(c) * 0.05,
            "mean": rng.standard_normal(c) * 0.05,
            "var": rng.uniform(0.8, 1.2, c),
        }
        names = []
        for key, value in params.items():
            self.inits.append(numpy_helper.from_array(value.astype(np.float32), f"{name}.{key}"))
            names.append(f"{name}.{key}")
        return self.node("BatchNormalization", [x, *names], name, epsilon=1e-5)[0]

    def relu(self, x: str, name: str) -> str:
        return self.node("Relu", [x], name)[0]

    def relu6(self, x: str, name: str) -> str:
        return self.node("Clip", [x, self.const(0.0), self.const(6.0)], name)[0]

    def silu(self, x: str, name: str) -> str:
        gate = self.node("Sigmoid", [x], f"{name}/Sigmoid")[0]
        return self.node("Mul", [x, gate], f"{name}/Mul")[0]

    def model(self, inputs, outputs, graph_name: str, doc: str) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, graph_name, inputs, outputs, self.inits)
        model = helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", OPSET)],
            producer_name="fmviz benchmarks/models.py",
        )
        model.ir_version = IR_VERSION
        model.doc_string = doc
        onnx.checker.check_model(model)
        return model


# ----------------------------------------------------------------------------- ResNet-50


def _w(channels: int, width: float) -> int:
    return max(4, int(round(channels * width / 4)) * 4)


def resnet50(seed: int = 50, width: float = 1.0) -> onnx.ModelProto:
    """``width`` scales every channel count (1.0: ResNet-50; the smoke test uses a sliver)."""
    b = _Builder(seed)
    stem = _w(64, width)
    x = b.conv("input", 3, stem, k=7, s=2, name="/conv1/Conv")
    x = b.relu(b.bn(x, stem, "/bn1/BatchNormalization"), "/relu/Relu")
    x = b.node("MaxPool", [x], "/maxpool/MaxPool", kernel_shape=[3, 3], strides=[2, 2],
               pads=[1, 1, 1, 1])[0]
    cin = stem
    widths = [_w(c, width) for c in (64, 128, 256, 512)]
    for stage, (blocks, width) in enumerate(zip((3, 4, 6, 3), widths, strict=True), start=1):
        for block in range(blocks):
            p = f"/layer{stage}/layer{stage}.{block}"
            stride = 2 if block == 0 and stage > 1 else 1
            cout = width * 4
            y = b.relu(b.bn(b.conv(x, cin, width, 1, 1, name=f"{p}/conv1/Conv"), width,
                            f"{p}/bn1/BatchNormalization"), f"{p}/relu/Relu")
            y = b.relu(b.bn(b.conv(y, width, width, 3, stride, name=f"{p}/conv2/Conv"), width,
                            f"{p}/bn2/BatchNormalization"), f"{p}/relu_1/Relu")
            y = b.bn(b.conv(y, width, cout, 1, 1, name=f"{p}/conv3/Conv"), cout,
                     f"{p}/bn3/BatchNormalization", gamma=0.3)
            if block == 0:
                skip = b.bn(b.conv(x, cin, cout, 1, stride, name=f"{p}/downsample/0/Conv"),
                            cout, f"{p}/downsample/1/BatchNormalization", gamma=0.5)
            else:
                skip = x
            x = b.relu(b.node("Add", [y, skip], f"{p}/Add")[0], f"{p}/relu_2/Relu")
            cin = cout
    x = b.node("GlobalAveragePool", [x], "/avgpool/GlobalAveragePool")[0]
    x = b.node("Flatten", [x], "/Flatten", axis=1)[0]
    fc_w = (b.rng.standard_normal((1000, cin)) * 0.02).astype(np.float32)
    b.inits.append(numpy_helper.from_array(fc_w, "fc.weight"))
    b.inits.append(numpy_helper.from_array(np.zeros(1000, np.float32), "fc.bias"))
    b.nodes.append(helper.make_node("Gemm", [x, "fc.weight", "fc.bias"], ["logits"],
                                    name="/fc/Gemm", transB=1))
    return b.model(
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 1000])],
        "resnet50", "ResNet-50-shaped benchmark model, random deterministic weights.",
    )


# ----------------------------------------------------------------------------- MobileNetV2


def mobilenet_v2(seed: int = 2, width: float = 1.0, size: int = 224) -> onnx.ModelProto:
    b = _Builder(seed)
    stem = _w(32, width)
    x = b.relu6(b.bn(b.conv("input", 3, stem, 3, 2, name="/features/0/0/Conv"), stem,
                     "/features/0/1/BatchNormalization"), "/features/0/2/Clip")
    cin = stem
    index = 1
    for t, c, n, s in ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                       (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)):
        c = _w(c, width)
        for i in range(n):
            stride = s if i == 0 else 1
            p = f"/features/{index}/conv"
            hidden = cin * t
            y = x
            j = 0
            if t != 1:
                y = b.relu6(b.bn(b.conv(y, cin, hidden, 1, name=f"{p}/{j}/0/Conv"), hidden,
                                 f"{p}/{j}/1/BatchNormalization"), f"{p}/{j}/2/Clip")
                j += 1
            y = b.relu6(b.bn(b.conv(y, hidden, hidden, 3, stride, group=hidden,
                                    name=f"{p}/{j}/0/Conv"), hidden,
                             f"{p}/{j}/1/BatchNormalization"), f"{p}/{j}/2/Clip")
            y = b.bn(b.conv(y, hidden, c, 1, name=f"{p}/{j + 1}/Conv"), c,
                     f"{p}/{j + 2}/BatchNormalization", gamma=0.5)
            if stride == 1 and cin == c:
                y = b.node("Add", [x, y], f"/features/{index}/Add")[0]
            x, cin = y, c
            index += 1
    last = _w(1280, width)
    x = b.relu6(b.bn(b.conv(x, cin, last, 1, name=f"/features/{index}/0/Conv"), last,
                     f"/features/{index}/1/BatchNormalization"), f"/features/{index}/2/Clip")
    x = b.node("GlobalAveragePool", [x], "/GlobalAveragePool")[0]
    x = b.node("Flatten", [x], "/Flatten", axis=1)[0]
    fc_w = (b.rng.standard_normal((1000, last)) * 0.02).astype(np.float32)
    b.inits.append(numpy_helper.from_array(fc_w, "classifier.1.weight"))
    b.inits.append(numpy_helper.from_array(np.zeros(1000, np.float32), "classifier.1.bias"))
    b.nodes.append(helper.make_node("Gemm", [x, "classifier.1.weight", "classifier.1.bias"],
                                    ["logits"], name="/classifier/1/Gemm", transB=1))
    return b.model(
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 1000])],
        "mobilenet_v2", "MobileNetV2-shaped benchmark model, random deterministic weights.",
    )


# ----------------------------------------------------------------------------- detector


def detector(seed: int = 8, size: int = 640, width: float = 1.0) -> onnx.ModelProto:
    """YOLOv8n-like: 64 Conv layers, Conv+BN+SiLU everywhere except the head's last 1x1s.

    ``width`` scales the backbone and neck channels (the head keeps 64 box and 80 class bins).
    """
    b = _Builder(seed)
    w = {c: _w(c, width) for c in (16, 32, 64, 128, 256)}

    def cbs(x, cin, cout, k=1, s=1, name="conv"):
        y = b.bn(b.conv(x, cin, cout, k, s, name=f"{name}/conv/Conv"), cout,
                 f"{name}/bn/BatchNormalization", gamma=0.5)
        return b.silu(y, f"{name}/act")

    def c2f(x, cin, cout, n, name, shortcut=True):
        half = cout // 2
        y = cbs(x, cin, cout, 1, 1, f"{name}/cv1")
        parts = b.node("Split", [y, b.const([half, half], np.int64)], f"{name}/Split",
                       outputs=2, axis=1)
        outs = list(parts)
        z = parts[1]
        for i in range(n):
            m = cbs(z, half, half, 3, 1, f"{name}/m.{i}/cv1")
            m = cbs(m, half, half, 3, 1, f"{name}/m.{i}/cv2")
            z = b.node("Add", [z, m], f"{name}/m.{i}/Add")[0] if shortcut else m
            outs.append(z)
        cat = b.node("Concat", outs, f"{name}/Concat", axis=1)[0]
        return cbs(cat, half * (2 + n), cout, 1, 1, f"{name}/cv2")

    def sppf(x, c, name):
        y = cbs(x, c, c // 2, 1, 1, f"{name}/cv1")
        pools = [y]
        for i in range(3):
            pools.append(b.node("MaxPool", [pools[-1]], f"{name}/m_{i}/MaxPool",
                                kernel_shape=[5, 5], strides=[1, 1], pads=[2, 2, 2, 2])[0])
        cat = b.node("Concat", pools, f"{name}/Concat", axis=1)[0]
        return cbs(cat, c * 2, c, 1, 1, f"{name}/cv2")

    def up(x, name):
        scales = b.const([1.0, 1.0, 2.0, 2.0])
        return b.node("Resize", [x, "", scales], name, mode="nearest")[0]

    x = cbs("images", 3, w[16], 3, 2, "/model.0")
    x = cbs(x, w[16], w[32], 3, 2, "/model.1")
    x = c2f(x, w[32], w[32], 1, "/model.2")
    x = cbs(x, w[32], w[64], 3, 2, "/model.3")
    p3 = c2f(x, w[64], w[64], 2, "/model.4")
    x = cbs(p3, w[64], w[128], 3, 2, "/model.5")
    p4 = c2f(x, w[128], w[128], 2, "/model.6")
    x = cbs(p4, w[128], w[256], 3, 2, "/model.7")
    x = c2f(x, w[256], w[256], 1, "/model.8")
    p5 = sppf(x, w[256], "/model.9")
    x = b.node("Concat", [up(p5, "/model.10/Resize"), p4], "/model.11/Concat", axis=1)[0]
    n4 = c2f(x, w[256] + w[128], w[128], 1, "/model.12", shortcut=False)
    x = b.node("Concat", [up(n4, "/model.13/Resize"), p3], "/model.14/Concat", axis=1)[0]
    o3 = c2f(x, w[128] + w[64], w[64], 1, "/model.15", shortcut=False)
    x = cbs(o3, w[64], w[64], 3, 2, "/model.16")
    x = b.node("Concat", [x, n4], "/model.17/Concat", axis=1)[0]
    o4 = c2f(x, w[64] + w[128], w[128], 1, "/model.18", shortcut=False)
    x = cbs(o4, w[128], w[128], 3, 2, "/model.19")
    x = b.node("Concat", [x, p5], "/model.20/Concat", axis=1)[0]
    o5 = c2f(x, w[128] + w[256], w[256], 1, "/model.21", shortcut=False)
    boxes, classes = [], []
    for level, (feat, c) in enumerate(((o3, w[64]), (o4, w[128]), (o5, w[256]))):
        p = f"/model.22/cv2.{level}"
        box = cbs(cbs(feat, c, 64, 3, 1, f"{p}/0"), 64, 64, 3, 1, f"{p}/1")
        box = b.conv(box, 64, 64, 1, 1, name=f"{p}/2/Conv", bias=True, gain=1.0)
        q = f"/model.22/cv3.{level}"
        cls = cbs(cbs(feat, c, 80, 3, 1, f"{q}/0"), 80, 80, 3, 1, f"{q}/1")
        cls = b.conv(cls, 80, 80, 1, 1, name=f"{q}/2/Conv", bias=True, gain=1.0)
        boxes.append(b.node("Reshape", [box, b.const([1, 64, -1], np.int64)],
                            f"/model.22/Reshape_box{level}")[0])
        classes.append(b.node("Reshape", [cls, b.const([1, 80, -1], np.int64)],
                              f"/model.22/Reshape_cls{level}")[0])
    # DFL: distribution over 16 bins per box side, decoded by a fixed 1x1 convolution
    box = b.node("Concat", boxes, "/model.22/Concat_box", axis=2)[0]
    box = b.node("Reshape", [box, b.const([1, 4, 16, -1], np.int64)], "/model.22/dfl/Reshape")[0]
    box = b.node("Transpose", [box], "/model.22/dfl/Transpose", perm=[0, 2, 1, 3])[0]
    box = b.node("Softmax", [box], "/model.22/dfl/Softmax", axis=1)[0]
    b.convs += 1
    b.inits.append(numpy_helper.from_array(
        np.arange(16, dtype=np.float32).reshape(1, 16, 1, 1), "model.22.dfl.conv.weight"))
    box = b.node("Conv", [box, "model.22.dfl.conv.weight"], "/model.22/dfl/conv/Conv",
                 kernel_shape=[1, 1])[0]
    box = b.node("Reshape", [box, b.const([1, 4, -1], np.int64)], "/model.22/dfl/Reshape_1")[0]
    cls = b.node("Sigmoid", [b.node("Concat", classes, "/model.22/Concat_cls", axis=2)[0]],
                 "/model.22/Sigmoid")[0]
    b.nodes.append(helper.make_node("Concat", [box, cls], ["output0"],
                                    name="/model.22/Concat_out", axis=1))
    assert b.convs == 64, b.convs
    cells = sum((size // s) ** 2 for s in (8, 16, 32))
    return b.model(
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 84, cells])],
        "detector", "YOLOv8n-like 64-layer detector benchmark model, random weights.",
    )


# ----------------------------------------------------------------------------- MobileNetV3-Small

# kernel, expanded channels, output channels, squeeze-excitation, HardSwish (else ReLU), stride
V3_SMALL = ((3, 16, 16, True, False, 2), (3, 72, 24, False, False, 2),
            (3, 88, 24, False, False, 1), (5, 96, 40, True, True, 2),
            (5, 240, 40, True, True, 1), (5, 240, 40, True, True, 1),
            (5, 120, 48, True, True, 1), (5, 144, 48, True, True, 1),
            (5, 288, 96, True, True, 2), (5, 576, 96, True, True, 1),
            (5, 576, 96, True, True, 1))


def _divisible(value: float, divisor: int = 8) -> int:
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def _hardswish(b: _Builder, x: str, name: str, decomposed: bool) -> str:
    """HardSwish as one ONNX op, or as ``x * Clip(x + 3, 0, 6) / 6`` (Add, Clip, Mul, Div)."""
    if not decomposed:
        return b.node("HardSwish", [x], f"{name}/HardSwish")[0]
    shifted = b.node("Add", [x, b.const(3.0)], f"{name}/Add")[0]
    gate = b.node("Clip", [shifted, b.const(0.0), b.const(6.0)], f"{name}/Clip")[0]
    product = b.node("Mul", [x, gate], f"{name}/Mul")[0]
    return b.node("Div", [product, b.const(6.0)], f"{name}/Div")[0]


def mobilenet_v3_small(seed: int = 3, width: float = 1.0, size: int = 224) -> onnx.ModelProto:
    b = _Builder(seed)
    stem = _divisible(16 * width)
    x = b.bn(b.conv("input", 3, stem, 3, 2, name="/features/0/0/Conv"), stem,
             "/features/0/1/BatchNormalization")
    x = _hardswish(b, x, "/features/0/2", decomposed=True)
    cin = stem
    for index, (k, exp, out, se, hs, s) in enumerate(V3_SMALL, start=1):
        exp, out = _divisible(exp * width), _divisible(out * width)
        p = f"/features/{index}/block"
        decomposed = index % 2 == 1

        def act(y: str, name: str, hs: bool = hs, decomposed: bool = decomposed) -> str:
            return _hardswish(b, y, name, decomposed) if hs else b.relu(y, f"{name}/Relu")

        y, j = x, 0
        if exp != cin:
            y = act(b.bn(b.conv(y, cin, exp, 1, name=f"{p}/{j}/0/Conv"), exp,
                         f"{p}/{j}/1/BatchNormalization"), f"{p}/{j}/2")
            j += 1
        y = act(b.bn(b.conv(y, exp, exp, k, s, group=exp, name=f"{p}/{j}/0/Conv"), exp,
                     f"{p}/{j}/1/BatchNormalization"), f"{p}/{j}/2")
        j += 1
        if se:
            squeeze = _divisible(exp / 4)
            q = f"{p}/{j}"
            g = b.node("GlobalAveragePool", [y], f"{q}/avgpool/GlobalAveragePool")[0]
            g = b.relu(b.conv(g, exp, squeeze, 1, name=f"{q}/fc1/Conv", bias=True),
                       f"{q}/activation/Relu")
            g = b.conv(g, squeeze, exp, 1, name=f"{q}/fc2/Conv", bias=True, gain=1.0)
            g = b.node("HardSigmoid", [g], f"{q}/scale_activation/HardSigmoid",
                       alpha=1.0 / 6.0, beta=0.5)[0]
            y = b.node("Mul", [g, y], f"{q}/Mul")[0]
            j += 1
        y = b.bn(b.conv(y, exp, out, 1, name=f"{p}/{j}/0/Conv"), out,
                 f"{p}/{j}/1/BatchNormalization", gamma=0.5)
        if s == 1 and cin == out:
            y = b.node("Add", [y, x], f"/features/{index}/Add")[0]
        x, cin = y, out
    index = len(V3_SMALL) + 1
    last = _divisible(576 * width)
    x = b.bn(b.conv(x, cin, last, 1, name=f"/features/{index}/0/Conv"), last,
             f"/features/{index}/1/BatchNormalization")
    x = _hardswish(b, x, f"/features/{index}/2", decomposed=False)
    x = b.node("GlobalAveragePool", [x], "/avgpool/GlobalAveragePool")[0]
    head = _divisible(1024 * width)
    x = b.conv(x, last, head, 1, name="/classifier/0/Conv", bias=True)
    x = _hardswish(b, x, "/classifier/1", decomposed=True)
    x = b.conv(x, head, 1000, 1, name="/classifier/3/Conv", bias=True, gain=1.0)
    b.nodes.append(helper.make_node("Flatten", [x], ["logits"], name="/Flatten", axis=1))
    return b.model(
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 1000])],
        "mobilenet_v3_small",
        "MobileNetV3-Small-shaped benchmark model, random deterministic weights.",
    )


BUILDERS = {"resnet50": resnet50, "mobilenet_v2": mobilenet_v2, "detector": detector}
# built on request only (benchmarks/zoo.py), not by the full benchmark's loop over BUILDERS
EXTRA_BUILDERS = {"mobilenet_v3_small": mobilenet_v3_small}


def build(name: str, folder: Path, tag: str = "", **params) -> Path:
    """``folder/<name><tag>-v<BUILDER_VERSION>.onnx``, built once with ``params`` and reused."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}{tag}-v{BUILDER_VERSION}.onnx"
    if not path.exists():
        model = {**BUILDERS, **EXTRA_BUILDERS}[name](**params)
        tmp = path.with_suffix(".part")
        tmp.write_bytes(model.SerializeToString())
        tmp.replace(path)
    return path
