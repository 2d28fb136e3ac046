"""How `fmviz run`'s drawing time falls with the number of drawing threads (`--workers`).

    python benchmarks/render_workers.py MODEL PICTURE [--workers 1,2,4,8,16] [--reps 3]

Runs `fmviz run MODEL PICTURE --workers N` for each N (interleaved, one process each, the first
round a warm-up) and prints the median of the manifest's `timings_ms.render` and of the wall
time per N, as a Markdown table. On a machine with many cores this shows the drawing pool
scaling (issue 16: render time falling with N); on a loaded 2-core machine it cannot.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("picture")
    parser.add_argument("--workers", default=f"1,2,4,{os.cpu_count() or 1}")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--provider", default="cpu")
    args = parser.parse_args(argv)
    counts = list(dict.fromkeys(int(n) for n in args.workers.split(",")))
    render: dict[int, list[float]] = {n: [] for n in counts}
    wall: dict[int, list[float]] = {n: [] for n in counts}
    for rep in range(args.reps + 1):
        order = counts if rep % 2 == 0 else counts[::-1]
        for n in order:
            with tempfile.TemporaryDirectory() as out:
                started = time.perf_counter()
                subprocess.run([sys.executable, "-m", "fmviz", "run", args.model, args.picture,
                                "-o", out, "-q", "--workers", str(n), "--provider",
                                args.provider], check=True)
                seconds = time.perf_counter() - started
                manifest = json.loads(next(Path(out).glob("*/manifest.json")).read_text())
            if rep:
                render[n].append(manifest["timings_ms"]["render"])
                wall[n].append(seconds)
    one = statistics.median(render[counts[0]])
    print(f"`fmviz run` {Path(args.model).name}, {os.cpu_count()} CPUs, provider {args.provider}, "
          f"median of {args.reps}")
    print("\n| --workers | render (ms) | vs first | wall (s) |\n|---|---|---|---|")
    for n in counts:
        med = statistics.median(render[n])
        print(f"| {n} | {med:.0f} | {med / one:.2f}x | {statistics.median(wall[n]):.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
