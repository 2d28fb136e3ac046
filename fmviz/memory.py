"""Memory-bounded capture: estimate what the exposed maps take, split layers into passes.

Used by :class:`fmviz.model.Model` for ``--max-memory``.
"""

from __future__ import annotations

import os
import re
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx

from .errors import OptionError
from .graph import Layer, append_outputs, weightless_copy

if TYPE_CHECKING:  # pragma: no cover
    from .model import Capture, Model


# ----------------------------------------------------------------------------- memory bound
#
# Every captured map is a graph output, and onnxruntime keeps every graph output until the run
# returns: the maps of one pass are all in memory at once. When their bytes (estimated from
# shapes, before anything runs) exceed ``max_memory``, the layers are captured in groups, one
# pass per group. To give the same numbers as a single pass, every pass must run the same
# kernels: onnxruntime's fusions (Conv+BatchNormalization folding, Conv+Add, Conv+activation,
# the NCHWc layout) depend on which tensors are graph outputs, so a pass that exposed only its
# own group would fold the other layers differently and change later maps in the last bits.
# Each pass therefore "pins" the selected tensors outside its group with a ReduceMax to a
# scalar: the tensor gets an extra consumer exactly where a graph output would keep it from
# being fused away, while the memory it holds is released as soon as it is reduced.

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)
_PIN_PREFIX = "fmviz.pin."


def parse_size(text: str | int) -> int:
    """Bytes from a SIZE like ``4G``, ``512M``, ``1.5GiB``, ``64k`` or ``1048576``.

    Units are binary (K = 1024), as in ``docker --memory`` and ``java -Xmx``; a bare number is
    bytes. An :class:`OptionError` for anything else, or for zero.
    """
    if isinstance(text, int):
        value = text
    else:
        match = _SIZE_RE.match(str(text))
        if not match:
            raise OptionError(
                f"--max-memory {text!r} is not a size (a number with K, M, G or T, e.g. 4G or 512M)"
            )
        value = int(float(match.group(1)) * _UNITS[match.group(2).lower()])
    if value < 1:
        raise OptionError(f"--max-memory {text!r} must be more than 0 bytes")
    return value


def format_size(value: float) -> str:
    """``1.5 GiB``, ``512 MiB``, ``12 KiB``, ``100 B``."""
    for unit, size in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if value >= size:
            number = value / size
            return f"{number:.1f} {unit}" if number < 10 else f"{number:.0f} {unit}"
    return f"{int(value)} B"


def physical_memory() -> int | None:
    """Physical memory in bytes, lowered to the cgroup's limit in a container; None if unknown."""
    total = None
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        if sys.platform == "win32":
            total = _windows_memory()
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) > 0 and (total is None or int(text) < total):
            total = int(text)
        break
    return total if total and total > 0 else None


def _windows_memory() -> int | None:  # pragma: no cover - Windows only
    import ctypes

    class MemoryStatus(ctypes.Structure):
        _fields_ = [("length", ctypes.c_ulong), ("load", ctypes.c_ulong)] + [
            (name, ctypes.c_ulonglong)
            for name in ("total", "avail", "page_total", "page_avail", "virt_total",
                         "virt_avail", "ext_avail")
        ]

    status = MemoryStatus()
    status.length = ctypes.sizeof(MemoryStatus)
    if ctypes.windll.kernel32.GlobalMemoryStatusEx(ctypes.byref(status)):
        return int(status.total)
    return None


def default_max_memory() -> int:
    """A quarter of physical memory (4 GiB where it cannot be read)."""
    total = physical_memory()
    return total // 4 if total else 4 << 30


@dataclass
class MemoryPlan:
    """How the maps of one input are captured: the estimate, the budget and the passes."""

    groups: list[list[Layer]]
    layer_bytes: dict[int, int]  # estimated bytes of each layer's map
    total_bytes: int
    max_memory: int
    guessed: list[int] = field(default_factory=list)  # layers whose shape shape inference missed

    @property
    def passes(self) -> int:
        return len(self.groups)

    def notices(self) -> list[str]:
        if self.passes <= 1:
            return []
        notes = [
            f"the maps of {len(self.layer_bytes)} layers take about "
            f"{format_size(self.total_bytes)}, more than --max-memory "
            f"{format_size(self.max_memory)}: capturing them in {self.passes} passes"
        ]
        alone = [i for i, size in self.layer_bytes.items() if size > self.max_memory // 3]
        if alone:
            notes.append(
                f"{len(alone)} layer(s) alone take more than a third of --max-memory "
                f"(largest {format_size(max(self.layer_bytes[i] for i in alone))}); "
                "each is captured on its own"
            )
        return notes


class GroupedMaps(Mapping):
    """The maps of a capture made in several passes. A pass runs when one of its layers is
    read and its group is not in memory; a group is dropped as soon as each of its layers has
    been read once. Reading the layers in order (as ``fmviz run`` does, from a few threads)
    runs each pass once and holds one group, two around a group boundary; reading a layer
    again later runs its pass again (same numbers)."""

    def __init__(self, model: Model, capture: Capture, feeds: dict, plan: MemoryPlan):
        self._model = model
        self._capture = capture
        self._feeds = feeds
        self._plan = plan
        self._group_of = {layer.index: g for g, group in enumerate(plan.groups) for layer in group}
        self._loaded: dict[int, dict[int, np.ndarray]] = {}
        self._unread: dict[int, set[int]] = {}
        self._lock = threading.Lock()

    def __getitem__(self, index: int) -> np.ndarray:
        group = self._group_of[index]  # KeyError for a layer that was not captured
        with self._lock:
            maps = self._load(group)
            unread = self._unread[group]
            unread.discard(index)
            if not unread:  # every layer of the group has been read: let it go
                del self._loaded[group]
            return maps[index]

    def _load(self, group: int) -> dict[int, np.ndarray]:
        maps = self._loaded.get(group)
        if maps is None:
            capture = self._capture
            maps = self._model._run_pass(
                self._feeds, self._plan.groups[group], capture.layers, capture.stage,
                capture.input, timings=capture.timings_ms,
            )
            self._loaded[group] = maps
            self._unread[group] = set(maps)
        return maps

    def preload(self, group: int = 0) -> None:
        with self._lock:
            self._load(group)

    def __iter__(self):
        return iter(self._group_of)

    def __len__(self) -> int:
        return len(self._group_of)

    def __contains__(self, index) -> bool:
        return index in self._group_of


def layer_itemsize(layer: Layer, stage: str) -> int:
    if stage == "pre" and layer.op == "QLinearConv":
        return 1
    return 4  # float32, and ConvInteger's int32


def guess_bytes(layer: Layer, stage: str, feeds: Mapping[str, np.ndarray]) -> int:
    """No shape known: the largest input's elements per channel times the layer's channels."""
    largest = max((np.asarray(a) for a in feeds.values()), key=np.size, default=None)
    if largest is None or largest.ndim < 2:
        return 0
    per_channel = largest.size // max(1, min(largest.shape[1], largest.shape[-1]))
    return per_channel * (layer.channels or 1) * layer_itemsize(layer, stage)


def infer_concrete_shapes(
    proto: onnx.ModelProto, feeds: Mapping[str, np.ndarray]
) -> dict[str, tuple[tuple | None, int, int]]:
    """Shape, item size and ONNX element type of every tensor, from shape inference with the
    feeds' shapes (none given: the declared ones).

    Runs on :func:`fmviz.graph.weightless_copy` of the model.
    """
    from onnx import helper

    model = weightless_copy(proto, {name: np.shape(a) for name, a in feeds.items()})
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception:  # inference is a nicety: the estimate falls back to a guess
        return {}
    shapes: dict[str, tuple[tuple | None, int, int]] = {}
    for info in list(inferred.graph.value_info) + list(inferred.graph.output):
        if not info.type.HasField("tensor_type"):
            continue
        tensor_type = info.type.tensor_type
        dims = None
        if tensor_type.HasField("shape"):
            dims = tuple(
                int(d.dim_value) if d.HasField("dim_value") else None for d in tensor_type.shape.dim
            )
        itemsize = 0
        if tensor_type.elem_type:
            try:
                itemsize = np.dtype(helper.tensor_dtype_to_np_dtype(tensor_type.elem_type)).itemsize
            except Exception:
                itemsize = 0
        shapes[info.name] = (dims, itemsize, int(tensor_type.elem_type))
    return shapes


def pinned_model_bytes(
    proto: onnx.ModelProto,
    tensors: Sequence[str],
    pinned: Sequence[str],
    types: Mapping[str, int] | None = None,
) -> bytes:
    """The model with ``tensors`` as outputs and each ``pinned`` tensor read by a ReduceMax
    (no axes: every axis, in every opset), so that it is computed and fused exactly as if it
    were an output, without being kept.

    When a pinned map's memory is released depends on when its ReduceMax runs. onnxruntime's
    default order is a depth-first walk back from the graph's leaf nodes, the last leaf in its
    node list first; nodes its optimizers create (the NCHWc reorders in front of every graph
    output) come last in that list, so any output left a leaf would be walked to first and
    every pinned map would wait for the end of the run (as much memory as exposing it). So the
    ReduceMax of every pinned tensor, every exposed tensor and every output of the model feed
    one ``Max``, the only leaf, appended latest tensor first: the walk takes them in the order
    their tensors are made, each reduction runs right after its map, and each pinned map is
    released once the following layers have read it. (Measured with onnxruntime 1.31 on the
    ResNet-50-shaped benchmark at 1024x1024: the last of 6 passes peaks at 0.9 GB, 1.5 GB
    with the reductions appended the other way round. The order changes memory, never the
    numbers.) ``types`` gives element types where the model's value_info does not. Like
    :func:`graph.expose`, the model is edited in place, serialized and restored (the weights
    are never copied), and ir_version is kept.
    """
    from onnx import TensorProto, helper

    graph = proto.graph
    existing = [o.name for o in graph.output]
    known = {v.name: v for v in list(graph.value_info) + list(graph.input) + list(graph.output)}
    taken = set(existing) | {name for node in graph.node for name in node.output}
    taken |= {i.name for i in graph.input} | {t.name for t in graph.initializer}
    producer = {out: i for i, node in enumerate(graph.node) for out in node.output if out}
    opset = next((e.version for e in proto.opset_import if e.domain in ("", "ai.onnx")), 0)
    direct = {TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.INT32, TensorProto.INT64,
              TensorProto.FLOAT16}
    if opset >= 12:
        direct |= {TensorProto.INT8, TensorProto.UINT8}
    counter = [0]

    def fresh(base: str) -> str:
        while True:
            counter[0] += 1
            name = f"{_PIN_PREFIX}{counter[0]}{base}"
            if name not in taken:
                taken.add(name)
                return name

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

    outputs = nodes = 0
    try:
        outputs = append_outputs(graph, tensors)
        existing = [o.name for o in graph.output]
        # model outputs that are not tensors (or strings) stay leaves: correct, only later freed
        model_outputs = [n for n in existing if elem_type(n) is not None]
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
            outputs += 1
        graph.node.extend(added)
        nodes = len(added)
        return proto.SerializeToString()
    finally:
        for _ in range(nodes):
            graph.node.pop()
        for _ in range(outputs):
            graph.output.pop()
