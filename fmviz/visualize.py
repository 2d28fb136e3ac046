"""``fmviz run``: capture one input's maps and write its PNGs, arrays and manifest."""

from __future__ import annotations

import json
import os
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import __version__, render
from .graph import Layer
from .inputs import InputOptions, check_input_path
from .io import (
    StemAllocator,
    atomic_open,
    atomic_write_text,
    ensure_dir,
    folder_lock,
    input_folder,
    safe_name,
)
from .model import Capture, Model
from .stats import summarize

MANIFEST_SCHEMA = "fmviz/run/1"


@dataclass(frozen=True)
class RenderOptions:
    """How maps become pictures (the CLI's rendering options)."""

    normalize: str = "channel"
    clip: float | None = None
    cmap: str | None = None  # None: magma, or RdBu_r centred on 0 for maps with negatives
    max_channels: int = 256
    alpha: float = 0.5

    def validate(self) -> None:
        """Fail on a bad option before anything runs (render's own checks and messages)."""
        render.check_options(self.normalize, self.clip, self.max_channels, self.alpha)
        if self.cmap is not None:
            render.colormap_lut(self.cmap)  # unknown names fail now, before any work


@dataclass(frozen=True)
class RunOptions:
    out: Path = Path("fmviz-out")
    patterns: tuple[str, ...] = ()
    stage: str = "post"
    render: RenderOptions = field(default_factory=RenderOptions)
    inputs: InputOptions = field(default_factory=InputOptions)
    save_arrays: bool = False
    html: bool = False  # also write index.html (fmviz.gallery) next to the manifest


def run(
    model: Model,
    paths: Sequence[str | Path],
    options: RunOptions,
    notify: Callable[[str], None] = lambda message: None,
) -> Iterator[tuple[Path, dict]]:
    """Visualise each input in turn; yields its folder and manifest once all is written."""
    options.render.validate()
    layers = model.select(options.patterns, options.stage)
    for path in paths:  # fail on a mistyped path or provider before anything is written
        check_input_path(path)
    model.providers  # noqa: B018 - resolves (and validates) --provider now
    out = ensure_dir(options.out)
    stems = StemAllocator()
    for path in paths:
        capture = model.capture(path, layers, options.stage, options.inputs)
        for notice in capture.notices:
            notify(notice)
        folder = input_folder(out, stems.allocate(Path(path).stem))  # never through a link
        with folder_lock(folder):  # a concurrent run into the same folder: a clear error
            manifest = write_outputs(model, capture, folder, options)
        yield folder, manifest


def layer_file_stem(layer: Layer) -> str:
    """``NNN-<safe>``: the unique index prefix keeps stems apart even when cleaned names
    collide (also on case-insensitive file systems)."""
    return f"{layer.index:03d}-{safe_name(layer.name)}"


def write_outputs(model: Model, capture: Capture, folder: Path, options: RunOptions) -> dict:
    """Write every layer's pictures, the arrays and the manifest for one capture."""
    started = time.perf_counter()
    capture.input.overlay_picture()  # once, before the render threads all want it
    # Layers render independently; numpy, zlib and Pillow's encoder release the GIL for the
    # heavy parts, so a small pool (up to 4 threads) keeps the cores busy on large models.
    workers = max(1, min(4, os.cpu_count() or 1))
    arrays = _npz_writer(folder / "arrays.npz") if options.save_arrays else nullcontext(None)
    entries = []
    with ThreadPoolExecutor(max_workers=workers) as pool, arrays as add_array:
        results = pool.map(
            lambda layer: _layer_entry(
                layer, capture, folder, layer_file_stem(layer), options, model.graph
            ),
            capture.layers,
        )
        for layer, (entry, array) in zip(capture.layers, results, strict=True):
            entries.append(entry)
            if add_array is not None:
                # written while the map is in hand: reading capture.maps again would re-run
                # the inference pass of a --max-memory capture that has already let it go
                add_array(layer.tensor(capture.stage), array)
            del array
    rendered = time.perf_counter()
    manifest = {
        "schema": MANIFEST_SCHEMA,
        "fmviz": __version__,
        "model": model.graph.to_json(),
        "input": {
            "path": str(capture.input.path),
            "kind": capture.input.kind,
            "tensor_shape": list(capture.input.array.shape),
            "tensor_dtype": str(capture.input.array.dtype),
            "preprocess": capture.input.preprocess,
            "feeds": capture.feeds,
        },
        "providers": capture.providers,
        "stage": capture.stage,
        "render": {
            "normalize": options.render.normalize,
            "clip": options.render.clip,
            "cmap": options.render.cmap,
            "max_channels": options.render.max_channels,
            "alpha": options.render.alpha,
        },
        "layers": entries,
        "files": {"arrays": "arrays.npz"} if options.save_arrays else {},
        "timings_ms": {
            **{k: round(v, 3) for k, v in capture.timings_ms.items()},
            "render": round((rendered - started) * 1000, 3),
        },
    }
    manifest["timings_ms"]["write"] = round((time.perf_counter() - started) * 1000, 3)
    # compact JSON: json's fast C encoder only runs without indent (manifests of big models
    # hold tens of thousands of numbers); `jq .` pretty-prints it
    atomic_write_text(
        folder / "manifest.json", json.dumps(manifest, separators=(",", ":"), allow_nan=False)
    )
    if options.html:
        from . import gallery

        gallery.write_run_page(
            folder, manifest, picture=capture.input.overlay_picture(), signal=capture.input.signal
        )
    return manifest


@contextmanager
def _npz_writer(path: Path) -> Iterator[Callable[[str, np.ndarray], None]]:
    """Add arrays one by one to ``path`` (atomic: renamed into place when all are written).

    The .npz layout (a zip of NAME.npy members, as np.savez writes it), written directly:
    np.savez(file, **arrays) breaks on a tensor named "file" and swallows one named
    "allow_pickle". Any string is a valid member name; np.load gives the exact keys back.
    """
    with atomic_open(path, "wb") as handle, zipfile.ZipFile(
        handle, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True
    ) as archive:

        def add(name: str, array: np.ndarray) -> None:
            with archive.open(f"{name}.npy", mode="w", force_zip64=True) as member:
                np.lib.format.write_array(
                    member, np.asarray(array, dtype=np.float32), allow_pickle=False
                )

        yield add


def _layer_entry(
    layer: Layer, capture: Capture, folder: Path, stem: str, options: RunOptions, graph=None
) -> tuple[dict, np.ndarray]:
    """The layer's manifest entry (its pictures written), and its map for arrays.npz."""
    array = capture.maps[layer.index]
    stats, channel_stats = summarize(array)
    entry = {
        "index": layer.index,
        "name": layer.name,
        "op": layer.op,
        "tensor": layer.tensor(capture.stage),
        "stage": capture.stage,
        "activation": layer.activation_at(capture.stage),
        "shape": list(array.shape),
        "channels": int(array.shape[1]) if array.ndim >= 2 else 1,
    }
    entry.update(render_layer(array, layer, capture, folder, stem, options.render, graph))
    entry["stats"] = stats
    entry["channel_stats"] = channel_stats
    return entry, array


def render_layer(
    array: np.ndarray,
    layer: Layer,
    capture: Capture,
    folder: Path,
    stem: str,
    options: RenderOptions,
    graph=None,
) -> dict:
    """Write one layer's pictures; returns the manifest fields describing them.

    ``graph`` (the model's ModelGraph) lets 1-D layers align their time axis with the input
    through the model's strides and pads; without it the lengths' ratio is used.
    """
    if array.size == 0:  # nothing computed (e.g. a branch that did not run): no picture
        return {"files": {}, "shown_channels": [], "view": "empty"}
    first = np.asarray(array[0]) if array.ndim >= 2 else np.asarray(array).reshape(-1)
    view: dict = {}
    if first.ndim == 2:  # [C, L]: a 1-D convolution
        from .series_view import render_series

        return render_series(first, layer, capture, folder, stem, options, graph=graph)
    normalize = options.normalize
    if first.ndim == 1:  # [N, C] (or rank <= 1): one value per channel, as a one-row strip
        strip = render.strongest_channels(first[:, np.newaxis], options.max_channels)
        cell = max(1, min(16, -(-256 // len(strip))))  # display only: cells >= 1 px, row 16 px
        row = np.repeat(first[strip], cell)
        first = np.repeat(row[np.newaxis, np.newaxis, :], 16, axis=1)
        normalize = "layer"  # one tile: its colour bar prints the values
        view = {"view": "strip", "strip_channels": [int(c) for c in strip], "strip_cell": cell}
    elif first.ndim > 3:  # 3-D convolutions [C, D, H, W]: max projection over depth
        first = first.max(axis=tuple(range(1, first.ndim - 2)))
        view["view"] = "max-projection over depth"
    maps = first
    channels = render.strongest_channels(maps, options.max_channels)
    has_negative = bool(np.nanmin(np.where(np.isfinite(maps), maps, 0)) < 0) if maps.size else False
    cmap = options.cmap or render.default_cmap(has_negative)
    centred = has_negative and render.is_diverging(cmap)
    tiles = render.make_tiles(maps, channels, normalize, options.clip, centred=centred)
    files = {"grid": f"{stem}.grid.png", "heatmap": f"{stem}.heatmap.png"}
    render.save_png(render.grid_image(tiles), folder / files["grid"])
    render.save_png(render.heatmap_image(tiles, cmap, normalize), folder / files["heatmap"])
    if view.get("view") == "strip":
        channels = view["strip_channels"]
    picture = capture.input.overlay_picture()
    if picture is not None and view.get("view") is None:
        files["overlay"] = f"{stem}.overlay.png"
        overlay = render.overlay_image(maps, picture, options.alpha)
        render.save_png(overlay, folder / files["overlay"])
    return {
        "shown_channels": [int(c) for c in channels],
        "files": files,
        "cmap": cmap,
        "grid": tiles.layout.to_json(),
        "ranges": [[float(lo), float(hi)] for lo, hi in tiles.ranges],
        **view,
    }
