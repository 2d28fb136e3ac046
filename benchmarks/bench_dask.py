"""`fmviz dead-filters --engine dask` against the local engine, side by side (issue 18).

    python benchmarks/bench_dask.py                # 320 crops, MobileNetV2-like, 3 reps
    python benchmarks/bench_dask.py --quick        # 12 crops, tiny model, 1 rep (smoke test)

The same crops and model as benchmarks/run.py's scan figure (built under benchmarks/work/).
Three variants, run round-robin (so a shared machine's noise hits all alike); ratios are
medians of same-round ratios:

- local: `fmviz dead-filters MODEL crops/ --batch-size 16 --quiet`;
- dask cold: the same with `--engine dask --workers 2`: fmviz starts a LocalCluster of two
  worker processes for the run and closes it after (start-up and shut-down are counted);
- dask warm: `--engine dask --scheduler ADDR` against a scheduler and two
  `dask worker --nthreads 1` processes started here as separate processes and warmed by one
  job (their scanners, with onnxruntime sessions, are cached between jobs).

Each variant's `--json` report is compared with the local one (same channel sets and counts,
statistics equal as float32). Prints a Markdown table; targets: warm <= 1.2x local, cold <=
1.5x local.
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

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

import run as bench  # noqa: E402  (benchmarks/run.py: models, crops, process helpers)

from fmviz.engines import balanced_partition_size  # noqa: E402

TARGETS = {"warm": 1.2, "cold": 1.5}


def start_cluster(work: Path) -> tuple[list[subprocess.Popen], str]:
    """`dask scheduler` and two `dask worker --nthreads 1`, as separate processes."""
    dask = str(Path(sys.executable).with_name("dask"))
    scheduler_file = work / "scheduler.json"
    scheduler_file.unlink(missing_ok=True)
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "env": bench.env(),
             "cwd": str(work)}
    procs = [subprocess.Popen([dask, "scheduler", "--scheduler-file", str(scheduler_file),
                               "--port", "0", "--no-dashboard"], **quiet)]
    for _ in range(50):
        if scheduler_file.exists():
            break
        time.sleep(0.2)
    for _ in range(2):
        procs.append(subprocess.Popen([dask, "worker", "--scheduler-file", str(scheduler_file),
                                       "--nthreads", "1", "--no-dashboard"], **quiet))
    address = json.loads(scheduler_file.read_text())["address"]
    from distributed import Client

    with Client(address, timeout="30s") as client:
        client.wait_for_workers(2, timeout=60)
    return procs, address


def cpu_seconds(procs: list[subprocess.Popen]) -> float:
    """CPU seconds of this process's finished children (the fmviz commands and, cold, their
    cluster) plus the warm cluster's scheduler and workers: the work done, whatever else the
    machine runs at the same time."""
    import resource

    import psutil

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = usage.ru_utime + usage.ru_stime
    for proc in procs:
        try:
            for p in [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(True)]:
                times = p.cpu_times()
                total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def same_report(local: dict, other: dict) -> str:
    for key in ("inputs_scanned", "inputs_skipped", "samples", "summary", "skipped"):
        if local[key] != other[key]:
            return f"differs: {key}"
    for a, b in zip(local["layers"], other["layers"], strict=True):
        for key in ("dead", "rare", "constant", "active_fraction", "positions"):
            if a[key] != b[key]:
                return f"differs: {a['name']} {key}"
        for key in ("max_abs", "min", "max"):
            if np.asarray(a[key], np.float32).tobytes() != np.asarray(b[key], np.float32).tobytes():
                return f"differs: {a['name']} {key}"
        for key in ("mean", "std"):  # the report keeps 7 significant digits: +-1 in the last
            if not np.allclose(a[key], b[key], rtol=1e-6, atol=0):
                return f"differs: {a['name']} {key}"
    s = local["summary"]
    return f"identical (dead {s['dead']}, rare {s['rare']}, constant {s['constant']})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--reps", type=int)
    parser.add_argument("--partition-size", type=int, default=None)
    parser.add_argument("--work", default=str(HERE / "work"))
    args = parser.parse_args(argv)
    cfg = bench.Config(argparse.Namespace(quick=args.quick, reps=args.reps, work=args.work,
                                          provider="cpu", only=None))
    model = bench.build_models(cfg)["mobilenet_v2"]
    crops = bench.make_crops(cfg)
    count = len(list(crops.glob("*.jpg")))
    part = ["--partition-size", args.partition_size] if args.partition_size else []
    base = ["dead-filters", model, crops, "--batch-size", 16, "--quiet"]
    work = Path(tempfile.mkdtemp(prefix="fmviz-bench-dask-"))
    procs, address = start_cluster(work)
    try:
        variants = {
            "local": bench.fmviz_cmd(*base),
            "dask cold": bench.fmviz_cmd(*base, "--engine", "dask", "--workers", 2, *part),
            "dask warm": bench.fmviz_cmd(*base, "--engine", "dask", "--scheduler", address,
                                         *part),
        }
        reports = {name: json.loads(bench.run_process([*cmd, "--json"])[2])
                   for name, cmd in variants.items()}  # also warms the workers
        checks = {name: same_report(reports["local"], r) for name, r in reports.items()}
        times: dict[str, list[float]] = {name: [] for name in variants}
        cpu: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(cfg.reps):
            for name, cmd in variants.items():
                before = cpu_seconds(procs)
                times[name].append(bench.run_process(cmd)[0])
                cpu[name].append(cpu_seconds(procs) - before)
        start = time.perf_counter()
        from distributed import LocalCluster

        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                               dashboard_address=None)
        up = time.perf_counter() - start
        start = time.perf_counter()
        cluster.close()
        down = time.perf_counter() - start
    finally:
        for proc in procs[::-1]:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)
    med = {name: statistics.median(values) for name, values in times.items()}
    size = args.partition_size or f"default ({balanced_partition_size(count, 2)} here)"
    print(f"{count} JPEG crops, MobileNetV2-like, batch 16, {os.cpu_count()} cores, "
          f"{cfg.reps} reps (median), partition size {size}\n")
    cpu_med = {name: statistics.median(values) for name, values in cpu.items()}
    print("| variant | seconds | / local (paired) | target | CPU seconds | / local | report |")
    print("|---|---|---|---|---|---|---|")
    for name in variants:
        key = name.split()[-1]
        target = f"<= {TARGETS[key]}x" if key in TARGETS else ""
        rel = bench.paired(times, name, "local")  # median of same-round ratios
        met = "" if key not in TARGETS else (" met" if rel <= TARGETS[key] else " MISSED")
        print(f"| {name} | {med[name]:.2f} | {rel:.2f}x | {target}{met} | "
              f"{cpu_med[name]:.1f} | {cpu_med[name] / cpu_med['local']:.2f}x | "
              f"{checks[name]} |")
    print(f"\nLocalCluster(2 workers) start-up {up:.2f} s, shut-down {down:.2f} s; "
          f"raw seconds: {json.dumps({k: [round(x, 2) for x in v] for k, v in times.items()})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
