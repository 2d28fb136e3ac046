"""The public face of the library: open a model, capture feature maps for an input."""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from .errors import ModelError, OptionError
from .graph import STAGES, Layer, ModelGraph, load_model, select_layers
from .inputs import InputOptions, PreparedInput, build_feeds, load_input, primary_input
from .session import Session, describe_error, open_session, resolve_providers


@dataclass
class Capture:
    """The feature maps one input produced, keyed by layer index, with how they were made."""

    input: PreparedInput
    stage: str
    layers: list[Layer]
    maps: Mapping[int, np.ndarray]  # a dict; read-on-demand when captured in several passes
    providers: list[str]
    feeds: dict[str, dict] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)
    passes: int = 1  # inference passes planned for these maps (see --max-memory)

    def __getitem__(self, name: str) -> np.ndarray:
        """The map of the layer called ``name`` (or whose captured tensor is ``name``)."""
        for layer in self.layers:
            if name in (layer.name, layer.tensor(self.stage)):
                return self.maps[layer.index]
        raise KeyError(name)


class Model:
    """An ONNX model opened for capture.

    >>> model = fmviz.open_model("models/digits_cnn.onnx")
    >>> capture = model.capture("samples/digit-3.png")
    >>> capture[model.layers[0].name].shape
    """

    def __init__(
        self,
        graph: ModelGraph,
        providers: Sequence[str] = ("auto",),
        threads: int | None = None,
        max_memory: int | str | None = None,
    ):
        self.graph = graph
        self.requested_providers = tuple(providers)
        self.threads = threads
        # Bytes the captured maps of one pass may take; None: a quarter of physical memory.
        self.max_memory = parse_size(max_memory) if max_memory is not None else None
        self._providers: list[str] | None = None
        self._sessions: dict[tuple[str, ...], Session] = {}
        # Sessions of multi-pass captures, least recently used first (see _pinned_session).
        self._pass_sessions: OrderedDict[tuple, Session] = OrderedDict()
        self._shape_cache: dict[tuple, dict[str, tuple[tuple | None, int, int]]] = {}
        self._last_providers: list[str] = []
        self._types: dict[str, int] | None = None

    # ------------------------------------------------------------------ what is in it
    @property
    def path(self) -> Path:
        return self.graph.path

    @property
    def layers(self) -> list[Layer]:
        return self.graph.layers

    @property
    def inputs(self):
        return self.graph.inputs

    def select(self, patterns: Sequence[str] = (), stage: str = "post") -> list[Layer]:
        """Reachable layers matching ``patterns`` (globs or ``re:``); all when empty.

        A model without reachable layer is a :class:`ModelError` that says why.
        """
        if stage not in STAGES:
            raise OptionError(f"--stage {stage!r}: choose post or pre")
        if not self.graph.layers:
            raise ModelError(self._no_layers_reason())
        return select_layers(self.graph.layers, patterns, stage)

    def _no_layers_reason(self) -> str:
        unreachable = self.graph.unreachable
        if unreachable:
            parents = sorted({f"{u.parent_op} {u.parent!r}" for u in unreachable})
            hint = (
                " (--expose-if threads those inside If branches out)"
                if any(u.parent_op == "If" for u in unreachable)
                else ""
            )
            return (
                f"{self.path}: no convolution in the main graph; {len(unreachable)} sit inside "
                f"control flow ({', '.join(parents[:3])}) where onnxruntime cannot expose "
                f"them{hint}"
            )
        return f"{self.path}: no convolution layer (Conv, ConvTranspose, QLinearConv, ConvInteger)"

    # ------------------------------------------------------------------ running it
    @property
    def providers(self) -> list[str]:
        """The onnxruntime providers requested, resolved (e.g. ``auto`` to CUDA then CPU)."""
        if self._providers is None:
            self._providers = resolve_providers(self.requested_providers)
        return self._providers

    def session(self, tensors: Sequence[str], pinned: Sequence[str] = ()) -> Session:
        """A session that returns ``tensors`` (cached: one per distinct set of tensors).

        ``pinned`` tensors are not returned but kept from being fused away exactly as if they
        were outputs too (one pass of a multi-pass capture, see :meth:`plan_memory`); such
        sessions are cached only while their weights fit in a quarter of ``max_memory`` (none
        when they do not: each pass then opens its own and lets it go).
        """
        key = tuple(dict.fromkeys(tensors))
        if pinned:
            return self._pinned_session(key, pinned)
        if key not in self._sessions:
            self._sessions[key] = open_session(
                self.graph.exposed_model_bytes(key),
                self.providers,
                self.threads,
                source=str(self.path),
            )
        return self._sessions[key]

    def prepare(
        self, source: str | Path | np.ndarray, options: InputOptions | None = None
    ) -> tuple[PreparedInput, dict[str, np.ndarray], dict[str, dict], list[str]]:
        """Load ``source`` (a file, or an array fed as is) and build the feeds for every input."""
        options = options or InputOptions()
        target = primary_input(self.graph.inputs, options.input_name, self.path)
        if isinstance(source, np.ndarray):
            from .inputs.tensors import fit_tensor

            path = Path("<array>")
            prepared = PreparedInput(
                path=path,
                kind="tensor",
                array=fit_tensor(source, target, path),
                preprocess={"source_shape": list(source.shape), "source_dtype": str(source.dtype)},
            )
        else:
            prepared = load_input(source, target, options)
        feeds, record, notices = build_feeds(
            self.graph.inputs, target, prepared, options, self.path
        )
        return prepared, feeds, record, prepared.notices + notices

    def capture(
        self,
        source: str | Path | np.ndarray,
        layers: Sequence[str] | Sequence[Layer] | None = None,
        stage: str = "post",
        options: InputOptions | None = None,
        max_memory: int | str | None = None,
    ) -> Capture:
        """Run one input and return the maps of ``layers`` (patterns or Layer objects).

        When the maps would take more than ``max_memory`` bytes (default: the model's
        ``max_memory``, else a quarter of physical memory), they are captured in several
        passes with the same numbers as one pass; ``capture.maps`` then runs each pass when one
        of its layers is read and drops a group once each of its layers has been read (read in
        order, as ``fmviz run`` does, every pass runs once; see :meth:`plan_memory`).
        """
        if layers and all(isinstance(item, Layer) for item in layers):
            chosen = list(layers)
        else:
            chosen = self.select(list(layers or ()), stage)
        started = time.perf_counter()
        prepared, feeds, record, notices = self.prepare(source, options)
        prepared_at = time.perf_counter()
        plan = self.plan_memory(chosen, stage, feeds, max_memory)
        if plan.passes > 1:
            capture = Capture(
                input=prepared,
                stage=stage,
                layers=chosen,
                maps={},
                providers=[],
                feeds=record,
                notices=notices + plan.notices(),
                timings_ms={
                    "prepare": (prepared_at - started) * 1000, "session": 0.0, "inference": 0.0
                },
                passes=plan.passes,
            )
            maps = _GroupedMaps(self, capture, feeds, plan)
            maps.preload(0)  # the first pass now: an input the model rejects fails here
            capture.maps = maps
            capture.providers = self._last_providers
            return capture
        tensors = [layer.tensor(stage) for layer in chosen]
        session = self.session(tensors)
        session_at = time.perf_counter()
        outputs = self._run(session, feeds, list(dict.fromkeys(tensors)), prepared)
        done = time.perf_counter()
        return Capture(
            input=prepared,
            stage=stage,
            layers=chosen,
            maps={layer.index: outputs[layer.tensor(stage)] for layer in chosen},
            providers=session.providers,
            feeds=record,
            notices=notices,
            timings_ms={
                "prepare": (prepared_at - started) * 1000,
                "session": (session_at - prepared_at) * 1000,
                "inference": (done - session_at) * 1000,
            },
        )

    @staticmethod
    def _run(session: Session, feeds: dict, names: list[str], prepared) -> dict:
        try:
            return session.run(feeds, names)
        except Exception as exc:  # onnxruntime's errors: shapes or types the model rejects
            message = describe_error(exc)
            where = prepared.path if prepared is not None else "input"
            raise ModelError(f"{where}: the model rejected this input: {message}") from exc

    # ------------------------------------------------------------------ memory bound
    def plan_memory(
        self,
        layers: Sequence[Layer],
        stage: str,
        feeds: Mapping[str, np.ndarray],
        max_memory: int | str | None = None,
    ) -> MemoryPlan:
        """Estimate the bytes of each layer's map for ``feeds`` and group the layers so that
        one pass holds at most a third of ``max_memory``: a pass's maps exist twice for a moment
        (onnxruntime's, and the copies that outlive its session) while the previous group may
        still be being read.

        Static shapes come from the model's own shape inference; symbolic dimensions are bound
        from the feeds' shapes, and where that is not enough (sizes computed inside the graph)
        shape inference runs again with the concrete input shapes on a copy of the graph
        without its weights. A map whose shape stays unknown is assumed to be as large as the
        input with the layer's channel count (a guess, listed in ``plan.guessed``).
        """
        budget = parse_size(max_memory) if max_memory is not None else self.max_memory
        if budget is None:
            budget = default_max_memory()
        layer_bytes, guessed = self._map_bytes(layers, stage, feeds)
        total = sum(layer_bytes.values())
        if total <= budget or len(layers) <= 1:
            groups = [list(layers)] if layers else []
        else:
            groups, current, size = [], [], 0
            for layer in layers:  # in order: rendering reads them in order, one pass each
                need = layer_bytes[layer.index]
                if current and size + need > budget // 3:
                    groups.append(current)
                    current, size = [], 0
                current.append(layer)
                size += need
            if current:
                groups.append(current)
        return MemoryPlan(groups, layer_bytes, total, budget, guessed)

    def run_groups(
        self,
        feeds: Mapping[str, np.ndarray],
        layers: Sequence[Layer],
        stage: str = "post",
        max_memory: int | str | None = None,
        plan: MemoryPlan | None = None,
    ) -> Iterator[tuple[list[Layer], dict[int, np.ndarray]]]:
        """Run ``feeds`` and yield ``(group, maps by layer index)`` one pass at a time.

        One pass when the maps fit in ``max_memory``; otherwise several, each exposing one
        group and pinning the others, so every pass computes exactly what the single pass
        would (the numbers are identical). For callers that reduce maps as they come, such as
        a scan: drop each group's maps before asking for the next.
        """
        plan = plan or self.plan_memory(layers, stage, feeds, max_memory)
        for group in plan.groups:
            yield group, self._run_pass(feeds, group, layers, stage, None, single=plan.passes == 1)

    def _run_pass(
        self,
        feeds: Mapping[str, np.ndarray],
        group: Sequence[Layer],
        chosen: Sequence[Layer],
        stage: str,
        prepared=None,
        single: bool = False,
        timings: dict[str, float] | None = None,
    ) -> dict[int, np.ndarray]:
        started = time.perf_counter()
        tensors = list(dict.fromkeys(layer.tensor(stage) for layer in group))
        if single:
            session = self.session(tensors)
        else:
            mine = set(tensors)
            pinned = [t for t in dict.fromkeys(layer.tensor(stage) for layer in chosen)
                      if t not in mine]
            session = self.session(tensors, pinned=pinned)
        self._last_providers = session.providers
        opened = time.perf_counter()
        outputs = self._run(session, dict(feeds), tensors, prepared)
        if timings is not None:
            timings["session"] = timings.get("session", 0.0) + (opened - started) * 1000
            timings["inference"] = (
                timings.get("inference", 0.0) + (time.perf_counter() - opened) * 1000
            )
        if single:
            return {layer.index: outputs[layer.tensor(stage)] for layer in group}
        # The arrays onnxruntime returns live in its session's memory arena and keep the whole
        # arena (every intermediate of the run) alive: copy them out, so that memory goes when
        # the session does.
        return {layer.index: np.array(outputs[layer.tensor(stage)]) for layer in group}

    def _pinned_session(self, tensors: tuple[str, ...], pinned: Sequence[str]) -> Session:
        key = (tensors, tuple(dict.fromkeys(pinned)))
        session = self._pass_sessions.pop(key, None)
        if session is None:
            # onnxruntime holds the weights about twice (its copy, pre-packed kernels) plus its
            # working memory: keep as many pass sessions as a quarter of the budget allows,
            # and let the oldest go before opening another.
            weights = 2 * max(1, self.graph.proto.ByteSize())
            keep = (self.max_memory or default_max_memory()) // 4 // weights
            while self._pass_sessions and len(self._pass_sessions) >= keep:
                self._pass_sessions.popitem(last=False)
            session = open_session(
                _pinned_model_bytes(self.graph.proto, tensors, key[1], self._elem_types()),
                self.providers,
                self.threads,
                source=str(self.path),
            )
            if not keep:
                return session  # not cached: its memory goes with the pass
        self._pass_sessions[key] = session  # most recently used last
        return session

    def _map_bytes(
        self, layers: Sequence[Layer], stage: str, feeds: Mapping[str, np.ndarray]
    ) -> tuple[dict[int, int], list[int]]:
        bound: dict[str, int] = {}
        for item in self.graph.inputs:
            array = feeds.get(item.name)
            if array is None or item.shape is None or len(item.shape) != np.ndim(array):
                continue
            for dim, value in zip(item.shape, np.shape(array), strict=True):
                if isinstance(dim, str):
                    bound[dim] = int(value)

        def resolve(shape) -> tuple[int, ...] | None:
            if shape is None:
                return None
            dims = [d if isinstance(d, int) else bound.get(d) if isinstance(d, str) else None
                    for d in shape]
            return None if any(d is None or d < 0 for d in dims) else tuple(dims)

        sizes: dict[int, int] = {}
        missing = []
        for layer in layers:
            shape = resolve(layer.shape(stage))
            if shape is None:
                missing.append(layer)
            else:
                sizes[layer.index] = int(np.prod(shape, dtype=np.int64)) * self._itemsize(
                    layer, stage)
        guessed = []
        if missing:
            inferred = self._concrete_shapes(feeds)
            for layer in missing:
                shape, itemsize, _ = inferred.get(layer.tensor(stage), (None, 0, 0))
                shape = resolve(shape)
                if shape is not None:
                    sizes[layer.index] = int(np.prod(shape, dtype=np.int64)) * (
                        itemsize or self._itemsize(layer, stage)
                    )
                else:
                    sizes[layer.index] = _guess_bytes(layer, stage, feeds)
                    guessed.append(layer.index)
        return sizes, guessed

    def _itemsize(self, layer: Layer, stage: str) -> int:
        """Bytes per element: float32 unless the layer is quantized (then as typed)."""
        if layer.op in ("QLinearConv", "ConvInteger"):
            elem = self._elem_types().get(layer.tensor(stage))
            if elem:
                return int(np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem)).itemsize)
        return _itemsize(layer, stage)

    def _elem_types(self) -> dict[str, int]:
        """ONNX element type of every tensor shape inference can type (cached)."""
        if self._types is None:
            inferred = _infer_concrete(self.graph.proto, {})
            self._types = {name: elem for name, (_, _, elem) in inferred.items() if elem}
        return self._types

    def _concrete_shapes(
        self, feeds: Mapping[str, np.ndarray]
    ) -> dict[str, tuple[tuple | None, int, int]]:
        key = tuple(
            sorted((name, np.shape(a), np.asarray(a).dtype.str) for name, a in feeds.items())
        )
        if key not in self._shape_cache:
            self._shape_cache.clear()  # one input size at a time is the common case
            self._shape_cache[key] = _infer_concrete(self.graph.proto, feeds)
        return self._shape_cache[key]


def open_model(
    path: str | Path,
    providers: Sequence[str] = ("auto",),
    threads: int | None = None,
    max_memory: int | str | None = None,
    expose_if: bool = False,
) -> Model:
    """Load an ONNX model safely; onnxruntime starts only when something is captured.

    ``max_memory`` (bytes, or a SIZE such as ``"4G"``) bounds the captured maps of one pass;
    default a quarter of physical memory. ``expose_if`` makes convolutions inside ``If``
    branches capturable (threaded out as extra ``If`` outputs).
    """
    return Model(
        load_model(path, expose_if=expose_if),
        providers=providers,
        threads=threads,
        max_memory=max_memory,
    )


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
_SMALL_INITIALIZER = 1024  # elements: shape/scale/axes constants, kept for shape inference
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


class _GroupedMaps(Mapping):
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
        self.runs = 0

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
            self.runs += 1
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


def _itemsize(layer: Layer, stage: str) -> int:
    if stage == "pre" and layer.op == "QLinearConv":
        return 1
    return 4  # float32, and ConvInteger's int32


def _guess_bytes(layer: Layer, stage: str, feeds: Mapping[str, np.ndarray]) -> int:
    """No shape known: the largest input's elements per channel times the layer's channels."""
    largest = max((np.asarray(a) for a in feeds.values()), key=np.size, default=None)
    if largest is None or largest.ndim < 2:
        return 0
    per_channel = largest.size // max(1, min(largest.shape[1], largest.shape[-1]))
    return per_channel * (layer.channels or 1) * _itemsize(layer, stage)


def _infer_concrete(
    proto: onnx.ModelProto, feeds: Mapping[str, np.ndarray]
) -> dict[str, tuple[tuple | None, int, int]]:
    """Shape, item size and ONNX element type of every tensor, from shape inference with the
    feeds' shapes (none given: the declared ones).

    Runs on a copy of the graph without its weights: float (and other large) initializers
    become typed graph inputs of the same shape, small ones (shape, axes, scales constants,
    which Reshape, Slice and Resize need the values of) are kept.
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
        array = feeds.get(info.name)
        elem = info.type.tensor_type.elem_type if info.type.HasField("tensor_type") else 0
        if array is not None and elem:
            graph.input.append(helper.make_tensor_value_info(info.name, elem, np.shape(array)))
        else:
            graph.input.append(info)
    for tensor in source.initializer:
        if int(np.prod(tensor.dims, dtype=np.int64)) <= _SMALL_INITIALIZER:
            graph.initializer.append(tensor)
        else:
            graph.input.append(
                helper.make_tensor_value_info(tensor.name, tensor.data_type, list(tensor.dims))
            )
    for info in source.output:
        elem = info.type.tensor_type.elem_type if info.type.HasField("tensor_type") else 0
        graph.output.append(helper.make_tensor_value_info(info.name, elem, None))
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


def _pinned_model_bytes(
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
        for name in dict.fromkeys(tensors):
            if name and name not in existing:
                info = graph.output.add()
                if name in known:
                    info.CopyFrom(known[name])
                else:
                    info.name = name
                existing.append(name)
                outputs += 1
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
