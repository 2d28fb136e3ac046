"""The public face of the library: open a model, choose probes, capture feature maps."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from .errors import ModelError, OptionError
from .graph import STAGES, Layer, ModelGraph, ModelInput, load_model, select_layers
from .inputs import (
    InputOptions,
    PreparedInput,
    load_input,
    primary_input,
    spatial_axes,
    time_axis_of,
)
from .probes import Probe, make_probes
from .runner import Capture, Runner
from .session import ProviderSettings


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
        settings: ProviderSettings | None = None,
    ):
        self.graph = graph
        self.runner = Runner(graph, providers, threads, max_memory, settings)

    # ------------------------------------------------------------------ what is in it
    @property
    def path(self) -> Path:
        return self.graph.path

    @property
    def layers(self) -> list[Layer]:
        return self.graph.layers

    @property
    def inputs(self) -> list[ModelInput]:
        return self.graph.inputs

    @property
    def providers(self) -> list[str]:
        """The onnxruntime providers requested, resolved (e.g. ``auto`` to CUDA then CPU)."""
        return self.runner.providers

    def select(self, patterns: Sequence[str] = (), stage: str = "post") -> list[Layer]:
        """Reachable layers matching ``patterns`` (globs or ``re:``); all when empty.

        A model without reachable layer is a :class:`ModelError` that says why.
        """
        if stage not in STAGES:
            raise OptionError("stage", f"{stage!r}: choose post or pre")
        if not self.graph.layers:
            raise ModelError(self._no_layers_reason())
        return select_layers(self.graph.layers, patterns, stage)

    def input_options(self, options: InputOptions | None = None) -> InputOptions:
        """``options`` with what the model's metadata says about its inputs (the ``imgsz``
        of Ultralytics-style models: the default size of a dynamic input; --size wins)."""
        options = options or InputOptions()
        size = self.graph.metadata_size
        if size is None or options.model_size is not None:
            return options
        return replace(options, model_size=size)

    def primary_input(self, options: InputOptions | None = None) -> ModelInput:
        """The input files are fed to (``options.input_name``, else the first float input)."""
        options = options or InputOptions()
        return primary_input(self.graph.inputs, options.input_name, self.path)

    def probes(
        self,
        layers: Sequence[str] | Sequence[Layer] | None = None,
        stage: str = "post",
        options: InputOptions | None = None,
    ) -> list[Probe]:
        """Probes for ``layers`` (patterns or :class:`Layer` objects; all when empty)."""
        options = options or InputOptions()
        items = list(layers or ())
        if any(isinstance(item, Layer) for item in items):
            if not all(isinstance(item, Layer) for item in items):
                raise TypeError("layers: give either patterns or Layer objects, not both")
            if stage not in STAGES:
                raise OptionError("stage", f"{stage!r}: choose post or pre")
            chosen = [item for item in items if isinstance(item, Layer)]
        else:
            chosen = self.select([str(item) for item in items], stage)
        primary = self.primary_input(options)
        return make_probes(self.graph, chosen, stage, primary,
                           spatial_axes(primary, options.layout))

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
    def prepare(
        self, source: str | Path | np.ndarray, options: InputOptions | None = None
    ) -> PreparedInput:
        """Load ``source`` (a file, or an array fed as is) for the primary input."""
        options = options or InputOptions()
        target = self.primary_input(options)
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
            prepared = load_input(source, target, self.input_options(options))
        if prepared.signal is None:  # a tensor fed to a 1-D model: its signal as a series
            axis = time_axis_of(target, options.layout)
            if axis is not None and prepared.array.ndim in (2, 3) and prepared.array.size:
                item = np.asarray(prepared.array[0], dtype=np.float32)
                item = item[np.newaxis] if item.ndim == 1 else item
                prepared.signal = item.T if axis == -2 and item.ndim == 2 else item
        return prepared

    def feeds(
        self, prepared: PreparedInput, options: InputOptions | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, dict], list[str]]:
        """Feeds for every model input (``prepared`` on the primary one, ``--feed`` values or
        zeros on the others), the record of the others and notices for those fed zeros."""
        options = options or InputOptions()
        return self.runner.feeds(self.primary_input(options), prepared.array, options)

    def captures(
        self,
        source: str | Path | np.ndarray | PreparedInput,
        layers: Sequence[str] | Sequence[Layer] | Sequence[Probe] | None = None,
        stage: str = "post",
        options: InputOptions | None = None,
        max_memory: int | str | None = None,
    ) -> Iterator[Capture]:
        """The maps of ``layers`` for one input, one :class:`Capture` per pass: all in one
        pass unless they would take more than ``max_memory`` (see :meth:`Runner.captures`)."""
        options = options or InputOptions()
        items = list(layers or ())
        if items and all(isinstance(item, Probe) for item in items):
            probes = [item for item in items if isinstance(item, Probe)]
        else:
            probes = self.probes(items, stage, options)  # type: ignore[arg-type]
        prepared = source if isinstance(source, PreparedInput) else self.prepare(source, options)
        budget = None
        if max_memory is not None:
            from .memory import parse_size

            budget = parse_size(max_memory)
        return self.runner.captures(prepared, self.primary_input(options), probes, options,
                                    budget)

    def capture(
        self,
        source: str | Path | np.ndarray | PreparedInput,
        layers: Sequence[str] | Sequence[Layer] | Sequence[Probe] | None = None,
        stage: str = "post",
        options: InputOptions | None = None,
    ) -> Capture:
        """Every map of ``layers`` for one input in one :class:`Capture` (one pass; use
        :meth:`captures` to bound memory)."""
        passes = list(self.captures(source, layers, stage, options, max_memory=1 << 62))
        return passes[0]


def open_model(
    path: str | Path,
    providers: Sequence[str] = ("auto",),
    threads: int | None = None,
    max_memory: int | str | None = None,
    expose_if: bool = False,
    settings: ProviderSettings | None = None,
) -> Model:
    """Load an ONNX model safely; onnxruntime starts only when something is captured.

    ``max_memory`` (bytes, or a SIZE such as ``"4G"``) bounds the captured maps of one pass;
    default a quarter of physical memory. ``expose_if`` makes convolutions inside ``If``
    branches capturable (threaded out as extra ``If`` outputs). ``settings`` are the GPU
    provider knobs (TF32, cuDNN algorithm search, TensorRT cache; see
    :class:`fmviz.session.ProviderSettings`).
    """
    return Model(
        load_model(path, expose_if=expose_if),
        providers=providers,
        threads=threads,
        max_memory=max_memory,
        settings=settings,
    )
