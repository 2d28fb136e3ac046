"""Lookups over one ONNX graph: execution order, consumers, constants, fresh names, the opset.

Every other module of :mod:`fmviz.graph` reads the graph through these helpers, so there is one
notion of "constant", one topological order, one name allocator and one opset reader.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Iterable, Sequence

import numpy as np
import onnx
from onnx import numpy_helper

# Ops whose output is a deterministic function of their inputs: a node of one of these types
# whose inputs are all constant is itself constant (exporters write a bias as
# ``Reshape(Constant, Constant)``, ``Unsqueeze(initializer)``, ``Cast(initializer)``, ...).
_FOLDABLE = frozenset(
    {
        "Identity", "Reshape", "Unsqueeze", "Squeeze", "Flatten", "Cast", "CastLike", "Concat",
        "Transpose", "Expand", "Slice", "Gather", "Add", "Sub", "Mul", "Div", "Neg", "Abs",
        "Sqrt", "Reciprocal", "Pow", "Exp", "Log", "Max", "Min", "Tile", "ConstantOfShape",
        "Range", "Where", "Equal", "Not", "Less", "Greater", "Clip", "Relu", "Sigmoid", "Tanh",
    }
)
_FOLD_LIMIT = 1 << 20  # elements: folding is for small constants (biases, scales, shapes)


def opset_version(model: onnx.ModelProto) -> int:
    """The model's version of the default ONNX domain (1 when it imports none)."""
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    return 1


def attr_graphs(attr: onnx.AttributeProto) -> list[onnx.GraphProto]:
    """The subgraphs an attribute holds (If branches, Loop/Scan bodies)."""
    if attr.type == onnx.AttributeProto.GRAPH:
        return [attr.g]
    if attr.type == onnx.AttributeProto.GRAPHS:
        return list(attr.graphs)
    return []


def node_inputs(node: onnx.NodeProto) -> list[str]:
    """A node's inputs plus the outer-scope names its subgraphs read (they are inputs too)."""
    names = [n for n in node.input if n]
    for attr in node.attribute:
        for graph in attr_graphs(attr):
            names.extend(_outer_names(graph))
    return names


def _outer_names(graph: onnx.GraphProto) -> set[str]:
    defined = {i.name for i in graph.input} | {t.name for t in graph.initializer}
    used: set[str] = set()
    for node in graph.node:
        defined.update(node.output)
        used.update(node_inputs(node))
    return used - defined


def topological_order(nodes: Sequence[onnx.NodeProto]) -> list[onnx.NodeProto]:
    """Nodes in a valid execution order, keeping the file's order wherever it already is one."""
    producers = {out: i for i, node in enumerate(nodes) for out in node.output if out}
    waiting_on: dict[int, int] = {}
    dependents: dict[int, list[int]] = defaultdict(list)
    for i, node in enumerate(nodes):
        deps = {producers[name] for name in node_inputs(node) if name in producers} - {i}
        waiting_on[i] = len(deps)
        for dep in deps:
            dependents[dep].append(i)
    ready = [i for i, n in waiting_on.items() if n == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        i = heapq.heappop(ready)
        order.append(nodes[i])
        for j in dependents[i]:
            waiting_on[j] -= 1
            if waiting_on[j] == 0:
                heapq.heappush(ready, j)
    if len(order) != len(nodes):  # a cycle: invalid ONNX, keep the file's order
        return list(nodes)
    return order


def all_names(graph: onnx.GraphProto) -> set[str]:
    """Every tensor and node name used in ``graph`` and its subgraphs."""
    names: set[str] = set()
    names.update(i.name for i in graph.input)
    names.update(o.name for o in graph.output)
    names.update(t.name for t in graph.initializer)
    names.update(t.values.name for t in graph.sparse_initializer)
    names.update(v.name for v in graph.value_info)
    for node in graph.node:
        names.update(node.input)
        names.update(node.output)
        if node.name:
            names.add(node.name)
        for attr in node.attribute:
            for sub in attr_graphs(attr):
                names.update(all_names(sub))
    return names


class NameAllocator:
    """Fresh tensor and node names for edits: never one the graph (or an earlier edit) uses."""

    def __init__(self, taken: Iterable[str]):
        self._taken = set(taken)

    @classmethod
    def for_graph(cls, graph: onnx.GraphProto) -> NameAllocator:
        return cls(all_names(graph))

    def fresh(self, base: str) -> str:
        """``base``, or ``base~2``, ``base~3``, ... whichever is free; reserved from now on."""
        name, n = base, 1
        while name in self._taken:
            n += 1
            name = f"{base}~{n}"
        self._taken.add(name)
        return name

    def fresh_prefix(self, base: str) -> str:
        """A prefix no taken name starts with (for a family of names ``<prefix>/...``)."""
        prefix, n = base, 1
        while any(name.startswith(prefix) for name in self._taken):
            n += 1
            prefix = f"{base}{n}"
        self._taken.add(prefix)
        return prefix


class GraphIndex:
    """Lookups over one graph: who consumes a tensor, and which tensors are constant.

    A tensor is constant when it is an initializer, a ``Constant`` output, or the output of a
    deterministic node whose inputs are all constant (folded on demand, small tensors only).
    """

    def __init__(self, graph: onnx.GraphProto, opset: int | None = None):
        self.graph = graph
        self.opset = opset  # for folding nodes whose meaning changed between opsets
        self.consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
        self.constants: dict[str, onnx.TensorProto] = {t.name: t for t in graph.initializer}
        self.producers: dict[str, onnx.NodeProto] = {}
        for node in graph.node:
            for name in node_inputs(node):
                self.consumers[name].append(node)
            for out in node.output:
                if out:
                    self.producers[out] = node
            if node.op_type == "Constant" and node.output:
                for attr in node.attribute:
                    if attr.name == "value" and attr.type == onnx.AttributeProto.TENSOR:
                        self.constants[node.output[0]] = attr.t
        self._folded: dict[str, np.ndarray | None] = {}

    def users(self, tensor: str) -> list[onnx.NodeProto]:
        return self.consumers.get(tensor, [])

    def is_constant(self, name: str) -> bool:
        return name in self.constants or self.constant(name) is not None

    def constant(self, name: str) -> np.ndarray | None:
        """The value of a constant tensor, folding constant subexpressions; else None."""
        if name in self._folded:
            return self._folded[name]
        self._folded[name] = None  # guards against cycles in malformed graphs
        value = self._evaluate(name)
        self._folded[name] = value
        return value

    def _evaluate(self, name: str) -> np.ndarray | None:
        tensor = self.constants.get(name)
        if tensor is not None:
            try:
                return numpy_helper.to_array(tensor)
            except Exception:  # an element type numpy cannot hold (strings are fine)
                return None
        node = self.producers.get(name)
        if (
            node is None
            or node.op_type not in _FOLDABLE
            or node.domain not in ("", "ai.onnx")
            or any(attr_graphs(a) for a in node.attribute)
        ):
            return None
        values: list[np.ndarray | None] = []
        for item in node.input:
            if not item:
                values.append(None)
                continue
            value = self.constant(item)
            if value is None or value.size > _FOLD_LIMIT:
                return None
            values.append(value)
        return _run_node(node, values, name, self.opset)


def _run_node(
    node: onnx.NodeProto, values: list, wanted: str, opset: int | None
) -> np.ndarray | None:
    """Evaluate one node on constant inputs with onnx's reference implementation."""
    from onnx import helper
    from onnx.reference import ReferenceEvaluator

    inputs = []
    feeds = {}
    for position, (name, value) in enumerate(zip(node.input, values, strict=True)):
        if not name:
            inputs.append("")
            continue
        key = f"in{position}"
        inputs.append(key)
        feeds[key] = value
    outputs = [f"out{k}" if out else "" for k, out in enumerate(node.output)]
    single = helper.make_node(node.op_type, inputs, outputs, **{
        a.name: helper.get_attribute_value(a) for a in node.attribute
    })
    try:
        graph = helper.make_graph(
            [single], "fold",
            [helper.make_tensor_value_info(k, 0, None) for k in feeds],
            [helper.make_tensor_value_info(o, 0, None) for o in outputs if o],
        )
        imports = [helper.make_opsetid("", opset)] if opset else None
        evaluator = ReferenceEvaluator(helper.make_model(graph, opset_imports=imports))
        results = list(evaluator.run(None, feeds))
    except Exception:  # an op or attribute the reference cannot run: simply not folded
        return None
    position = list(node.output).index(wanted)
    kept = [o for o in outputs if o]
    result = np.asarray(results[kept.index(outputs[position])])
    return result if result.size <= _FOLD_LIMIT else None
