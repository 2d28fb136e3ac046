"""``fmviz exemplars`` next to ``fmviz dead-filters`` on the same inputs (issue 14's 1.3x).

    PYTHONPATH=. python benchmarks/bench_exemplars.py [--model M.onnx --inputs DIR]
        [--images 200] [--rounds 3] [--layers PATTERN ...] [-- fmviz input options]

Without ``--model`` it builds the MobileNetV2-shaped model and generated JPEGs of
``bench_dead_filters.py`` (``benchmarks/work/``). Times, alternating, best of ``--rounds``,
in-process and each with its own onnxruntime session:

- ``dead-filters scan``: :func:`fmviz.scan.scan` (the in-graph statistics);
- ``exemplars scan``: :func:`fmviz.exemplars.find_exemplars` (the in-graph score and argmax per
  channel, top-K kept);
- ``exemplars + crops``: the scan, then :func:`fmviz.exemplars.write_exemplars` (reads the
  winning inputs again, cuts crops, writes the PNGs and JSON) into a temporary folder.

Prints the table and the ratios to the dead-filter scan. Results: benchmarks/NOTES.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_dead_filters import WORK, wait_until_quiet  # noqa: E402

from fmviz.exemplars import ExemplarOptions, find_exemplars, write_exemplars  # noqa: E402
from fmviz.inputs import InputOptions  # noqa: E402
from fmviz.inputs.collect import collect_inputs  # noqa: E402
from fmviz.model import open_model  # noqa: E402
from fmviz.scan import ScanOptions, scan  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path)
    parser.add_argument("--inputs", type=Path)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--layers", action="append", default=[])
    parser.add_argument("--mean", help="comma list, unit scale")
    parser.add_argument("--std", help="comma list, unit scale")
    parser.add_argument("--no-wait", action="store_true",
                        help="Do not wait for idle CPUs (a shared machine: the runs alternate, "
                        "so the ratios stay comparable)")
    args = parser.parse_args()
    if args.model is None:
        import mobilenet_like

        WORK.mkdir(parents=True, exist_ok=True)
        model_path = WORK / "mobilenet_like.onnx"
        if not model_path.exists():
            model_path.write_bytes(mobilenet_like.build().SerializeToString())
        paths = mobilenet_like.make_jpegs(WORK / "jpegs-500x375", args.images, size=(500, 375))
    else:
        model_path = args.model
        paths = collect_inputs([str(args.inputs)])[: args.images]
    inputs = InputOptions(
        mean=tuple(float(v) for v in args.mean.split(",")) if args.mean else None,
        std=tuple(float(v) for v in args.std.split(",")) if args.std else None,
    )
    patterns = tuple(args.layers)

    def dead_filters() -> None:
        scan(open_model(model_path), paths, ScanOptions(patterns=patterns, inputs=inputs))

    def exemplars(crops: bool = False) -> None:
        model = open_model(model_path)
        options = ExemplarOptions(patterns=patterns, inputs=inputs)
        result = find_exemplars(model, paths, options)
        if crops:
            with tempfile.TemporaryDirectory() as folder:
                write_exemplars(model, result, inputs, Path(folder))

    runs = {
        "dead-filters scan": dead_filters,
        "exemplars scan": exemplars,
        "exemplars + crops": lambda: exemplars(crops=True),
    }
    times: dict[str, list[float]] = {name: [] for name in runs}
    dead_filters()  # warm caches (files, imports)
    for _ in range(args.rounds):
        for name, run in runs.items():
            if not args.no_wait and not wait_until_quiet():
                print(f"  (machine busy: {name} timed under load)", flush=True)
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    print(f"{len(paths)} inputs, {model_path.name}, layers {list(patterns) or 'all'}, "
          f"best of {args.rounds}")
    base = min(times["dead-filters scan"])
    for name, values in times.items():
        print(f"  {name:20s} best {min(values):7.2f} s  median {statistics.median(values):7.2f} s"
              f"  ({len(paths) / min(values):6.1f} inputs/s)  {min(values) / base:.2f}x")


if __name__ == "__main__":
    main()
