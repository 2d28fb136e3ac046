"""One capture-overhead variant in a process of its own (used by benchmarks/run.py).

    python benchmarks/capture_worker.py MODEL VARIANT SHAPE PROVIDER

VARIANT is ``plain`` (the unmodified model), ``post`` or ``pre`` (every layer's map exposed, as
fmviz's runner builds the session). The worker builds its one session, runs it once, prints
``ready <output bytes> <seconds of one run>`` and then, for each line ``N`` read from stdin,
runs the session N times back to back and prints the wall seconds. One session per process:
no other session's onnxruntime threads spin beside the one being timed (the harness runs the
workers one at a time; an idle worker blocks on its stdin).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's fmviz

from fmviz.model import open_model  # noqa: E402
from fmviz.session import open_session  # noqa: E402


def main(model_path: str, variant: str, shape: str, provider: str) -> int:
    model = open_model(model_path, providers=(provider,))
    dims = [int(d) for d in shape.split(",")]
    feeds = {model.inputs[0].name: np.random.default_rng(0).random(dims, dtype=np.float32)}
    if variant == "plain":
        session = open_session(model.graph.proto.SerializeToString(), model.providers)
    else:
        stage = "post_tensor" if variant == "post" else "pre_tensor"
        session = model.runner.exposing([getattr(layer, stage) for layer in model.layers])
    started = time.perf_counter()
    outputs = session.run(feeds)
    once = time.perf_counter() - started
    values = outputs.values() if isinstance(outputs, dict) else outputs
    print(f"ready {sum(np.asarray(a).nbytes for a in values)} {once}", flush=True)
    for line in sys.stdin:
        count = int(line)
        started = time.perf_counter()
        for _ in range(count):
            session.run(feeds)
        print(time.perf_counter() - started, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:5]))
