"""The public face of the library: open a model, capture feature maps for an input."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from .errors import ModelError, OptionError
from .graph import STAGES, Layer, ModelGraph, load_model, select_layers
from .inputs import InputOptions, PreparedInput, build_feeds, load_input, primary_input
from .memory import (
    GroupedMaps,
    MemoryPlan,
    default_max_memory,
    guess_bytes,
    infer_concrete_shapes,
    layer_itemsize,
    parse_size,
    pinned_model_bytes,
)
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
            maps = GroupedMaps(self, capture, feeds, plan)
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
    def _run(session: Session, feeds: dict, names: list[str], prepared: PreparedInput) -> dict:
        try:
            return session.run(feeds, names)
        except Exception as exc:  # onnxruntime's errors: shapes or types the model rejects
            message = describe_error(exc)
            raise ModelError(
                f"{prepared.path}: the model rejected this input: {message}"
            ) from exc

    # ------------------------------------------------------------------ memory bound
    def plan_memory(
        self,
        layers: Sequence[Layer],
        stage: str,
        feeds: Mapping[str, np.ndarray],
        max_memory: int | str | None = None,
    ) -> MemoryPlan:
        """Estimate the bytes of each layer's map for ``feeds`` and group the layers: all in
        one pass when their maps fit ``max_memory``, else passes of at most a third of it (a
        pass's maps exist twice for a moment, onnxruntime's and the copies that outlive its
        session, while the previous group may still be being read); a layer larger than that
        third gets a pass of its own.

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

    def _run_pass(
        self,
        feeds: Mapping[str, np.ndarray],
        group: Sequence[Layer],
        chosen: Sequence[Layer],
        stage: str,
        prepared: PreparedInput,
        timings: dict[str, float] | None = None,
    ) -> dict[int, np.ndarray]:
        """One pass of a multi-pass capture: ``group``'s maps, the rest of ``chosen`` pinned."""
        started = time.perf_counter()
        tensors = list(dict.fromkeys(layer.tensor(stage) for layer in group))
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
                pinned_model_bytes(self.graph.proto, tensors, key[1], self._elem_types()),
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
                    sizes[layer.index] = guess_bytes(layer, stage, feeds)
                    guessed.append(layer.index)
        return sizes, guessed

    def _itemsize(self, layer: Layer, stage: str) -> int:
        """Bytes per element: float32 unless the layer is quantized (then as typed)."""
        if layer.op in ("QLinearConv", "ConvInteger"):
            elem = self._elem_types().get(layer.tensor(stage))
            if elem:
                return int(np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem)).itemsize)
        return layer_itemsize(layer, stage)

    def _elem_types(self) -> dict[str, int]:
        """ONNX element type of every tensor shape inference can type (cached)."""
        if self._types is None:
            inferred = infer_concrete_shapes(self.graph.proto, {})
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
            self._shape_cache[key] = infer_concrete_shapes(self.graph.proto, feeds)
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
