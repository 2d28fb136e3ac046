"""``fmviz run``: capture each input's maps and write its pictures, arrays and manifest."""

from __future__ import annotations

import dataclasses
import itertools
import os
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .inputs import InputOptions, check_input_path
from .io import StemAllocator, atomic_open, ensure_dir, folder_lock, input_folder, safe_name
from .model import Model
from .probes import Probe
from .render.layer import RenderOptions, render_layer
from .reports.manifest import layer_entry, output_entries, run_manifest, write_manifest
from .runner import Capture

__all__ = ["RenderOptions", "RunOptions", "run", "write_outputs", "layer_file_stem"]


@dataclass(frozen=True)
class RunOptions:
    out: Path = Path("fmviz-out")
    patterns: tuple[str, ...] = ()
    stage: str = "post"
    render: RenderOptions = field(default_factory=RenderOptions)
    inputs: InputOptions = field(default_factory=InputOptions)
    save_arrays: bool = False
    html: bool = False  # also write index.html (fmviz.reports.gallery) next to the manifest
    workers: int | None = None  # threads drawing and encoding layers; None: the CPU count


def run(
    model: Model,
    paths: Sequence[str | Path],
    options: RunOptions,
    notify: Callable[[str], None] = lambda message: None,
) -> Iterator[tuple[Path, dict]]:
    """Visualise each input in turn; yields its folder and manifest once all is written."""
    options.render.validate()
    probes = model.probes(options.patterns, options.stage, options.inputs)
    for path in paths:  # fail on a mistyped path or provider before anything is written
        check_input_path(path)
    model.providers  # noqa: B018 - resolves (and validates) --provider now
    out = ensure_dir(options.out)
    stems = StemAllocator()
    for path in paths:
        prepared = model.prepare(path, options.inputs)
        passes = model.captures(prepared, probes, options=options.inputs)
        first = next(passes)  # the first pass now: an input the model rejects fails here
        for notice in first.notices:
            notify(notice)
        folder = input_folder(out, stems.allocate(Path(path).stem))  # never through a link
        captures = itertools.chain([first], passes)
        del first  # the pass's maps go as soon as its layers are drawn
        with folder_lock(folder):  # a concurrent run into the same folder: a clear error
            manifest = write_outputs(model, captures, folder, options)
        yield folder, manifest


def layer_file_stem(probe: Probe) -> str:
    """``NNN-<safe>``: the unique index prefix keeps stems apart even when cleaned names
    collide (also on case-insensitive file systems)."""
    return f"{probe.index:03d}-{safe_name(probe.name)}"


def write_outputs(
    model: Model, captures: Iterable[Capture], folder: Path, options: RunOptions
) -> dict:
    """Write every layer's pictures, the arrays and the manifest for one input's captures
    (one per pass; each pass's maps are let go once its layers are drawn)."""
    started = time.perf_counter()
    # Layers render independently, and the heavy parts (numpy, the deflate of PNG encoding,
    # Pillow's drawing) release the GIL, so a pool as large as the machine keeps every core
    # busy. At most ``workers`` layers' pictures exist at once. 1 draws in layer order.
    workers = options.workers or os.cpu_count() or 1
    arrays = _npz_writer(folder / "arrays.npz") if options.save_arrays else nullcontext(None)
    entries: list[dict] = []
    timings: dict[str, float] = {}
    last: Capture | None = None
    model_outputs: dict = {}
    with ThreadPoolExecutor(max_workers=workers) as pool, arrays as add_array:
        for capture in captures:
            if last is None:
                capture.input.overlay_picture()  # once, before the render threads want it
                model_outputs = dict(capture.outputs)
            for key, value in capture.timings_ms.items():
                timings[key] = timings.get(key, 0.0) + value

            def draw(probe: Probe, capture: Capture = capture) -> dict:
                array = capture.maps[probe.index]
                fields = render_layer(array, probe, capture.input, folder,
                                      layer_file_stem(probe), options.render)
                return layer_entry(probe, array, fields)

            for probe, entry in zip(capture.probes, pool.map(draw, capture.probes),
                                    strict=True):
                entries.append(entry)
                if add_array is not None:
                    add_array(probe.tensor, capture.maps[probe.index])
            # keep what the manifest needs, not the maps: the next pass runs while these
            # names still hold their values
            last = dataclasses.replace(capture, maps={}, outputs={})
            del capture, draw
    if last is None:  # no pass at all: no layer was chosen (select() refuses that earlier)
        raise ValueError("write_outputs needs at least one capture")
    rendered = time.perf_counter()
    manifest = run_manifest(
        model.graph, last, entries, options.render, options.save_arrays,
        {**timings, "render": (rendered - started) * 1000},
    )
    manifest["outputs"] = output_entries(model_outputs, model.graph.class_names)
    manifest["timings_ms"]["write"] = round((time.perf_counter() - started) * 1000, 3)
    write_manifest(folder, manifest)
    if options.html:
        from .reports import gallery

        gallery.write_run_page(
            folder, manifest, picture=last.input.overlay_picture(), signal=last.input.signal
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
