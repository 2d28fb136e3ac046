"""Per-channel reductions computed inside onnxruntime, next to each captured layer.

A dead-filter scan needs, for every channel of every layer, a handful of numbers per input: the
minimum, maximum, sum, sum of squares and the number of positions with |a| > eps. Pulling whole
feature maps out of the session only to reduce them in numpy would cost a copy of every map and
several passes over it in Python; instead :func:`reduction_model` adds nodes to the graph that
reduce each captured tensor ``[N, C, ...]`` to ``[N, C]`` arrays, so only tiny arrays leave the
session and the reductions run while the map is still warm in the cache.

For a captured tensor ``x`` the added nodes are::

    x ─(Cast to float when x is not float/double)─ Reshape [0, 0, -1] ─┬─ ReduceMin       ─▶ min
                                                                        ├─ ReduceMax       ─▶ max
                                                                        ├─ ReduceSum       ─▶ sum
                                                                        ├─ ReduceSumSquare ─▶ sumsq
                                                                        ├─ Abs ─ Greater(eps) ─
                                                                        │  Cast(int32) ─ ReduceSum ─▶ active
                                                                        └─ Shape           ─▶ shape

(``Abs`` is left out where the activation cannot be negative: ReLU, ReLU6, sigmoid, ...), all
reducing axis 2 with ``keepdims=0``. ``max |a|`` is ``max(max, -min)``, so it needs no pass of its
own. The Reduce ops use the form the model's opset defines: ``axes`` as an input from opset 18
(opset 13 for ReduceSum), as an attribute before. The model's own ``ir_version`` is kept.

Non-finite values: ReduceMin/ReduceMax do not handle NaN consistently, so their results cannot
be trusted when a map holds NaN or infinity. Any NaN or infinity makes that input's ``sum`` (or
``sumsq``) non-finite, which is how a caller detects it (see ``fmviz.scan``): such batches are
run again with the raw maps and reduced in numpy, where non-finite values are counted and left
out of min, max, sum and sum of squares.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# Activations whose output is never negative: |a| = a, so the Abs pass can be skipped.
NON_NEGATIVE_ACTIVATIONS = frozenset(
    {"Relu", "ReLU6", "Sigmoid", "HardSigmoid", "Softplus"}
)
FIELDS = ("min", "max", "sum", "sumsq", "active")
_FLOAT_TYPES = (TensorProto.FLOAT, TensorProto.DOUBLE)
_QUANTIZED_OPS = frozenset({"QLinearConv", "ConvInteger"})


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


def default_opset(proto: onnx.ModelProto) -> int:
    for entry in proto.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    return 1


def _reduce(op: str, x: str, out: str, opset: int, axes_name: str, name: str) -> onnx.NodeProto:
    axes_as_input = opset >= (13 if op == "ReduceSum" else 18)
    if axes_as_input:
        return helper.make_node(op, [x, axes_name], [out], name=name, keepdims=0)
    return helper.make_node(op, [x], [out], name=name, axes=[2], keepdims=0)


def _elem_types(proto: onnx.ModelProto, names: set[str]) -> dict[str, int]:
    """Element types of ``names`` from the graph's declarations, else from shape inference."""
    graph = proto.graph
    types: dict[str, int] = {}
    for info in list(graph.input) + list(graph.value_info) + list(graph.output):
        if info.name in names and info.type.HasField("tensor_type"):
            if info.type.tensor_type.elem_type:
                types[info.name] = info.type.tensor_type.elem_type
    if names - set(types):
        try:
            inferred = onnx.shape_inference.infer_shapes(proto, strict_mode=False)
        except Exception:  # inference is best effort; unknown types are handled by the caller
            return types
        for info in list(inferred.graph.value_info) + list(inferred.graph.output):
            if info.name in names and info.name not in types:
                elem = info.type.tensor_type.elem_type if info.type.HasField("tensor_type") else 0
                if elem:
                    types[info.name] = elem
    return types


def _unique_prefix(graph: onnx.GraphProto, base: str) -> str:
    taken = {n for node in graph.node for n in list(node.output) + [node.name]}
    taken |= {i.name for i in graph.input} | {t.name for t in graph.initializer}
    prefix, n = base, 1
    while any(name.startswith(prefix) for name in taken):
        n += 1
        prefix = f"{base}{n}"
    return prefix


def reduction_model(
    proto: onnx.ModelProto, targets: Sequence[Target], eps: float
) -> tuple[bytes, list[ReducedOutputs]]:
    """Serialize ``proto`` with per-channel reductions of each target added as outputs.

    The nodes of each target are inserted right after the node that produces it, so that
    onnxruntime (which orders ready nodes by their position) reduces a map as soon as it exists
    rather than keeping every map alive until the end. ``proto`` is restored before returning:
    the (possibly large) model is never copied.
    """
    graph = proto.graph
    opset = default_opset(proto)
    prefix = _unique_prefix(graph, "fmviz_stats")
    targets = list({t.tensor: t for t in targets}.values())
    types = _elem_types(proto, {t.tensor for t in targets})
    producer_position = {out: i for i, node in enumerate(graph.node) for out in node.output if out}

    initializers = [
        numpy_helper.from_array(np.array([2], dtype=np.int64), f"{prefix}/axes"),
        numpy_helper.from_array(np.array([0, 0, -1], dtype=np.int64), f"{prefix}/shape3"),
        numpy_helper.from_array(np.array(eps, dtype=np.float32), f"{prefix}/eps_f32"),
        numpy_helper.from_array(np.array(eps, dtype=np.float64), f"{prefix}/eps_f64"),
    ]
    axes = f"{prefix}/axes"
    inserts: list[tuple[int, list[onnx.NodeProto]]] = []
    outputs: list[onnx.ValueInfoProto] = []
    described: list[ReducedOutputs] = []
    for number, target in enumerate(targets):
        p = f"{prefix}/{number}"
        x = target.tensor
        nodes: list[onnx.NodeProto] = []
        elem = types.get(x)
        if elem is None:
            elem = TensorProto.UINT8 if target.quantized else TensorProto.FLOAT
            needs_cast = target.quantized
        else:
            needs_cast = elem not in _FLOAT_TYPES
        if needs_cast:
            nodes.append(helper.make_node("Cast", [x], [f"{p}/float"], name=f"{p}/cast",
                                          to=TensorProto.FLOAT))
            x, elem = f"{p}/float", TensorProto.FLOAT
        nodes.append(helper.make_node("Reshape", [x, f"{prefix}/shape3"], [f"{p}/flat"],
                                      name=f"{p}/reshape"))
        flat = f"{p}/flat"
        names = ReducedOutputs(
            tensor=target.tensor,
            min=f"{p}/min",
            max=f"{p}/max",
            sum=f"{p}/sum",
            sumsq=f"{p}/sumsq",
            active=f"{p}/active",
            shape=f"{p}/shape",
        )
        nodes.append(_reduce("ReduceMin", flat, names.min, opset, axes, f"{p}/reduce_min"))
        nodes.append(_reduce("ReduceMax", flat, names.max, opset, axes, f"{p}/reduce_max"))
        nodes.append(_reduce("ReduceSum", flat, names.sum, opset, axes, f"{p}/reduce_sum"))
        nodes.append(
            _reduce("ReduceSumSquare", flat, names.sumsq, opset, axes, f"{p}/reduce_sumsq")
        )
        magnitude = flat
        if not target.non_negative:
            nodes.append(helper.make_node("Abs", [flat], [f"{p}/abs"], name=f"{p}/abs"))
            magnitude = f"{p}/abs"
        eps_name = f"{prefix}/eps_f64" if elem == TensorProto.DOUBLE else f"{prefix}/eps_f32"
        nodes.append(helper.make_node("Greater", [magnitude, eps_name], [f"{p}/is_active"],
                                      name=f"{p}/greater"))
        nodes.append(helper.make_node("Cast", [f"{p}/is_active"], [f"{p}/active_int"],
                                      name=f"{p}/cast_active", to=TensorProto.INT32))
        nodes.append(_reduce("ReduceSum", f"{p}/active_int", names.active, opset, axes,
                             f"{p}/reduce_active"))
        nodes.append(helper.make_node("Shape", [target.tensor], [names.shape], name=f"{p}/shape"))
        position = producer_position.get(target.tensor, -1)  # -1: a graph input
        inserts.append((position, nodes))
        value_type = elem
        for name in (names.min, names.max, names.sum, names.sumsq):
            outputs.append(helper.make_tensor_value_info(name, value_type, None))
        outputs.append(helper.make_tensor_value_info(names.active, TensorProto.INT32, None))
        outputs.append(helper.make_tensor_value_info(names.shape, TensorProto.INT64, None))
        described.append(names)

    # Insert from the back so earlier positions stay valid.
    inserts.sort(key=lambda item: item[0])
    inserted: list[int] = []  # final indices of the inserted nodes, for the cleanup
    offset_by_position = 0
    for position, nodes in inserts:
        at = position + 1 + offset_by_position
        for k, node in enumerate(nodes):
            graph.node.insert(at + k, node)
        inserted.extend(range(at, at + len(nodes)))
        offset_by_position += len(nodes)
    graph.initializer.extend(initializers)
    graph.output.extend(outputs)
    try:
        return proto.SerializeToString(), described
    finally:
        for _ in outputs:
            graph.output.pop()
        for _ in initializers:
            graph.initializer.pop()
        for index in reversed(inserted):
            del graph.node[index]


def numpy_reductions(array: np.ndarray, eps: float) -> dict[str, np.ndarray]:
    """The same reductions in numpy (float64), for checks and for maps with NaN or infinity.

    Returns ``[N, C]`` arrays ``min``, ``max``, ``sum``, ``sumsq`` over the finite values,
    ``active`` (positions with |a| > eps; infinity counts, NaN does not), ``nonfinite`` and
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
