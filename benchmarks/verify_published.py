"""Check fmviz's captured maps against onnxruntime's own on any model (e.g. published ones).

    python benchmarks/verify_published.py MODEL INPUT OUT [fmviz run options...]

Runs ``fmviz run MODEL INPUT -o OUT --save-arrays [options]``, then feeds the same input tensor
to onnxruntime with every captured tensor added as an output by plain onnx (not fmviz) and
compares. Downloads nothing: bring the model (PUBLISHED.md lists the ones checked so far).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort


def main(argv: list[str]) -> int:
    model, source, out, *options = argv
    subprocess.run(
        [sys.executable, "-m", "fmviz", "run", model, source, "-o", out, "--save-arrays", "-q",
         *options],
        check=True,
    )
    import fmviz
    from fmviz.cli import _input_options  # the CLI's own parsing of the input options

    ctx = fmviz.cli.run.make_context("run", [model, source, *options])
    opened = fmviz.open_model(model, expose_if=ctx.params.get("expose_if", False))
    params = dict(ctx.params)
    options = _input_options(params)
    feeds, _, _ = opened.feeds(opened.prepare(source, options), options)
    folder = next(p for p in Path(out).iterdir() if (p / "arrays.npz").exists())
    arrays = np.load(folder / "arrays.npz", allow_pickle=False)

    proto = opened.graph.proto  # with --expose-if: the model with If outputs threaded out
    for name in arrays.files:
        if name not in {o.name for o in proto.graph.output}:
            proto.graph.output.add().name = name
    for level in ("ORT_ENABLE_ALL", "ORT_DISABLE_ALL"):
        so = ort.SessionOptions()
        so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
        session = ort.InferenceSession(proto.SerializeToString(), so,
                                       providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        outputs = dict(zip(names, session.run(names, feeds), strict=True))
        worst = {
            name: float(np.max(np.abs(arrays[name] - outputs[name]), initial=0.0))
            / (float(np.max(np.abs(outputs[name]), initial=0.0)) or 1.0)
            for name in arrays.files
        }
        over = {name: value for name, value in worst.items() if value > 1e-4}
        print(f"{Path(model).name} vs onnxruntime {level}: {len(arrays.files)} maps, "
              f"worst relative difference {max(worst.values()):.1e}"
              + (f"; over 1e-4: {over}" if over else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
