"""Edited copies of a loaded model, serialized for onnxruntime.

Each function here builds a new model from :meth:`ModelGraph.shell` (the model without its
weights), edits that, and serializes it with the weights (:meth:`ModelGraph.serialize`): the
loaded model is never changed, and its weights are never copied. New names come from one
:class:`~fmviz.graph.index.NameAllocator`; the model's own ``ir_version`` is kept (newer onnx
writes versions older runtimes refuse). The per-channel reductions of a scan are built the same
way in :mod:`fmviz.graph.reductions`; threading convolutions out of ``If`` branches, which
changes what the layers are, in :mod:`fmviz.graph.controlflow`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import onnx
from onnx import TensorProto, helper

from .index import NameAllocator, opset_version

if TYPE_CHECKING:  # pragma: no cover
    from .load import ModelGraph

PIN_PREFIX = "fmviz.pin."


def append_outputs(graph: onnx.GraphProto, tensors: Iterable[str]) -> list[str]:
    """Append ``tensors`` to ``graph.output`` (skipping empty names and existing outputs, typed
    from value_info where known); returns the names added."""
    existing = {o.name for o in graph.output}
    known_types = {v.name: v for v in list(graph.value_info) + list(graph.input)}
    added = []
    for name in dict.fromkeys(tensors):
        if not name or name in existing:
            continue
        info = graph.output.add()
        if name in known_types:
            info.CopyFrom(known_types[name])
        else:
            info.name = name
        existing.add(name)
        added.append(name)
    return added


def expose(model: ModelGraph, tensors: Iterable[str]) -> bytes:
    """The model with ``tensors`` added as graph outputs (an output is never added twice)."""
    shell = model.shell()
    append_outputs(shell.graph, tensors)
    return model.serialize(shell)


def pin(
    model: ModelGraph,
    tensors: Sequence[str],
    pinned: Sequence[str],
    types: Mapping[str, int] | None = None,
) -> bytes:
    """The model with ``tensors`` as outputs and each ``pinned`` tensor read by a ReduceMax
    (no axes: every axis, in every opset), so that it is computed and fused exactly as if it
    were an output, without being kept.

    Used by multi-pass captures (:mod:`fmviz.memory`): every pass must run the same kernels as
    one pass exposing every layer would, because onnxruntime's fusions depend on which tensors
    are graph outputs. When a pinned map's memory is released depends on when its ReduceMax
    runs. onnxruntime's default order is a depth-first walk back from the graph's leaf nodes,
    the last leaf in its node list first; nodes its optimizers create (the NCHWc reorders in
    front of every graph output) come last in that list, so any output left a leaf would be
    walked to first and every pinned map would wait for the end of the run. So the ReduceMax
    of every pinned tensor, every exposed tensor and every output of the model feed one
    ``Max``, the only leaf, appended latest tensor first: the walk takes them in the order
    their tensors are made, each reduction runs right after its map, and each pinned map is
    released once the following layers have read it. (Measured with onnxruntime 1.31 on the
    ResNet-50-shaped benchmark at 1024x1024: the last of 6 passes peaks at 0.9 GB, 1.5 GB with
    the reductions appended the other way round. The order changes memory, never the
    numbers.) ``types`` gives element types where the model's value_info does not.
    """
    shell = model.shell()
    graph = shell.graph
    known = {v.name: v for v in list(graph.value_info) + list(graph.input) + list(graph.output)}
    names = NameAllocator.for_graph(graph)
    producer = {out: i for i, node in enumerate(graph.node) for out in node.output if out}
    direct = {TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.INT32, TensorProto.INT64,
              TensorProto.FLOAT16}
    if opset_version(shell) >= 12:
        direct |= {TensorProto.INT8, TensorProto.UINT8}
    counter = [0]

    def fresh(base: str) -> str:
        counter[0] += 1
        return names.fresh(f"{PIN_PREFIX}{counter[0]}{base}")

    def elem_type(name: str) -> int | None:
        """The element type; None for what is not a tensor (sequences, maps) or a string."""
        info = known.get(name)
        if info is not None and info.type.WhichOneof("value") not in (None, "tensor_type"):
            return None
        elem = info.type.tensor_type.elem_type if info is not None else 0
        elem = elem or (types or {}).get(name, 0)
        return None if elem == TensorProto.STRING else elem

    def reduce(name: str) -> list[onnx.NodeProto]:
        """ReduceMax of ``name`` as a float scalar (Cast around it where its type needs)."""
        elem = elem_type(name)
        nodes = []
        source = name
        if elem and elem not in direct:
            source = fresh(".float")
            nodes.append(helper.make_node("Cast", [name], [source], to=TensorProto.FLOAT))
        nodes.append(helper.make_node("ReduceMax", [source], [fresh(".max")], keepdims=0))
        if elem != TensorProto.FLOAT:  # also when unknown: Max needs one type
            nodes.append(helper.make_node(
                "Cast", [nodes[-1].output[0]], [fresh(".cast")], to=TensorProto.FLOAT))
        return nodes

    append_outputs(graph, tensors)
    # model outputs that are not tensors (or strings) stay leaves: correct, only later freed
    model_outputs = [o.name for o in graph.output if elem_type(o.name) is not None]
    read = [n for n in dict.fromkeys([*pinned, *model_outputs]) if n]
    read.sort(key=lambda n: -producer.get(n, -1))  # latest first: see the docstring
    added, scalars = [], []
    for name in read:
        chain = reduce(name)
        added.extend(chain)
        scalars.append(chain[-1].output[0])
    if scalars:
        join = fresh("")
        added.append(helper.make_node("Max", scalars, [join]))
        graph.output.add().name = join
    graph.node.extend(added)
    return model.serialize(shell)
