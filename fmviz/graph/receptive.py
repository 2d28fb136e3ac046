"""Receptive fields: which input region one output position of a tensor sees, from the graph.

Pure ONNX analysis (no onnxruntime). Starting at the fed input, every node on the way composes its
effect on each *spatial axis* of the input (H and W of an image, the time axis of a series). Per
tensor and per input spatial axis the result is an :class:`AxisField`: output index ``j`` of that
tensor along that axis sees the input coordinates ::

    [start + j * stride, start + j * stride + size)     centre: start + j * stride + (size - 1) / 2

``start`` may be negative and ``start + ... + size`` may pass the input's end: those parts are
padding. :meth:`Field.box` clips to the input.

Rules (kernel ``k``, stride ``s``, dilation ``d``, leading pad ``p``; ``S`` is the incoming stride):

* Conv, ConvInteger, QLinearConv, MaxPool, AveragePool, LpPool, SpaceToDepth: ``start -= S * p``,
  ``size += S * d * (k - 1)``, ``stride *= s``. ``auto_pad`` SAME_UPPER / SAME_LOWER / VALID as
  onnxruntime pads; with SAME and a stride > 1 the leading pad depends on the length, which is
  known when the input's size is (``input_size`` or static shapes); otherwise the box is widened
  to hold every possibility and marked not exact. ``kernel_shape`` falls back to the weight's dims.
* ConvTranspose (and DepthToSpace): the stride divides. With stride 1 it is exact (a convolution
  with the kernel flipped); with stride ``s > 1`` the output positions see ``ceil``-many inputs
  in a pattern that repeats every ``s`` positions, so the box is the smallest uniform one that
  holds all of them (``exact=False``, ``size`` rounded up).
* Element-wise ops, activations, casts, BatchNormalization keep the field. Joins (Add, Mul,
  Concat along channels, Sum, Max, Where...) take the union of the input-dependent operands'
  boxes when their strides agree (otherwise the whole input). Constant operands (initializers,
  ``Constant`` nodes, other graph inputs) do not depend on the input and do not join; neither do
  ``Shape``/``Size`` outputs.
* Pad and Slice shift (a Pad other than ``constant`` makes the edges mirror: not exact); Concat
  and Split along a spatial axis shift where the pieces' lengths are known; Transpose, Squeeze,
  Unsqueeze, Reshape, Flatten, Gather, MatMul/Gemm with constant weights, recurrent layers move
  the axes (an axis squeezed away keeps its field with ``tensor_axes`` entry ``None``).
* Resize/Upsample (stride estimated from the scale), GlobalAveragePool/GlobalMaxPool, reductions
  and softmax over spatial axes, MatMul of two input-dependent tensors (attention), recurrent
  time axes, control flow and any other op: not exact, ``size=None`` ("the whole input").

**Global context.** A squeeze-excitation gate (global pooling, then a per-channel scale),
InstanceNormalization/GroupNormalization, and LayerNormalization or a softmax over a spatial axis
make every output depend on statistics of the whole input, while what a position *shows* is still
its local window. By default such a dependence keeps the local field and sets
``Field.global_context``; ``strict=True`` makes those axes the whole input instead, as a pure
dependency analysis would.

For a 1-D layer, the time axis of series pictures is ``axes[0].stride`` and ``axes[0].centre(0)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import onnx

from .index import GraphIndex, attr_graphs, node_inputs, opset_version, topological_order
from .shapes import shape_of

__all__ = ["AxisField", "Field", "receptive_fields"]


@dataclass(frozen=True)
class AxisField:
    """One spatial axis of one tensor, in input samples (see module docs).

    ``size`` is the extent one output position sees, ``None`` when it is not known (read: the
    whole input). ``exact`` is True when ``size``, ``stride`` and ``start`` are exact (then all
    three are whole numbers); a field with a size that is not exact is the smallest uniform box
    that holds every position's field (ConvTranspose, SAME padding of unknown length) or, after a
    non-constant Pad, correct away from the edges. With ``size=None``, ``stride`` and ``start``
    are estimates of where the positions sit.
    """

    size: int | None
    stride: float
    start: float
    exact: bool

    def span(self, j: int) -> tuple[float, float] | None:
        """``(begin, end)`` of output index ``j`` on the input, unclipped (None: unknown)."""
        if self.size is None:
            return None
        begin = self.start + j * self.stride
        return begin, begin + self.size

    def centre(self, j: float) -> float | None:
        """Input coordinate of the centre of output index ``j`` (None when the size is unknown)."""
        if self.size is None:
            return None
        return self.start + j * self.stride + (self.size - 1) / 2


@dataclass(frozen=True)
class Field:
    """The receptive field of one tensor: one :class:`AxisField` per input spatial axis.

    ``axes[i]`` measures the input's spatial axis ``input_axes[i]`` (in the order given to
    :func:`receptive_fields`); ``tensor_axes[i]`` is where that axis sits in this tensor, as a
    negative index from the end, or ``None`` when the tensor no longer has it (squeezed away:
    position 0 then; contracted or merged: its field is the whole input).
    ``global_context`` is True when the tensor also depends on input-wide statistics that the
    boxes leave out (see module docs).
    """

    axes: tuple[AxisField, ...]
    tensor_axes: tuple[int | None, ...]
    global_context: bool = False

    @property
    def exact(self) -> bool:
        return all(a.exact for a in self.axes)

    def position(self, index: Sequence[int]) -> tuple[int, ...]:
        """The per-axis position of a full tensor index (e.g. from ``np.unravel_index``)."""
        return tuple(0 if t is None else int(index[t]) for t in self.tensor_axes)

    def box(
        self, position: Sequence[int], input_size: Sequence[int], clip: bool = True
    ) -> list[int]:
        """The input region output ``position`` sees, as ``[begin_0.., end_0..]``.

        ``position`` and ``input_size`` are per axis, in the order of ``axes`` (the input's
        spatial axes, e.g. ``(row, column)`` and ``(H, W)``); for images the box is
        ``[top, left, bottom, right]``, ends exclusive. Unknown sizes give the whole axis.
        Clipped to the input unless ``clip=False`` (then it may reach into the padding).
        """
        if len(position) != len(self.axes) or len(input_size) != len(self.axes):
            raise ValueError(f"position and input_size need {len(self.axes)} values each")
        begins, ends = [], []
        for axis, j, n in zip(self.axes, position, input_size, strict=True):
            span = axis.span(int(j))
            if span is None:
                begin, end = 0, int(n)
            else:
                begin, end = math.floor(span[0] + 1e-9), math.ceil(span[1] - 1e-9)
            if clip:
                begin, end = min(max(begin, 0), int(n)), min(max(end, 0), int(n))
            begins.append(begin)
            ends.append(end)
        return begins + ends


# ----------------------------------------------------------------------------- internal state


@dataclass(frozen=True)
class _Axis:
    at: int | None  # tensor axis, negative; None: no longer an axis of the tensor
    lo: float  # output index 0 sees [lo, hi)
    hi: float
    stride: float
    exact: bool = True
    whole: bool = False
    length: int | None = None  # the tensor's length along this axis, when known


@dataclass(frozen=True)
class _State:
    axes: tuple[_Axis, ...]
    rank: int | None
    summary: bool = False  # an input-wide statistic with no position (global pooling and after)
    context: bool = False


def _whole(axis: _Axis, at: int | None | bool = True, **changes) -> _Axis:
    """``axis`` made "the whole input"; ``at=True`` keeps its place."""
    place = axis.at if at is True else at
    return replace(axis, at=place, exact=False, whole=True, **changes)


def _all_whole(state: _State, keep_places: bool = False) -> _State:
    axes = tuple(_whole(a, True if keep_places else None, length=None) for a in state.axes)
    return replace(state, axes=axes, rank=state.rank if keep_places else None)


# Per-position ops: every output position reads the same position of its inputs.
_ELEMENTWISE = frozenset(
    {
        "Relu", "LeakyRelu", "PRelu", "Elu", "Selu", "Celu", "Clip", "Sigmoid", "Tanh",
        "HardSigmoid", "HardSwish", "Softplus", "Softsign", "Gelu", "Mish", "Erf", "Exp", "Log",
        "Abs", "Neg", "Sqrt", "Reciprocal", "Pow", "Add", "Sub", "Mul", "Div", "Max", "Min", "Sum",
        "Mean", "Identity", "Dropout", "Cast", "CastLike", "BatchNormalization", "QuantizeLinear",
        "DequantizeLinear", "DynamicQuantizeLinear", "Where", "Not", "And", "Or", "Xor", "Equal",
        "Greater", "Less", "GreaterOrEqual", "LessOrEqual", "Floor", "Ceil", "Round", "Sign",
        "Sin", "Cos", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Asinh", "Acosh", "Atanh",
        "Shrink", "ThresholdedRelu", "BitShift", "Mod", "IsNaN", "IsInf", "Trilu", "Expand",
        "BitwiseAnd", "BitwiseOr", "BitwiseXor", "BitwiseNot", "Swish",
    }
)
_WINDOWED = frozenset(
    {"Conv", "ConvInteger", "QLinearConv", "MaxPool", "AveragePool", "LpPool", "ConvTranspose"}
)
_GLOBAL_POOLS = frozenset({"GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool"})
_REDUCE = frozenset(
    {
        "ReduceMean", "ReduceMax", "ReduceMin", "ReduceSum", "ReduceProd", "ReduceL1", "ReduceL2",
        "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare",
    }
)
_RECURRENT = frozenset({"LSTM", "GRU", "RNN"})


# ----------------------------------------------------------------------------- the walk


def receptive_fields(
    graph: onnx.GraphProto | onnx.ModelProto,
    input_name: str,
    input_axes: Sequence[int],
    *,
    input_size: Sequence[int] | None = None,
    shapes: Mapping[str, Sequence[int | str | None] | None] | None = None,
    strict: bool = False,
) -> dict[str, Field]:
    """``{tensor: Field}`` for the input and every main-graph tensor that depends on it.

    ``input_axes`` are the input's spatial axes: ``(-2, -1)`` for NCHW images, ``(-3, -2)`` for
    NHWC, ``(-1,)`` for ``[N, C, L]`` and ``[N, L]``, ``(-2,)`` for ``[N, L, C]`` (non-negative
    indices need the input's rank in the graph). ``input_size`` is their length, when known
    (static dims of the input are used otherwise); ``shapes`` adds inferred tensor shapes (as
    fmviz's layer table has them) to the graph's own ``value_info``: both only sharpen SAME
    padding, broadcasts and reshapes. ``strict``: see "Global context" in the module docs.
    """
    opset = 18  # a bare graph: the rules of a recent opset
    if isinstance(graph, onnx.ModelProto):
        opset = opset_version(graph)
        graph = graph.graph
    known_shapes = _graph_shapes(graph)
    for name, shape in (shapes or {}).items():
        if shape is not None:
            known_shapes[name] = tuple(shape)
    input_shape = known_shapes.get(input_name)
    rank = len(input_shape) if input_shape is not None else None
    axes = []
    for i, axis in enumerate(input_axes):
        at = int(axis)
        if at >= 0:
            if rank is None:
                raise ValueError(f"input axis {at} needs the rank of {input_name!r}")
            at -= rank
        length = None
        if input_size is not None:
            length = int(input_size[i])
        elif input_shape is not None and isinstance(input_shape[at], int):
            length = int(input_shape[at])
        axes.append(_Axis(at, 0.0, 1.0, 1.0, length=length))
    if len({a.at for a in axes}) != len(axes):
        raise ValueError(f"input axes repeat: {tuple(input_axes)}")
    walker = _Walker(graph, known_shapes, strict, opset)
    state = {input_name: _State(tuple(axes), rank)}
    walker.run(state)
    return {name: _public(s) for name, s in state.items()}


def _public(state: _State) -> Field:
    axes = []
    for a in state.axes:
        if a.whole:
            axes.append(AxisField(None, float(a.stride), float(a.lo), False))
            continue
        size = a.hi - a.lo
        exact = a.exact and _whole_number(size) and _whole_number(a.lo) and _whole_number(
            a.stride
        )
        axes.append(
            AxisField(
                int(round(size)) if _whole_number(size) else math.ceil(size),
                _tidy(a.stride),
                _tidy(a.lo),
                exact,
            )
        )
    return Field(tuple(axes), tuple(a.at for a in state.axes), state.context)


def _whole_number(value: float) -> bool:
    return abs(value - round(value)) < 1e-9


def _tidy(value: float) -> float:
    return float(round(value)) if _whole_number(value) else float(value)


def _graph_shapes(graph: onnx.GraphProto) -> dict[str, tuple]:
    shapes: dict[str, tuple] = {}
    for info in [*graph.input, *graph.value_info, *graph.output]:
        shape = shape_of(info.type)
        if shape is not None:
            shapes[info.name] = shape
    return shapes


class _Walker:
    def __init__(self, graph: onnx.GraphProto, shapes: dict, strict: bool, opset: int):
        self.graph = graph
        self.index = GraphIndex(graph, opset)
        self.shapes = shapes
        self.strict = strict
        self.opset = opset

    # -- helpers
    def const(self, name: str) -> np.ndarray | None:
        return self.index.constant(name) if name else None

    def ints(self, name: str) -> list[int] | None:
        value = self.const(name)
        return None if value is None else [int(v) for v in np.asarray(value).ravel()]

    def rank(self, name: str, state: _State | None = None) -> int | None:
        shape = self.shapes.get(name)
        if shape is not None:
            return len(shape)
        return state.rank if state is not None else None

    def negative(self, axis: int, rank: int | None) -> int | None:
        if axis < 0:
            return axis
        return None if rank is None else axis - rank

    def run(self, state: dict[str, _State]) -> None:
        for node in topological_order(list(self.graph.node)):
            if node.op_type in ("Shape", "Size"):
                continue  # a shape does not depend on the values
            reads = [n for n in node_inputs(node) if n in state]
            if not reads:
                continue
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            outputs = [o for o in node.output if o]
            try:
                stepped = self.step(node, attrs, state)
            except (ValueError, TypeError, IndexError, KeyError, ZeroDivisionError):
                stepped = None
            fallback = _all_whole(self.join([state[n] for n in reads]))
            results = [
                fallback if r is None else r for r in (stepped or [fallback] * len(outputs))
            ]
            if all(state[n].summary for n in reads):  # statistics of statistics
                results = [
                    replace(_all_whole(r, keep_places=True), summary=True, context=False)
                    for r in results
                ]
            for name, result in zip(outputs, results, strict=False):
                shape = self.shapes.get(name)
                if shape is not None:
                    result = self.with_shape(result, shape)
                state[name] = result

    def with_shape(self, state: _State, shape: Sequence) -> _State:
        """Lengths and rank from a known shape."""
        axes = []
        for a in state.axes:
            if a.at is not None and -len(shape) <= a.at and isinstance(shape[a.at], int):
                a = replace(a, length=int(shape[a.at]))
            axes.append(a)
        return replace(state, axes=tuple(axes), rank=len(shape))

    def join(self, states: list[_State]) -> _State:
        """The union of input-dependent operands that share positions (broadcast right-aligned)."""
        local = [s for s in states if not s.summary]
        if not local:
            return states[0]
        gated = len(local) < len(states)
        first = local[0]
        axes = []
        for i, a in enumerate(first.axes):
            others = [s.axes[i] for s in local[1:]]
            for b in others:
                lengths = {a.length, b.length}
                if b.at != a.at or not math.isclose(b.stride, a.stride) or (
                    1 in lengths and None not in lengths and len(lengths) == 2
                ):
                    a = _whole(a)
                    continue
                a = replace(
                    a,
                    lo=min(a.lo, b.lo),
                    hi=max(a.hi, b.hi),
                    exact=a.exact and b.exact,
                    whole=a.whole or b.whole,
                    length=a.length if a.length is not None else b.length,
                )
            if gated and self.strict:
                a = _whole(a)
            axes.append(a)
        ranks = [s.rank for s in local]
        rank = None if None in ranks else max(r for r in ranks if r is not None)
        context = any(s.context for s in local) or (gated and not self.strict)
        return _State(tuple(axes), rank, False, context)

    def on_spatial(self, state: _State, affected, keep_places: bool = True) -> _State:
        """Spatial axes for which ``affected(at)`` holds read input-wide statistics."""
        axes = list(state.axes)
        hit = False
        for i, a in enumerate(axes):
            if a.at is not None and affected(a.at):
                hit = True
                if self.strict:
                    axes[i] = _whole(a)
        if hit and not self.strict:
            return replace(state, context=True)
        return replace(state, axes=tuple(axes))

    # -- one node
    def step(self, node, attrs, state) -> list[_State | None] | None:
        op = node.op_type
        n_out = len([o for o in node.output if o])
        deps = [state[n] for n in node.input if n in state]
        if node.domain not in ("", "ai.onnx") or any(attr_graphs(a) for a in node.attribute):
            return None
        if op in _ELEMENTWISE:
            return [self.join(deps)] * n_out
        if op in _WINDOWED:
            return self.windowed(node, attrs, state, op)
        if op in ("SpaceToDepth", "DepthToSpace"):
            if node.input[0] not in state:
                return None
            block = int(attrs["blocksize"])
            transposed = op == "DepthToSpace"
            return [self.window(state[node.input[0]], [block] * 2, [block] * 2, [1] * 2,
                                [0] * 4, "NOTSET", transposed, contract_channels=True)]
        if op in ("InstanceNormalization", "GroupNormalization"):
            data = state.get(node.input[0])
            if data is None or len(deps) > 1:
                return None
            rank = self.rank(node.input[0], data)
            return [self.on_spatial(data, lambda at: rank is None or at >= -(rank - 2))]
        if op in ("LayerNormalization", "LpNormalization", "Softmax", "LogSoftmax", "Hardmax"):
            data = state.get(node.input[0])
            if data is None or len(deps) > 1:
                return None
            rank = self.rank(node.input[0], data)
            softmax = op in ("Softmax", "LogSoftmax", "Hardmax")
            default = 1 if softmax and self.opset < 13 else -1
            axis = self.negative(int(attrs.get("axis", default)), rank)
            if axis is None:
                return [self.on_spatial(data, lambda at: True)] * n_out
            single = op == "LpNormalization" or (softmax and self.opset >= 13)
            test = (lambda at: at == axis) if single else (lambda at: at >= axis)
            return [self.on_spatial(data, test)] * n_out
        if op == "Pad":
            return [self.pad(node, attrs, state)]
        if op == "Slice":
            return [self.slice(node, attrs, state)]
        if op == "Concat":
            return [self.concat(node, attrs, state)]
        if op == "Split":
            return self.split(node, attrs, state, n_out)
        if op == "Transpose":
            return [self.transpose(node, attrs, state)]
        if op in ("Squeeze", "Unsqueeze"):
            return [self.squeeze(node, attrs, state)]
        if op == "Reshape":
            return [self.reshape(node, state)]
        if op == "Flatten":
            return [self.flatten(node, attrs, state)]
        if op in ("Resize", "Upsample"):
            return [self.resize(node, attrs, state)]
        if op in _GLOBAL_POOLS:
            data = state[node.input[0]]
            rank = self.rank(node.input[0], data)
            return [self.reduce(data, lambda at: rank is None or at >= -(rank - 2), True)]
        if op in _REDUCE or op in ("ArgMax", "ArgMin"):
            return [self.reduction(node, attrs, state, op)]
        if op in ("MatMul", "MatMulInteger", "QLinearMatMul", "Gemm"):
            return [self.matmul(node, attrs, state, op)]
        if op in _RECURRENT:
            return self.recurrent(node, attrs, state, n_out)
        if op == "Gather":
            return [self.gather(node, attrs, state)]
        if op == "Tile":
            return [self.tile(node, state)]
        return None

    def windowed(self, node, attrs, state, op) -> list[_State | None] | None:
        data = state.get(node.input[0])
        weight_at = 3 if op == "QLinearConv" else 1
        inputs = list(node.input)
        if data is None or any(
            n in state for i, n in enumerate(inputs) if i != 0 and op not in ("MaxPool",)
        ):
            return None  # a kernel computed from the input: no fixed window
        kernel = attrs.get("kernel_shape")
        if kernel is None:
            weight = inputs[weight_at] if len(inputs) > weight_at else ""
            dims = self.index.constants.get(weight)
            shape = tuple(dims.dims) if dims is not None else self.shapes.get(weight)
            if shape is None or len(shape) < 3 or not all(isinstance(d, int) for d in shape[2:]):
                return None
            kernel = shape[2:]
        n = len(kernel)
        strides = list(attrs.get("strides") or [1] * n)
        dilations = list(attrs.get("dilations") or [1] * n)
        pads = list(attrs.get("pads") or [0] * (2 * n))
        auto = attrs.get("auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else str(auto)
        transposed = op == "ConvTranspose"
        result = self.window(
            data, list(kernel), strides, dilations, pads, auto, transposed,
            contract_channels=op not in ("MaxPool", "AveragePool", "LpPool"),
            ceil_mode=bool(attrs.get("ceil_mode", 0)),
            output_padding=list(attrs.get("output_padding") or [0] * n),
            output_shape=attrs.get("output_shape"),
        )
        return [result] * len([o for o in node.output if o])

    def window(self, data: _State, kernel, strides, dilations, pads, auto, transposed,
               contract_channels, ceil_mode=False, output_padding=None, output_shape=None):
        n = len(kernel)
        axes = []
        for a in data.axes:
            if a.at is None or a.at < -(n + 1):
                axes.append(a)  # batch, or already gone
                continue
            if a.at == -(n + 1):  # the channel axis
                axes.append(_whole(a, None, length=None) if contract_channels else a)
                continue
            i = n + a.at
            k, s, d = int(kernel[i]), int(strides[i]), int(dilations[i])
            span = (k - 1) * d + 1
            length = a.length
            if transposed:
                axes.append(self._transposed(a, i, n, span, s, pads, auto, output_padding,
                                             output_shape))
                continue
            begins: set[int]
            end = None
            if auto in ("SAME_UPPER", "SAME_LOWER"):
                lengths = [length] if length is not None else list(range(1000 * s, 1001 * s))
                begins = set()
                for size in lengths:
                    total = max((-(-size // s) - 1) * s + span - size, 0)
                    begins.add(total // 2 if auto == "SAME_UPPER" else total - total // 2)
                new_length = -(-length // s) if length is not None else None
            else:
                begin = 0 if auto == "VALID" else int(pads[i])
                end = 0 if auto == "VALID" else int(pads[n + i])
                begins = {begin}
                new_length = None
                if length is not None:
                    room = length + begin + end - span
                    new_length = (-(-room // s) if ceil_mode else room // s) + 1
            lo = a.lo - a.stride * max(begins)
            hi = a.hi + a.stride * (span - 1 - min(begins))
            axes.append(
                replace(a, lo=lo, hi=hi, stride=a.stride * s,
                        exact=a.exact and len(begins) == 1, length=new_length)
            )
        return replace(data, axes=tuple(axes))

    @staticmethod
    def _transposed(a, i, n, span, s, pads, auto, output_padding, output_shape) -> _Axis:
        extra = int(output_padding[i]) if output_padding else 0
        length = a.length
        total: int | None
        target: int | None
        if output_shape is not None:
            target = int(list(output_shape)[-n + i])
            if length is None:
                return _whole(a, stride=a.stride / s, length=target)
            total = s * (length - 1) + extra + span - target
        elif auto in ("SAME_UPPER", "SAME_LOWER"):
            total = extra + span - s
            target = None if length is None else length * s
        else:
            total = None
            target = None
        if total is not None:
            begin = total // 2 if auto == "SAME_UPPER" else total - total // 2
        else:
            begin = int(pads[i])
            if length is not None:
                target = (length - 1) * s + extra + span - begin - int(pads[n + i])
        lo = a.lo + a.stride * (begin - (span - 1)) / s
        hi = a.hi + a.stride * begin / s
        return replace(a, lo=lo, hi=hi, stride=a.stride / s, exact=a.exact and s == 1,
                       length=target)

    def pad(self, node, attrs, state) -> _State | None:
        data = state.get(node.input[0])
        if data is None:
            return None
        pads = attrs.get("pads") if "pads" in attrs else self.ints(node.input[1])
        if pads is None:
            return None
        pads = [int(p) for p in pads]
        mode = attrs.get("mode", b"constant")
        mode = mode.decode() if isinstance(mode, bytes) else str(mode)
        rank = self.rank(node.input[0], data)
        axes_in = node.input[3] if len(node.input) > 3 else ""
        if axes_in:
            listed = self.ints(axes_in)
            if listed is None:
                return None
            where = [self.negative(v, rank) for v in listed]
        else:
            count = len(pads) // 2
            where = list(range(-count, 0))
        if None in where:
            return None
        count = len(where)
        axes = []
        for a in data.axes:
            if a.at is not None and a.at in where:
                k = where.index(a.at)
                begin, end = pads[k], pads[count + k]
                a = replace(
                    a, lo=a.lo - a.stride * begin, hi=a.hi - a.stride * begin,
                    exact=a.exact and (mode == "constant" or begin == end == 0),
                    length=None if a.length is None else a.length + begin + end,
                )
            axes.append(a)
        return replace(data, axes=tuple(axes), rank=rank if rank is not None else count)

    def slice(self, node, attrs, state) -> _State | None:
        data = state.get(node.input[0])
        if data is None or any(n in state for n in node.input[1:]):
            return None
        rank = self.rank(node.input[0], data)
        if "starts" in attrs:  # opset < 10
            starts, ends, listed, steps = attrs["starts"], attrs["ends"], attrs.get("axes"), None
        else:
            starts, ends = self.ints(node.input[1]), self.ints(node.input[2])
            listed = self.ints(node.input[3]) if len(node.input) > 3 and node.input[3] else None
            steps = self.ints(node.input[4]) if len(node.input) > 4 and node.input[4] else None
            if starts is None or ends is None:
                return None
        if listed is None:
            listed = list(range(len(starts)))
        where = [self.negative(int(v), rank) for v in listed]
        if None in where:
            return None
        steps = steps or [1] * len(starts)
        axes = []
        for a in data.axes:
            if a.at is not None and a.at in where:
                k = where.index(a.at)
                start, stop, step = int(starts[k]), int(ends[k]), int(steps[k])
                if a.length is not None:
                    picked = range(a.length)[slice(start, stop, step)]
                    start, length = (picked.start if len(picked) else 0), len(picked)
                else:
                    length = None
                if step <= 0 or start < 0:
                    a = _whole(a, length=length)
                else:
                    a = replace(a, lo=a.lo + a.stride * start, hi=a.hi + a.stride * start,
                                stride=a.stride * step, length=length)
            axes.append(a)
        return replace(data, axes=tuple(axes), rank=rank)

    def concat(self, node, attrs, state) -> _State | None:
        dep_names = [n for n in node.input if n in state]
        deps = [state[n] for n in dep_names]
        rank = self.rank(dep_names[0], deps[0])
        axis = self.negative(int(attrs.get("axis", 0)), rank)
        if axis is None:
            return None
        joined = self.join(deps)
        on_spatial = [a.at == axis for a in joined.axes]
        if not any(on_spatial):
            return joined
        axes = list(joined.axes)
        alone = len(deps) == 1 and node.input[0] == dep_names[0]
        for i, hit in enumerate(on_spatial):
            if hit:  # later pieces are constants when alone; otherwise positions restart
                axes[i] = replace(axes[i], length=None) if alone else _whole(axes[i], length=None)
        return replace(joined, axes=tuple(axes))

    def split(self, node, attrs, state, n_out) -> list[_State | None] | None:
        data = state.get(node.input[0])
        if data is None:
            return None
        rank = self.rank(node.input[0], data)
        axis = self.negative(int(attrs.get("axis", 0)), rank)
        if axis is None:
            return None
        sizes = attrs.get("split")
        if sizes is None and len(node.input) > 1 and node.input[1]:
            sizes = self.ints(node.input[1])
        results = []
        for k in range(n_out):
            axes = []
            for a in data.axes:
                if a.at == axis:
                    length = a.length
                    if sizes is None and length is not None:
                        piece = -(-length // n_out)
                        sizes_k = [min(piece, max(length - piece * m, 0)) for m in range(n_out)]
                    else:
                        sizes_k = sizes
                    if sizes_k is not None:
                        shift = sum(int(v) for v in list(sizes_k)[:k])
                        a = replace(a, lo=a.lo + a.stride * shift, hi=a.hi + a.stride * shift,
                                    length=int(list(sizes_k)[k]))
                    elif k > 0:
                        a = _whole(a, length=None)
                    else:
                        a = replace(a, length=None)
                axes.append(a)
            results.append(replace(data, axes=tuple(axes)))
        return results

    def transpose(self, node, attrs, state) -> _State | None:
        data = state[node.input[0]]
        rank = self.rank(node.input[0], data)
        perm = attrs.get("perm")
        if perm is None:
            if rank is None:
                return None
            perm = list(range(rank))[::-1]
        r = len(perm)
        axes = []
        for a in data.axes:
            if a.at is not None:
                if not -r <= a.at:
                    return None
                a = replace(a, at=list(perm).index(r + a.at) - r)
            axes.append(a)
        return replace(data, axes=tuple(axes), rank=r)

    def squeeze(self, node, attrs, state) -> _State | None:
        data = state.get(node.input[0])
        if data is None:
            return None
        rank = self.rank(node.input[0], data)
        listed = attrs.get("axes")
        if listed is None and len(node.input) > 1 and node.input[1]:
            listed = self.ints(node.input[1])
            if listed is None:
                return None
        if node.op_type == "Unsqueeze":
            if listed is None:
                return None
            listed = [int(v) for v in listed]
            if rank is None:
                return None
            out_rank = rank + len(listed)
            added = sorted(v + out_rank if v < 0 else v for v in listed)
            axes = []
            for a in data.axes:
                if a.at is not None:
                    position = rank + a.at
                    for v in added:
                        if v <= position:
                            position += 1
                    a = replace(a, at=position - out_rank)
                axes.append(a)
            return replace(data, axes=tuple(axes), rank=out_rank)
        if listed is None:  # every size-1 axis goes
            if rank is None:
                return None
            shape = self.shapes.get(node.input[0])
            if shape is None:
                return None
            listed = [i for i, d in enumerate(shape) if d == 1]
        removed = [v + rank if v < 0 else v for v in listed] if rank is not None else None
        if removed is None:
            if all(v < 0 for v in listed):
                removed_neg = [int(v) for v in listed]
            else:
                return None
        else:
            removed_neg = [v - rank for v in removed]
        axes = []
        for a in data.axes:
            if a.at is not None:
                if a.at in removed_neg:
                    a = replace(a, at=None, length=None)
                else:
                    a = replace(a, at=a.at + sum(1 for v in removed_neg if v > a.at))
            axes.append(a)
        return replace(data, axes=tuple(axes),
                       rank=None if rank is None else rank - len(removed_neg))

    def reshape(self, node, state) -> _State | None:
        data = state.get(node.input[0])
        if data is None or len(node.input) < 2 or node.input[1] in state:
            return None
        target = self.ints(node.input[1])
        if target is None:
            return None
        shape_in = self.shapes.get(node.input[0])
        out = [int(v) for v in target]
        if shape_in is not None and all(isinstance(d, int) for d in shape_in):
            dims = list(shape_in)
            for k, v in enumerate(out):
                if v == 0 and k < len(dims):
                    out[k] = dims[k]
            if out.count(-1) == 1:
                known = int(np.prod([v for v in out if v != -1]))
                out[out.index(-1)] = int(np.prod(dims)) // known if known else 0
            axes = []
            for a in data.axes:
                if a.at is not None:
                    tail = int(np.prod(dims[len(dims) + a.at + 1:]))
                    place = None
                    for k in range(len(out)):
                        if out[k] == dims[a.at] and int(np.prod(out[k + 1:])) == tail:
                            place = k - len(out)
                            break
                    a = replace(a, at=place) if place is not None else _whole(a, None)
                axes.append(a)
            return replace(data, axes=tuple(axes), rank=len(out))
        # Unknown dims: the last axis stays last when the new shape ends in -1 (or a copied 0)
        # and no other tracked axis is merged into it.
        tracked = [a for a in data.axes if a.at is not None]
        rank = self.rank(node.input[0], data)
        keeps_last = out[-1] == -1 or (out[-1] == 0 and rank == len(out))
        if len(tracked) == 1 and tracked[0].at == -1 and keeps_last:
            return replace(data, rank=len(out))
        return None

    def flatten(self, node, attrs, state) -> _State | None:
        data = state[node.input[0]]
        shape = self.shapes.get(node.input[0])
        rank = self.rank(node.input[0], data)
        if rank is None:
            return None
        axis = int(attrs.get("axis", 1))
        axis = axis + rank if axis < 0 else axis
        axes = []
        for a in data.axes:
            if a.at is not None:
                position = rank + a.at
                group = range(axis, rank) if position >= axis else range(0, axis)
                ones = shape is not None and all(
                    shape[g] == 1 for g in group if g != position
                )
                if len(group) == 1 or ones:
                    a = replace(a, at=-1 if position >= axis else -2)
                else:
                    a = _whole(a, None)
            axes.append(a)
        return replace(data, axes=tuple(axes), rank=2)

    def resize(self, node, attrs, state) -> _State | None:
        data = state.get(node.input[0])
        if data is None or any(n in state for n in node.input[1:]):
            return None
        rank = self.rank(node.input[0], data)
        scales = sizes = None
        if node.op_type == "Upsample" or self.opset < 11 or len(node.input) == 2:
            scales = attrs.get("scales")
            if scales is None and len(node.input) > 1:
                scales = self.const(node.input[1])
        else:
            if len(node.input) > 2 and node.input[2]:
                scales = self.const(node.input[2])
            if len(node.input) > 3 and node.input[3]:
                sizes = self.const(node.input[3])
        listed = attrs.get("axes")
        values, from_sizes = None, False
        if scales is not None and np.asarray(scales).size:
            values = [float(v) for v in np.asarray(scales).ravel()]
        elif sizes is not None and np.asarray(sizes).size:
            values, from_sizes = [float(v) for v in np.asarray(sizes).ravel()], True
        axes = []
        for a in data.axes:
            if a.at is not None:
                factor = None
                if values is not None:
                    where = (
                        [self.negative(int(v), rank) for v in listed] if listed is not None
                        else list(range(-len(values), 0))
                    )
                    if a.at in where:
                        value = values[where.index(a.at)]
                        if not from_sizes:
                            factor = value
                        elif a.length:
                            factor = value / a.length
                    else:
                        factor = 1.0
                if factor == 1.0:
                    axes.append(a)
                    continue
                length = None
                if factor is not None and a.length is not None:
                    length = int(math.floor(a.length * factor))
                a = _whole(a, stride=a.stride / factor if factor else a.stride, length=length)
            axes.append(a)
        return replace(data, axes=tuple(axes))

    def reduce(self, data: _State, reduced, keepdims: bool) -> _State:
        axes = []
        gone = [a.at for a in data.axes if a.at is not None and reduced(a.at)]
        for a in data.axes:
            if a.at is not None and reduced(a.at):
                a = _whole(a, True if keepdims else None, length=1 if keepdims else None)
            axes.append(a)
        summary = all(a.at is None or reduced(a.at) for a in data.axes) and bool(gone)
        return replace(data, axes=tuple(axes), summary=summary or data.summary,
                       context=False if summary else data.context)

    def reduction(self, node, attrs, state, op) -> _State | None:
        data = state.get(node.input[0])
        if data is None:
            return None
        rank = self.rank(node.input[0], data)
        keepdims = bool(attrs.get("keepdims", 1))
        listed: list[int] | None
        if op in ("ArgMax", "ArgMin"):
            listed = [int(attrs.get("axis", 0))]
        else:
            listed = attrs.get("axes")
            if listed is None and len(node.input) > 1 and node.input[1]:
                listed = self.ints(node.input[1])
                if listed is None:
                    return None
        if not listed:
            if op not in ("ArgMax", "ArgMin") and attrs.get("noop_with_empty_axes", 0):
                return data
            return self.reduce(data, lambda at: True, keepdims)
        found = [self.negative(int(v), rank) for v in listed]
        where = [v for v in found if v is not None]
        if len(where) < len(found):
            return None
        result = self.reduce(data, lambda at: at in where, True)
        if keepdims:
            return result
        axes = []
        for a in result.axes:
            if a.at is not None:
                a = replace(a, at=None, length=None) if a.at in where else replace(
                    a, at=a.at + sum(1 for v in where if v > a.at)
                )
            axes.append(a)
        return replace(result, axes=tuple(axes), rank=None if rank is None else rank - len(where))

    def matmul(self, node, attrs, state, op) -> _State | None:
        names = list(node.input)
        a_name, b_name = (names[0], names[3]) if op == "QLinearMatMul" else (names[0], names[1])
        a_dep, b_dep = state.get(a_name), state.get(b_name)
        if op == "Gemm":
            if any(n in state for n in names[2:3]):
                return None
            trans_a, trans_b = int(attrs.get("transA", 0)), int(attrs.get("transB", 0))
        else:
            trans_a = trans_b = 0
        if a_dep is not None and b_dep is not None:  # attention-like: every position mixes
            joined = self.join([a_dep, b_dep])
            axes = [
                _whole(a, True if (a.at is not None and a.at < -1) else None, length=None)
                for a in a_dep.axes
            ]
            return replace(joined, axes=tuple(axes), rank=a_dep.rank)
        data = a_dep if a_dep is not None else b_dep
        rows = a_dep is not None
        kept_at = (-1 if trans_a else -2) if rows else (-2 if trans_b else -1)
        new_at = -2 if rows else -1
        axes = []
        for a in data.axes:
            if a.at is not None:
                if a.at == kept_at:
                    a = replace(a, at=new_at)
                elif a.at in (-1, -2) or op == "Gemm":
                    a = _whole(a, None, length=None)
            axes.append(a)
        return replace(data, axes=tuple(axes), rank=2 if op == "Gemm" else None)

    def recurrent(self, node, attrs, state, n_out) -> list[_State | None] | None:
        data = state.get(node.input[0])
        if data is None or any(n in state for n in node.input[1:]):
            return None
        layout = int(attrs.get("layout", 0))
        seq, batch = (-3, -2) if layout == 0 else (-2, -3)
        seq_out, batch_out = (-4, -2) if layout == 0 else (-3, -4)
        axes = []
        for a in data.axes:
            if a.at == seq:
                a = _whole(a, seq_out)
            elif a.at == batch:
                a = replace(a, at=batch_out)
            elif a.at is not None:
                a = _whole(a, None, length=None)
            axes.append(a)
        y = replace(data, axes=tuple(axes), rank=4)
        final = replace(_all_whole(data), rank=3)
        return [y] + [final] * (n_out - 1)

    def gather(self, node, attrs, state) -> _State | None:
        data = state.get(node.input[0])
        if data is None or node.input[1] in state:
            return None
        indices = self.const(node.input[1])
        if indices is None:
            return None
        rank = self.rank(node.input[0], data)
        axis = self.negative(int(attrs.get("axis", 0)), rank)
        if axis is None:
            return None
        q = np.asarray(indices).ndim
        axes = []
        for a in data.axes:
            if a.at is not None:
                if a.at == axis:
                    a = _whole(a, None if q == 0 else True, length=None)
                elif a.at < axis:
                    a = replace(a, at=a.at - (q - 1))
            axes.append(a)
        return replace(data, axes=tuple(axes), rank=None if rank is None else rank - 1 + q)

    def tile(self, node, state) -> _State | None:
        data = state.get(node.input[0])
        repeats = self.ints(node.input[1]) if len(node.input) > 1 else None
        if data is None or repeats is None or node.input[1] in state:
            return None
        axes = []
        for a in data.axes:
            if a.at is not None and -len(repeats) <= a.at and repeats[a.at] != 1:
                a = _whole(a, length=None)
            axes.append(a)
        return replace(data, axes=tuple(axes))
