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


TOP_K = 5


def output_entries(outputs: Mapping[str, np.ndarray], class_names: list[str] | None) -> list:
    """The model's own outputs as the manifest's ``outputs``: per output its name, shape,
    dtype and range; for a class output (``[1, K]``, K >= 2) the top five classes with their
    values and, when the model's metadata names its classes, their labels."""
    entries = []
    for name, value in outputs.items():
        array = np.asarray(value)
        entry: dict = {"name": name, "shape": list(array.shape), "dtype": str(array.dtype)}
        numeric = array.dtype.kind in "biuf" and array.size
        finite = array[np.isfinite(array)] if numeric else np.empty(0)
        entry["min"] = float(finite.min()) if finite.size else None
        entry["max"] = float(finite.max()) if finite.size else None
        if numeric and array.ndim == 2 and array.shape[0] == 1 and array.shape[1] >= 2:
            row = np.where(np.isfinite(array[0]), array[0].astype(np.float64), -np.inf)
            order = np.argsort(-row, kind="stable")[:TOP_K]
            labels = class_names if class_names and len(class_names) >= row.size else None
            entry["top"] = [
                {"class": int(k), "label": labels[k] if labels else None,
                 "value": float(row[k]) if np.isfinite(row[k]) else None}
                for k in order
            ]
        entries.append(entry)
    return entries


def write_manifest(folder: Path, manifest: dict) -> None:
    # compact JSON: json's fast C encoder only runs without indent (manifests of big models
    # hold tens of thousands of numbers); `jq .` pretty-prints it
    atomic_write_text(
        folder / "manifest.json", json.dumps(manifest, separators=(",", ":"), allow_nan=False)
    )
