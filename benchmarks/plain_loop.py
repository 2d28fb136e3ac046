"""The loop `fmviz dead-filters` is measured against: decode, resize, normalise, infer.

    python benchmarks/plain_loop.py MODEL FOLDER [--batch 16] [--provider NAME]

Every image file under FOLDER (sorted), decoded by Pillow, converted to RGB, resized
(bilinear) to the model's static height and width, scaled to 0..1 and laid out NCHW; batches of
``--batch`` go through the *unmodified* model with onnxruntime (full graph optimisation), the
outputs discarded. Sequential, no statistics: what anyone would write first.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("folder")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--provider", default="CPUExecutionProvider")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    import onnxruntime as ort
    from PIL import Image

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    session = ort.InferenceSession(args.model, options, providers=[args.provider])
    info = session.get_inputs()[0]
    height, width = info.shape[2], info.shape[3]
    paths = sorted(p for p in Path(args.folder).rglob("*") if p.suffix.lower() in EXTENSIONS)
    count = 0
    for start in range(0, len(paths), args.batch):
        arrays = []
        for path in paths[start:start + args.batch]:
            with Image.open(path) as image:
                picture = image.convert("RGB").resize((width, height), Image.BILINEAR)
            arrays.append((np.asarray(picture, dtype=np.float32) / 255).transpose(2, 0, 1))
        session.run(None, {info.name: np.stack(arrays)})
        count += len(arrays)
    print(json.dumps({"inputs": count, "seconds": time.perf_counter() - started}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
