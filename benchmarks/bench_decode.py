"""CPU time of fmviz's image loading over the benchmark's 320 JPEG crops.

    python benchmarks/bench_decode.py [--crops N] [--reps R] [--work DIR]

Makes the crops with ``run.make_crops`` (the ``crops-320`` folder of a full run), then loads
every crop for the MobileNetV2-like input [1, 3, 224, 224] float32 with ``load_input`` (decode,
orient, convert, resize, normalise), ``--reps`` times in this one process, and prints the
median CPU seconds (``time.process_time``) of one pass. Also prints the decode + resize alone
(Pillow, uint8), the floor that normalising adds to.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--crops", type=int, default=320)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--work", type=Path, default=HERE / "work")
    parser.add_argument("--preset", default=None)
    args = parser.parse_args()

    import run

    from fmviz.graph import ModelInput
    from fmviz.inputs import InputOptions, load_input

    folder = run.make_crops(SimpleNamespace(work=args.work, crops=args.crops))
    paths = sorted(folder.glob("*.jpg"))
    target = ModelInput("input", (1, 3, 224, 224), np.dtype(np.float32))
    options = InputOptions(preset=args.preset)

    def fmviz_pass() -> None:
        for path in paths:
            load_input(path, target, options)

    def pillow_pass() -> None:
        from PIL import Image

        for path in paths:
            with Image.open(path) as image:
                np.asarray(image.convert("RGB").resize((224, 224), Image.BILINEAR))

    for name, work in (("fmviz load_input", fmviz_pass), ("Pillow decode+resize", pillow_pass)):
        work()  # warm-up
        times = []
        for _ in range(args.reps):
            start = time.process_time()
            work()
            times.append(time.process_time() - start)
        print(f"{name}: {statistics.median(times):.3f} s CPU for {len(paths)} crops "
              f"(min {min(times):.3f}, max {max(times):.3f})")


if __name__ == "__main__":
    main()
