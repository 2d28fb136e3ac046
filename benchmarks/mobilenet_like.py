"""A MobileNetV2-shaped ONNX model with random weights, and a folder of generated JPEGs.

Used by the dead-filters benchmark (``bench_dead_filters.py``); nothing here is downloaded.
The model follows MobileNetV2's layer table (inverted residual blocks, depthwise 3x3 convs,
ReLU6 as ``Clip(0, 6)``, linear bottlenecks with residual ``Add``), BatchNorm folded into the
convolutions as PyTorch exports do, a dynamic batch dimension ``N`` and a 224x224 RGB input.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# expansion t, output channels c, repeats n, first stride s (MobileNetV2, Sandler et al. 2018)
BLOCKS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
          (6, 160, 3, 2), (6, 320, 1, 1))


def build(size: int = 224, classes: int = 1000, seed: int = 0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = [
        numpy_helper.from_array(np.array(0, np.float32), "zero"),
        numpy_helper.from_array(np.array(6, np.float32), "six"),
    ]
    counter = [0]

    def conv(x, cin, cout, k, stride, groups, relu6):
        counter[0] += 1
        name = f"conv{counter[0]}"
        fan_in = cin // groups * k * k
        w = rng.standard_normal((cout, cin // groups, k, k)) * np.sqrt(2.0 / fan_in)
        w = w.astype(np.float32)
        b = (rng.standard_normal(cout) * 0.1).astype(np.float32)
        inits.append(numpy_helper.from_array(w, f"{name}.weight"))
        inits.append(numpy_helper.from_array(b, f"{name}.bias"))
        out = f"{name}.out"
        nodes.append(helper.make_node(
            "Conv", [x, f"{name}.weight", f"{name}.bias"], [out], name=name,
            kernel_shape=[k, k], strides=[stride, stride], pads=[k // 2] * 4, group=groups))
        if relu6:
            nodes.append(helper.make_node("Clip", [out, "zero", "six"], [f"{name}.relu6"],
                                          name=f"{name}.clip"))
            return f"{name}.relu6"
        return out

    x = conv("input", 3, 32, 3, 2, 1, True)
    cin = 32
    for t, c, n, s in BLOCKS:
        for i in range(n):
            stride = s if i == 0 else 1
            hidden = cin * t
            y = x
            if t != 1:
                y = conv(y, cin, hidden, 1, 1, 1, True)
            y = conv(y, hidden, hidden, 3, stride, hidden, True)
            y = conv(y, hidden, c, 1, 1, 1, False)
            if stride == 1 and cin == c:
                counter[0] += 1
                nodes.append(helper.make_node("Add", [x, y], [f"add{counter[0]}"],
                                              name=f"add{counter[0]}"))
                y = f"add{counter[0]}"
            x, cin = y, c
    x = conv(x, cin, 1280, 1, 1, 1, True)
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["pooled"], name="gap"))
    nodes.append(helper.make_node("Flatten", ["pooled"], ["flat"], name="flatten"))
    w = (rng.standard_normal((classes, 1280)) * 0.02).astype(np.float32)
    inits.append(numpy_helper.from_array(w, "fc.weight"))
    inits.append(numpy_helper.from_array(np.zeros(classes, np.float32), "fc.bias"))
    nodes.append(helper.make_node("Gemm", ["flat", "fc.weight", "fc.bias"], ["logits"],
                                  name="fc", transB=1))
    graph = helper.make_graph(
        nodes, "mobilenet_like",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="fmviz-bench")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def make_jpegs(folder: Path, count: int, seed: int = 0, size=(500, 375)) -> list[Path]:
    """``count`` photo-like JPEGs (smooth colour fields, edges and noise), quality 90."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    width, height = size
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    paths = []
    for i in range(count):
        path = folder / f"photo-{i:04d}.jpg"
        if not path.exists():
            freq = rng.uniform(0.005, 0.05, size=(3, 2))
            phase = rng.uniform(0, 6.3, size=3)
            planes = [
                127 + 100 * np.sin(xx * freq[c, 0] + yy * freq[c, 1] + phase[c]) for c in range(3)
            ]
            picture = np.stack(planes, axis=2) + rng.normal(0, 12, (height, width, 3))
            Image.fromarray(np.clip(picture, 0, 255).astype(np.uint8)).save(path, quality=90)
        paths.append(path)
    return paths
