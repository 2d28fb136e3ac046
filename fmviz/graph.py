"""Pure ONNX work: load a model safely, find its convolution layers, expose their outputs.

Nothing here imports onnxruntime; everything works on the ``onnx.ModelProto``.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from .errors import ModelError, OptionError

CONV_OPS = frozenset({"Conv", "ConvTranspose", "QLinearConv", "ConvInteger"})
ACTIVATION_OPS = frozenset(
    {
        "Relu", "LeakyRelu", "PRelu", "Elu", "Selu", "Celu", "Clip", "Sigmoid", "Tanh",
        "HardSigmoid", "HardSwish", "Softplus", "Softsign", "Gelu", "Mish",
    }
)
STAGES = ("post", "pre")
_PROTOBUF_LIMIT = (2 << 30) - (64 << 20)  # protobuf serializes at most 2 GB; keep a margin

# Decomposed activations: the op types along the "gate" branch of x * gate(x), in order.
# The optional trailing constant Mul/Div after the join (the /6 of hard-swish, the *0.5 of GELU)
# is absorbed by _match_gated.
_GATE_PATTERNS: dict[tuple[str, ...], str] = {
    ("Sigmoid",): "SiLU",
    ("Mul", "Sigmoid"): "Swish",  # x * sigmoid(beta * x)
    ("HardSigmoid",): "HardSwish",
    ("Add", "Clip"): "HardSwish",
    ("Add", "Clip", "Div"): "HardSwish",
    ("Add", "Clip", "Mul"): "HardSwish",
    ("Softplus", "Tanh"): "Mish",
    ("Div", "Erf", "Add"): "Gelu",
    ("Mul", "Erf", "Add"): "Gelu",
    ("Div", "Erf", "Add", "Mul"): "Gelu",
    ("Mul", "Erf", "Add", "Mul"): "Gelu",
}
_ABSORB_AFTER = frozenset({"HardSwish", "Gelu"})


@dataclass(frozen=True)
class ModelInput:
    """One graph input: its name, shape (int, symbolic str or None per dim) and numpy dtype."""

    name: str
    shape: tuple[int | str | None, ...] | None
    dtype: np.dtype | None

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "shape": list(self.shape) if self.shape is not None else None,
            "dtype": str(self.dtype) if self.dtype is not None else None,
        }


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


@dataclass
class ModelGraph:
    """A loaded model and what fmviz found in it."""

    path: Path
    proto: onnx.ModelProto
    sha256: str
    inputs: list[ModelInput]
    layers: list[Layer]
    unreachable: list[UnreachableLayer] = field(default_factory=list)

    @property
    def opset(self) -> int | None:
        for entry in self.proto.opset_import:
            if entry.domain in ("", "ai.onnx"):
                return entry.version
        return None

    def to_json(self) -> dict:
        return {
            "path": str(self.path),
            "sha256": self.sha256,
            "opset": self.opset,
            "ir_version": self.proto.ir_version,
            "producer": self.proto.producer_name or None,
            "inputs": [i.to_json() for i in self.inputs],
        }

    def exposed_model_bytes(self, tensors: Iterable[str]) -> bytes:
        """Serialize the model with ``tensors`` added as graph outputs (see :func:`expose`)."""
        return expose(self.proto, tensors)


def format_shape(shape) -> str:
    """``[N, 3, 224, 224]`` for people: symbolic dims by name, unknown ones as ``?``."""
    if shape is None:
        return "?"
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


# ----------------------------------------------------------------------------- loading


def load_model(path: str | os.PathLike, expose_if: bool = False) -> ModelGraph:
    """Load an ONNX file safely and find its layers.

    External data is read only from inside the model's folder; anything that is not an ONNX
    model raises :class:`ModelError` naming the file. With ``expose_if``, convolutions inside
    ``If`` branches are threaded out as extra outputs of their ``If`` (see
    :mod:`fmviz.controlflow`) and become layers; those in ``Loop``/``Scan`` stay unreachable.
    """
    path = Path(path)
    if not path.exists():
        raise ModelError(f"{path}: no such file")
    if path.is_dir():
        raise ModelError(f"{path}: is a folder, not an ONNX model file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if not data:
        raise ModelError(f"{path}: empty file, not an ONNX model")
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(data)
    except Exception as exc:  # protobuf raises DecodeError and, on some inputs, others
        raise ModelError(f"{path}: not an ONNX model (cannot parse it as protobuf)") from exc
    if not proto.HasField("graph") or not proto.opset_import or proto.ir_version <= 0:
        raise ModelError(f"{path}: not an ONNX model (no graph, opset or IR version)")
    bad = _non_text_string(proto)
    if bad is not None:  # protobuf hands invalid UTF-8 in a string field back as bytes
        raise ModelError(f"{path}: not a valid ONNX model (a name is not UTF-8 text: {bad[:40]!r})")
    _load_external_data(proto, path)
    sha256 = hashlib.sha256(data).hexdigest()
    del data
    try:
        shapes = _infer_shapes(proto)
        layers = find_layers(proto, shapes)
        inputs = _model_inputs(proto, shapes)
        unreachable = find_unreachable(proto.graph)
    except Exception as exc:
        # A malformed graph (an attribute of the wrong type, an unknown element type, ...) can
        # trip the analysis anywhere. When onnx's checker confirms the model is invalid, that
        # is the user's error and the checker says why; otherwise it is a bug in fmviz.
        reason = _checker_reason(proto)
        if reason is None:
            raise
        raise ModelError(f"{path}: not a valid ONNX model ({reason})") from exc
    if expose_if and any(u.parent_op == "If" for u in unreachable):
        from .controlflow import thread_if_outputs

        proto, threaded = thread_if_outputs(proto, start_index=len(layers))
        layers = layers + threaded
        # what could not be threaded (Loop and Scan bodies, or convs under them) stays listed
        still_inside = find_unreachable(proto.graph)
        threaded_names = {layer.name for layer in threaded}
        unreachable = [u for u in still_inside if u.name not in threaded_names]
    return ModelGraph(
        path=path,
        proto=proto,
        sha256=sha256,
        inputs=inputs,
        layers=layers,
        unreachable=unreachable,
    )


def _checker_reason(proto: onnx.ModelProto) -> str | None:
    """The first line of onnx.checker's complaint about ``proto``, or None if it passes."""
    try:
        onnx.checker.check_model(proto)
    except Exception as exc:  # ValidationError, or anything the checker trips on itself
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        return lines[0] if lines else type(exc).__name__
    return None


def _non_text_string(message) -> bytes | None:
    """The first string field (names, op types, domains, ... at any depth) that is not valid
    UTF-8, else None. Tensor data are bytes or numbers and are not visited."""
    from google.protobuf.descriptor import FieldDescriptor

    string, nested = FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_MESSAGE
    for descriptor, value in message.ListFields():
        if descriptor.type != string and descriptor.type != nested:
            continue
        repeated = (
            descriptor.is_repeated
            if hasattr(descriptor, "is_repeated")
            else descriptor.label == FieldDescriptor.LABEL_REPEATED
        )
        for item in value if repeated else (value,):
            if descriptor.type == string:
                if not isinstance(item, str):
                    return bytes(item)
            else:
                found = _non_text_string(item)
                if found is not None:
                    return found
    return None


def _load_external_data(proto: onnx.ModelProto, path: Path) -> None:
    """Read every tensor's external data into ``proto``, only from regular files inside the
    model's folder, with every declared size checked (against its file, its shape and a budget)
    before anything is read.

    Every tensor that can carry external data is checked the same way: initializers, sparse
    initializers' values and indices, attribute tensors (``t``, ``tensors``, sparse ones), in
    the main graph, every subgraph and every function. onnxruntime would resolve what is left
    unloaded against the current folder, so nothing is left. The budget is
    ``FMVIZ_MAX_EXTERNAL_BYTES``, else the machine's memory.
    """
    import stat as stat_module

    from onnx import TensorProto

    def tensors_of_graph(graph):
        yield from graph.initializer
        for sparse in graph.sparse_initializer:
            yield sparse.values
            yield sparse.indices
        for node in graph.node:
            yield from tensors_of_node(node)

    def tensors_of_node(node):
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            for sparse in [*([attribute.sparse_tensor] if attribute.HasField("sparse_tensor")
                             else []), *attribute.sparse_tensors]:
                yield sparse.values
                yield sparse.indices
            if attribute.HasField("g"):
                yield from tensors_of_graph(attribute.g)
            for graph in attribute.graphs:
                yield from tensors_of_graph(graph)

    def all_tensors():
        yield from tensors_of_graph(proto.graph)
        for function in proto.functions:
            for node in function.node:
                yield from tensors_of_node(node)

    def size_text(count: int) -> str:
        value, unit = float(count), "bytes"
        for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):  # noqa: B007 - the last one is used
            if value < 1024 or unit == "TiB":
                break
            value /= 1024
        return f"{count} bytes" if unit == "bytes" else f"{value:.1f} {unit}"

    def declared_bytes(tensor) -> int | None:
        count = int(np.prod([int(d) for d in tensor.dims], dtype=np.int64)) if tensor.dims else 1
        if tensor.data_type in (TensorProto.STRING, TensorProto.UNDEFINED):
            return None
        if tensor.data_type in {getattr(TensorProto, n, -1)
                                for n in ("INT4", "UINT4", "FLOAT4E2M1")}:
            return (count + 1) // 2
        try:
            return count * onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
        except Exception:
            return None

    base = Path(os.path.realpath(path.parent))
    external = [t for t in all_tensors() if t.data_location == TensorProto.EXTERNAL]
    if not external:
        return
    env = os.environ.get("FMVIZ_MAX_EXTERNAL_BYTES", "").strip()
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        memory = 16 << 30
    budget = int(env) if env.isdigit() and int(env) > 0 else memory
    plan = []  # (tensor, file, offset, length)
    per_file: dict[Path, int] = {}
    for tensor in external:
        entries = {entry.key: entry.value for entry in tensor.external_data}
        location = entries.get("location", "")
        name = tensor.name or "(unnamed)"
        if "\0" in location:
            raise ModelError(
                f"{path}: external data location {location!r} of tensor {name!r} holds a NUL "
                "byte; not a file name"
            )
        target = Path(os.path.realpath(base / location)) if location else base
        if not location or os.path.isabs(location) or base not in target.parents:
            raise ModelError(
                f"{path}: external data {location!r} of tensor {name!r} "
                "points outside the model's folder; refusing to read it"
            )
        if os.path.islink(base / location):  # as onnx does: never through a link
            raise ModelError(
                f"{path}: external data file {location!r} of tensor {name!r} is a symbolic "
                "link; refusing to read it"
            )
        try:
            info = os.stat(target)
        except OSError:
            raise ModelError(f"{path}: external data file {location!r} is missing") from None
        if not stat_module.S_ISREG(info.st_mode):
            raise ModelError(
                f"{path}: external data file {location!r} of tensor {name!r} is not a regular "
                "file; refusing to read it"
            )
        numbers = {}
        for key in ("offset", "length"):
            text = entries.get(key)
            if text is None:
                continue
            if not text.strip().isdigit():
                raise ModelError(
                    f"{path}: external data of tensor {name!r} has an invalid {key} {text!r}"
                )
            numbers[key] = int(text)
        offset = numbers.get("offset", 0)
        expected = declared_bytes(tensor)
        length = numbers.get("length", expected)
        if length is None:
            length = max(0, info.st_size - offset)
        if expected is not None and length != expected:
            raise ModelError(
                f"{path}: external data of tensor {name!r} declares {length} bytes; its shape "
                f"{list(tensor.dims)} needs {expected}"
            )
        if offset + length > info.st_size:
            raise ModelError(
                f"{path}: external data of tensor {name!r} needs bytes {offset}..{offset + length}"
                f" of {location!r}, which holds {info.st_size}"
            )
        per_file[target] = per_file.get(target, 0) + length
        plan.append((tensor, target, offset, length, location, info))
    total = sum(item[3] for item in plan)
    if total > budget:
        raise ModelError(
            f"{path}: external data declares {size_text(total)} in all, over the limit of "
            f"{size_text(budget)} (FMVIZ_MAX_EXTERNAL_BYTES raises it)"
        )
    for target, declared in per_file.items():
        info = os.stat(target)
        stored = getattr(info, "st_blocks", None)
        if stored is not None and declared >= (1 << 20) and stored * 512 < declared // 2:
            location = os.path.relpath(target, base)
            raise ModelError(
                f"{path}: external data file {location!r} is sparse on disk ({size_text(declared)}"
                f" declared, {size_text(stored * 512)} stored); refusing holes as weights"
            )
    for tensor, target, offset, length, location, _info in plan:
        try:
            with open(target, "rb") as handle:
                handle.seek(offset)
                data = handle.read(length)
        except OSError as exc:
            raise ModelError(
                f"{path}: cannot read external data file {location!r} "
                f"({exc.strerror or type(exc).__name__})"
            ) from exc
        if len(data) != length:
            raise ModelError(
                f"{path}: external data file {location!r} ended early (tensor {tensor.name!r})"
            )
        tensor.raw_data = data
        tensor.data_location = TensorProto.DEFAULT
        del tensor.external_data[:]


_SMALL_INITIALIZER = 1024  # elements: shape/axes/scale constants, kept for shape inference


def weightless_copy(
    proto: onnx.ModelProto, input_shapes: Mapping[str, Sequence[int]] | None = None
) -> onnx.ModelProto:
    """A copy of ``proto`` for shape inference, without its weights.

    Float (and other large) initializers become typed graph inputs of the same shape; small
    ones (the shape, axes and scale constants whose values Reshape, Slice and Resize need) are
    kept. onnx's inference copies the whole model it is given, so on a 100 MB model this takes
    it from about half a second to milliseconds. ``input_shapes`` replaces declared input
    shapes (concrete feeds); without it the declared inputs, outputs and value_info are kept.
    """
    from onnx import helper

    source = proto.graph
    model = onnx.ModelProto()
    model.ir_version = proto.ir_version
    model.opset_import.extend(proto.opset_import)
    model.functions.extend(proto.functions)
    graph = model.graph
    graph.name = source.name
    graph.node.extend(source.node)
    initializers = {t.name for t in source.initializer}
    for info in source.input:
        if info.name in initializers:
            continue
        shape = input_shapes.get(info.name) if input_shapes is not None else None
        elem = info.type.tensor_type.elem_type if info.type.HasField("tensor_type") else 0
        if shape is not None and elem:
            graph.input.append(helper.make_tensor_value_info(info.name, elem, list(shape)))
        else:
            graph.input.append(info)
    for tensor in source.initializer:
        if int(np.prod(tensor.dims, dtype=np.int64)) <= _SMALL_INITIALIZER:
            graph.initializer.append(tensor)
        else:
            graph.input.append(
                helper.make_tensor_value_info(tensor.name, tensor.data_type, list(tensor.dims))
            )
    if input_shapes is None:
        graph.value_info.extend(source.value_info)
        graph.output.extend(source.output)
    else:  # declared output shapes may disagree with the feeds' (a fixed export size)
        for info in source.output:
            elem = info.type.tensor_type.elem_type if info.type.HasField("tensor_type") else 0
            graph.output.append(helper.make_tensor_value_info(info.name, elem, None))
    return model


def _infer_shapes(proto: onnx.ModelProto) -> dict[str, tuple[int | str | None, ...]]:
    """Shapes of every tensor shape inference can reach; an empty dict if it fails."""
    shapes: dict[str, tuple] = {}
    try:
        inferred = onnx.shape_inference.infer_shapes(
            weightless_copy(proto), strict_mode=False, data_prop=True
        )
        graph = inferred.graph
    except Exception:  # inference is a nicety: models it cannot handle still run
        graph = proto.graph
    for info in list(graph.input) + list(graph.value_info) + list(graph.output):
        shape = _shape_of(info.type)
        if shape is not None:
            shapes[info.name] = shape
    return shapes


def _shape_of(type_proto: onnx.TypeProto) -> tuple[int | str | None, ...] | None:
    if not type_proto.HasField("tensor_type") or not type_proto.tensor_type.HasField("shape"):
        return None
    dims = []
    for dim in type_proto.tensor_type.shape.dim:
        if dim.HasField("dim_value"):
            dims.append(int(dim.dim_value))
        elif dim.HasField("dim_param"):
            dims.append(dim.dim_param)
        else:
            dims.append(None)
    return tuple(dims)


def _model_inputs(proto: onnx.ModelProto, shapes: dict) -> list[ModelInput]:
    initializers = {t.name for t in proto.graph.initializer}
    inputs = []
    for info in proto.graph.input:
        if info.name in initializers:  # old exporters list weights as inputs
            continue
        elem = info.type.tensor_type.elem_type if info.type.HasField("tensor_type") else 0
        try:
            dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem)) if elem else None
        except (KeyError, ValueError, TypeError):  # an element type this onnx does not know
            dtype = None  # never fed a file; onnxruntime will say what it thinks of it
        inputs.append(ModelInput(info.name, _shape_of(info.type), dtype))
    return inputs


# ----------------------------------------------------------------------------- layers


def topological_order(nodes: Sequence[onnx.NodeProto], known: set[str]) -> list[onnx.NodeProto]:
    """Nodes in a valid execution order, keeping the file's order wherever it already is one."""
    producers = {out: i for i, node in enumerate(nodes) for out in node.output if out}
    waiting_on: dict[int, int] = {}
    dependents: dict[int, list[int]] = defaultdict(list)
    for i, node in enumerate(nodes):
        deps = {producers[name] for name in _node_inputs(node) if name in producers} - {i}
        waiting_on[i] = len(deps)
        for dep in deps:
            dependents[dep].append(i)
    import heapq

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


def _node_inputs(node: onnx.NodeProto) -> list[str]:
    """A node's inputs plus the outer-scope names its subgraphs read (they are inputs too)."""
    names = [n for n in node.input if n]
    for attr in node.attribute:
        for graph in _attr_graphs(attr):
            names.extend(_outer_names(graph))
    return names


def _attr_graphs(attr: onnx.AttributeProto) -> list[onnx.GraphProto]:
    if attr.type == onnx.AttributeProto.GRAPH:
        return [attr.g]
    if attr.type == onnx.AttributeProto.GRAPHS:
        return list(attr.graphs)
    return []


def _outer_names(graph: onnx.GraphProto) -> set[str]:
    defined = {i.name for i in graph.input} | {t.name for t in graph.initializer}
    used: set[str] = set()
    for node in graph.node:
        defined.update(node.output)
        used.update(_node_inputs(node))
    return used - defined


class GraphIndex:
    """Lookups over one graph: who consumes a tensor, which tensors are constants."""

    def __init__(self, graph: onnx.GraphProto):
        self.graph = graph
        self.consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
        self.constants: dict[str, onnx.TensorProto] = {t.name: t for t in graph.initializer}
        self.graph_outputs = {o.name for o in graph.output}
        for node in graph.node:
            for name in _node_inputs(node):
                self.consumers[name].append(node)
            if node.op_type == "Constant" and node.output:
                for attr in node.attribute:
                    if attr.name == "value" and attr.type == onnx.AttributeProto.TENSOR:
                        self.constants[node.output[0]] = attr.t

    def constant(self, name: str) -> np.ndarray | None:
        tensor = self.constants.get(name)
        if tensor is None:
            return None
        try:
            return numpy_helper.to_array(tensor)
        except Exception:
            return None

    def is_constant(self, name: str) -> bool:
        return name in self.constants

    def users(self, tensor: str) -> list[onnx.NodeProto]:
        return self.consumers.get(tensor, [])


def find_layers(
    proto: onnx.ModelProto, shapes: dict[str, tuple] | None = None
) -> list[Layer]:
    """The main graph's convolutions in topological order, each with its pre and post tensor."""
    shapes = shapes or {}
    graph = proto.graph
    index = GraphIndex(graph)
    known = {i.name for i in graph.input} | set(index.constants)
    layers: list[Layer] = []
    for node in topological_order(graph.node, known):
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


def follow_activation(
    tensor: str,
    index: GraphIndex,
    channels: int | None = None,
    spatial_rank: int | None = None,
) -> tuple[str, str | None]:
    """From a conv output, follow per-channel affine steps to one activation.

    Returns the activation's output tensor and its name, or the end of the affine chain and
    ``None`` when no activation follows.
    """
    current = tensor
    for _ in range(64):  # affine chains are short; the bound guards against odd graphs
        users = index.users(current)
        gated = _match_gated(current, users, index)
        if gated is not None:
            return gated
        if len(users) != 1:
            return current, None
        node = users[0]
        if node.op_type in ACTIVATION_OPS and node.input and node.input[0] == current:
            return node.output[0], _activation_name(node, index)
        if _is_affine_step(node, current, index, channels, spatial_rank):
            current = node.output[0]
            continue
        return current, None
    return current, None


def _is_affine_step(
    node: onnx.NodeProto,
    tensor: str,
    index: GraphIndex,
    channels: int | None,
    spatial_rank: int | None = None,
) -> bool:
    if not node.output or not node.output[0]:
        return False
    if node.op_type == "Identity":
        return True
    if node.op_type == "BatchNormalization":
        return node.input[0] == tensor
    if node.op_type in ("Add", "Sub", "Mul", "Div") and len(node.input) == 2:
        a, b = node.input
        if node.op_type == "Div" and a != tensor:
            return False  # c / x is not affine in x
        other = b if a == tensor else a
        if other == tensor or not index.is_constant(other):
            return False
        value = index.constant(other)
        if value is None:
            return False
        # per-channel: a scalar, or one value per channel laid along axis 1
        return value.size == 1 or _broadcasts_per_channel(value.shape, channels, spatial_rank)
    return False


def _broadcasts_per_channel(
    shape: tuple[int, ...], channels: int | None, spatial_rank: int | None
) -> bool:
    """True when a constant of ``shape`` lines up with axis 1 of an [N, C, *spatial] map.

    Broadcasting aligns shapes from the right, so a ``[C]`` constant would scale the last
    spatial axis, not the channels: it must be ``[C, 1, 1]`` (or ``[1, C, 1, 1]``) for 2-D maps.
    """
    if channels is None or spatial_rank is None:
        return False
    dims = list(shape)
    while dims and dims[0] == 1 and len(dims) > spatial_rank + 1:
        dims.pop(0)  # leading 1s (the batch axis) do not matter
    return dims == [channels] + [1] * spatial_rank


def _activation_name(node: onnx.NodeProto, index: GraphIndex) -> str:
    if node.op_type == "Clip":
        low, high = _clip_bounds(node, index)
        if low == 0 and high == 6:
            return "ReLU6"
    return node.op_type


def _clip_bounds(node: onnx.NodeProto, index: GraphIndex) -> tuple[float | None, float | None]:
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    if "min" in attrs or "max" in attrs:  # opset < 11
        return attrs.get("min"), attrs.get("max")
    bounds: list[float | None] = []
    for position in (1, 2):
        value = None
        if len(node.input) > position and node.input[position]:
            array = index.constant(node.input[position])
            value = float(array.reshape(-1)[0]) if array is not None and array.size else None
        bounds.append(value)
    return bounds[0], bounds[1]


def _match_gated(
    tensor: str, users: list[onnx.NodeProto], index: GraphIndex
) -> tuple[str, str] | None:
    """Recognise ``x * gate(x)`` (SiLU, hard-swish, Mish, GELU with Erf) starting at ``tensor``."""
    if len(users) != 2:
        return None
    branches = [_branch_to_join(tensor, user, index) for user in users]
    if any(b is None for b in branches):
        return None
    (ops_a, join_a), (ops_b, join_b) = branches
    if join_a is not join_b or join_a.op_type != "Mul":
        return None
    # one branch is x itself (possibly scaled, e.g. x * 0.5 in GELU), the other the gate
    gate_ops, identity_ops = (ops_a, ops_b) if len(ops_a) >= len(ops_b) else (ops_b, ops_a)
    if identity_ops not in ((), ("Mul",), ("Div",)):
        return None
    name = _GATE_PATTERNS.get(gate_ops)
    if name is None:
        return None
    out = join_a.output[0]
    if name in _ABSORB_AFTER and not identity_ops and gate_ops[-1] not in ("Div", "Mul"):
        following = index.users(out)
        if len(following) == 1 and len(following[0].input) == 2:
            step = following[0]
            first, second = step.input
            if (step.op_type == "Div" and first == out and index.is_constant(second)) or (
                step.op_type == "Mul"  # 0.5 * y is as common as y * 0.5
                and out in (first, second)
                and index.is_constant(second if first == out else first)
            ):
                out = step.output[0]
    return out, name


def _branch_to_join(
    tensor: str, first: onnx.NodeProto, index: GraphIndex
) -> tuple[tuple[str, ...], onnx.NodeProto] | None:
    """Follow a chain of single-input steps from ``tensor`` through ``first`` to a binary join.

    The join is the first node whose inputs are two non-constant tensors. Returns the op types
    walked before the join and the join node, or None if the chain branches or leaves the
    pattern.
    """
    ops: list[str] = []
    node, current = first, tensor
    for _ in range(8):
        variable_inputs = [n for n in node.input if n and not index.is_constant(n)]
        if len(variable_inputs) == 2 and current in variable_inputs:
            return tuple(ops), node
        if variable_inputs != [current] or not node.output:
            return None
        ops.append(node.op_type)
        current = node.output[0]
        following = index.users(current)
        if len(following) != 1:
            return None
        node = following[0]
    return None


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
                for sub in _attr_graphs(attribute):
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
                    f"--layers {pattern!r} matches no layer: the model has no reachable layer"
                )
            sample = ", ".join(repr(layer.name) for layer in layers[:5])
            more = f" (and {len(layers) - 5} more)" if len(layers) > 5 else ""
            raise OptionError(
                f"--layers {pattern!r} matches no layer; layers are {sample}{more}"
                " ('fmviz layers MODEL' lists them all)"
            )
        chosen.update(hits)
    return [layer for layer in layers if layer.index in chosen]


def _pattern_matcher(pattern: str):
    if pattern.startswith("re:"):
        try:
            regex = re.compile(pattern[3:])
        except re.error as exc:
            raise OptionError(f"--layers {pattern!r}: invalid regular expression ({exc})") from exc
        return lambda name: regex.search(name) is not None
    return lambda name: fnmatch.fnmatchcase(name, pattern)


# ----------------------------------------------------------------------------- exposing


def expose(proto: onnx.ModelProto, tensors: Iterable[str]) -> bytes:
    """Serialize ``proto`` with ``tensors`` added as graph outputs.

    Tensors that already are outputs are not added twice, empty names are skipped, and the
    model's own ``ir_version`` is kept (newer onnx writes versions older runtimes refuse). The
    outputs are appended, serialized and removed again, so the (possibly large) model is never
    copied in memory.
    """
    if proto.ByteSize() >= _PROTOBUF_LIMIT:
        raise ModelError(
            "the model with its weights is over 2 GB, more than protobuf can hand to "
            "onnxruntime in memory; fmviz does not support such models yet"
        )
    graph = proto.graph
    added = append_outputs(graph, tensors)
    try:
        return proto.SerializeToString()
    finally:
        for _ in range(added):
            graph.output.pop()


def append_outputs(graph: onnx.GraphProto, tensors: Iterable[str]) -> int:
    """Append ``tensors`` to ``graph.output`` (skipping empty names and existing outputs,
    typed from value_info where known); returns how many were added, for the caller to pop."""
    existing = {o.name for o in graph.output}
    known_types = {v.name: v for v in list(graph.value_info) + list(graph.input)}
    added = 0
    for name in dict.fromkeys(tensors):
        if not name or name in existing:
            continue
        info = graph.output.add()
        if name in known_types:
            info.CopyFrom(known_types[name])
        else:
            info.name = name
        existing.add(name)
        added += 1
    return added
