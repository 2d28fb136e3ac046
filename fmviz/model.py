"""The public face of the library: open a model, capture feature maps for an input."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import ModelError, OptionError
from .graph import STAGES, Layer, ModelGraph, load_model, select_layers
from .inputs import InputOptions, PreparedInput, build_feeds, load_input, primary_input
from .session import Session, open_session, resolve_providers


@dataclass
class Capture:
    """The feature maps one input produced, keyed by layer index, with how they were made."""

    input: PreparedInput
    stage: str
    layers: list[Layer]
    maps: dict[int, np.ndarray]
    providers: list[str]
    feeds: dict[str, dict] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)

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
    ):
        self.graph = graph
        self.requested_providers = tuple(providers)
        self.threads = threads
        self._providers: list[str] | None = None
        self._sessions: dict[tuple[str, ...], Session] = {}

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
            return (
                f"{self.path}: no convolution in the main graph; {len(unreachable)} sit inside "
                f"control flow ({', '.join(parents[:3])}) where onnxruntime cannot expose them"
            )
        return f"{self.path}: no convolution layer (Conv, ConvTranspose, QLinearConv, ConvInteger)"

    # ------------------------------------------------------------------ running it
    @property
    def providers(self) -> list[str]:
        """The onnxruntime providers requested, resolved (e.g. ``auto`` to CUDA then CPU)."""
        if self._providers is None:
            self._providers = resolve_providers(self.requested_providers)
        return self._providers

    def session(self, tensors: Sequence[str]) -> Session:
        """A session that returns ``tensors`` (cached: one per distinct set of tensors)."""
        key = tuple(dict.fromkeys(tensors))
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
        target = primary_input(self.graph.inputs, options.input_name)
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
        feeds, record, notices = build_feeds(self.graph.inputs, target, prepared, options)
        return prepared, feeds, record, prepared.notices + notices

    def capture(
        self,
        source: str | Path | np.ndarray,
        layers: Sequence[str] | Sequence[Layer] | None = None,
        stage: str = "post",
        options: InputOptions | None = None,
    ) -> Capture:
        """Run one input and return the maps of ``layers`` (patterns or Layer objects)."""
        if layers and all(isinstance(item, Layer) for item in layers):
            chosen = list(layers)
        else:
            chosen = self.select(list(layers or ()), stage)
        started = time.perf_counter()
        prepared, feeds, record, notices = self.prepare(source, options)
        prepared_at = time.perf_counter()
        tensors = [layer.tensor(stage) for layer in chosen]
        session = self.session(tensors)
        session_at = time.perf_counter()
        try:
            outputs = session.run(feeds, list(dict.fromkeys(tensors)))
        except Exception as exc:  # onnxruntime's errors: shapes or types the model rejects
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
            raise ModelError(f"{prepared.path}: the model rejected this input: {message}") from exc
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


def open_model(
    path: str | Path, providers: Sequence[str] = ("auto",), threads: int | None = None
) -> Model:
    """Load an ONNX model safely; onnxruntime starts only when something is captured."""
    return Model(load_model(path), providers=providers, threads=threads)
