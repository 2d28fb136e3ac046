"""How much a dead-filter scan costs over a plain inference loop (issue 4's figure).

    PYTHONPATH=. python benchmarks/bench_dead_filters.py [--images 200] [--rounds 3]

Builds a MobileNetV2-shaped model with random weights and a folder of generated JPEG photos
(``benchmarks/work/``, reused between runs), then times, alternating, best of ``--rounds``:

- ``plain (fmviz decode)``: a sequential loop that decodes, resizes and normalises each image
  with fmviz's own loader (the scan's preprocessing) and runs the *unmodified* model in batches
  of 16, outputs discarded;
- ``plain (PIL uint8)``: the same loop with the leanest preprocessing (Pillow resize on 8-bit
  pixels, then numpy normalisation);
- ``scan``: ``fmviz.scan.scan`` over the same files (session with the reductions, decoding
  threads, statistics), in-process;
- ``scan, no stats``: the scan's pipeline with a session of the unmodified model (what the
  statistics themselves cost on top of the pipeline).

Each timing includes creating the onnxruntime session. Prints a table and the ratios. On a
shared machine each run first waits (up to 2 minutes) for the CPUs to be idle.

Measured on the development VM (2 AMD EPYC cores, onnxruntime 1.31 CPU, quiet machine):

    500x375 JPEGs (200):  plain (fmviz decode) 11.5 ms/image, scan 21.8 ms/image: 1.6x-1.9x
    1024x768 JPEGs (100): plain (fmviz decode) 25.2 ms/image, scan 30.7 ms/image: 1.22x

The pipeline alone (``scan, no stats``) is as fast as the plain loop; the rest is the
reductions: about as much onnxruntime kernel time again as the convolutions (a third of it the
NCHWc -> NCHW reorder onnxruntime inserts before any non-convolution consumer). The lighter the
decoding per image (small pictures, a fast model), the larger the ratio.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import mobilenet_like  # noqa: E402

WORK = Path(__file__).resolve().parent / "work"
BATCH = 16


def _cpu_times() -> tuple[int, int]:
    with open("/proc/stat") as handle:
        fields = [int(x) for x in handle.readline().split()[1:]]
    return fields[3] + fields[4], sum(fields)


def wait_until_quiet(min_idle: float = 0.9, timeout: float = 120.0) -> bool:
    """On a shared machine, wait (up to ``timeout``) for the CPUs to be mostly idle."""
    if not Path("/proc/stat").exists():
        return True
    start = time.time()
    while time.time() - start < timeout:
        idle0, total0 = _cpu_times()
        time.sleep(0.5)
        idle1, total1 = _cpu_times()
        if (idle1 - idle0) / max(total1 - total0, 1) >= min_idle:
            return True
    return False


def _session(model_bytes: bytes):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])


def plain_fmviz(model_path: Path, paths: list[Path]) -> None:
    from fmviz.graph import load_model
    from fmviz.inputs import InputOptions, load_input, primary_input

    graph = load_model(model_path)
    target = primary_input(graph.inputs)
    session = _session(model_path.read_bytes())
    options = InputOptions(preset="imagenet")
    for start in range(0, len(paths), BATCH):
        arrays = [load_input(p, target, options).array for p in paths[start:start + BATCH]]
        session.run(None, {"input": np.concatenate(arrays)})


def plain_pil(model_path: Path, paths: list[Path]) -> None:
    from PIL import Image

    session = _session(model_path.read_bytes())
    mean = np.array([0.485, 0.456, 0.406], np.float32)
    std = np.array([0.229, 0.224, 0.225], np.float32)
    for start in range(0, len(paths), BATCH):
        arrays = []
        for path in paths[start:start + BATCH]:
            with Image.open(path) as image:
                picture = image.convert("RGB").resize((224, 224), Image.BILINEAR)
            pixels = (np.asarray(picture, np.float32) / 255 - mean) / std
            arrays.append(pixels.transpose(2, 0, 1))
        session.run(None, {"input": np.stack(arrays)})


def scan_fmviz(model_path: Path, paths: list[Path], stats: bool = True) -> None:
    from fmviz import scan as scan_module
    from fmviz.inputs import InputOptions
    from fmviz.model import open_model

    options = scan_module.ScanOptions(inputs=InputOptions(preset="imagenet"))
    model = open_model(model_path, providers=("cpu",))
    if stats:
        scan_module.scan(model, paths, options)
        return
    # The same pipeline, the unmodified model: reductions replaced by a trivial output.
    original = scan_module.reduction_model

    def no_reductions(proto, targets, eps):
        data, outputs = original(proto, targets[:1], eps)
        return data, outputs

    scan_module.reduction_model = no_reductions
    layers = model.select()
    try:
        model.select = lambda patterns=(), stage="post": layers[:1]  # type: ignore[method-assign]
        scan_module.scan(model, paths, options)
    finally:
        scan_module.reduction_model = original


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size", default="500x375", help="JPEG size WxH (default 500x375)")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    WORK.mkdir(parents=True, exist_ok=True)
    model_path = WORK / "mobilenet_like.onnx"
    if not model_path.exists():
        model_path.write_bytes(mobilenet_like.build().SerializeToString())
    paths = mobilenet_like.make_jpegs(WORK / f"jpegs-{width}x{height}", args.images,
                                      size=(width, height))

    runs = {
        "plain (fmviz decode)": lambda: plain_fmviz(model_path, paths),
        "plain (PIL uint8)": lambda: plain_pil(model_path, paths),
        "scan": lambda: scan_fmviz(model_path, paths),
        "scan, no stats": lambda: scan_fmviz(model_path, paths, stats=False),
    }
    times: dict[str, list[float]] = {name: [] for name in runs}
    runs["scan"]()  # warm caches (files, imports)
    for _ in range(args.rounds):
        for name, run in runs.items():
            if not wait_until_quiet():
                print(f"  (machine busy: {name} timed under load)", flush=True)
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    print(f"{len(paths)} JPEGs {width}x{height}, MobileNetV2-shaped model (52 conv layers), "
          f"batch {BATCH}, best of {args.rounds}")
    for name, values in times.items():
        print(f"  {name:22s} best {min(values):7.2f} s  median {statistics.median(values):7.2f} s"
              f"  ({len(paths) / min(values):6.1f} images/s)")
    base = min(times["plain (fmviz decode)"])
    print(f"  scan / plain (fmviz decode) = {min(times['scan']) / base:.2f}x")
    print(f"  scan / plain (PIL uint8)    = "
          f"{min(times['scan']) / min(times['plain (PIL uint8)']):.2f}x")
    print(f"  scan / scan without stats   = "
          f"{min(times['scan']) / min(times['scan, no stats']):.2f}x")


if __name__ == "__main__":
    main()
