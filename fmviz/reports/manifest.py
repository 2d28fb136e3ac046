"""The run manifest (``"schema": "fmviz/run/1"``): one JSON file per input of ``fmviz run``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .. import __version__
from ..io import atomic_write_text
from ..stats import summarize

if TYPE_CHECKING:  # pragma: no cover
    from ..graph import ModelGraph
    from ..probes import Probe
    from ..render.layer import RenderOptions
    from ..runner import Capture

SCHEMA = "fmviz/run/1"


def layer_entry(probe: Probe, array: np.ndarray, pictures: Mapping) -> dict:
    """One layer of the manifest: what was captured, its pictures and its statistics."""
    stats, channel_stats = summarize(array)
    entry = {
        **probe.describe(),
        "shape": list(array.shape),
        "channels": int(array.shape[1]) if array.ndim >= 2 else 1,
    }
    entry.update(pictures)
    entry["stats"] = stats
    entry["channel_stats"] = channel_stats
    return entry


def run_manifest(
    graph: ModelGraph,
    capture: Capture,
    layers: list[dict],
    render: RenderOptions,
    arrays: bool,
    timings_ms: Mapping[str, float],
) -> dict:
    """The manifest of one input: the model, the input as fed, the layers, the timings."""
    source = capture.input
    return {
        "schema": SCHEMA,
        "fmviz": __version__,
        "model": graph.to_json(),
        "input": {
            "path": str(source.path),
            "kind": source.kind,
            "tensor_shape": list(source.array.shape),
            "tensor_dtype": str(source.array.dtype),
            "preprocess": source.preprocess,
            "feeds": dict(capture.feeds),
        },
        "providers": list(capture.providers),
        "provider_options": {k: dict(v) for k, v in capture.provider_options.items()},
        "stage": capture.stage,
        "render": render.to_json(),
        "layers": layers,
        "files": {"arrays": "arrays.npz"} if arrays else {},
        "timings_ms": {k: round(v, 3) for k, v in timings_ms.items()},
    }


def write_manifest(folder: Path, manifest: dict) -> None:
    # compact JSON: json's fast C encoder only runs without indent (manifests of big models
    # hold tens of thousands of numbers); `jq .` pretty-prints it
    atomic_write_text(
        folder / "manifest.json", json.dumps(manifest, separators=(",", ":"), allow_nan=False)
    )
