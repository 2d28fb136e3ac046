"""The one runner: onnxruntime sessions, feeds, batches and memory-bounded passes.

``fmviz run`` (whole maps, :meth:`Runner.captures`) and the dataset scan (per-channel
reductions, :meth:`Runner.session` with :func:`fmviz.graph.reductions.reduction_model`) both go
through a :class:`Runner`. It owns the provider choice, the sessions (cached per edited model),
the feeds of the model's other inputs, and the translation of onnxruntime's run-time errors into
:class:`~fmviz.errors.RejectedInput`; any other exception (out of memory, a bug) propagates.

A :class:`Capture` is what one pass over one input produced: complete and immutable when built.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from .errors import RejectedInput
from .graph import ModelGraph, ModelInput
from .graph.edits import expose, pin
from .graph.shapes import infer_concrete_shapes
from .inputs import InputOptions, PreparedInput, build_feeds
from .memory import MemoryPlan, default_max_memory, guess_bytes, parse_size, plan_passes
from .probes import Probe
from .session import (
    ProviderSettings,
    Session,
    describe_error,
    is_onnxruntime_error,
    open_session,
    required_providers,
    resolve_providers,
)

_FEED_CACHE = 16  # extra-input feeds kept per batch shape (a scan sees few shapes)


@dataclass(frozen=True)
class Capture:
    """The maps of ``probes`` for one input, with how they were made.

    ``maps`` is keyed by layer index; ``passes``/``pass_index`` say which pass of a
    memory-bounded capture this is (see :meth:`Runner.captures`).
    """

    input: PreparedInput
    probes: tuple[Probe, ...]
    maps: Mapping[int, np.ndarray]
    providers: tuple[str, ...]
    feeds: Mapping[str, dict] = field(default_factory=dict)  # the other inputs, as recorded
    provider_options: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    notices: tuple[str, ...] = ()
    timings_ms: Mapping[str, float] = field(default_factory=dict)
    pass_index: int = 0
    passes: int = 1
    # the model's own outputs, fetched with the first pass (computed anyway, so nearly free)
    outputs: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __getitem__(self, name: str) -> np.ndarray:
        """The map of the layer called ``name`` (or whose captured tensor is ``name``)."""
        for probe in self.probes:
            if name in (probe.name, probe.tensor):
                return self.maps[probe.index]
        raise KeyError(name)

    @property
    def stage(self) -> str:
        return self.probes[0].stage if self.probes else "post"


def _frozen(mapping: Mapping) -> Mapping:
    return MappingProxyType(dict(mapping))


def _rate_notices(prepared: PreparedInput, options: InputOptions) -> list[str]:
    """A notice for each ``--feed NAME=NUMBER`` whose NAME reads like a sample rate and whose
    number differs from the WAV's own rate (the model would be told the wrong rate)."""
    rate = prepared.preprocess.get("sample_rate") if prepared.kind == "series" else None
    if not rate:
        return []
    from .hints import looks_like_rate

    found = []
    for name, value in options.feeds:
        try:
            number = float(value)
        except ValueError:
            continue
        if looks_like_rate(name) and number != float(rate):
            found.append(
                f"{prepared.path}: sampled at {rate} Hz but --feed {name}={value} tells the "
                f"model {number:g} Hz (resample the file, or feed {name}={rate})"
            )
    return found


class Runner:
    """Runs one loaded model on onnxruntime for fmviz's edits of it.

    ``providers`` are ``--provider`` values (``auto``, ``cpu``, ``cuda``, ...), resolved on
    first use; ``threads`` onnxruntime's intra-op threads; ``max_memory`` (bytes or a SIZE such
    as ``"4G"``) bounds the maps one pass may expose (default: a quarter of physical memory).
    """

    def __init__(
        self,
        graph: ModelGraph,
        providers: Sequence[str] = ("auto",),
        threads: int | None = None,
        max_memory: int | str | None = None,
        settings: ProviderSettings | None = None,
    ):
        self.graph = graph
        self.requested_providers = tuple(providers) or ("auto",)
        self.settings = settings or ProviderSettings()
        self.settings.validate()
        self.threads = threads
        self.max_memory = parse_size(max_memory) if max_memory is not None else None
        self._providers: list[str] | None = None
        self._sessions: OrderedDict[Hashable, Session] = OrderedDict()
        self._feeds: OrderedDict[tuple, tuple[dict, dict, list[str]]] = OrderedDict()
        self._shape_cache: dict[tuple, dict] = {}
        # notices from opening sessions (a GPU that did not start): pending, and all given
        self._notices: list[str] = []
        self._noticed: set[str] = set()

    # ------------------------------------------------------------------ sessions
    @property
    def providers(self) -> list[str]:
        """The onnxruntime providers requested, resolved (e.g. ``auto`` to CUDA then CPU)."""
        if self._providers is None:
            self._providers = resolve_providers(self.requested_providers)
        return self._providers

    def session(
        self,
        key: Hashable,
        build: Callable[[], bytes | tuple[bytes, Any]],
        keep: int | None = None,
    ) -> Session:
        """The session for the edited model ``build()`` makes, cached under ``key``.

        ``build`` returns the model bytes, or the bytes and what the edit says about them
        (kept as ``session.info``). ``keep`` bounds how many sessions stay cached (least
        recently used go first; 0 caches nothing), for edits whose sessions hold a copy of
        large weights each.
        """
        session = self._sessions.pop(key, None)
        if session is None:
            if keep is not None:
                while self._sessions and len(self._sessions) >= max(keep, 1):
                    self._sessions.popitem(last=False)
            built = build()
            data, info = built if isinstance(built, tuple) else (built, None)
            session = open_session(data, self.providers, self.threads,
                                   source=str(self.graph.path), settings=self.settings,
                                   required=required_providers(self.requested_providers))
            session.info = info
            for message in session.notices:
                if message not in self._noticed:
                    self._noticed.add(message)
                    self._notices.append(message)
            if keep == 0:
                return session
        self._sessions[key] = session  # most recently used last
        return session

    def take_notices(self) -> list[str]:
        """Notices from opening sessions since the last call (e.g. ``auto`` fell back to the
        CPU because CUDA did not start, and why); each is given once."""
        notices, self._notices = self._notices, []
        return notices

    def exposing(self, tensors: Sequence[str]) -> Session:
        """A session that returns ``tensors`` as extra outputs."""
        names = tuple(dict.fromkeys(tensors))
        return self.session(("expose", names), lambda: expose(self.graph, names))

    def run(self, session: Session, feeds: Mapping[str, np.ndarray], names: Sequence[str],
            source: str) -> dict[str, np.ndarray]:
        """``names`` for ``feeds``; onnxruntime refusing the input is :class:`RejectedInput`."""
        try:
            return session.run(dict(feeds), list(names))
        except Exception as exc:
            if not is_onnxruntime_error(exc):
                raise
            raise RejectedInput(
                f"{source}: the model rejected this input: {describe_error(exc)}"
            ) from exc

    # ------------------------------------------------------------------ feeds
    def feeds(
        self, primary: ModelInput, batch: np.ndarray, options: InputOptions
    ) -> tuple[dict[str, np.ndarray], dict[str, dict], list[str]]:
        """Feeds for ``batch`` on ``primary`` and every other input (``--feed`` values or
        zeros), the record of the others for the manifest, and notices; the others are built
        once per batch shape."""
        key = (primary.name, batch.shape, batch.dtype.str, options.feeds)
        cached = self._feeds.pop(key, None)
        if cached is None:
            while len(self._feeds) >= _FEED_CACHE:
                self._feeds.popitem(last=False)
            feeds, record, notices = build_feeds(
                self.graph.inputs, primary, batch, options, self.graph.path
            )
            feeds.pop(primary.name)
            cached = (feeds, record, notices)
        self._feeds[key] = cached
        others, record, notices = cached
        return {primary.name: batch, **others}, record, list(notices)

    # ------------------------------------------------------------------ maps
    def plan(self, probes: Sequence[Probe], feeds: Mapping[str, np.ndarray],
             max_memory: int | None = None) -> MemoryPlan:
        """How the maps of ``probes`` for ``feeds`` are captured within the memory budget.

        Static shapes come from the model's own shape inference; symbolic dimensions are bound
        from the feeds' shapes, and where that is not enough (sizes computed inside the graph)
        shape inference runs again with the concrete input shapes. A map whose shape stays
        unknown is assumed as large as the input with the layer's channel count (a guess,
        listed in ``plan.guessed``).
        """
        budget = max_memory or self.max_memory or default_max_memory()
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
            known = [d for d in dims if d is not None and d >= 0]
            return tuple(known) if len(known) == len(dims) else None

        sizes: dict[int, int] = {}
        guessed: list[int] = []
        missing = []
        for probe in probes:
            shape = resolve(probe.shape)
            if shape is None:
                missing.append(probe)
            else:
                sizes[probe.index] = int(np.prod(shape, dtype=np.int64)) * probe.itemsize
        if missing:
            inferred = self._concrete_shapes(feeds)
            for probe in missing:
                shape, itemsize, _ = inferred.get(probe.tensor, (None, 0, 0))
                shape = resolve(shape)
                if shape is not None:
                    sizes[probe.index] = int(np.prod(shape, dtype=np.int64)) * (
                        itemsize or probe.itemsize)
                else:
                    sizes[probe.index] = guess_bytes(probe, feeds)
                    guessed.append(probe.index)
        return plan_passes(probes, sizes, budget, guessed)

    def _concrete_shapes(self, feeds: Mapping[str, np.ndarray]) -> dict:
        key = tuple(sorted((n, np.shape(a), np.asarray(a).dtype.str) for n, a in feeds.items()))
        if key not in self._shape_cache:
            self._shape_cache.clear()  # one input size at a time is the common case
            self._shape_cache[key] = infer_concrete_shapes(self.graph.proto, feeds)
        return self._shape_cache[key]

    def captures(
        self,
        prepared: PreparedInput,
        primary: ModelInput,
        probes: Sequence[Probe],
        options: InputOptions,
        max_memory: int | None = None,
    ) -> Iterator[Capture]:
        """The maps of ``probes`` for one prepared input, one :class:`Capture` per pass.

        When the maps fit the memory budget there is one pass exposing them all. Otherwise
        each pass exposes its group and pins the rest (:func:`fmviz.graph.edits.pin`), so the
        numbers are those of one pass; each pass's maps are copies that outlive onnxruntime's
        memory arena, and a pass's capture can be let go before the next one runs.
        """
        started = time.perf_counter()
        feeds, record, notices = self.feeds(primary, prepared.array, options)
        notices = [*prepared.notices, *notices, *_rate_notices(prepared, options)]
        plan = self.plan(probes, feeds, max_memory)
        notices += plan.notices()
        source = str(prepared.path)
        chosen = [p.tensor for p in probes]
        for number, group in enumerate(plan.groups):
            opened = time.perf_counter()
            tensors = list(dict.fromkeys(p.tensor for p in group))
            if plan.passes == 1:
                session = self.exposing(tensors)
            else:
                mine = set(tensors)
                pinned = tuple(t for t in dict.fromkeys(chosen) if t not in mine)
                def build(tensors: list[str] = tensors, pinned: tuple[str, ...] = pinned) -> bytes:
                    return pin(self.graph, tensors, pinned, self.graph.shape_info.elem_types)

                session = self.session(("pin", tuple(tensors), pinned), build,
                                       keep=self._pass_sessions_kept())
            ran = time.perf_counter()
            extra = [o.name for o in self.graph.proto.graph.output
                     if number == 0 and o.name in session.outputs and o.name not in tensors]
            try:
                outputs = self.run(session, feeds, [*tensors, *extra], source)
            except RejectedInput as exc:
                raise self._with_hint(exc, prepared, primary, probes, options) from exc.__cause__
            if plan.passes > 1:
                # onnxruntime's arrays keep its whole arena alive: copy them out, so that memory
                # goes with the pass
                outputs = {name: np.array(value) for name, value in outputs.items()}
            done = time.perf_counter()
            if number == 0:
                notices += self.take_notices()
            yield Capture(
                input=prepared,
                probes=tuple(group),
                maps=_frozen({p.index: outputs[p.tensor] for p in group}),
                providers=tuple(session.providers),
                feeds=_frozen(record),
                provider_options=_frozen(session.provider_options),
                notices=tuple(notices) if number == 0 else (),
                timings_ms=_frozen({
                    "prepare": (opened - started) * 1000 if number == 0 else 0.0,
                    "session": (ran - opened) * 1000,
                    "inference": (done - ran) * 1000,
                }),
                pass_index=number,
                passes=plan.passes,
                outputs=_frozen({name: outputs[name] for name in
                                 [o.name for o in self.graph.proto.graph.output]
                                 if name in outputs}),
            )
            # a suspended generator keeps its locals: let this pass's maps and (uncached) pass
            # session go before the next pass opens its own, or two passes' memory would meet
            del outputs, session
            started = time.perf_counter()

    def _with_hint(self, exc: RejectedInput, prepared: PreparedInput, primary: ModelInput,
                   probes: Sequence[Probe], options: InputOptions) -> RejectedInput:
        """``exc`` with one line on what to try (``--length``, ``--size``), from the model."""
        from .hints import rejection_hint
        from .inputs import time_axis_of

        hint = rejection_hint(self.graph, primary, probes, prepared.kind, str(exc),
                              time_axis_of(primary, options.layout))
        return RejectedInput(f"{exc}; {hint}") if hint else exc

    def _pass_sessions_kept(self) -> int:
        """Pass sessions to keep: onnxruntime holds the weights about twice (its copy and
        pre-packed kernels) plus its working memory; keep as many as a quarter of the budget
        allows (none when even one does not fit: each pass then opens its own)."""
        weights = 2 * max(1, self.graph.proto.ByteSize())
        return (self.max_memory or default_max_memory()) // 4 // weights
