"""Probes: what will be captured for one selected layer, decided once, before anything runs.

Selecting layers and a stage turns each layer into a frozen :class:`Probe`: the tensor to read,
its declared shape and element size, the activation at that stage and what it implies for the
values (never negative; at rest at or below zero), and, for 1-D layers, where its steps sit on
the input's time axis. Everything downstream (the runner, the scan, the renderers, the reports)
takes probes, never a stage string and never the ONNX graph.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .graph import Layer, ModelGraph, ModelInput
from .graph.activations import NON_NEGATIVE, RESTS_AT_OR_BELOW_ZERO
from .graph.shapes import Shape

QUANTIZED_OPS = frozenset({"QLinearConv", "ConvInteger"})


@dataclass(frozen=True)
class Probe:
    """One layer at one stage: the tensor fmviz reads and what is known about its values."""

    layer: Layer
    stage: str  # "post" | "pre"
    tensor: str
    shape: Shape | None  # as shape inference declared it (symbolic dims by name)
    activation: str | None  # the activation at this stage (None for "pre")
    non_negative: bool  # the values can never be negative (after ReLU, Sigmoid, ...)
    rests_at_or_below_zero: bool  # non-positive inputs give values <= 0 ("inactive" applies)
    quantized: bool  # an integer map (QLinearConv / ConvInteger before any activation)
    itemsize: int  # bytes per value of the map as onnxruntime returns it
    # 1-D layers: output step j is centred on input sample offset + stride * j, as derived from
    # the graph; None where the path from the input does not say (the renderer then estimates)
    time_axis: tuple[float, float] | None = None

    @property
    def index(self) -> int:
        return self.layer.index

    @property
    def name(self) -> str:
        return self.layer.name

    @property
    def op(self) -> str:
        return self.layer.op

    @property
    def channels(self) -> int | None:
        return self.layer.channels

    def describe(self) -> dict:
        """The fields manifests and reports share for a layer."""
        return {
            "index": self.index,
            "name": self.name,
            "op": self.op,
            "tensor": self.tensor,
            "stage": self.stage,
            "activation": self.activation,
        }


def make_probes(
    graph: ModelGraph,
    layers: Sequence[Layer],
    stage: str,
    primary: ModelInput | None = None,
    time_axis_of_input: int | None = None,
) -> list[Probe]:
    """Probes for ``layers`` at ``stage``. ``primary`` is the input files are fed to and
    ``time_axis_of_input`` its time axis (-1 for ``[N, C, L]`` and ``[N, L]``, -2 for
    ``[N, L, C]``; None for images), from which 1-D layers get their time axis."""
    axes: dict[str, tuple[float, float, int]] = {}
    if primary is not None and time_axis_of_input is not None:
        from .graph.timeaxis import time_axes

        axes = time_axes(graph.proto, primary.name, time_axis_of_input)
    types = graph.shape_info.elem_types
    probes = []
    for layer in layers:
        tensor = layer.tensor(stage)
        activation = layer.activation_at(stage)
        quantized = layer.op in QUANTIZED_OPS and tensor == layer.pre_tensor
        itemsize = 4  # float32, and ConvInteger's int32
        if layer.op in QUANTIZED_OPS and types.get(tensor):
            from onnx import helper

            itemsize = int(np.dtype(helper.tensor_dtype_to_np_dtype(types[tensor])).itemsize)
        elif stage == "pre" and layer.op == "QLinearConv":
            itemsize = 1
        found = None
        for candidate in (tensor, layer.pre_tensor):  # the activation keeps the time axis
            if candidate in axes and axes[candidate][2] == -1:
                found = (float(axes[candidate][0]), float(axes[candidate][1]))
                break
        probes.append(
            Probe(
                layer=layer,
                stage=stage,
                tensor=tensor,
                shape=layer.shape(stage),
                activation=activation,
                non_negative=activation in NON_NEGATIVE,
                rests_at_or_below_zero=activation in RESTS_AT_OR_BELOW_ZERO,
                quantized=quantized,
                itemsize=itemsize,
                time_axis=found,
            )
        )
    return probes
