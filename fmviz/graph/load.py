"""Loading a model safely, and the loaded model: its inputs, layers and weights.

External data is read only from inside the model's folder; anything that is not an ONNX model
raises :class:`~fmviz.errors.ModelError` naming the file. A loaded :class:`ModelGraph` is never
edited in place: :mod:`fmviz.graph.edits` builds each edited model from its weightless
:meth:`~ModelGraph.shell` and the weights serialized once (:meth:`~ModelGraph.serialize`).
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import onnx

from ..errors import ModelError
from .index import opset_version
from .layers import Layer, UnreachableLayer, find_layers, find_unreachable
from .shapes import ShapeInfo, infer_shapes, shape_of

_PROTOBUF_LIMIT = (2 << 30) - (64 << 20)  # protobuf serializes at most 2 GB; keep a margin
_GRAPH_FIELD = 7  # ModelProto.graph


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



def _integers(text: str | None) -> list[int]:
    if not text or len(text) > 200:
        return []
    return [int(n) for n in re.findall(r"-?\d+", text)]


def parse_imgsz(text: str | None) -> tuple[int, int] | None:
    """(width, height) from an ``imgsz`` value: "640" (square) or "[h, w]"."""
    numbers = _integers(text)
    if len(numbers) == 1:
        numbers = numbers * 2
    if len(numbers) != 2 or min(numbers) <= 0 or max(numbers) > 1 << 15:
        return None
    height, width = numbers
    return width, height


def parse_class_names(text: str | None) -> list[str] | None:
    """Class labels from a JSON list, a JSON dict {index: name} or a Python-literal dict
    (Ultralytics writes ``str(dict)``); None when the text is none of these."""
    if not text or len(text) > 1 << 20:
        return None
    value = None
    try:
        value = json.loads(text)
    except ValueError:
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return None
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return list(value)
    if isinstance(value, dict) and value:
        try:
            items = {int(k): str(v) for k, v in value.items()}
        except (TypeError, ValueError):
            return None
        if min(items) < 0 or max(items) > 1 << 20:
            return None
        return [items.get(i, str(i)) for i in range(max(items) + 1)]
    return None


@dataclass(eq=False)
class ModelGraph:
    """A loaded model and what fmviz found in it. Treat it as read-only: edits copy."""

    path: Path
    proto: onnx.ModelProto
    sha256: str
    inputs: list[ModelInput]
    layers: list[Layer]
    unreachable: list[UnreachableLayer] = field(default_factory=list)
    shape_info: ShapeInfo = field(default_factory=lambda: ShapeInfo({}, {}))

    @property
    def opset(self) -> int | None:
        """The default domain's opset as the model declares it (None when it imports none)."""
        for entry in self.proto.opset_import:
            if entry.domain in ("", "ai.onnx"):
                return int(entry.version)
        return None

    @property
    def opset_version(self) -> int:
        return opset_version(self.proto)

    @cached_property
    def metadata(self) -> dict[str, str]:
        """The model's ``metadata_props`` as a dict (key -> value, last one wins)."""
        return {prop.key: prop.value for prop in self.proto.metadata_props}

    @cached_property
    def metadata_size(self) -> tuple[int, int] | None:
        """(width, height) from Ultralytics-style ``imgsz`` metadata ("[320, 320]" = [h, w],
        or "640"), else None; values that are not positive integers are ignored."""
        return parse_imgsz(self.metadata.get("imgsz"))

    @cached_property
    def metadata_stride(self) -> int | None:
        """The network's stride from Ultralytics-style ``stride`` metadata ("32"), else None."""
        numbers = _integers(self.metadata.get("stride"))
        return max(numbers) if numbers and min(numbers) > 0 else None

    @cached_property
    def class_names(self) -> list[str] | None:
        """Class labels from the metadata: Ultralytics ``names`` ("{0: 'person', ...}") or a
        JSON list/dict under ``names``, ``labels``, ``classes`` or ``class_names``."""
        for key in ("names", "labels", "classes", "class_names"):
            names = parse_class_names(self.metadata.get(key))
            if names:
                return names
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

    def shell(self) -> onnx.ModelProto:
        """A copy of the model without its (sparse) initializers: cheap to copy and to edit."""
        shell = onnx.ModelProto()
        graph = self.proto.graph
        for name in ("ir_version", "producer_name", "producer_version", "domain",
                     "model_version", "doc_string"):
            if self.proto.HasField(name):
                setattr(shell, name, getattr(self.proto, name))
        shell.opset_import.extend(self.proto.opset_import)
        shell.metadata_props.extend(self.proto.metadata_props)
        shell.functions.extend(self.proto.functions)
        target = shell.graph
        target.name = graph.name
        target.node.extend(graph.node)
        target.input.extend(graph.input)
        target.output.extend(graph.output)
        target.value_info.extend(graph.value_info)
        if graph.doc_string:
            target.doc_string = graph.doc_string
        return shell

    def _weights(self) -> bytes:
        """The initializers and sparse initializers serialized, as a GraphProto. Made for each
        edited model and not kept: a kept copy would hold the weights twice for the whole run
        (measured: +100 MB peak on the ResNet-50-like model), for a few milliseconds saved per
        session."""
        graph = self.proto.graph
        # GraphProto.initializer is field 5 and sparse_initializer field 15: each tensor is
        # written as its own field, without copying the tensors into a message first
        return b"".join(
            [_length_delimited(5, t.SerializeToString()) for t in graph.initializer]
            + [_length_delimited(15, t.SerializeToString()) for t in graph.sparse_initializer]
        )

    def serialize(self, shell: onnx.ModelProto) -> bytes:
        """``shell`` (an edited :meth:`shell`) with this model's weights, as model bytes.

        Two serialized messages of one type concatenated parse as their merge, with repeated
        fields appended: the shell's graph bytes followed by the weights' are the whole graph.
        """
        if self.proto.ByteSize() >= _PROTOBUF_LIMIT:
            raise ModelError(
                f"{self.path}: the model with its weights is over 2 GB, more than protobuf can "
                "hand to onnxruntime in memory; fmviz does not support such models yet"
            )
        graph = shell.graph.SerializeToString() + self._weights()
        rest = onnx.ModelProto()
        rest.CopyFrom(shell)
        rest.ClearField("graph")
        return rest.SerializeToString() + _length_delimited(_GRAPH_FIELD, graph)


def _length_delimited(field_number: int, payload: bytes) -> bytes:
    """A protobuf length-delimited field: tag, varint length, payload."""
    return _varint(field_number << 3 | 2) + _varint(len(payload)) + payload


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def load_model(path: str | os.PathLike, expose_if: bool = False) -> ModelGraph:
    """Load an ONNX file safely and find its layers.

    External data is read only from inside the model's folder; anything that is not an ONNX
    model raises :class:`ModelError` naming the file. With ``expose_if``, convolutions inside
    ``If`` branches are threaded out as extra outputs of their ``If`` (see
    :mod:`fmviz.graph.controlflow`) and become layers; those in ``Loop``/``Scan`` stay unreachable.
    """
    path = Path(path)
    if not path.exists():
        raise ModelError(f"{path}: no such file")
    if path.is_dir():
        raise ModelError(f"{path}: is a folder, not an ONNX model file")
    from ..errors import InputError
    from ..inputs.safe import open_regular  # imported here: fmviz.inputs imports this package

    try:  # only a regular file: a FIFO or /dev/zero named model.onnx never blocks or floods
        with open_regular(path) as handle:
            data = handle.read()
    except InputError as exc:
        raise ModelError(str(exc).replace("only regular files are inputs",
                                          "a model must be one")) from exc
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
    return analyse(proto, path, sha256, expose_if)


def analyse(
    proto: onnx.ModelProto,
    path: str | os.PathLike = "<model>",
    sha256: str | None = None,
    expose_if: bool = False,
) -> ModelGraph:
    """What fmviz finds in a parsed model (its layers, inputs, shapes): :func:`load_model`
    without the file. ``proto`` must not be changed afterwards."""
    path = Path(path)
    if sha256 is None:
        sha256 = hashlib.sha256(proto.SerializeToString()).hexdigest()
    try:
        shape_info = infer_shapes(proto)
        layers = find_layers(proto, shape_info.shapes)
        inputs = _model_inputs(proto, shape_info.shapes)
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
        shape_info=shape_info,
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
        inputs.append(ModelInput(info.name, shape_of(info.type), dtype))
    return inputs

