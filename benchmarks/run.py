"""Every speed and memory figure of fmviz, measured side by side in one command.

    python benchmarks/run.py                 # full run (about 11-12 minutes on 2 cores)
    python benchmarks/run.py --quick         # tiny sizes, one repetition: a smoke test
    python benchmarks/run.py --out benchmarks/RESULTS.md --provider cuda

Builds what it needs under benchmarks/work/ (git-ignored): a ResNet-50-shaped, a
MobileNetV2-shaped and a 64-layer YOLOv8n-like detector ONNX model with random deterministic
weights (benchmarks/models.py), photo crops made from samples/*.jpg, and the models with the
captured tensors already exposed for the floor and tutorial scripts. Then it measures, each
variant interleaved with the one it is compared to (round-robin, so the noise of a shared
machine hits both alike), medians of --reps repetitions after a warm-up:

- capture overhead: onnxruntime inference with every layer's post (and pre) maps exposed,
  over the plain model, batch 1 and 16 (in-process, same session options);
- `fmviz run` end to end over benchmarks/floor.py (same capture, same grid and heatmap pixels,
  Pillow) and over benchmarks/tutorial.py (one matplotlib subplot per channel, every layer);
- `fmviz dead-filters` over benchmarks/plain_loop.py (decode, resize, normalise, infer);
- peak RSS of a scan over N and 4N inputs;
- start-up of `fmviz --help` and `fmviz layers` over `python -c pass`;
- peak RSS of `fmviz run` on the ResNet-50-shaped model at 1024x1024, every layer, with the
  default --max-memory and with a small one.

Command-line timings are subprocesses of this same interpreter running `python -m fmviz`
from this checkout (PYTHONPATH set to it). Writes the table to --out (default
benchmarks/RESULTS.md) and the raw numbers to benchmarks/work/results.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

import models as bench_models  # noqa: E402  (benchmarks/models.py)

TARGETS = {  # issue 16's figures (capture overhead is reported, no longer a target)
    "run_floor": 0.6,  # fmviz run / floor with overlays, 2 cores, <=
    "run_tutorial": 20.0,  # tutorial / fmviz run, >=
    "scan_plain": 2.0,  # dead-filters / plain loop, <=
    "rss_4n": 1.15,  # peak RSS 4N / N, <=
    "help_s": 0.15,  # fmviz --help seconds, <=
}


# ----------------------------------------------------------------------------- helpers


class Config:
    def __init__(self, args: argparse.Namespace):
        self.quick = args.quick
        self.reps = args.reps or (1 if args.quick else 5)
        self.warmup = 0 if args.quick else 1
        self.work = Path(args.work).resolve()
        self.provider = args.provider
        self.only = set(args.only.split(",")) if args.only else None
        self.crops = 12 if args.quick else 320
        self.rss_n = 4 if args.quick else 80
        self.big_size = 96 if args.quick else 1024
        self.run_size = 128 if args.quick else 640

    def wants(self, section: str) -> bool:
        return self.only is None or section in self.only

    @property
    def ort_provider(self) -> str:
        from fmviz.session import PROVIDER_ALIASES

        return PROVIDER_ALIASES.get(self.provider.lower(), self.provider)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def env() -> dict[str, str]:
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT)] + ([environment["PYTHONPATH"]] if environment.get("PYTHONPATH") else [])
    )
    environment.pop("PYTHONSTARTUP", None)
    return environment


# Started with ``python -S``: a ~10 MB process that spawns the measured command and reports
# that child's own ru_maxrss (wait4). Linux charges a child, as its peak, the resident size of
# the process it was forked from until it execs: measured straight from this harness (which
# holds models and sessions), every child would show the harness's gigabytes.
_LAUNCHER = (
    "import os, sys\n"
    "fd = int(sys.argv[1])\n"
    "pid = os.posix_spawn(sys.argv[2], sys.argv[2:], os.environ)\n"
    "_, status, usage = os.wait4(pid, 0)\n"
    "os.write(fd, str(usage.ru_maxrss).encode())\n"
    "sys.exit(os.waitstatus_to_exitcode(status))\n"
)


def run_process(
    argv: Sequence[str], stdin: str | None = None, measure_rss: bool = False
) -> tuple[float, int, str]:
    """Run ``argv`` to completion: (wall seconds, peak RSS in bytes or 0, stdout).

    With ``measure_rss`` the command runs under a small launcher that reports its peak RSS
    (ru_maxrss of that one child, from wait4)."""
    argv = [str(a) for a in argv]
    read_fd = write_fd = None
    if measure_rss:
        read_fd, write_fd = os.pipe()
        argv = [sys.executable, "-S", "-c", _LAUNCHER, str(write_fd), *argv]
    started = time.perf_counter()
    process = subprocess.Popen(
        argv, pass_fds=(write_fd,) if measure_rss else (),
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env(), cwd=str(ROOT),
    )
    if stdin is not None:
        process.stdin.write(stdin.encode())
        process.stdin.close()
    if measure_rss:
        os.close(write_fd)
    out, err = process.communicate()
    elapsed = time.perf_counter() - started
    rss = 0
    if measure_rss:
        with os.fdopen(read_fd, "rb") as pipe:
            text = pipe.read().decode() or "0"
        # ru_maxrss is in KiB on Linux, bytes on macOS
        rss = int(text) * (1 if sys.platform == "darwin" else 1024)
    if process.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} exited {process.returncode}: "
            f"{err.decode(errors='replace')[-2000:]}"
        )
    return elapsed, rss, out.decode(errors="replace")


def fmviz_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "fmviz", *map(str, args)]


def interleaved(
    variants: dict[str, Callable[[], object]], reps: int, warmup: int
) -> dict[str, list[float]]:
    """Time each variant ``reps`` times, round-robin (order rotated each round)."""
    names = list(variants)
    for _ in range(warmup):
        for name in names:
            variants[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(reps):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            started = time.perf_counter()
            variants[name]()
            times[name].append(time.perf_counter() - started)
    return times


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def paired(times: dict[str, list[float]], a: str, b: str) -> float:
    """Median over rounds of a/b timed in the same round: robust to the machine slowing down
    or speeding up between rounds (other work on a shared machine)."""
    return median([x / y for x, y in zip(times[a], times[b], strict=True)])


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def geomean(values: Sequence[float]) -> float:
    return float(math.exp(sum(math.log(v) for v in values) / len(values)))


def mib(value: float) -> str:
    return f"{value / (1 << 20):.0f} MiB"


# ----------------------------------------------------------------------------- setup


def build_models(cfg: Config) -> dict[str, Path]:
    folder = cfg.work / "models"
    if cfg.quick:
        return {
            "resnet50": bench_models.build("resnet50", folder, "-tiny", width=0.125),
            "mobilenet_v2": bench_models.build(
                "mobilenet_v2", folder, "-tiny", width=0.25, size=64),
            "detector": bench_models.build(
                "detector", folder, "-tiny", width=0.25, size=cfg.run_size),
        }
    return {name: bench_models.build(name, folder) for name in bench_models.BUILDERS}


def sample_photos() -> list[Path]:
    return sorted((ROOT / "samples").glob("*.jpg"))


def load_photos():
    from PIL import Image

    photos = []
    for path in sample_photos():
        with Image.open(path) as image:
            photos.append(image.convert("RGB"))
    if not photos:  # no samples/: a deterministic synthetic picture, so the benchmark still runs
        rng = np.random.default_rng(0)
        base = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        photos.append(Image.fromarray(base).resize((512, 512), Image.BICUBIC))
    return photos


def make_crops(cfg: Config) -> Path:
    """``cfg.crops`` JPEG crops (random positions and sizes 160..400 px) of the sample photos."""
    folder = cfg.work / f"crops-{cfg.crops}"
    done = folder / ".complete"
    if done.exists():
        return folder
    from PIL import Image

    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    photos = load_photos()
    rng = np.random.default_rng(2024)
    for i in range(cfg.crops):
        photo = photos[i % len(photos)]
        w, h = photo.size
        cw = int(rng.integers(min(160, w), min(400, w) + 1))
        ch = int(rng.integers(min(160, h), min(400, h) + 1))
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        crop = photo.crop((x, y, x + cw, y + ch))
        if rng.random() < 0.5:
            crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
        crop.save(folder / f"crop-{i:04d}.jpg", quality=90)
    done.touch()
    return folder


def make_picture(cfg: Config, size: int) -> Path:
    """A ``size`` x ``size`` JPEG: the first sample photo, centre-cropped square and resized."""
    path = cfg.work / f"photo-{size}.jpg"
    if not path.exists():
        from PIL import Image

        photo = load_photos()[0]
        side = min(photo.size)
        left, top = (photo.size[0] - side) // 2, (photo.size[1] - side) // 2
        square = photo.crop((left, top, left + side, top + side))
        square.resize((size, size), Image.BICUBIC).save(path, quality=92)
    return path


# ----------------------------------------------------------------------------- capture


class CaptureWorker:
    """benchmarks/capture_worker.py: one variant's session in a process of its own."""

    def __init__(self, model: Path, variant: str, shape: Sequence[int], provider: str):
        self.process = subprocess.Popen(
            [sys.executable, str(HERE / "capture_worker.py"), str(model), variant,
             ",".join(map(str, shape)), provider],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=env(), cwd=str(ROOT))
        line = self.process.stdout.readline().split()
        if not line or line[0] != "ready":
            raise RuntimeError(f"capture worker {variant} failed: {self.process.stderr.read()}")
        self.output_bytes, self.once = int(line[1]), float(line[2])

    def __call__(self, count: int) -> float:
        self.process.stdin.write(f"{count}\n")
        self.process.stdin.flush()
        return float(self.process.stdout.readline())

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()


def interleaved_runs(workers: dict, inner: int, reps: int, warmup: int
                     ) -> dict[str, list[float]]:
    """Per repetition, each worker runs ``inner`` inferences back to back, the workers in turn
    (order rotated each repetition); returns each one's total per repetition. Back to back, as
    a scan or a folder run would call it; the paired ratio per repetition absorbs the machine's
    slower and faster spells. Only the worker being timed runs: the others wait on a pipe."""
    names = list(workers)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(warmup + reps):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            elapsed = workers[name](inner)
            if r >= warmup:
                times[name].append(elapsed)
    return times


def bench_capture(cfg: Config, paths: dict[str, Path]) -> list[dict]:
    from fmviz.model import open_model

    cases = [("mobilenet_v2", "MobileNetV2-like"), ("resnet50", "ResNet-50-like"),
             ("detector", "64-layer detector")]
    digits = ROOT / "models" / "digits_cnn.onnx"
    if digits.exists() and not cfg.quick:
        cases.append(("digits", "digits_cnn (bundled)"))
        paths = {**paths, "digits": digits}
    rows = []
    for key, label in cases:
        model = open_model(paths[key], providers=(cfg.ort_provider,))
        target = model.inputs[0]
        for batch in (1,) if cfg.quick else (1, 16):
            if isinstance(target.shape[0], int) and target.shape[0] != batch:
                continue  # a fixed batch size: only that one
            side = 64 if cfg.quick else 224
            shape = [batch] + [d if isinstance(d, int) else side for d in target.shape[1:]]
            # one process per variant, started one after the other
            workers = {v: CaptureWorker(paths[key], v, shape, cfg.ort_provider)
                       for v in ("plain", "post", "pre")}
            try:
                # repeat short inferences inside one timing so each lasts >= ~0.25 s
                once = min(workers["plain"](1), workers["plain"](1))
                least = 0.02 if cfg.quick else 0.25
                inner = max(1, min(50, int(least / max(once, 1e-4))))
                times = interleaved_runs(workers, inner, cfg.reps, cfg.warmup)
            finally:
                for worker in workers.values():
                    worker.close()
            med = {k: median(v) / inner for k, v in times.items()}
            exposed = workers["post"].output_bytes - workers["plain"].output_bytes
            rows.append({
                "model": label, "key": key, "batch": batch, "inner": inner,
                "plain_ms": med["plain"] * 1000, "post_ms": med["post"] * 1000,
                "pre_ms": med["pre"] * 1000,
                "post_ratio": paired(times, "post", "plain"),
                "pre_ratio": paired(times, "pre", "plain"),
                "exposed_bytes": exposed, "layers": len(model.layers),
                "input": list(shape),
            })
            log(f"  capture {label} b{batch}: plain {med['plain'] * 1000:.1f} ms, "
                f"post x{rows[-1]['post_ratio']:.2f}, pre x{rows[-1]['pre_ratio']:.2f}")
    return rows


# ----------------------------------------------------------------------------- run


def _spec(cfg: Config, model_path: Path, picture: Path, layers, name: str, out: Path,
          overlay: bool = False) -> Path:
    """Write the exposed model and the JSON spec floor.py / tutorial.py read: each tensor with
    its file stem and the activation fmviz's probe reports (the scale rule depends on it)."""
    from fmviz.graph.edits import expose
    from fmviz.model import open_model
    from fmviz.visualize import layer_file_stem

    opened = open_model(model_path, providers=(cfg.ort_provider,))
    wanted = {x.name for x in layers}
    probes = [p for p in opened.probes() if p.layer.name in wanted]
    tensors = [[layer_file_stem(p), p.tensor, p.activation] for p in probes]
    exposed = cfg.work / f"{name}.exposed.onnx"
    exposed.write_bytes(expose(opened.graph, [t[1] for t in tensors]))
    spec = {
        "model": str(exposed), "image": str(picture), "out": str(out), "tensors": tensors,
        "input": opened.inputs[0].name, "providers": [cfg.ort_provider],
        "overlay": overlay, "alpha": 0.5,
    }
    path = cfg.work / f"{name}.spec.json"
    path.write_text(json.dumps(spec))
    return path


def compare_pngs(a: Path, b: Path, kinds: Sequence[str]) -> tuple[int, int]:
    """(files compared, files whose decoded pixels differ) for files of ``kinds`` in ``a``."""
    from PIL import Image

    compared = differ = 0
    for path in sorted(a.glob("*.png")):
        if path.name.split(".")[-2] not in kinds:
            continue
        other = b / path.name
        compared += 1
        if not other.exists():
            differ += 1
            continue
        x = np.asarray(Image.open(path).convert("RGB"))
        y = np.asarray(Image.open(other).convert("RGB"))
        differ += int(x.shape != y.shape or bool((x != y).any()))
    for path in b.glob("*.png"):  # files of these kinds fmviz wrote and the floor did not
        if path.name.split(".")[-2] in kinds and not (a / path.name).exists():
            compared += 1
            differ += 1
    return compared, differ


def bench_run(cfg: Config, paths: dict[str, Path]) -> dict:
    from fmviz.graph import load_model

    model = paths["detector"]
    picture = make_picture(cfg, cfg.run_size)
    graph = load_model(model)
    out = cfg.work / "out"
    shutil.rmtree(out, ignore_errors=True)
    floor_spec = _spec(cfg, model, picture, graph.layers, "detector-all-ov",
                       out / "floor-overlay", overlay=True)
    provider = ["--provider", cfg.provider]
    stem = picture.stem
    cores = os.cpu_count() or 1
    render_ms: dict[str, list[float]] = {}

    def fmviz_run(key: str, target: Path, *extra):
        def go():
            run_process(fmviz_cmd("run", model, picture, "-o", target, "-q", *provider, *extra))
            timings = json.loads((target / stem / "manifest.json").read_text())["timings_ms"]
            render_ms.setdefault(key, []).append(float(timings.get("render", 0.0)))
        return go

    # `fmviz run` at its default (--workers = the CPU count), and with 1 and 2 workers for the
    # render times; the floor draws fmviz's files (with overlays) on a pool of the CPU count.
    runs = {
        "fmviz": fmviz_run("fmviz", out / "fmviz"),
        "floor+overlay": lambda: run_process([sys.executable, HERE / "floor.py", floor_spec]),
        "fmviz-w1": fmviz_run("fmviz-w1", out / "fmviz-w1", "--workers", 1),
    }
    if cores != 2:
        runs["fmviz-w2"] = fmviz_run("fmviz-w2", out / "fmviz-w2", "--workers", 2)
    times = interleaved(runs, cfg.reps, cfg.warmup)
    med = {k: median(v) for k, v in times.items()}
    if cores == 2:  # the default is --workers 2 here
        render_ms["fmviz-w2"] = render_ms["fmviz"]
        med["fmviz-w2"] = med["fmviz"]
    skip = cfg.warmup
    render = {k: median(v[skip:] or v) for k, v in render_ms.items()}
    same = compare_pngs(out / "floor-overlay", out / "fmviz" / stem, ("grid", "heatmap"))
    same_ov = compare_pngs(out / "floor-overlay", out / "fmviz" / stem, ("overlay",))
    manifest = json.loads((out / "fmviz" / stem / "manifest.json").read_text())
    log(f"  run: fmviz {med['fmviz']:.2f} s, floor+overlay {med['floor+overlay']:.2f} s, "
        f"x{paired(times, 'fmviz', 'floor+overlay'):.2f}; render ms "
        + ", ".join(f"{k} {v:.0f}" for k, v in render.items()))

    # The tutorial approach (about 10 ms a subplot) on every layer: ~5,700 subplots, over a
    # minute a repetition, so 2 repetitions interleaved with `fmviz run` (a ~30x ratio is not
    # at the mercy of noise). --quick compares every 32nd layer.
    tutorial_layers = graph.layers if not cfg.quick else graph.layers[::32]
    tut_spec = _spec(cfg, model, picture, tutorial_layers, "detector-tutorial", out / "tutorial")
    patterns = [] if not cfg.quick else [
        arg for layer in tutorial_layers for arg in ("--layers", layer.name)]
    tut = interleaved({
        "fmviz": fmviz_run("tutorial-fmviz", out / "fmviz-subset", *patterns),
        "tutorial": lambda: run_process([sys.executable, HERE / "tutorial.py", tut_spec]),
    }, min(cfg.reps, 2), 0)
    tmed = {k: median(v) for k, v in tut.items()}
    log(f"  tutorial ({len(tutorial_layers)} layers): fmviz {tmed['fmviz']:.2f} s, "
        f"tutorial {tmed['tutorial']:.2f} s")
    return {
        "model": "64-layer detector", "input": f"{cfg.run_size}x{cfg.run_size} JPEG",
        "layers": len(graph.layers), "channels": sum(layer.channels or 0 for layer in graph.layers),
        "cores": cores,
        "fmviz_s": med["fmviz"], "floor_overlay_s": med["floor+overlay"],
        "fmviz_w1_s": med["fmviz-w1"], "fmviz_w2_s": med["fmviz-w2"],
        "ratio_floor": paired(times, "fmviz", "floor+overlay"),
        "render_ms": {"1": render["fmviz-w1"], "2": render["fmviz-w2"],
                      str(cores): render["fmviz"]},
        "pixels_compared": same[0], "pixels_differ": same[1],
        "overlay_compared": same_ov[0], "overlay_differ": same_ov[1],
        "fmviz_timings_ms": manifest.get("timings_ms"),
        "tutorial_layers": len(tutorial_layers),
        "tutorial_channels": sum(layer.channels or 0 for layer in tutorial_layers),
        "tutorial_fmviz_s": tmed["fmviz"], "tutorial_s": tmed["tutorial"],
        "tutorial_reps": len(tut["tutorial"]),
        "ratio_tutorial": paired(tut, "tutorial", "fmviz"),
        "raw": {"run": times, "tutorial": tut, "render_ms": render_ms},
    }


# ----------------------------------------------------------------------------- scan


def scan_available() -> bool:
    if not (ROOT / "fmviz" / "scan.py").exists():
        return False
    try:
        _, _, out = run_process(fmviz_cmd("--help"))
    except RuntimeError:
        return False
    return "dead-filters" in out


def bench_scan(cfg: Config, paths: dict[str, Path], crops: Path) -> dict:
    model = paths["mobilenet_v2"]
    count = len(list(crops.glob("*.jpg")))
    provider = ["--provider", cfg.provider]
    times = interleaved({
        "scan": lambda: run_process(fmviz_cmd(
            "dead-filters", model, crops, "--batch-size", 16, "--quiet", *provider)),
        "plain": lambda: run_process([sys.executable, HERE / "plain_loop.py", model, crops,
                                      "--batch", 16, "--provider", cfg.ort_provider]),
    }, cfg.reps, cfg.warmup)
    med = {k: median(v) for k, v in times.items()}
    log(f"  scan: {med['scan']:.2f} s, plain loop {med['plain']:.2f} s")

    # Peak RSS over N and 4N inputs: the first N crops, then all 4N (a fresh process each).
    small = cfg.work / f"crops-first-{cfg.rss_n}"
    if not small.exists():
        small.mkdir(parents=True)
        for path in sorted(crops.glob("*.jpg"))[: cfg.rss_n]:
            shutil.copy(path, small / path.name)
    big = cfg.work / f"crops-first-{4 * cfg.rss_n}"
    if not big.exists():
        big.mkdir(parents=True)
        for path in sorted(crops.glob("*.jpg"))[: 4 * cfg.rss_n]:
            shutil.copy(path, big / path.name)
    rss: dict[str, list[int]] = {"N": [], "4N": []}
    reps = 1 if cfg.quick else 3
    for _ in range(reps):
        for key, folder in (("N", small), ("4N", big)):
            _, peak, _ = run_process(fmviz_cmd(
                "dead-filters", model, folder, "--batch-size", 16, "--quiet", *provider),
                measure_rss=True)
            rss[key].append(peak)
    peak_n, peak_4n = median(rss["N"]), median(rss["4N"])
    log(f"  scan RSS: N={cfg.rss_n} {mib(peak_n)}, 4N {mib(peak_4n)}")
    return {
        "model": "MobileNetV2-like", "inputs": count, "batch": 16,
        "scan_s": med["scan"], "plain_s": med["plain"],
        "ratio": paired(times, "scan", "plain"),
        "rss_n": cfg.rss_n, "rss_n_bytes": peak_n, "rss_4n_bytes": peak_4n,
        "rss_ratio": ratio(peak_4n, peak_n), "raw": {"time": times, "rss": rss},
    }


# ----------------------------------------------------------------------------- start-up


def bench_startup(cfg: Config, paths: dict[str, Path]) -> dict:
    model = ROOT / "models" / "digits_cnn.onnx"
    if not model.exists():
        model = paths["mobilenet_v2"]
    times = interleaved({
        "python -c pass": lambda: run_process([sys.executable, "-c", "pass"]),
        "fmviz --help": lambda: run_process(fmviz_cmd("--help")),
        "fmviz layers": lambda: run_process(fmviz_cmd("layers", model)),
    }, 1 if cfg.quick else 10, 0 if cfg.quick else 2)
    med = {k: median(v) for k, v in times.items()}
    log("  start-up: " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in med.items()))
    return {"model": model.name, **{k: v for k, v in med.items()}, "raw": times}


# ----------------------------------------------------------------------------- big run memory


def bench_memory(cfg: Config, paths: dict[str, Path]) -> dict:
    from fmviz.memory import default_max_memory, parse_size
    from fmviz.model import open_model

    model = paths["resnet50"]
    size = cfg.big_size
    picture = make_picture(cfg, size)
    opened = open_model(model, providers=(cfg.ort_provider,))
    x = np.zeros((1, 3, size, size), np.float32)
    estimate = opened.runner.plan(opened.probes(), {"input": x}).total_bytes
    limit = f"{max(1, estimate // 2 >> 10)}K" if cfg.quick else "512M"
    out = cfg.work / "out-big"
    rows = []
    for label, extra in (("default --max-memory", []), (f"--max-memory {limit}",
                                                       ["--max-memory", limit])):
        shutil.rmtree(out, ignore_errors=True)
        elapsed, peak, _ = run_process(fmviz_cmd(
            "run", model, picture, "--size", size, "-o", out, "-q",
            "--provider", cfg.provider, *extra), measure_rss=True)
        manifest = json.loads((out / picture.stem / "manifest.json").read_text())
        budget = parse_size(limit) if extra else default_max_memory()
        plan = opened.runner.plan(opened.probes(), {"input": x}, budget)
        rows.append({"label": label, "seconds": elapsed, "peak_rss": peak,
                     "max_memory": budget, "passes": plan.passes,
                     "timings_ms": manifest.get("timings_ms")})
        log(f"  resnet {size}: {label}: {elapsed:.1f} s, peak {mib(peak)}, "
            f"{plan.passes} pass(es)")
    shutil.rmtree(out, ignore_errors=True)
    return {"size": size, "layers": len(opened.layers), "estimate_bytes": estimate,
            "rows": rows}


# ----------------------------------------------------------------------------- report


def machine() -> dict:
    import onnx
    import onnxruntime
    import PIL

    info = {"cores": os.cpu_count(), "python": platform.python_version(),
            "onnxruntime": onnxruntime.__version__, "onnx": onnx.__version__,
            "numpy": np.__version__, "Pillow": PIL.__version__,
            "platform": platform.platform()}
    try:
        import matplotlib

        info["matplotlib"] = matplotlib.__version__
    except ImportError:
        pass
    if hasattr(os, "sched_getaffinity"):
        info["usable_cores"] = len(os.sched_getaffinity(0))
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["memory_bytes"] = int(line.split()[1]) * 1024
                break
    except OSError:
        info.setdefault("cpu", platform.processor() or "unknown")
    return info


def git_commit() -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT,
                                capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=ROOT, capture_output=True, text=True).stdout.strip()
        return commit + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("**yes**" if ok else "**no**")


def target_row(figure: str, measured: str, target: str, met: str) -> str:
    """One row of the targets table."""
    return f"| {figure} | {measured} | {target} | {met} |"


def render_markdown(cfg: Config, results: dict) -> str:
    m = results["machine"]
    lines = [
        "# fmviz benchmarks",
        "",
        f"Measured {results['date']} at commit {results['commit']} with "
        f"`python benchmarks/run.py{' --quick' if cfg.quick else ''}"
        f"{'' if cfg.provider == 'cpu' else ' --provider ' + cfg.provider}`"
        f" (provider {cfg.ort_provider}).",
        "",
        f"Machine: {m.get('cpu', '?')}, {m.get('usable_cores', m['cores'])} usable cores, "
        f"{mib(m.get('memory_bytes', 0)).replace(' MiB', '')} MiB memory; Python "
        f"{m['python']}, onnxruntime {m['onnxruntime']}, onnx {m['onnx']}, numpy "
        f"{m['numpy']}, Pillow {m['Pillow']}, matplotlib {m.get('matplotlib', '-')}.",
        "",
        "The machine is shared and noisy: every figure below is a ratio of variants timed side "
        f"by side (interleaved round-robin), the median over {cfg.reps} repetitions (after "
        f"{cfg.warmup} warm-up round) of the ratio within each repetition; absolute times "
        "(medians) are only indicative.",
    ]
    if cfg.provider.lower() in ("cpu", "cpuexecutionprovider"):
        lines += ["", "CPU only: no GPU figures are claimed here (`--provider cuda` runs the same "
                  "benchmarks on a GPU build of onnxruntime)."]
    if cfg.quick:
        lines += ["", "**--quick: tiny models and sizes, one repetition. Not figures to quote.**"]
    lines += ["", "## Targets", "",
              "| Figure | Measured | Target | Met |", "|---|---|---|---|"]
    cap = results.get("capture")
    if cap:
        b1 = {r["key"]: r for r in cap if r["batch"] == 1}
        pair = [b1[k]["post_ratio"] for k in ("mobilenet_v2", "resnet50") if k in b1]
        g = geomean(pair) if pair else float("nan")
        lines.append(target_row(
            "Capture overhead, post maps exposed / plain model, geomean MobileNetV2-like + "
            "ResNet-50-like, batch 1 (one process per variant)", f"{g:.2f}x",
            "reported, no target", "n/a"))
    run = results.get("run")
    if run:
        lines.append(target_row(
            f"`fmviz run` / floor (fmviz's drawing, Pillow level 1, same files with overlays), "
            f"{run['model']} at {run['input']}, {run['cores']} cores",
            f"{run['ratio_floor']:.2f}x", f"<= {TARGETS['run_floor']}x",
            verdict(run["ratio_floor"] <= TARGETS["run_floor"])))
        r = run["render_ms"]
        falling = r["1"] > r["2"] >= r[str(run["cores"])] * 0.97
        lines.append(target_row(
            "`fmviz run` render time, `--workers` 1 / 2 / " + str(run["cores"]),
            " / ".join(f"{r[k]:.0f} ms" for k in ("1", "2", str(run["cores"]))
                       if k == "1" or k == "2" or run["cores"] > 2),
            "falling with the workers", verdict(falling)))
        lines.append(target_row(
            f"Tutorial (subplot per channel) / `fmviz run`, same {run['tutorial_layers']} layers",
            f"{run['ratio_tutorial']:.1f}x faster", f">= {TARGETS['run_tutorial']:.0f}x",
            verdict(run["ratio_tutorial"] >= TARGETS["run_tutorial"])))
    scan = results.get("scan")
    if scan and scan.get("pending"):
        lines.append(target_row("`fmviz dead-filters` / plain loop",
                                f"pending: {scan['pending']}", f"<= {TARGETS['scan_plain']}x",
                                "pending"))
        lines.append(target_row("Peak RSS of a scan, 4N / N inputs", "pending",
                                f"<= {TARGETS['rss_4n']}x", "pending"))
    elif scan:
        lines.append(target_row(
            f"`fmviz dead-filters` / plain loop, {scan['inputs']} JPEG crops, MobileNetV2-like, "
            "batches of 16", f"{scan['ratio']:.2f}x", f"<= {TARGETS['scan_plain']}x",
            verdict(scan["ratio"] <= TARGETS["scan_plain"])))
        lines.append(target_row(
            f"Peak RSS of a scan, {4 * scan['rss_n']} / {scan['rss_n']} inputs",
            f"{scan['rss_ratio']:.2f}x", f"<= {TARGETS['rss_4n']}x",
            verdict(scan["rss_ratio"] <= TARGETS["rss_4n"])))
    st = results.get("startup")
    if st:
        lines.append(target_row("`fmviz --help` wall time", f"{st['fmviz --help']:.3f} s",
                                f"<= {TARGETS['help_s']} s",
                                verdict(st["fmviz --help"] <= TARGETS["help_s"])))
    mem = results.get("memory")
    if mem:
        limited, default = mem["rows"][-1], mem["rows"][0]
        lines.append(target_row(
            f"Peak RSS, `fmviz run` ResNet-50-like {mem['size']}x{mem['size']} every layer, "
            f"{limited['label']}",
            f"{mib(limited['peak_rss'])} in {limited['passes']} passes (default: "
            f"{mib(default['peak_rss'])})", "maps bounded by --max-memory",
            verdict(limited["peak_rss"] < default["peak_rss"])))

    if cap:
        lines += ["", "## Capture overhead (onnxruntime inference, one process per variant)", "",
                  "Every layer exposed. Times per inference; ratios over the plain model timed "
                  "side by side with the same session options (ORT_ENABLE_ALL), each variant's "
                  "session alone in its own process (benchmarks/capture_worker.py), so no other "
                  "session's threads spin while one is timed. Reported, no longer a target.", "",
                  "| Model | Batch | Layers | Exposed maps | Plain | Post | Pre | "
                  "Post / plain | Pre / plain |", "|---|---|---|---|---|---|---|---|---|"]
        for r in cap:
            lines.append(f"| {r['model']} | {r['batch']} | {r['layers']} | "
                         f"{mib(r['exposed_bytes'])} | {r['plain_ms']:.1f} ms | "
                         f"{r['post_ms']:.1f} ms | {r['pre_ms']:.1f} ms | "
                         f"{r['post_ratio']:.2f}x | {r['pre_ratio']:.2f}x |")
        b1 = {r["key"]: r for r in cap if r["batch"] == 1}
        pre_pair = [b1[k]["pre_ratio"] for k in ("mobilenet_v2", "resnet50") if k in b1]
        if pre_pair:
            lines += ["", f"Geomean over MobileNetV2-like and ResNet-50-like at batch 1: post "
                      f"{geomean([b1[k]['post_ratio'] for k in ('mobilenet_v2', 'resnet50')]):.2f}x"
                      f", pre {geomean(pre_pair):.2f}x."]
    if run:
        t = run.get("fmviz_timings_ms") or {}
        lines += ["", "## `fmviz run` end to end (subprocesses)", "",
                  f"{run['model']} ({run['layers']} layers, {run['channels']} channels) on a "
                  f"{run['input']} photo; every layer, default options.", "",
                  "| Command | Median wall time | Render (manifest) | fmviz / it |",
                  "|---|---|---|---|",
                  f"| `fmviz run` (grid, heatmap, overlay, stats, manifest; --workers "
                  f"{run['cores']}, the default) | {run['fmviz_s']:.2f} s | "
                  f"{run['render_ms'][str(run['cores'])]:.0f} ms | |",
                  f"| `fmviz run --workers 1` | {run['fmviz_w1_s']:.2f} s | "
                  f"{run['render_ms']['1']:.0f} ms | |",
                  f"| `fmviz run --workers 2` | {run['fmviz_w2_s']:.2f} s | "
                  f"{run['render_ms']['2']:.0f} ms | |",
                  f"| benchmarks/floor.py: same capture, fmviz's drawing of the same files "
                  f"(grid, heatmap, overlay), Pillow compress_level=1, pool of "
                  f"{run['cores']} | {run['floor_overlay_s']:.2f} s | | "
                  f"{run['ratio_floor']:.2f}x |",
                  "",
                  f"The floor's files decode to the same pixels as fmviz's: grid and heatmap "
                  f"{run['pixels_compared'] - run['pixels_differ']} of {run['pixels_compared']} "
                  f"identical; overlays {run['overlay_compared'] - run['overlay_differ']} of "
                  f"{run['overlay_compared']}. fmviz's own split (manifest timings_ms, last "
                  f"run): " + ", ".join(f"{k} {v:.0f} ms" for k, v in t.items()) + ".",
                  "",
                  f"Tutorial approach (benchmarks/tutorial.py) on {run['tutorial_layers']} "
                  f"layers ({run['tutorial_channels']} channels, one subplot each), interleaved "
                  f"with `fmviz run` on the same layers, {run.get('tutorial_reps', 1)} "
                  f"repetitions: tutorial {run['tutorial_s']:.2f} s, "
                  f"fmviz {run['tutorial_fmviz_s']:.2f} s: fmviz is "
                  f"{run['ratio_tutorial']:.1f}x faster."]
    if scan and not scan.get("pending"):
        lines += ["", "## Dead-filter scan (subprocesses)", "",
                  "| Command | Median wall time |", "|---|---|",
                  f"| `fmviz dead-filters MODEL crops/ --batch-size 16 --quiet` | "
                  f"{scan['scan_s']:.2f} s |",
                  f"| benchmarks/plain_loop.py (decode, resize, /255, unmodified model) | "
                  f"{scan['plain_s']:.2f} s |", "",
                  f"Peak RSS (the child's own ru_maxrss, median of "
                  f"{len(scan['raw']['rss']['N'])}): {scan['rss_n']} inputs "
                  f"{mib(scan['rss_n_bytes'])}, {4 * scan['rss_n']} inputs "
                  f"{mib(scan['rss_4n_bytes'])}."]
    elif scan:
        lines += ["", "## Dead-filter scan", "", f"Pending: {scan['pending']}."]
    if st:
        base = st["python -c pass"]
        lines += ["", f"## Start-up (subprocesses, median of {len(st['raw']['fmviz --help'])})",
                  "",
                  "| Command | Wall time | Over `python -c pass` |", "|---|---|---|"]
        for key in ("python -c pass", "fmviz --help", "fmviz layers"):
            label = f"`{key}`" + (f" ({st['model']})" if key == "fmviz layers" else "")
            lines.append(f"| {label} | {st[key] * 1000:.0f} ms | "
                         f"+{(st[key] - base) * 1000:.0f} ms |")
    if mem:
        lines += ["", f"## Memory: `fmviz run` ResNet-50-like at {mem['size']}x{mem['size']}, "
                  f"every layer", "",
                  f"{mem['layers']} layers; the post maps of one input take "
                  f"{mib(mem['estimate_bytes'])} (fmviz's estimate from shapes, before "
                  f"running).", "",
                  "| Run | --max-memory | Passes | Peak RSS | Wall time |", "|---|---|---|---|---|"]
        for r in mem["rows"]:
            lines.append(f"| {r['label']} | {mib(r['max_memory'])} | {r['passes']} | "
                         f"{mib(r['peak_rss'])} | {r['seconds']:.1f} s |")
    lines += ["", "Raw numbers: benchmarks/work/results.json (not committed). Where the time "
              "goes and what would reach the targets not met: benchmarks/NOTES.md.", ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one repetition")
    parser.add_argument("--out", default=str(HERE / "RESULTS.md"), help="Markdown table path")
    parser.add_argument("--provider", default="cpu",
                        help="execution provider for every variant (passed to fmviz --provider)")
    parser.add_argument("--reps", type=int, default=0, help="repetitions (default 5; 1 quick)")
    parser.add_argument("--work", default=str(HERE / "work"), help="work folder")
    parser.add_argument("--only", default="",
                        help="comma list of sections: capture,run,scan,startup,memory")
    parser.add_argument("--report-only", action="store_true",
                        help="measure nothing: write --out again from the work folder's "
                        "results.json")
    args = parser.parse_args(argv)
    cfg = Config(args)
    if args.report_only:
        results = json.loads((cfg.work / "results.json").read_text())
        cfg.quick, cfg.reps, cfg.provider = results["quick"], results["reps"], results["provider"]
        cfg.warmup = 0 if cfg.quick else 1
        Path(args.out).write_text(render_markdown(cfg, results))
        return 0
    if cfg.quick and args.work == str(HERE / "work"):
        cfg.work = HERE / "work" / "quick"
    cfg.work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    log(f"building models and inputs in {cfg.work} ...")
    paths = build_models(cfg)
    crops = make_crops(cfg)
    results: dict = {"date": datetime.datetime.now(datetime.timezone.utc).strftime(
        "%Y-%m-%d %H:%M UTC"), "commit": git_commit(), "machine": machine(),
        "quick": cfg.quick, "reps": cfg.reps, "provider": cfg.provider}
    if cfg.wants("startup"):
        log("start-up ...")
        results["startup"] = bench_startup(cfg, paths)
    if cfg.wants("capture"):
        log("capture overhead ...")
        results["capture"] = bench_capture(cfg, paths)
    if cfg.wants("run"):
        log("fmviz run vs floor vs tutorial ...")
        results["run"] = bench_run(cfg, paths)
    if cfg.wants("scan"):
        log("dead-filters vs plain loop, RSS ...")
        if scan_available():
            results["scan"] = bench_scan(cfg, paths, crops)
        else:
            results["scan"] = {"pending": "`fmviz dead-filters` is not in this checkout yet"}
    if cfg.wants("memory"):
        log("fmviz run memory on the ResNet-50-like model ...")
        results["memory"] = bench_memory(cfg, paths)
    results["seconds"] = time.perf_counter() - started
    (cfg.work / "results.json").write_text(json.dumps(results, indent=1, default=str))
    text = render_markdown(cfg, results)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    log(f"wrote {out} in {results['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
