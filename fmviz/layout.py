"""Which captured maps to ask onnxruntime's CPU provider for channels-last (NHWC).

On x86-64, onnxruntime runs most 2-D convolutions in a blocked layout, NCHWc: channels in
blocks of 8 (AVX2) or 16 (AVX-512), innermost. A map returned as a graph output has to leave
that layout. Converted to NCHW, every block is transposed; converted to NHWC, whole blocks are
copied, and onnxruntime does that conversion itself when the map feeds a
``Transpose(perm=[0, 2, 3, 1])`` (its NCHWc transformer folds the Transpose into the reorder).
Measured on the MobileNetV2-shaped benchmark model, batch 1, 2 cores: exposing every post map
costs 1.42x the plain model's time as NCHW outputs and 1.19x as NHWC outputs; ResNet-50-shaped,
1.10x and 1.07x. The values are the same bits either way: the caller gets an NCHW *view*
(``transpose(0, 3, 1, 2)``) of the NHWC array, with the map's usual shape.

A ``Transpose`` of a map that onnxruntime does *not* hold in NCHWc is a real extra pass (on the
same models with the NCHWc transformer off, 1.39x and 1.18x instead of 0.93x and 0.97x), so
:func:`blocked_tensors` picks a map only when onnxruntime's rules
(``onnxruntime/core/optimizer/nchwc_transformer.cc``) put it in NCHWc for either block size:

- the layer is a ``Conv`` with constant float32 4-D weights (2-D maps) and a constant bias;
- its channels fit the blocks: one group with fewer than 8 or a multiple of 16 input channels,
  or depthwise, or groups of a multiple of 16 input and output channels, with a multiple of 16
  output channels in all;
- between the convolution and the captured tensor there are only steps the transformer keeps
  blocked: ``Identity``, ``BatchNormalization`` with constant parameters, ``Relu``, ``Sigmoid``,
  ``Tanh``, SiLU's ``x * Sigmoid(x)``, and ``Clip``, ``LeakyRelu`` or ``HardSigmoid`` right after
  the convolution (and its batch norm), where onnxruntime fuses them into it;
- the model's opset is below 21, where ``Transpose`` is the version 13 the transformer matches.

Anything else keeps its plain NCHW output. Only the CPU provider on x86-64 uses this
(:func:`wanted`); a GPU provider has no NCHWc and would pay a real Transpose.
"""

from __future__ import annotations

import platform
from collections.abc import Iterable, Sequence

import onnx
from onnx import TensorProto

from .graph import GraphIndex, Layer

_KEPT_BLOCKED = frozenset({"Identity", "BatchNormalization", "Relu", "Sigmoid", "Tanh"})
_FUSED_INTO_CONV = frozenset({"Clip", "LeakyRelu", "HardSigmoid"})
_FOLDED_INTO_CONV = frozenset({"Identity", "BatchNormalization"})
_TRANSPOSE_VERSION_LIMIT = 21  # Transpose-21 is not the version the NCHWc transformer matches


def wanted(providers: Sequence[str]) -> bool:
    """True when sessions on ``providers`` should return blocked maps channels-last."""
    machine = platform.machine().lower()
    return list(providers) == ["CPUExecutionProvider"] and machine in ("x86_64", "amd64")


def blocked_tensors(proto: onnx.ModelProto, layers: Iterable[Layer]) -> set[str]:
    """The tensors of ``layers`` (pre and post) that onnxruntime surely holds in NCHWc."""
    opset = next((e.version for e in proto.opset_import if e.domain in ("", "ai.onnx")), 0)
    if opset >= _TRANSPOSE_VERSION_LIMIT:
        return set()
    graph = proto.graph
    index = GraphIndex(graph)
    producers = {out: node for node in graph.node for out in node.output if out}
    picked = set()
    for layer in layers:
        conv = producers.get(layer.pre_tensor)
        if conv is None or conv.op_type != "Conv" or not _blocked_conv(conv, index):
            continue
        picked.add(layer.pre_tensor)
        if _blocked_chain(layer.post_tensor, layer.pre_tensor, producers, index):
            picked.add(layer.post_tensor)
    return picked - index.graph_outputs  # a model output is returned as it is anyway


def nhwc_names(proto: onnx.ModelProto, tensors: Iterable[str]) -> dict[str, str]:
    """A fresh graph-output name for the channels-last copy of each of ``tensors``."""
    graph = proto.graph
    taken = {name for node in graph.node for name in node.output}
    taken |= {v.name for v in list(graph.input) + list(graph.output)}
    taken |= {t.name for t in graph.initializer}
    names = {}
    for tensor in tensors:
        name, n = f"{tensor}/fmviz_nhwc", 1
        while name in taken:
            n += 1
            name = f"{tensor}/fmviz_nhwc{n}"
        taken.add(name)
        names[tensor] = name
    return names


def _float_constant(index: GraphIndex, name: str, rank: int) -> tuple[int, ...] | None:
    tensor = index.constants.get(name)
    if tensor is None or tensor.data_type != TensorProto.FLOAT or len(tensor.dims) != rank:
        return None
    return tuple(tensor.dims)


def _blocked_conv(conv: onnx.NodeProto, index: GraphIndex) -> bool:
    if len(conv.input) < 2:
        return False
    dims = _float_constant(index, conv.input[1], 4)
    if dims is None:
        return False
    if len(conv.input) > 2 and conv.input[2] and _float_constant(index, conv.input[2], 1) is None:
        return False
    out_channels, in_per_group = dims[0], dims[1]
    group = next((a.i for a in conv.attribute if a.name == "group"), 1)
    if group == 1:
        return in_per_group < 8 or in_per_group % 16 == 0
    if out_channels % 16:
        return False
    depthwise = in_per_group == 1 and out_channels == group
    return depthwise or (in_per_group % 16 == 0 and (out_channels // group) % 16 == 0)


def _blocked_chain(tensor: str, conv_output: str, producers: dict, index: GraphIndex) -> bool:
    """True when every step from ``conv_output`` to ``tensor`` keeps the NCHWc layout."""
    steps: list[onnx.NodeProto] = []
    current = tensor
    while current != conv_output:
        node = producers.get(current)
        if node is None or len(steps) > 16:
            return False
        steps.append(node)
        if node.op_type == "Mul":  # SiLU: x * Sigmoid(x)
            source = _silu_source(node, producers)
            if source is None:
                return False
            current = source
        elif node.op_type in _KEPT_BLOCKED | _FUSED_INTO_CONV and node.input:
            current = node.input[0]
        else:
            return False
    steps.reverse()  # from the convolution on
    for position, node in enumerate(steps):
        extra = [name for name in node.input[1:] if name] if node.op_type != "Mul" else []
        if extra and not all(index.is_constant(name) for name in extra):
            return False  # batch-norm statistics or Clip bounds computed at run time
        if node.op_type in _FUSED_INTO_CONV and not all(
            earlier.op_type in _FOLDED_INTO_CONV for earlier in steps[:position]
        ):
            return False
    return True


def _silu_source(node: onnx.NodeProto, producers: dict) -> str | None:
    if len(node.input) != 2:
        return None
    for x, gate in (node.input, reversed(node.input)):
        sigmoid = producers.get(gate)
        if sigmoid is not None and sigmoid.op_type == "Sigmoid" and sigmoid.input[0] == x:
            return x
    return None
