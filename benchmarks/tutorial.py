"""The tutorial approach to feature maps: one matplotlib subplot per channel, then savefig.

    python benchmarks/tutorial.py SPEC.json

Same SPEC and same capture as benchmarks/floor.py (a model with the tensors already exposed);
each layer becomes one figure of ``ceil(C / 8)`` rows of 8 subplots, ``imshow`` with a colour
map, axes off, saved as PNG at matplotlib's default dpi -- what the CS231n-style tutorials and
most blog posts do.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time

import numpy as np


def main(spec_path: str) -> int:
    started = time.perf_counter()
    with open(spec_path, encoding="utf-8") as handle:
        spec = json.load(handle)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import onnxruntime as ort
    from PIL import Image

    session = ort.InferenceSession(spec["model"], providers=spec["providers"])
    picture = Image.open(spec["image"]).convert("RGB")
    x = (np.asarray(picture, dtype=np.float32) / 255).transpose(2, 0, 1)[None]
    names = [t[1] for t in spec["tensors"]]
    outputs = dict(zip(names, session.run(names, {spec["input"]: x}), strict=True))
    os.makedirs(spec["out"], exist_ok=True)
    for stem, tensor, *_ in spec["tensors"]:
        fmap = outputs[tensor][0]
        n = fmap.shape[0]
        cols = 8
        rows = math.ceil(n / cols)
        fig = plt.figure(figsize=(cols * 1.5, rows * 1.5))
        for i in range(n):
            ax = fig.add_subplot(rows, cols, i + 1)
            ax.imshow(fmap[i], cmap="viridis")
            ax.axis("off")
        fig.savefig(os.path.join(spec["out"], f"{stem}.png"))
        plt.close(fig)
    print(json.dumps({"seconds": time.perf_counter() - started}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
