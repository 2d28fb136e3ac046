"""What to try when onnxruntime rejects an input, and notices about fed numbers.

The hints are computed from the model (its probes' receptive fields, recurrent weights, constant
reshapes, Ultralytics-style metadata); onnxruntime's message only picks between candidates.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np

from .graph import ModelGraph, ModelInput
from .probes import Probe

_RECURRENT = ("LSTM", "GRU", "RNN")
_RATE_NAMES = re.compile(r"(^|[^a-z])(sr|fs|rate|sample_?rate|sampling_?rate|sample_?freq"
                         r"|sampling_?freq(uency)?|samplerate)($|[^a-z])", re.IGNORECASE)


def looks_like_rate(name: str) -> bool:
    """Whether an input's name reads like a sample rate (``sr``, ``sample_rate``, ``fs``...)."""
    return bool(_RATE_NAMES.search(name))


def network_stride(graph: ModelGraph, probes: Sequence[Probe]) -> int | None:
    """The network's largest effective stride on the input: the largest ``stride`` of the
    probes' receptive fields, or the ``stride`` in the model's metadata, whichever is larger;
    None when neither says more than 1."""
    strides = [axis.stride for probe in probes if probe.field is not None
               for axis in probe.field.axes if axis.stride and math.isfinite(axis.stride)]
    best = max((round(s) for s in strides if s >= 1), default=1)
    if graph.metadata_stride:
        best = max(best, graph.metadata_stride)
    return best if best > 1 else None


def _chunk_lengths(graph: ModelGraph, channels: int) -> list[int]:
    """Lengths the graph's fixed shapes point at: the input size of a recurrent layer (its
    ``W`` weights), and constant Reshape targets, per input channel."""
    from .graph.index import GraphIndex

    index = GraphIndex(graph.proto.graph, graph.opset_version)
    found: list[int] = []
    for node in graph.proto.graph.node:
        if node.op_type in _RECURRENT and len(node.input) > 1:
            weights = index.constants.get(node.input[1])  # dims only: the weights stay unread
            shape = tuple(int(d) for d in weights.dims) if weights is not None else ()
            if len(shape) == 3 and shape[-1] > 1:
                found.append(shape[-1])
        elif node.op_type == "Reshape" and len(node.input) > 1:
            values = index.constant(node.input[1])
            if values is not None and values.size and values.size <= 8 and np.all(values > 0):
                total = int(np.prod(values.astype(np.int64)))
                if total > 1 and total % max(channels, 1) == 0:
                    found.append(total // max(channels, 1))
    return found


def _length_from_message(message: str, channels: int) -> int | None:
    requested = re.search(r"requested shape:\s*\{([-\d,\s]*)\}", message)
    if requested:
        dims = [int(d) for d in re.findall(r"-?\d+", requested.group(1))]
        if dims and all(d > 0 for d in dims):
            total = int(np.prod(dims))
            if total % max(channels, 1) == 0:
                return total // max(channels, 1)
    actual = re.search(r"Input W must have shape \{[^}]*\}\.?\s*Actual:\s*\{([-\d,\s]*)\}",
                       message)
    if actual:
        dims = [int(d) for d in re.findall(r"-?\d+", actual.group(1))]
        if len(dims) == 3 and dims[-1] > 0:
            return dims[-1]
    return None


def rejection_hint(graph: ModelGraph, primary: ModelInput, probes: Sequence[Probe],
                   kind: str, message: str, series_axis: int | None = None) -> str | None:
    """One line on what to try after onnxruntime refused an input of ``kind``; None when
    the input's shape is fixed (nothing fmviz's options can change)."""
    shape = primary.shape
    if shape is None:
        return None

    def dynamic(axis: int) -> bool:
        if not -len(shape) <= axis < len(shape):
            return False
        dim = shape[axis]
        return not (isinstance(dim, int) and dim > 0)

    if kind == "series" and series_axis is not None and dynamic(series_axis):
        channel_axis = -1 if series_axis == -2 else -2
        channels = shape[channel_axis] if len(shape) == 3 else 1
        channels = channels if isinstance(channels, int) and channels > 0 else 1
        wanted = _length_from_message(message, channels)
        candidates = _chunk_lengths(graph, channels)
        if wanted is None and candidates:
            wanted = candidates[0]
        if wanted is not None:
            return (f"try --length {wanted} (the model seems to take chunks of {wanted} "
                    "samples)")
        return "try --length N with the chunk length the model was trained on"
    if kind == "image" and len(shape) == 4 and (dynamic(-1) or dynamic(-2) or dynamic(-3)):
        stride = network_stride(graph, probes)
        if stride is not None:
            example = stride * max(1, round(224 / stride))
            return (f"try --size WxH with both sides a multiple of {stride}, the network's "
                    f"stride (e.g. --size {example}x{example})")
        return None
    return None
