"""A convolution's weights as float arrays, read from the graph (no onnxruntime)."""

from __future__ import annotations

import numpy as np

from .index import GraphIndex, opset_version
from .layers import Layer
from .load import ModelGraph


def conv_weights(graph: ModelGraph, layer: Layer) -> np.ndarray | None:
    """``layer``'s weights as float64 ``[out channels, in channels per group, *kernel]``, or
    None where they are not constant (computed in the graph, or fed as an input).

    QLinearConv weights are dequantized (``(w - zero point) * scale``, per tensor or per output
    channel); ConvInteger weights have their zero point removed; ConvTranspose weights
    (``[in, out / groups, ...]``) are turned to output channels first.
    """
    proto = graph.proto
    node = next((n for n in proto.graph.node if layer.pre_tensor in n.output), None)
    if node is None:
        return None
    index = GraphIndex(proto.graph, opset_version(proto))

    def value(position: int) -> np.ndarray | None:
        if len(node.input) <= position or not node.input[position]:
            return None
        found = index.constant(node.input[position])
        return None if found is None else np.asarray(found)

    if node.op_type == "QLinearConv":
        w, scale, zero = value(3), value(4), value(5)
        if w is None or scale is None:
            return None
        zero = np.zeros(1) if zero is None else zero.astype(np.float64)
        shape = (-1,) + (1,) * (w.ndim - 1)
        return (w.astype(np.float64) - zero.reshape(shape)) * scale.astype(np.float64).reshape(
            shape)
    w = value(1)
    if w is None or w.ndim < 3:
        return None
    w = w.astype(np.float64)
    if node.op_type == "ConvInteger":
        zero = value(3)
        if zero is not None:
            w = w - zero.astype(np.float64).reshape((-1,) + (1,) * (w.ndim - 1))
    if node.op_type == "ConvTranspose":
        groups = max(layer.groups, 1)
        cin, cout_g = w.shape[:2]
        w = w.reshape(groups, cin // groups, cout_g, *w.shape[2:])
        w = np.swapaxes(w, 1, 2).reshape(groups * cout_g, cin // groups, *w.shape[3:])
    return w
