"""The floor `fmviz run` is measured against: a careful user's script that uses fmviz's drawing
and Pillow's encoder, and nothing else.

    python benchmarks/floor.py SPEC.json

SPEC (written by benchmarks/run.py) names a model file that already has the captured tensors as
graph outputs (exposing them is fmviz's work, not the floor's), the picture, the output folder,
the provider, and each captured tensor with its file stem and the activation fmviz reports for
it. The script creates the onnxruntime session, feeds the picture (RGB, x/255, NCHW; the
picture already has the model's size) and, for each captured tensor, draws the pictures with
fmviz's own drawing code (:func:`fmviz.render.layer.render_layer`, default options), so it
writes **the same files** as ``fmviz run``: ``NNN.grid.png`` and ``NNN.heatmap.png``, and with
``"overlay": true`` in the SPEC ``NNN.overlay.png`` too. Only the encoder differs: every file
is saved by Pillow at ``compress_level=1`` (``render_layer``'s ``save_png`` is swapped for it in
this process), written in place. Layers are spread over a thread pool of the same size as
``fmviz run``'s default (the CPU count).

What the floor leaves out is the rest of fmviz: no layer analysis or probes (the SPEC carries
the activations), no statistics, no manifest or gallery, no atomic renames, no memory planning.
So ``fmviz run`` / this script is what fmviz's own work and its PNG encoder cost over the same
pictures drawn by a user who already has fmviz's drawing functions.
"""

from __future__ import annotations

import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's fmviz

from fmviz.render import layer as render_layer_module  # noqa: E402
from fmviz.render.layer import RenderOptions, render_layer  # noqa: E402


def pillow_save(image: Image.Image, path) -> None:
    """Pillow's encoder at its fastest deflate level, written in place."""
    image.save(path, compress_level=1)


def main(spec_path: str) -> int:
    started = time.perf_counter()
    with open(spec_path, encoding="utf-8") as handle:
        spec = json.load(handle)
    import onnxruntime as ort

    render_layer_module.save_png = pillow_save  # the one thing the floor does differently
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    session = ort.InferenceSession(spec["model"], options, providers=spec["providers"])
    picture = Image.open(spec["image"]).convert("RGB")
    x = (np.asarray(picture).astype(np.float64) * (1 / 255)).astype(np.float32)
    x = x.transpose(2, 0, 1)[None]
    names = [t[1] for t in spec["tensors"]]
    outputs = dict(zip(names, session.run(names, {spec["input"]: x}), strict=True))
    out = Path(spec["out"])
    out.mkdir(parents=True, exist_ok=True)
    source = SimpleNamespace(overlay_picture=lambda: picture if spec.get("overlay") else None)
    render_options = RenderOptions(alpha=spec.get("alpha", 0.5))

    def one(item):
        stem, tensor, activation = item
        render_layer(outputs[tensor], SimpleNamespace(activation=activation), source, out, stem,
                     render_options)

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(one, spec["tensors"]))
    print(json.dumps({"seconds": time.perf_counter() - started}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
