"""Where each output step of a 1-D layer sits on the input's time axis.

Output index ``j`` of a tensor is centred on input sample ``offset + stride * j``. Starting from
the fed input, every node on the way composes its own effect on the time axis: a Conv or pool
with kernel ``k``, stride ``s``, dilation ``d`` and leading pad ``p`` maps ``(S, O)`` to
``(S * s, O + S * (d * (k - 1) / 2 - p))``; ConvTranspose divides instead, Pad and Slice shift,
element-wise ops, normalisations and channel concatenations keep it, and Transpose, Unsqueeze,
Squeeze and Reshape move the time axis around. Tensors reached only through anything else
(Resize, a time-axis Concat, control flow) get no entry.
"""

from __future__ import annotations

import numpy as np
import onnx

from .index import GraphIndex, opset_version, topological_order

_KEEP = frozenset(
    {
        "Relu", "LeakyRelu", "PRelu", "Elu", "Selu", "Celu", "Clip", "Sigmoid", "Tanh",
        "HardSigmoid", "HardSwish", "Softplus", "Softsign", "Gelu", "Mish", "Erf", "Exp", "Log",
        "Abs", "Neg", "Sqrt", "Reciprocal", "Pow", "Add", "Sub", "Mul", "Div", "Max", "Min", "Sum",
        "Mean", "Identity", "Dropout", "Cast", "CastLike", "BatchNormalization",
        "InstanceNormalization", "LayerNormalization", "GroupNormalization", "QuantizeLinear",
        "DequantizeLinear", "Where", "Not", "And", "Or", "Xor", "Equal", "Greater", "Less",
        "GreaterOrEqual", "LessOrEqual", "Floor", "Ceil", "Round", "Sign", "Sin", "Cos", "Softmax",
        "LogSoftmax", "Hardmax", "LpNormalization", "Shrink", "ThresholdedRelu", "BitShift", "Mod",
        "IsNaN", "IsInf",
    }
)
_WINDOWED = frozenset(
    {"Conv", "ConvInteger", "QLinearConv", "MaxPool", "AveragePool", "LpPool", "ConvTranspose"}
)


def time_axes(
    proto: onnx.ModelProto, input_name: str, input_axis: int = -1
) -> dict[str, tuple[float, float, int]]:
    """``{tensor: (stride, offset, axis)}`` for every main-graph tensor whose time axis is known.

    ``axis`` is the time axis as a negative index (from the end), which broadcasting cannot
    move. ``input_axis`` is that of the input ``input_name`` (-1 for [N, C, L] and [N, L],
    -2 for [N, L, C]).
    """
    graph = proto.graph
    index = GraphIndex(graph, opset_version(proto))  # constants as layer discovery sees them
    const = index.constant

    def dims_of(name: str):
        tensor = index.constants.get(name)
        return tuple(tensor.dims) if tensor is not None else None

    rank = None
    for info in graph.input:
        tensor_type = info.type.tensor_type if info.type.HasField("tensor_type") else None
        if info.name == input_name and tensor_type is not None and tensor_type.HasField("shape"):
            rank = len(tensor_type.shape.dim)
    # tensor -> (stride, offset, axis from the end, rank or None)
    known: dict[str, tuple] = {input_name: (1.0, 0.0, input_axis, rank)}
    order = topological_order(list(graph.node))
    for node in order:
        mapped = [known[n] for n in node.input if n in known]
        if not mapped:
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        try:
            result = _step(node, attrs, known, mapped[0], const, dims_of)
        except (ValueError, TypeError, IndexError, KeyError):
            result = None
        if result is None:
            continue
        outputs = [o for o in node.output if o]
        if node.op_type == "Split":
            outputs = outputs[:1] if result[4] else outputs
        for name in outputs:
            known[name] = result[:4]
    return {name: value[:3] for name, value in known.items()}


def _step(node, attrs, known, current, const, dims_of):
    """The (stride, offset, axis, rank, first_only) of a node's output, or None if unknown."""
    stride, offset, axis, rank = current
    op = node.op_type
    first_only = False
    if op in _KEEP:
        return stride, offset, axis, rank, first_only
    if op in ("Concat", "Split"):
        cat_axis = int(attrs.get("axis", 0))
        if cat_axis >= 0:
            if rank is None:
                return None
            cat_axis -= rank
        if cat_axis == axis:
            if op == "Split":  # the first piece starts where the input does
                return stride, offset, axis, rank, True
            return None
        return stride, offset, axis, rank, first_only
    if op in _WINDOWED:
        if node.input[0] not in known or axis != -1:
            return None
        kernel = attrs.get("kernel_shape")
        if kernel is None:
            weight = node.input[3 if op == "QLinearConv" else 1] if len(node.input) > 1 else ""
            dims = dims_of(weight)
            if dims is None or len(dims) < 3:
                return None
            kernel = dims[2:]
        spatial = len(kernel)
        k = int(kernel[-1])
        s = int((attrs.get("strides") or [1] * spatial)[-1])
        d = int((attrs.get("dilations") or [1] * spatial)[-1])
        pads = attrs.get("pads") or [0] * (2 * spatial)
        begin = float(pads[spatial - 1])
        auto = attrs.get("auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else str(auto)
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            total = max((k - 1) * d + 1 - s, 0)  # exact when the length is a multiple of s
            begin = float(total // 2 if auto == "SAME_UPPER" else total - total // 2)
        elif auto == "VALID":
            begin = 0.0
        half = d * (k - 1) / 2
        if op == "ConvTranspose":
            return stride / s, offset + stride * (begin - half) / s, axis, rank, first_only
        return stride * s, offset + stride * (half - begin), axis, rank, first_only
    if op == "Pad":
        if node.input[0] not in known:
            return None
        pads = attrs.get("pads") if "pads" in attrs else (
            const(node.input[1]) if len(node.input) > 1 else None
        )
        if pads is None:
            return None
        pads = [int(p) for p in np.asarray(pads).reshape(-1)]
        axes_in = const(node.input[3]) if len(node.input) > 3 and node.input[3] else None
        if axes_in is not None:
            if rank is None:
                return None
            axes = [int(a) - rank if int(a) >= 0 else int(a) for a in np.asarray(axes_in).ravel()]
            count = len(axes)
            begin = pads[axes.index(axis)] if axis in axes else 0
        else:
            count = len(pads) // 2
            begin = pads[count + axis] if -axis <= count else 0
        return stride, offset - stride * begin, axis, rank if rank else count, first_only
    if op == "Slice":
        if node.input[0] not in known:
            return None
        if "starts" in attrs:  # opset < 10
            starts, axes, steps = attrs["starts"], attrs.get("axes"), None
        else:
            starts = const(node.input[1])
            axes = const(node.input[3]) if len(node.input) > 3 and node.input[3] else None
            steps = const(node.input[4]) if len(node.input) > 4 and node.input[4] else None
            if starts is None:
                return None
        starts = [int(v) for v in np.asarray(starts).ravel()]
        if axes is None:
            if rank is None:
                return None
            axes = list(range(len(starts)))
        axes = [int(a) for a in np.asarray(axes).ravel()]
        if any(a >= 0 for a in axes):
            if rank is None:
                return None
            axes = [a - rank if a >= 0 else a for a in axes]
        steps = [1] * len(starts) if steps is None else [int(v) for v in np.asarray(steps).ravel()]
        if axis not in axes:
            return stride, offset, axis, rank, first_only
        i = axes.index(axis)
        if starts[i] < 0 or steps[i] <= 0:
            return None
        return stride * steps[i], offset + stride * starts[i], axis, rank, first_only
    if op == "Transpose":
        perm = attrs.get("perm")
        if perm is None:
            if rank is None:
                return None
            perm = list(range(rank))[::-1]
        r = len(perm)
        position = r + axis
        if not 0 <= position < r:
            return None
        return stride, offset, list(perm).index(position) - r, r, first_only
    if op in ("Unsqueeze", "Squeeze"):
        axes = attrs.get("axes")
        if axes is None and len(node.input) > 1 and node.input[1]:
            axes = const(node.input[1])
            if axes is None:
                return None
        if rank is None:
            if op == "Squeeze" and axis == -1 and axes is None:
                return stride, offset, axis, None, first_only
            return None
        if axes is None:  # Squeeze every size-1 axis: the time axis is never one of them
            return (stride, offset, axis, None, first_only) if axis == -1 else None
        axes = [int(a) for a in np.asarray(axes).ravel()]
        position = rank + axis
        if op == "Unsqueeze":
            out_rank = rank + len(axes)
            for a in sorted(a + out_rank if a < 0 else a for a in axes):
                if a <= position:
                    position += 1
            return stride, offset, position - out_rank, out_rank, first_only
        removed = [a + rank if a < 0 else a for a in axes]
        if position in removed:
            return None
        out_rank = rank - len(removed)
        position -= sum(1 for a in removed if a < position)
        return stride, offset, position - out_rank, out_rank, first_only
    if op in ("Reshape", "Flatten"):
        if op == "Flatten" or axis != -1 or len(node.input) < 2:
            return None
        shape = const(node.input[1])
        if shape is None or shape.size == 0 or int(shape.reshape(-1)[-1]) != -1:
            return None
        return stride, offset, -1, int(shape.size), first_only
    return None

