"""Per-channel reductions computed inside onnxruntime, next to each captured layer.

A dead-filter scan needs, for every channel of every layer, a handful of numbers per input: the
minimum, maximum, sum, sum of squares and the number of positions with |a| > eps. Pulling whole
feature maps out of the session only to reduce them in numpy would cost a copy of every map and
several passes over it in Python; instead :func:`reduction_model` adds nodes to the graph that
reduce each captured tensor ``[N, C, ...]`` to ``[N, C]`` arrays, so only tiny arrays leave the
session.

For a captured tensor ``x`` the added nodes are::

    x ─(Cast to float32 unless float)─ Reshape [0, 0, -1] ─┬─ ReduceMin                 ─▶ min
                                                            ├─ ReduceMax                 ─▶ max
                                                            ├─ ReduceSum / L = s         (shift)
                                                            ├─ Sub(x, s) = d ─┬ ReduceSum ─▶ S1
                                                            │                 └ Mul(d, d) ─
                                                            │                   ReduceSum ─▶ S2
                                                            ├─ (Abs) ─ HardSigmoid ─
                                                            │          ReduceSum         ─▶ active
                                                            └─ Shape (of x)              ─▶ shape

all reducing axis 2 with ``keepdims=0``; ``max |a|`` is ``max(max, -min)`` and needs no pass of
its own, and ``Abs`` is left out where the activation cannot be negative (ReLU, ReLU6, ...).
The sums are taken around a shift ``s`` (each channel's float32 mean, per input),
then turned back into ``sum`` and ``sumsq`` of ``x`` in float64 on the small ``[N, C]``
arrays: these two outputs are float64 (the others keep the map's type). Plain float32 sums
lose the variance of channels whose spread is tiny next to their mean (std 5e-5 around 1.0
came out as 0.0 or several times too large); see :func:`_shifted_sums`.

The active count is the one statistic that needs a per-element test. ``Greater`` + ``Cast`` +
``ReduceSum`` does it in three passes; a single ``HardSigmoid`` does it in one:
``clip(alpha * x + beta, 0, 1)`` with ``alpha = 1 / ulp(eps)`` (a power of two) and
``beta = -alpha * eps`` is exactly 0 for every float32 ``x <= eps`` and exactly 1 for every
``x > eps``: ``alpha * x`` is exact, and near ``eps`` both products are integers below 2**24, so
their difference is exact and at least 1 as soon as ``x`` is one ulp above ``eps``. ``eps`` is
rounded *down* to float32 first, so that ``x > eps32`` holds exactly for the float32 values
``x > eps``. Outside float32's comfortable range (``eps`` of 0, or below 2**-100) the graph falls
back to ``Greater`` + ``Cast``.

Measured on a MobileNetV2-shaped model (52 layers, batch 16, 2 CPU cores), onnxruntime's kernel
time for these nodes is about 1.1x that of the convolutions themselves; ``ReduceSumSquare``,
``Greater`` + ``Cast`` and pooling-based alternatives measured 1.2x to 2x. A third of the cost is
the ``ReorderOutput`` that onnxruntime inserts to hand its blocked (NCHWc) maps to ordinary
nodes.

The Reduce ops use the form the model's opset defines: ``axes`` as an input from opset 18
(opset 13 for ReduceSum), as an attribute before. The model's own ``ir_version`` is kept.

Non-finite values: ReduceMin/ReduceMax do not handle NaN consistently, so their results cannot
be trusted when a map holds NaN or infinity. Any NaN or infinity makes that input's ``sum`` (or
``sumsq``) non-finite, which is how a caller detects it (see ``fmviz.scan``): such batches are
run again with the raw maps and reduced in numpy by :func:`numpy_reductions`, where non-finite
values are counted and left out of min, max, sum and sum of squares.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .index import NameAllocator, opset_version

if TYPE_CHECKING:  # pragma: no cover
    from .load import ModelGraph



@dataclass(frozen=True)
class Target:
    """One tensor to reduce, with what is known about it."""

    tensor: str
    non_negative: bool = False  # True skips the Abs before the active count
    quantized: bool = False  # a QLinearConv/ConvInteger output: integer, cast to float first


@dataclass(frozen=True)
class ReducedOutputs:
    """The names of the graph outputs :func:`reduction_model` added for one tensor."""

    tensor: str
    min: str
    max: str
    sum: str
    sumsq: str
    active: str
    shape: str

    def names(self) -> list[str]:
        return [self.min, self.max, self.sum, self.sumsq, self.active, self.shape]


def float32_at_most(value: float) -> np.float32:
    """The largest float32 <= ``value``: float32 maps compare against it exactly as against
    ``value`` (no float32 lies between the two)."""
    rounded = np.float32(value)
    if float(rounded) > value:
        rounded = np.nextafter(rounded, np.float32(-np.inf))
    return rounded


def hard_sigmoid_step(eps: float) -> tuple[float, float] | None:
    """``(alpha, beta)`` such that HardSigmoid is exactly the step ``x > eps`` on float32 maps.

    None where ``eps`` is outside the range where that holds (0, tiny or huge values).
    """
    eps32 = float32_at_most(eps)
    if not np.isfinite(eps32) or eps32 <= 0:
        return None
    _, exponent = np.frexp(eps32)  # eps32 = m * 2**exponent, m in [0.5, 1)
    low = int(exponent) - 1  # eps32 in [2**low, 2**(low + 1))
    if not -100 <= low <= 100:
        return None
    alpha = 2.0 ** (23 - low)  # 1 / ulp(eps32)
    return alpha, -alpha * float(eps32)


def _reduce(op: str, x: str, out: str, opset: int, axes_name: str, name: str) -> onnx.NodeProto:
    axes_as_input = opset >= (13 if op == "ReduceSum" else 18)
    if axes_as_input:
        return helper.make_node(op, [x, axes_name], [out], name=name, keepdims=0)
    return helper.make_node(op, [x], [out], name=name, axes=[2], keepdims=0)


def reduction_model(
    model: ModelGraph, targets: Sequence[Target], eps: float
) -> tuple[bytes, list[ReducedOutputs]]:
    """The model with per-channel reductions of each target added as outputs, serialized.

    The nodes of each target are inserted right after the node that produces it, so that
    onnxruntime (which prefers ready nodes by their position) reduces a map soon after it
    exists. Built on a weightless copy (see :mod:`fmviz.graph.edits`): ``model`` is unchanged.
    """
    shell = model.shell()
    graph = shell.graph
    opset = opset_version(shell)
    prefix = NameAllocator.for_graph(graph).fresh_prefix("fmviz_stats")
    targets = list({t.tensor: t for t in targets}.values())
    types = _elem_types(graph, model.shape_info.elem_types, {t.tensor for t in targets})
    step = hard_sigmoid_step(eps)

    axes = f"{prefix}/axes"
    initializers = [
        numpy_helper.from_array(np.array([2], dtype=np.int64), axes),
        numpy_helper.from_array(np.array([0, 0, -1], dtype=np.int64), f"{prefix}/shape3"),
        numpy_helper.from_array(np.array([0, 0, 1], dtype=np.int64), f"{prefix}/shape3_1"),
        numpy_helper.from_array(np.array(2, dtype=np.int64), f"{prefix}/two"),
    ]
    eps_names: dict[int, str] = {}  # elem type -> name of the eps constant, added when needed

    def eps_constant(elem: int) -> str:
        if elem not in eps_names:
            name = f"{prefix}/eps{len(eps_names)}"
            dtype = np.float64 if elem == TensorProto.DOUBLE else np.float32
            value = float32_at_most(eps) if dtype == np.float32 else eps
            initializers.append(numpy_helper.from_array(np.array(value, dtype=dtype), name))
            eps_names[elem] = name
        return eps_names[elem]

    inserts: list[tuple[str, list[onnx.NodeProto]]] = []
    outputs: list[onnx.ValueInfoProto] = []
    described: list[ReducedOutputs] = []
    for number, target in enumerate(targets):
        p = f"{prefix}/{number}"
        nodes: list[onnx.NodeProto] = []
        node = _NodeMaker(nodes, p)

        flat, elem = _flat_float(node, target, types, prefix)
        minimum = _add(nodes, _reduce("ReduceMin", flat, f"{p}/min", opset, axes, f"{p}/min"))
        sums = _shifted_sums(node, nodes, flat, minimum, elem, prefix, p, opset)
        names = ReducedOutputs(
            tensor=target.tensor,
            min=minimum,
            max=_add(nodes, _reduce("ReduceMax", flat, f"{p}/max", opset, axes, f"{p}/max")),
            sum=sums[0],
            sumsq=sums[1],
            active=f"{p}/active",
            shape=node("Shape", [target.tensor], "shape"),
        )
        magnitude = flat if target.non_negative else node("Abs", [flat], "abs")
        if step is not None and elem == TensorProto.FLOAT:
            alpha, beta = step
            indicator = node("HardSigmoid", [magnitude], "is_active", alpha=alpha, beta=beta)
        else:
            greater = node("Greater", [magnitude, eps_constant(elem)], "greater")
            indicator = node("Cast", [greater], "is_active", to=elem)
        _add(nodes, _reduce("ReduceSum", indicator, names.active, opset, axes, names.active))
        inserts.append((target.tensor, nodes))
        for name in (names.min, names.max, names.active):
            outputs.append(helper.make_tensor_value_info(name, elem, None))
        for name in (names.sum, names.sumsq):
            outputs.append(helper.make_tensor_value_info(name, TensorProto.DOUBLE, None))
        outputs.append(helper.make_tensor_value_info(names.shape, TensorProto.INT64, None))
        described.append(names)

    _insert_after_producers(graph, inserts)
    graph.initializer.extend(initializers)  # small constants: travel with the shell
    graph.output.extend(outputs)
    return model.serialize(shell), described


def _insert_after_producers(
    graph: onnx.GraphProto, inserts: list[tuple[str, list[onnx.NodeProto]]]
) -> None:
    """Insert each ``(tensor, nodes)`` right after the node that makes ``tensor`` (at the start
    for a graph input), so that onnxruntime, which prefers ready nodes by their position, runs
    them soon after the map exists. Ascending order: each insertion shifts the later ones."""
    position = {out: i for i, node in enumerate(graph.node) for out in node.output if out}
    shift = 0
    for at, nodes in sorted(((position.get(t, -1), n) for t, n in inserts),
                            key=lambda item: item[0]):
        for k, new_node in enumerate(nodes):
            graph.node.insert(at + 1 + shift + k, new_node)
        shift += len(nodes)


def _elem_types(
    graph: onnx.GraphProto, inferred: dict[str, int], names: set[str]
) -> dict[str, int]:
    """Element types of ``names``: declared in the graph, else from the model's inference."""
    types: dict[str, int] = {}
    for info in list(graph.input) + list(graph.value_info) + list(graph.output):
        tensor_type = info.type.tensor_type if info.type.HasField("tensor_type") else None
        if info.name in names and tensor_type is not None and tensor_type.elem_type:
            types[info.name] = tensor_type.elem_type
    for name in names - set(types):
        if inferred.get(name):
            types[name] = inferred[name]
    return types


# The shift of the sums (see _shifted_sums): "mean" (shipped) or "min" (no pass of its own, but
# off by up to 0.5% on MobileNetV2-like channels whose minimum is an outlier; benchmarks/NOTES.md)
SHIFT = "mean"


def _shifted_sums(node: _NodeMaker, nodes: list[onnx.NodeProto], flat: str, minimum: str,
                  elem: int, prefix: str, p: str, opset: int) -> tuple[str, str]:
    """Outputs ``sum`` and ``sumsq`` (float64 ``[N, C]``) of ``flat`` ``[N, C, L]``.

    A float32 sum of squares cannot hold the variance of a channel whose spread is tiny next
    to its mean (std 5e-5 around 1.0: the variance is 2.5e-9 of the mean square, below
    float32's precision), so the maps are summed around a shift ``s``, each channel's mean
    per input as float32 computes it (``ReduceSum / L``: one more read of the map):
    ``d = x - s``, ``S1 = sum d``, ``S2 = sum d*d`` in the map's type, then, in float64 on the
    ``[N, C]`` arrays, ``sum = S1 + L*s`` and ``sumsq = S2 + s*(2*S1 + L*s)``.

    The float32 rounding of ``S2`` is then relative to ``var + (mean - s)**2`` instead of
    ``var + mean**2``, and ``s`` is within ~1e-7 of the mean: the std comes out right to ~1e-5
    down to std ~1e-6 * |mean|. Cheaper shifts measured worse on the MobileNetV2-like model
    (benchmarks/NOTES.md): each channel's first value (the corner, where padding can make
    the rare large value of a sparse channel) lost to the unshifted sums; the minimum (no pass
    of its own, ``SHIFT = "min"``) was off by up to 0.5% where the minimum is an outlier.
    """
    axes = f"{prefix}/axes"  # [2]
    length = node("Gather", [node("Shape", [flat], "flat_shape"), f"{prefix}/two"], "length")
    base = minimum  # [N, C]
    if SHIFT == "mean":
        raw = _add(nodes, _reduce("ReduceSum", flat, f"{p}/raw_sum", opset, axes, f"{p}/raw_sum"))
        base = node("Div", [raw, node("Cast", [length], "length32", to=elem)], "mean32")
    shift = node("Reshape", [base, f"{prefix}/shape3_1"], "shift")  # [N, C, 1]
    deviation = node("Sub", [flat, shift], "deviation")
    s1 = _add(nodes, _reduce("ReduceSum", deviation, f"{p}/s1", opset, axes, f"{p}/s1"))
    square = node("Mul", [deviation, deviation], "square")
    s2 = _add(nodes, _reduce("ReduceSum", square, f"{p}/s2", opset, axes, f"{p}/s2"))
    length = node("Cast", [length], "length64", to=TensorProto.DOUBLE)
    shift = base
    if elem != TensorProto.DOUBLE:
        s1 = node("Cast", [s1], "s1_64", to=TensorProto.DOUBLE)
        s2 = node("Cast", [s2], "s2_64", to=TensorProto.DOUBLE)
        shift = node("Cast", [base], "shift64", to=TensorProto.DOUBLE)
    shifted_total = node("Mul", [shift, length], "l_shift")  # L*s
    total = _add(nodes, helper.make_node("Add", [s1, shifted_total], [f"{p}/sum"],
                                         name=f"{p}/sum"))
    twice = node("Add", [s1, s1], "twice_s1")
    cross = node("Mul", [shift, node("Add", [twice, shifted_total], "cross_half")], "cross")
    squares = _add(nodes, helper.make_node("Add", [s2, cross], [f"{p}/sumsq"],
                                           name=f"{p}/sumsq"))
    return total, squares


def _flat_float(
    node: _NodeMaker, target: Target, types: dict[str, int], prefix: str
) -> tuple[str, int]:
    """``target``'s map as ``[N, C, positions]`` in float32 (or its own float64), and that
    element type: a quantized or integer map is cast to float first."""
    x = target.tensor
    elem = types.get(x, TensorProto.UINT8 if target.quantized else TensorProto.FLOAT)
    if elem not in (TensorProto.FLOAT, TensorProto.DOUBLE):
        x = node("Cast", [x], "float", to=TensorProto.FLOAT)
        elem = TensorProto.FLOAT
    return node("Reshape", [x, f"{prefix}/shape3"], "flat"), elem


class _NodeMaker:
    """``make(op, inputs, out, **attrs)`` appends a node named and output ``<prefix>/<out>``."""

    def __init__(self, nodes: list[onnx.NodeProto], prefix: str):
        self.nodes = nodes
        self.prefix = prefix

    def __call__(self, op: str, inputs: list[str], out: str, **attrs) -> str:
        name = f"{self.prefix}/{out}"
        self.nodes.append(helper.make_node(op, inputs, [name], name=name, **attrs))
        return name


def _add(nodes: list[onnx.NodeProto], new: onnx.NodeProto) -> str:
    nodes.append(new)
    return new.output[0]


def numpy_reductions(array: np.ndarray, eps: float) -> dict[str, np.ndarray]:
    """The same reductions in numpy (float64), for checks and for maps with NaN or infinity.

    Returns ``[N, C]`` arrays ``min``, ``max``, ``sum``, ``sumsq`` over the finite values,
    ``active`` (positions with |a| > eps; infinity counts, NaN does not) and ``nonfinite``, and
    ``positions`` (per input). A channel with no finite value has min +inf and max -inf.
    """
    if array.ndim < 2:
        raise ValueError("expected a map [N, C, ...]")
    n, c = array.shape[:2]
    flat = array.reshape(n, c, -1)
    values = flat.astype(np.float64)
    finite = np.isfinite(values)
    clean = np.where(finite, values, 0.0)
    with np.errstate(invalid="ignore"):
        active = (np.abs(values) > eps).sum(axis=2)
    return {
        "min": np.where(finite, values, np.inf).min(axis=2, initial=np.inf),
        "max": np.where(finite, values, -np.inf).max(axis=2, initial=-np.inf),
        "sum": clean.sum(axis=2),
        "sumsq": np.square(clean).sum(axis=2),
        "active": active.astype(np.int64),
        "nonfinite": (~finite).sum(axis=2).astype(np.int64),
        "positions": np.full(n, flat.shape[2], dtype=np.int64),
    }


# ----------------------------------------------------------------------------- exemplar scores


@dataclass(frozen=True)
class ScoreOutputs:
    """The outputs :func:`score_model` added for one tensor: ``[N, C]`` scores, the flat
    index of each channel's maximum (``[N, C]`` int64) and the tensor's shape."""

    tensor: str
    score: str
    argmax: str
    shape: str

    def names(self) -> list[str]:
        return [self.score, self.argmax, self.shape]


SCORES = ("max", "mean")


def score_model(
    model: ModelGraph, targets: Sequence[Target], score: str = "max"
) -> tuple[bytes, list[ScoreOutputs]]:
    """The model with, for each target ``[N, C, ...]``, per-channel scores (``max`` or
    ``mean`` over positions) and the flat position of each channel's maximum as outputs.

    Two passes over each map (a ReduceMax or ReduceMean, and an ArgMax, whose ties go to the
    first position), inserted next to the node that makes it, as :func:`reduction_model` does.
    """
    if score not in SCORES:
        raise ValueError(f"score {score!r}: choose {' or '.join(SCORES)}")
    shell = model.shell()
    graph = shell.graph
    opset = opset_version(shell)
    prefix = NameAllocator.for_graph(graph).fresh_prefix("fmviz_scores")
    targets = list({t.tensor: t for t in targets}.values())
    types = _elem_types(graph, model.shape_info.elem_types, {t.tensor for t in targets})
    axes = f"{prefix}/axes"
    graph.initializer.extend([
        numpy_helper.from_array(np.array([2], dtype=np.int64), axes),
        numpy_helper.from_array(np.array([0, 0, -1], dtype=np.int64), f"{prefix}/shape3"),
    ])
    inserts: list[tuple[str, list[onnx.NodeProto]]] = []
    described: list[ScoreOutputs] = []
    for number, target in enumerate(targets):
        p = f"{prefix}/{number}"
        nodes: list[onnx.NodeProto] = []
        node = _NodeMaker(nodes, p)
        flat, elem = _flat_float(node, target, types, prefix)
        op = "ReduceMax" if score == "max" else "ReduceMean"
        names = ScoreOutputs(
            tensor=target.tensor,
            score=_add(nodes, _reduce(op, flat, f"{p}/score", opset, axes, f"{p}/score")),
            argmax=_add(nodes, helper.make_node("ArgMax", [flat], [f"{p}/argmax"],
                                                name=f"{p}/argmax", axis=2, keepdims=0)),
            shape=node("Shape", [target.tensor], "shape"),
        )
        inserts.append((target.tensor, nodes))
        graph.output.extend([
            helper.make_tensor_value_info(names.score, elem, None),
            helper.make_tensor_value_info(names.argmax, TensorProto.INT64, None),
            helper.make_tensor_value_info(names.shape, TensorProto.INT64, None),
        ])
        described.append(names)
    _insert_after_producers(graph, inserts)
    return model.serialize(shell), described


def numpy_scores(array: np.ndarray, score: str = "max") -> tuple[np.ndarray, np.ndarray]:
    """:func:`score_model`'s outputs in numpy (float64 scores, first maximum's flat index)."""
    n, c = array.shape[:2]
    flat = array.reshape(n, c, -1).astype(np.float64)
    values = flat.max(axis=2) if score == "max" else flat.mean(axis=2)
    return values, flat.argmax(axis=2).astype(np.int64)
