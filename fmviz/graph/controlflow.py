"""Expose convolutions that sit inside ``If`` branches.

onnxruntime returns only main-graph outputs, and a tensor made inside an ``If`` branch is not
one. But an ``If`` may have extra outputs: :func:`thread_if_outputs` threads each convolution's
tensors (pre and post) out of its branch — an ``Identity`` in the branch that computes it, a
placeholder of the same element type in the other branch, and one more output on the ``If``
node. Nested ``If`` nodes are threaded from the inside out, so a convolution two levels deep
comes out too. ``Loop`` and ``Scan`` bodies run many times per call and stay unreachable.

The placeholder is a constant of shape ``[1, C, 0, ...]`` (the convolution's channel count, no
positions): a branch that did not run yields a map with no values, which renders as no picture
and adds nothing to statistics, instead of a fake all-zero ("dead") map.

The exposed tensors get new main-graph names, ``<inner tensor>@<If node>`` (made unique), which
are what ``Layer.pre_tensor`` / ``post_tensor`` hold, what ``--layers`` matches besides the layer
name, and what ``arrays.npz`` is keyed by.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .activations import follow_activation
from .index import GraphIndex, NameAllocator, all_names, opset_version, topological_order
from .layers import CONV_OPS, Layer, conv_channels_and_kernel

__all__ = ["thread_if_outputs", "ThreadedConv"]


@dataclass
class ThreadedConv:
    """A convolution found inside control flow, with its tensors in the current scope."""

    node: onnx.NodeProto
    pre: str  # tensor name in the scope being built (renamed at every If crossed)
    post: str
    activation: str | None
    channels: int | None
    elem_type: int
    rank: int | None
    kernel: tuple[int, ...] | None


def thread_if_outputs(
    proto: onnx.ModelProto, start_index: int = 0
) -> tuple[onnx.ModelProto, list[Layer]]:
    """A copy of ``proto`` whose ``If`` nodes also output the tensors of their convolutions.

    Returns the copy and one :class:`~fmviz.graph.Layer` per convolution threaded out, indexed
    from ``start_index`` in the order their ``If`` nodes run (then branch before else branch).
    The input ``proto`` is not changed. A model without ``If`` convolutions comes back as an
    unchanged copy and an empty list.
    """
    model = onnx.ModelProto()
    model.CopyFrom(proto)
    names = NameAllocator(all_names(model.graph))
    opset = opset_version(model)
    found: list[ThreadedConv] = []
    for node in topological_order(list(model.graph.node)):
        if node.op_type == "If":
            found.extend(_thread_if(node, model.graph, names, opset))
    layers = []
    for offset, item in enumerate(found):
        attrs = {a.name: helper.get_attribute_value(a) for a in item.node.attribute}
        kernel = attrs.get("kernel_shape") or item.kernel
        stride = attrs.get("strides")
        if stride is None and kernel is not None:
            stride = [1] * len(kernel)
        layers.append(
            Layer(
                index=start_index + offset,
                name=item.node.name or item.node.output[0],
                op=item.node.op_type,
                pre_tensor=item.pre,
                post_tensor=item.post,
                activation=item.activation,
                kernel=tuple(int(k) for k in kernel) if kernel is not None else None,
                stride=tuple(int(s) for s in stride) if stride is not None else None,
                groups=int(attrs.get("group", 1)),
                channels=item.channels,
            )
        )
    return model, layers


# ----------------------------------------------------------------------------- internals


def _collect(graph: onnx.GraphProto, names: NameAllocator, opset: int) -> list[ThreadedConv]:
    """Convolutions whose tensors are values of ``graph``'s scope (threading inner Ifs)."""
    index = GraphIndex(graph, opset)
    found: list[ThreadedConv] = []
    for node in topological_order(list(graph.node)):
        if node.op_type in CONV_OPS and node.domain in ("", "ai.onnx") and node.output:
            pre = node.output[0]
            if not pre:
                continue
            channels, elem_type, kernel = _conv_facts(node, index)
            spatial = len(kernel) if kernel is not None else None
            rank = spatial + 2 if spatial is not None else None
            post, activation = follow_activation(pre, index, channels, spatial)
            found.append(
                ThreadedConv(node, pre, post, activation, channels, elem_type, rank, kernel)
            )
        elif node.op_type == "If":
            found.extend(_thread_if(node, graph, names, opset))
    return found


def _conv_facts(node: onnx.NodeProto, index: GraphIndex) -> tuple[int | None, int, tuple | None]:
    """Output channels, element type and kernel of a convolution inside a branch."""
    channels, kernel = conv_channels_and_kernel(node, index)
    elem_type: int
    if node.op_type == "ConvInteger":
        elem_type = TensorProto.INT32
    elif node.op_type == "QLinearConv":
        zero = index.constants.get(node.input[7]) if len(node.input) > 7 else None
        elem_type = zero.data_type if zero is not None else TensorProto.UINT8
    else:
        weight = index.constants.get(node.input[1]) if len(node.input) > 1 else None
        elem_type = weight.data_type if weight is not None else TensorProto.FLOAT
    return channels, elem_type, kernel


def _thread_if(
    node: onnx.NodeProto, parent: onnx.GraphProto, names: NameAllocator, opset: int
) -> list[ThreadedConv]:
    branches = {a.name: a.g for a in node.attribute if a.type == onnx.AttributeProto.GRAPH}
    then_g, else_g = branches.get("then_branch"), branches.get("else_branch")
    if then_g is None or else_g is None:
        return []
    label = node.name or (node.output[0] if node.output else "If")
    result: list[ThreadedConv] = []
    for own, other in ((then_g, else_g), (else_g, then_g)):
        inner = _collect(own, names, opset)
        for item in inner:
            pre = _thread_tensor(item.pre, item, own, other, node, parent, names, label)
            post = (
                pre
                if item.post == item.pre
                else _thread_tensor(item.post, item, own, other, node, parent, names, label)
            )
            result.append(dataclasses.replace(item, pre=pre, post=post))
    return result


def _thread_tensor(
    tensor: str,
    item: ThreadedConv,
    own: onnx.GraphProto,
    other: onnx.GraphProto,
    node: onnx.NodeProto,
    parent: onnx.GraphProto,
    names: NameAllocator,
    label: str,
) -> str:
    """Make ``tensor`` (a value of branch ``own``) an output of If ``node``; return its name."""
    own_out = names.fresh(f"{tensor}@out")
    own.node.append(helper.make_node("Identity", [tensor], [own_out], name=names.fresh(
        f"fmviz_thread/{own_out}")))
    own.output.append(helper.make_tensor_value_info(own_out, item.elem_type, None))

    rank = item.rank or 3
    channels = item.channels or 1
    shape = [1, channels] + [0] * (rank - 2)
    placeholder = np.zeros(shape, dtype=helper.tensor_dtype_to_np_dtype(item.elem_type))
    other_out = names.fresh(f"{tensor}@absent")
    other.node.append(
        helper.make_node(
            "Constant",
            [],
            [other_out],
            name=names.fresh(f"fmviz_placeholder/{other_out}"),
            value=numpy_helper.from_array(placeholder, other_out),
        )
    )
    other.output.append(helper.make_tensor_value_info(other_out, item.elem_type, None))

    outer = names.fresh(f"{tensor}@{label}")
    node.output.append(outer)
    parent.value_info.append(helper.make_tensor_value_info(outer, item.elem_type, None))
    return outer
