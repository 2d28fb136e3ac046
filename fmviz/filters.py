"""``fmviz filters``: convolution weights as pictures and statistics.

Weights come from the graph (:func:`fmviz.graph.weights.conv_weights`), pictures from
:mod:`fmviz.render.filters`. Per layer ``NNN-<safe>.filters.png``; ``filters.json``
(``"schema": "fmviz/filters/1"``) holds per output channel the L2 norm, min and max of its
weights and the **near-zero** filters: L2 norm at most ``max(1e-8, 1e-3 x the layer's median
L2 norm)``, the usual cause of a dead channel that no input can wake.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from . import __version__
from .errors import ModelError, OptionError
from .graph import Layer, ModelGraph, select_layers
from .graph.weights import conv_weights
from .io import atomic_write_text, ensure_dir, safe_name

SCHEMA = "fmviz/filters/1"
DEFAULT_MAX_CHANNELS = 64
NEAR_ZERO_RELATIVE = 1e-3
NEAR_ZERO_ABSOLUTE = 1e-8


def weight_stats(w: np.ndarray) -> dict:
    """Per output channel ``l2``, ``min``, ``max`` and the near-zero channels."""
    flat = w.reshape(w.shape[0], -1)
    l2 = np.sqrt(np.square(flat).sum(axis=1))
    threshold = max(NEAR_ZERO_ABSOLUTE, NEAR_ZERO_RELATIVE * float(np.median(l2)) if l2.size
                    else 0.0)
    return {
        "l2": [float(f"{v:.7g}") for v in l2],
        "min": [float(f"{v:.7g}") for v in flat.min(axis=1)],
        "max": [float(f"{v:.7g}") for v in flat.max(axis=1)],
        "near_zero": [int(c) for c in np.flatnonzero(l2 <= threshold)],
        "near_zero_threshold": float(f"{threshold:.7g}"),
    }


def chosen_layers(graph: ModelGraph, patterns: Sequence[str]) -> list[Layer]:
    """``patterns`` as ``--layers`` reads them; none: the first convolution."""
    if not graph.layers:
        raise ModelError(f"{graph.path}: no convolution layer to draw")
    if not patterns:
        return [graph.layers[0]]
    return select_layers(graph.layers, patterns, "pre")


def draw_filters(graph: ModelGraph, patterns: Sequence[str], out: Path,
                 max_channels: int = DEFAULT_MAX_CHANNELS) -> dict:
    """Write the pictures and ``filters.json`` into ``out``; returns the report."""
    from .render import filters as render
    from .render.png import save_png

    if max_channels < 1:
        raise OptionError("max_channels", f"{max_channels}: must be at least 1")
    layers = chosen_layers(graph, patterns)
    folder = ensure_dir(out)
    first = graph.layers[0].index
    entries = []
    for layer in layers:
        w = conv_weights(graph, layer)
        entry = {"index": layer.index, "name": layer.name, "op": layer.op,
                 "groups": layer.groups, "weights_shape": None, "files": {}}
        if w is None:
            entry["note"] = "weights are not constant in the graph: nothing to draw"
            entries.append(entry)
            continue
        entry["weights_shape"] = list(w.shape)
        stats = weight_stats(w)
        entry.update(stats)
        l2 = np.asarray(stats["l2"])
        channels = sorted(range(w.shape[0]), key=lambda c: (-l2[c], c))[:max_channels]
        shown_note = (f"{len(channels)} of {w.shape[0]} output channels, largest L2 first"
                      if len(channels) < w.shape[0] else f"{w.shape[0]} output channels")
        head = (f"{layer.index} {layer.name}  weights {list(w.shape)}  symmetric scale per "
                "filter (its max |w|), 0 = grey")
        if w.ndim == 4 and w.shape[1] == 3 and layer.index == first and layer.groups == 1:
            kind = "colour"
            channels = list(range(w.shape[0]))[:max_channels]
            note = f"colour templates (input channels as R, G, B); {len(channels)} of {w.shape[0]}"
            image = render.colour_templates(w, channels, [head, note],
                                            near_zero=stats["near_zero"])
        elif w.ndim == 4 and w.shape[1] == 1:
            kind = "greyscale"
            what = "depthwise kernels" if layer.groups > 1 else "kernels (one input channel)"
            image = render.colour_templates(w, channels, [head, f"{what} in greyscale; "
                                            f"{shown_note}"], near_zero=stats["near_zero"])
        elif w.ndim == 4:
            kind = "greyscale"
            image = render.greyscale_rows(w, channels, [head, f"per input channel, strongest "
                                          f"first; {shown_note}. Only a first layer's weights "
                                          "read as colour."], near_zero=stats["near_zero"])
        elif w.ndim == 3:
            kind = "lines"
            image = render.line_plots(w, channels, [head, f"kernels per input channel "
                                      f"(strongest first); {shown_note}"])
        else:
            entry["note"] = f"{w.ndim - 2}-D kernels are not drawn"
            entries.append(entry)
            continue
        name = f"{layer.index:03d}-{safe_name(layer.name)}.filters.png"
        save_png(image.convert("RGB"), folder / name)
        entry["kind"] = kind
        entry["shown_channels"] = channels
        entry["files"] = {"filters": name}
        entries.append(entry)
    report = {"schema": SCHEMA, "fmviz": __version__, "model": graph.to_json(),
              "layers": entries}
    atomic_write_text(folder / "filters.json", json.dumps(report, indent=1) + "\n")
    return report
