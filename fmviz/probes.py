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
from .graph.receptive import Field
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
    # the input region one position of the map sees, per spatial axis of the input (None where
    # the input has no spatial axes fmviz knows, or the map does not depend on it)
    field: Field | None = None

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

    @property
    def time_axis(self) -> tuple[float, float, bool] | None:
        """For a 1-D layer over a series input: ``(stride, offset, exact)``, output step ``j``
        centred on input sample ``offset + stride * j``; None where the graph does not say."""
        field = self.field
        if field is None or len(field.axes) != 1 or field.tensor_axes[0] != -1:
            return None
        axis = field.axes[0]
        centre = axis.centre(0)
        if axis.size is None or centre is None:
            return None
        return float(axis.stride), float(centre), bool(axis.exact)

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
    spatial_axes: Sequence[int] | None = None,
) -> list[Probe]:
    """Probes for ``layers`` at ``stage``. ``primary`` is the input files are fed to and
    ``spatial_axes`` its spatial axes (see :func:`fmviz.inputs.spatial_axes`), from which each
    probe gets its receptive field."""
    fields: dict[str, Field] = {}
    if primary is not None and spatial_axes:
        from .graph.receptive import receptive_fields

        fields = receptive_fields(graph.proto, primary.name, tuple(spatial_axes),
                                  shapes=graph.shape_info.shapes)
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
                field=fields.get(tensor, fields.get(layer.pre_tensor)),
            )
        )
    return probes


def field_sizes(field: Field | None) -> tuple[list[int] | None, list[int | float] | None]:
    """``receptive_field`` and ``input_stride`` as SPEC's JSON has them: per input spatial axis
    (``[h, w]`` or ``[t]``), both null unless the graph gives them exactly."""
    if field is None or not field.exact or any(a.size is None for a in field.axes):
        return None, None
    strides = [int(a.stride) if float(a.stride).is_integer() else float(a.stride)
               for a in field.axes]
    return [int(a.size) for a in field.axes if a.size is not None], strides
