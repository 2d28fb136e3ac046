"""Per-layer receptive fields and concrete shapes for the ``fmviz layers`` table.

Kept apart from :mod:`fmviz.graph.receptive` (the analysis itself): this only asks it about each
layer's captured tensor, for the input files would be fed to, and resolves symbolic shapes for a
given image size by shape inference.
"""

from __future__ import annotations

import numpy as np

from ..errors import FmvizError
from .load import ModelGraph


def _primary(graph: ModelGraph):
    from ..inputs import primary_input, spatial_axes

    try:
        primary = primary_input(graph.inputs, None, graph.path)
    except FmvizError:
        return None, None
    return primary, spatial_axes(primary)


def layer_fields(graph: ModelGraph, stage: str, size: tuple[int, int] | None = None
                 ) -> dict[int, tuple[list | None, list | None]]:
    """``{layer index: (receptive_field, input_stride)}`` (see
    :func:`fmviz.probes.field_sizes`); ``size`` = (width, height) fed to a dynamic image model
    sharpens SAME padding."""
    from ..probes import field_sizes
    from .receptive import receptive_fields

    primary, axes = _primary(graph)
    if primary is None or not axes:
        return {}
    input_size = None
    if size is not None and len(axes) == 2:
        input_size = (size[1], size[0])
    try:
        fields = receptive_fields(graph.proto, primary.name, tuple(axes), input_size=input_size,
                                  shapes=graph.shape_info.shapes)
    except Exception:  # a graph the analysis cannot walk: the columns stay empty
        return {}
    out = {}
    for layer in graph.layers:
        found = fields.get(layer.tensor(stage), fields.get(layer.pre_tensor))
        out[layer.index] = field_sizes(found)
    return out


def resolved_shapes(graph: ModelGraph, stage: str, size: tuple[int, int]) -> dict[int, list]:
    """Each layer's shape with the image's dynamic height and width set from ``size`` =
    (width, height) and shape inference run again (a symbolic batch dimension stays as is)."""
    from .shapes import infer_concrete_shapes

    primary, axes = _primary(graph)
    if primary is None or primary.shape is None or not axes or len(axes) != 2:
        return {}
    dims = []
    rank = len(primary.shape)
    spatial = {rank + a: value for a, value in zip(axes, (size[1], size[0]), strict=True)}
    for i, dim in enumerate(primary.shape):
        if isinstance(dim, int) and dim > 0:
            dims.append(dim)
        else:
            dims.append(spatial.get(i, 1))
    dtype = primary.dtype or np.dtype(np.float32)
    feeds = {primary.name: np.zeros(dims, dtype=dtype)}
    inferred = infer_concrete_shapes(graph.proto, feeds)
    out = {}
    for layer in graph.layers:
        shape, _, _ = inferred.get(layer.tensor(stage), (None, 0, 0))
        if shape is None:
            continue
        declared = layer.shape(stage)
        resolved = list(shape)
        if (declared is not None and len(declared) == len(resolved) and resolved
                and not isinstance(declared[0], int)):  # keep a symbolic batch symbolic
            resolved[0] = declared[0]
        if all(d is not None for d in resolved[1:]):
            out[layer.index] = resolved
    return out
