"""The convolution layers of a model: finding them, describing them, choosing among them."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import onnx

from ..errors import OptionError
from .activations import follow_activation
from .index import GraphIndex, attr_graphs, opset_version, topological_order

CONV_OPS = frozenset({"Conv", "ConvTranspose", "QLinearConv", "ConvInteger"})
STAGES = ("post", "pre")


@dataclass(frozen=True)
class Layer:
    """One convolution node of the main graph and the two tensors fmviz can capture for it."""

    index: int
    name: str
    op: str
    pre_tensor: str
    post_tensor: str
    activation: str | None
    kernel: tuple[int, ...] | None
    stride: tuple[int, ...] | None
    groups: int
    channels: int | None
    pre_shape: tuple[int | str | None, ...] | None = None
    post_shape: tuple[int | str | None, ...] | None = None

    def tensor(self, stage: str) -> str:
        return self.post_tensor if stage == "post" else self.pre_tensor

    def shape(self, stage: str) -> tuple[int | str | None, ...] | None:
        return self.post_shape if stage == "post" else self.pre_shape

    def activation_at(self, stage: str) -> str | None:
        return self.activation if stage == "post" else None

    def to_json(self, stage: str) -> dict:
        shape = self.shape(stage)
        return {
            "index": self.index,
            "name": self.name,
            "op": self.op,
            "tensor": self.tensor(stage),
            "activation": self.activation,
            "channels": self.channels,
            "kernel": list(self.kernel) if self.kernel else None,
            "stride": list(self.stride) if self.stride else None,
            "groups": self.groups,
            "shape": list(shape) if shape is not None else None,
        }


@dataclass(frozen=True)
class UnreachableLayer:
    """A convolution inside an If/Loop/Scan body: onnxruntime cannot return its output."""

    name: str
    op: str
    parent: str  # the control-flow node that owns the subgraph
    parent_op: str
    subgraph: str  # attribute name: then_branch, else_branch, body

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "op": self.op,
            "parent": self.parent,
            "parent_op": self.parent_op,
            "subgraph": self.subgraph,
        }




def find_layers(
    proto: onnx.ModelProto, shapes: dict[str, tuple] | None = None
) -> list[Layer]:
    """The main graph's convolutions in topological order, each with its pre and post tensor."""
    shapes = shapes or {}
    graph = proto.graph
    index = GraphIndex(graph, opset_version(proto))
    layers: list[Layer] = []
    for node in topological_order(graph.node):
        if node.op_type not in CONV_OPS or node.domain not in ("", "ai.onnx"):
            continue
        if not node.output or not node.output[0]:
            continue
        pre = node.output[0]
        channels, kernel = conv_channels_and_kernel(node, index, shapes.get(pre))
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        spatial_rank = len(kernel) if kernel is not None else None
        post, activation = follow_activation(pre, index, channels, spatial_rank)
        stride = attrs.get("strides")
        if stride is None and kernel is not None:
            stride = (1,) * len(kernel)
        layers.append(
            Layer(
                index=len(layers),
                name=node.name or pre,
                op=node.op_type,
                pre_tensor=pre,
                post_tensor=post,
                activation=activation,
                kernel=tuple(int(k) for k in kernel) if kernel is not None else None,
                stride=tuple(int(s) for s in stride) if stride is not None else None,
                groups=int(attrs.get("group", 1)),
                channels=channels,
                pre_shape=shapes.get(pre),
                post_shape=shapes.get(post),
            )
        )
    return layers


def _weight_name(node: onnx.NodeProto) -> str:
    position = 3 if node.op_type == "QLinearConv" else 1
    return node.input[position] if len(node.input) > position else ""


def conv_channels_and_kernel(
    node: onnx.NodeProto, index: GraphIndex, shape: tuple | None = None
) -> tuple[int | None, tuple[int, ...] | None]:
    """A convolution's output channels (from its inferred output ``shape``, else its weights)
    and kernel (its ``kernel_shape``, else its weights' dims; read without copying weights)."""
    attrs = {a.name: a for a in node.attribute}
    weight = index.constants.get(_weight_name(node))
    if "kernel_shape" in attrs:
        kernel = tuple(int(k) for k in attrs["kernel_shape"].ints)
    elif weight is not None and len(weight.dims) > 2:
        kernel = tuple(int(d) for d in weight.dims[2:])
    else:
        kernel = None
    return _out_channels(node, index, shape), kernel


def _out_channels(node: onnx.NodeProto, index: GraphIndex, shape: tuple | None) -> int | None:
    if shape is not None and len(shape) >= 2 and isinstance(shape[1], int):
        return shape[1]
    weight = index.constants.get(_weight_name(node))
    if weight is None or len(weight.dims) < 2:
        return None
    if node.op_type == "ConvTranspose":
        group = next((a.i for a in node.attribute if a.name == "group"), 1) or 1
        return int(weight.dims[1]) * int(group)
    return int(weight.dims[0])




def find_unreachable(graph: onnx.GraphProto) -> list[UnreachableLayer]:
    """Convolutions inside control-flow subgraphs (at any depth) of ``graph``."""
    found: list[UnreachableLayer] = []

    def visit(nodes: Iterable[onnx.NodeProto], parent: onnx.NodeProto | None, attr: str) -> None:
        for node in nodes:
            if parent is not None and node.op_type in CONV_OPS:
                found.append(
                    UnreachableLayer(
                        name=node.name or (node.output[0] if node.output else "?"),
                        op=node.op_type,
                        parent=parent.name or (parent.output[0] if parent.output else "?"),
                        parent_op=parent.op_type,
                        subgraph=attr,
                    )
                )
            for attribute in node.attribute:
                for sub in attr_graphs(attribute):
                    outer = node if parent is None else parent
                    visit(sub.node, outer, attribute.name if parent is None else attr)

    visit(graph.node, None, "")
    return found


# ----------------------------------------------------------------------------- selection


def select_layers(layers: Sequence[Layer], patterns: Sequence[str], stage: str) -> list[Layer]:
    """Layers matching any pattern: a shell glob on the layer or tensor name, or ``re:REGEX``."""
    if not patterns:
        return list(layers)
    chosen: set[int] = set()
    for pattern in patterns:
        matcher = _pattern_matcher(pattern)
        hits = [
            layer.index
            for layer in layers
            if matcher(layer.name) or matcher(layer.tensor(stage)) or matcher(layer.pre_tensor)
        ]
        if not hits:
            if not layers:
                raise OptionError(
                    "patterns", f"{pattern!r} matches no layer: the model has no reachable layer"
                )
            sample = ", ".join(repr(layer.name) for layer in layers[:5])
            more = f" (and {len(layers) - 5} more)" if len(layers) > 5 else ""
            raise OptionError(
                "patterns", f"{pattern!r} matches no layer; layers are {sample}{more}"
                " ('fmviz layers MODEL' lists them all)"
            )
        chosen.update(hits)
    return [layer for layer in layers if layer.index in chosen]


def _pattern_matcher(pattern: str) -> Callable[[str], bool]:
    if pattern.startswith("re:"):
        try:
            regex = re.compile(pattern[3:])
        except re.error as exc:
            raise OptionError(
                "patterns", f"{pattern!r}: invalid regular expression ({exc})"
            ) from exc
        return lambda name: regex.search(name) is not None
    return lambda name: fnmatch.fnmatchcase(name, pattern)


