"""The GPU figures of issue 15 in one command; writes ``benchmarks/RESULTS-gpu.md``.

    python benchmarks/gpu.py --provider cuda            # on a GPU machine (~4-5 min on an H200)
    python benchmarks/gpu.py --provider cpu --quick     # dry run of every section (~1-2 min)

Sections (each bounded by what is left of ``--budget`` seconds; a section that would not fit
is skipped and says so):

- ``env``: machine, Python, onnxruntime build, ``fmviz providers --json``, nvidia-smi.
- ``pytest``: ``pytest -m gpu tests/test_providers.py`` (skipped where pytest is missing).
- ``agreement``: every ``post`` map of the benchmark models (MobileNetV2-, ResNet-50-like at
  224, the 640x640 detector) and the bundled models on the CPU and on ``--provider``, without
  and with ``--tf32``: worst ``|diff| / max|cpu map|`` per layer (target <= 1e-4 without TF32).
- ``first-run``: session creation, first and steady inference of the exposed detector with
  cuDNN's HEURISTIC, EXHAUSTIVE and DEFAULT algorithm search (one process each).
- ``capture``: inference with every ``post`` map exposed / the plain model, batch 1 and 16,
  MobileNetV2- and ResNet-50-like, one process per variant; also the scan's per-channel
  reductions in place of the maps (what stays on the device when nothing crosses the bus).
- ``run``: ``fmviz run`` end to end on the detector, ``--provider`` vs ``cpu`` (wall time, and
  the manifest's split), beside a bare onnxruntime process (import, session, one inference of
  the exposed model): the floor a one-picture run on that provider cannot go below.
- ``scan``: ``fmviz dead-filters`` over 320 crops (MobileNetV2-like, batch 16), heuristic and
  exhaustive algorithm search, vs ``benchmarks/plain_loop.py`` on the same provider.

Details (``results.json``, logs, per-layer tables) go to ``--details`` (default ``$OUT`` when
set, else ``benchmarks/work/gpu``) and into ``gpu-details.tar.gz`` there.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

import models as bench_models  # noqa: E402  (benchmarks/models.py)

SHORT = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider",
         "rocm": "ROCMExecutionProvider", "migraphx": "MIGraphXExecutionProvider",
         "tensorrt": "TensorrtExecutionProvider"}
STARTED = time.perf_counter()


def log(message: str) -> None:
    print(f"[{time.perf_counter() - STARTED:6.1f}s] {message}", flush=True)


def elapsed() -> float:
    return time.perf_counter() - STARTED


# ----------------------------------------------------------------------------- children
# Each timing that must not share a process with another variant runs as
# ``python benchmarks/gpu.py --child '{json}'`` and prints one JSON line.


def _settings(spec: dict):
    from fmviz.session import ProviderSettings

    return ProviderSettings(tf32=spec.get("tf32", False),
                            conv_search=spec.get("conv_search", "heuristic"))


def _random_feed(model, batch: int, size: int | None) -> dict[str, np.ndarray]:
    target = model.inputs[0]
    shape = []
    for position, dim in enumerate(target.shape):
        if position == 0:
            shape.append(batch)
        elif isinstance(dim, int) and dim > 0:
            shape.append(dim)
        else:
            shape.append(size or 224)
    rng = np.random.default_rng(0)
    return {target.name: rng.random(shape, dtype=np.float32)}


def _timed_runs(run, seconds: float = 0.3, reps: int = 5) -> float:
    """Median seconds per call: ``reps`` timings of back-to-back calls lasting >= ``seconds``."""
    started = time.perf_counter()
    run()
    once = max(time.perf_counter() - started, 1e-4)
    inner = max(1, int(seconds / once))
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        for _ in range(inner):
            run()
        times.append((time.perf_counter() - started) / inner)
    return statistics.median(times)


def child_capture(spec: dict) -> dict:
    from fmviz.graph.edits import expose
    from fmviz.model import open_model
    from fmviz.session import open_session

    model = open_model(spec["model"], providers=[spec["provider"]])
    tensors = list(dict.fromkeys(p.tensor for p in model.probes()))
    feeds = _random_feed(model, spec["batch"], spec.get("size"))
    if spec["variant"] == "plain":
        data = model.graph.proto.SerializeToString()
    elif spec["variant"] == "reductions":  # the scan's statistics, reduced next to each map
        from fmviz.graph.reductions import Target, reduction_model

        data, _ = reduction_model(model.graph, [
            Target(p.tensor, non_negative=p.non_negative) for p in model.probes()], 1e-6)
    else:
        data = expose(model.graph, tensors)
    session = open_session(data, model.providers, settings=_settings(spec))
    names = tensors if spec["variant"] == "exposed" else session.outputs
    for _ in range(3):
        session.run(feeds, names)
    per_run = _timed_runs(lambda: session.run(feeds, names))
    return {"seconds": per_run, "providers": session.providers, "maps": len(tensors)}


def child_first_run(spec: dict) -> dict:
    from fmviz.graph.edits import expose
    from fmviz.model import open_model
    from fmviz.session import open_session

    model = open_model(spec["model"], providers=[spec["provider"]])
    tensors = list(dict.fromkeys(p.tensor for p in model.probes()))
    feeds = _random_feed(model, 1, spec.get("size"))
    data = expose(model.graph, tensors)
    started = time.perf_counter()
    session = open_session(data, model.providers, settings=_settings(spec))
    opened = time.perf_counter()
    session.run(feeds, tensors)
    first = time.perf_counter()
    times = []
    for _ in range(5):
        t = time.perf_counter()
        session.run(feeds, tensors)
        times.append(time.perf_counter() - t)
    return {"session_s": opened - started, "first_s": first - opened,
            "steady_s": statistics.median(times), "providers": session.providers,
            "options": session.provider_options}


def child_agreement(spec: dict) -> dict:
    """Every post map on the CPU and on the provider (exact, then --tf32): worst relative
    difference per layer."""
    from fmviz.inputs import InputOptions
    from fmviz.model import open_model
    from fmviz.session import ProviderSettings

    size = spec.get("size")
    options = InputOptions(size=(size, size) if size else None)
    cpu = open_model(spec["model"], providers=["cpu"]).capture(spec["source"], options=options)
    reference = {p.name: np.asarray(cpu.maps[p.index], np.float64) for p in cpu.probes}
    del cpu
    entry: dict = {}
    for tf32 in (False, True):
        model = open_model(spec["model"], providers=[spec["provider"]],
                           settings=ProviderSettings(tf32=tf32))
        started = time.perf_counter()
        capture = model.capture(spec["source"], options=options)
        seconds = time.perf_counter() - started
        layers = {}
        for probe in capture.probes:
            want = reference[probe.name]
            got = np.asarray(capture.maps[probe.index], np.float64)
            scale = float(np.abs(want).max()) or 1.0
            layers[probe.name] = float(np.abs(got - want).max()) / scale
        worst = max(layers, key=layers.get)
        entry["tf32" if tf32 else "exact"] = {
            "worst": layers[worst], "worst_layer": worst, "layers": len(layers),
            "providers": list(capture.providers),
            "provider_options": {k: dict(v) for k, v in capture.provider_options.items()},
            "capture_s": seconds, "per_layer": layers,
        }
        del capture
    return entry


CHILDREN = {"capture": child_capture, "first-run": child_first_run,
            "agreement": child_agreement}


def run_child(spec: dict, timeout: float) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                              env=_env())
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["?"])[-1][:300]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _env() -> dict[str, str]:
    env = dict(os.environ)
    path = env.get("PYTHONPATH", "")
    if str(ROOT) not in path.split(os.pathsep):
        env["PYTHONPATH"] = os.pathsep.join(p for p in (path, str(ROOT)) if p)
    return env


def timed_process(command: list, timeout: float) -> tuple[float, int, str]:
    started = time.perf_counter()
    try:
        done = subprocess.run([str(c) for c in command], capture_output=True, text=True,
                              timeout=timeout, env=_env(), cwd=ROOT)
    except subprocess.TimeoutExpired:
        return float("nan"), 124, "timed out"
    return time.perf_counter() - started, done.returncode, (done.stdout + done.stderr)[-2000:]


# ----------------------------------------------------------------------------- sections


class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.provider = args.provider.lower()
        self.full = SHORT.get(self.provider, args.provider)
        self.quick = args.quick
        self.work = Path(args.work)
        self.work.mkdir(parents=True, exist_ok=True)
        self.details = Path(args.details)
        self.details.mkdir(parents=True, exist_ok=True)
        self.results: dict = {"provider": self.full, "quick": self.quick, "sections": {}}
        self.models: dict[str, tuple[Path, int | None]] = {}

    def left(self) -> float:
        return self.args.budget - elapsed()

    def section(self, name: str, needs: float, function) -> None:
        if name not in self.args.only:
            return
        if self.left() < needs:
            log(f"{name}: skipped ({self.left():.0f} s left, needs ~{needs:.0f} s)")
            self.results["sections"][name] = {"skipped": f"{self.left():.0f} s left"}
            return
        log(f"{name} ...")
        started = time.perf_counter()
        try:
            value = function()
        except Exception as exc:  # noqa: BLE001 - one section failing must not lose the others
            log(f"{name}: FAILED {type(exc).__name__}: {exc}")
            value = {"error": f"{type(exc).__name__}: {exc}"}
        value = value if isinstance(value, dict) else {"value": value}
        value["section_s"] = round(time.perf_counter() - started, 2)
        self.results["sections"][name] = value

    # ------------------------------------------------------------------ setup
    def build(self) -> None:
        folder = self.work / "models"
        if self.quick:
            self.models = {
                "mobilenet_v2": (bench_models.build("mobilenet_v2", folder, "-tiny",
                                                    width=0.25, size=64), None),
                "resnet50": (bench_models.build("resnet50", folder, "-tiny", width=0.125), 64),
                "detector": (bench_models.build("detector", folder, "-tiny", width=0.25,
                                                size=128), None),
            }
        else:
            self.models = {
                "mobilenet_v2": (bench_models.build("mobilenet_v2", folder), None),
                "resnet50": (bench_models.build("resnet50", folder), 224),
                "detector": (bench_models.build("detector", folder), None),
            }
        import run as bench_run  # benchmarks/run.py: the same crops and photo as RESULTS.md

        cfg = SimpleNamespace(work=self.work, crops=32 if self.quick else 320)
        self.crops = bench_run.make_crops(cfg)
        self.picture = bench_run.make_picture(cfg, 128 if self.quick else 640)

    # ------------------------------------------------------------------ env
    def env(self) -> dict:
        import onnxruntime as ort

        from fmviz import __version__

        # in a process of its own: a provider library that crashes must not end the benchmark
        _, code, output = timed_process([sys.executable, "-m", "fmviz", "providers", "--json"],
                                        timeout=min(120, self.left()))
        try:
            providers = json.loads(output.strip().splitlines()[0])
        except (ValueError, IndexError):
            providers = {"error": f"fmviz providers exit {code}: {output[-500:]}", "checks": []}
        info = {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "fmviz": __version__,
            "numpy": np.__version__,
            "onnxruntime": ort.__version__,
            "commit": git_commit(),
            "providers": providers,
        }
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            smi = subprocess.run(
                ["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                 "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
            info["gpu"] = smi.stdout.strip()
        checks = info["providers"]["checks"]
        log(f"  onnxruntime {ort.__version__} ({providers.get('package')}), "
            f"providers {providers.get('available') or providers.get('error')}, "
            f"gpu: {info.get('gpu', '-')}")
        for check in checks:
            log(f"  {check['short']}: {'starts' if check['starts'] else check['reason']}")
        return info

    # ------------------------------------------------------------------ pytest
    def pytest(self) -> dict:
        try:
            import pytest  # noqa: F401
        except ImportError:
            return {"skipped": "pytest is not installed here"}
        seconds, code, output = timed_process(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "gpu",
             "-rs", "tests/test_providers.py"], timeout=min(120, self.left()))
        tail = output.strip().splitlines()[-1] if output.strip() else ""
        log(f"  pytest -m gpu: exit {code}: {tail}")
        (self.details / "pytest-gpu.txt").write_text(output)
        return {"exit": code, "summary": tail, "seconds": seconds}

    # ------------------------------------------------------------------ agreement
    def agreement(self) -> dict:
        cases = [(name, path, self.picture, size) for name, (path, size) in self.models.items()]
        cases += [("digits_cnn", ROOT / "models" / "digits_cnn.onnx",
                   ROOT / "samples" / "digit-3.png", None),
                  ("basicmotions_cnn1d", ROOT / "models" / "basicmotions_cnn1d.onnx",
                   ROOT / "samples" / "basicmotions-walking.csv", None)]
        out: dict = {}
        for name, path, source, size in cases:
            spec = {"mode": "agreement", "model": str(path), "source": str(source),
                    "size": size, "provider": self.provider}
            entry = run_child(spec, timeout=min(120, self.left()))
            out[name] = entry
            if "error" in entry:
                log(f"  {name}: {entry['error']}")
                continue
            log(f"  {name}: worst |diff|/max {entry['exact']['worst']:.2e} "
                f"({entry['exact']['worst_layer']}), with --tf32 {entry['tf32']['worst']:.2e}; "
                f"{entry['exact']['providers'][0]}")
        (self.details / "agreement.json").write_text(json.dumps(out, indent=1))
        return {name: {k: ({kk: vv for kk, vv in v.items() if kk != "per_layer"}
                           if isinstance(v, dict) else v)
                       for k, v in entry.items()} for name, entry in out.items()}

    # ------------------------------------------------------------------ first run
    def first_run(self) -> dict:
        path, size = self.models["detector"]
        out = {}
        for search in ("heuristic", "exhaustive", "default"):
            spec = {"mode": "first-run", "model": str(path), "provider": self.provider,
                    "conv_search": search, "size": size}
            out[search] = run_child(spec, timeout=min(90, self.left()))
            value = out[search]
            if "error" in value:
                log(f"  {search}: {value['error']}")
            else:
                log(f"  {search}: session {value['session_s']:.3f} s, first "
                    f"{value['first_s']:.3f} s, steady {value['steady_s'] * 1000:.1f} ms")
        return out

    # ------------------------------------------------------------------ capture
    def capture(self) -> dict:
        variants = ["plain", "exposed", "reductions"]
        out: dict = {}
        for name in ("mobilenet_v2", "resnet50"):
            path, size = self.models[name]
            for batch in (1, 16):
                row = {}
                for variant in variants:
                    spec = {"mode": "capture", "model": str(path), "provider": self.provider,
                            "batch": batch, "variant": variant, "size": size}
                    row[variant] = run_child(spec, timeout=min(90, self.left()))
                key = f"{name}/b{batch}"
                plain = row["plain"].get("seconds")
                for variant in variants[1:]:
                    seconds = row[variant].get("seconds")
                    row[f"{variant}_ratio"] = seconds / plain if plain and seconds else None
                out[key] = row
                ratios = ", ".join(f"{v} {row[f'{v}_ratio']:.2f}x" if row[f"{v}_ratio"]
                                   else f"{v} {row[v].get('error')}" for v in variants[1:])
                log(f"  {key}: plain {plain * 1000 if plain else float('nan'):.2f} ms; "
                    f"{ratios}")
        return out

    # ------------------------------------------------------------------ run
    def run(self) -> dict:
        path, _ = self.models["detector"]
        reps = 1 if self.quick else 3
        times: dict[str, list[float]] = {self.provider: [], "cpu": [], "floor": []}
        codes = {}
        split: dict[str, dict] = {}
        floor = [sys.executable, "-c", (
            "import sys, numpy as np, onnxruntime as ort\n"
            "from fmviz.graph import load_model\nfrom fmviz.graph.edits import expose\n"
            "g = load_model(sys.argv[1])\n"
            "s = ort.InferenceSession(expose(g, [l.post_tensor for l in g.layers]), "
            "providers=[sys.argv[2], 'CPUExecutionProvider'])\n"
            "shape = [d if isinstance(d, int) else 1 for d in g.inputs[0].shape]\n"
            "s.run(None, {g.inputs[0].name: np.zeros(shape, np.float32)})\n"),
            path, self.full]
        for r in range(reps + 1):  # the first round warms the file cache, not counted
            order = [self.provider, "cpu", "floor"] if r % 2 == 0 else [
                "floor", "cpu", self.provider]
            for provider in order:
                with tempfile.TemporaryDirectory(dir=self.work) as out:
                    command = floor if provider == "floor" else [
                        sys.executable, "-m", "fmviz", "run", path, self.picture, "-o", out,
                        "--provider", provider, "--quiet"]
                    seconds, code, output = timed_process(command,
                                                          timeout=min(120, self.left()))
                    manifest = next(Path(out).glob("*/manifest.json"), None)
                    if manifest is not None:
                        split[provider] = json.loads(manifest.read_text()).get("timings_ms")
                codes[provider] = code
                if code != 0:
                    log(f"  {provider}: exit {code}: {output[-300:]}")
                if r > 0:
                    times[provider].append(seconds)
        med = {k: statistics.median(v) if v else None for k, v in times.items()}
        log(f"  fmviz run detector: {self.provider} {med[self.provider]:.2f} s, "
            f"cpu {med['cpu']:.2f} s; bare onnxruntime on {self.provider} {med['floor']:.2f} s; "
            f"split {split}")
        return {"median_s": med, "times": times, "exit": codes, "timings_ms": split}

    # ------------------------------------------------------------------ scan
    def scan(self) -> dict:
        path, _ = self.models["mobilenet_v2"]
        reps = 1 if self.quick else 2
        count = len(list(self.crops.glob("*.jpg")))
        commands = {
            "dead-filters": [sys.executable, "-m", "fmviz", "dead-filters", path, self.crops,
                             "--batch-size", 16, "--quiet", "--provider", self.provider],
            "plain": [sys.executable, HERE / "plain_loop.py", path, self.crops, "--batch", 16,
                      "--provider", self.full],
        }
        commands["dead-filters-exhaustive"] = [*commands["dead-filters"], "--conv-search",
                                               "exhaustive"]
        commands["dead-filters-default"] = [*commands["dead-filters"], "--conv-search", "default"]
        times: dict[str, list[float]] = {k: [] for k in commands}
        for r in range(reps):
            names = list(commands)
            names = names[r % len(names):] + names[:r % len(names)]
            for name in names:
                seconds, code, output = timed_process(commands[name],
                                                      timeout=min(120, self.left()))
                if code != 0:
                    log(f"  {name}: exit {code}: {output[-300:]}")
                times[name].append(seconds)
        med = {k: statistics.median(v) for k, v in times.items()}
        result = {"inputs": count, "median_s": med, "times": times,
                  "ratio": med["dead-filters"] / med["plain"],
                  "ratio_exhaustive": med["dead-filters-exhaustive"] / med["plain"],
                  "ratio_default": med["dead-filters-default"] / med["plain"]}
        log(f"  dead-filters {count} crops: {med['dead-filters']:.2f} s (exhaustive "
            f"{med['dead-filters-exhaustive']:.2f} s, default "
            f"{med['dead-filters-default']:.2f} s), plain loop {med['plain']:.2f} s: "
            f"{result['ratio']:.2f}x")
        return result


def git_commit() -> str:
    if os.environ.get("FMVIZ_COMMIT"):
        return os.environ["FMVIZ_COMMIT"]
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, cwd=ROOT, timeout=10)
        if done.returncode == 0:
            return done.stdout.strip()
    return "unknown (set FMVIZ_COMMIT)"


# ----------------------------------------------------------------------------- report


def _f(value, digits: str = ".2f", suffix: str = "") -> str:
    return "-" if value is None or value != value else f"{value:{digits}}{suffix}"


def markdown(results: dict) -> str:
    sections = results["sections"]
    env = sections.get("env", {})
    report = env.get("providers", {})
    provider = results["provider"]
    lines = [
        "# GPU results (benchmarks/gpu.py)",
        "",
        f"Provider under test: **{provider}**{' (quick sizes: figures mean nothing)' if results['quick'] else ''}. "  # noqa: E501
        f"Commit {env.get('commit', '-')}, fmviz {env.get('fmviz', '-')}, Python "
        f"{env.get('python', '-')}, numpy {env.get('numpy', '-')}, onnxruntime "
        f"{env.get('onnxruntime', '-')} ({report.get('package', '-')}"
        + (f", CUDA {report['cuda_version']}" if report.get("cuda_version") else "")
        + (f", cuDNN {report['cudnn_version']}" if report.get("cudnn_version") else "")
        + f"). Machine: {env.get('cpus', '-')} CPUs, {env.get('platform', '-')}; GPU: "
        f"{env.get('gpu') or '-'}. Total {results.get('total_s', 0):.0f} s.",
        "",
    ]
    for check in report.get("checks", []):
        lines.append(f"- provider check: {check['name']}: "
                     + ("starts" if check["starts"] else f"does not start: {check['reason']}"))
    tests = sections.get("pytest", {})
    if tests:
        lines.append(f"- `pytest -m gpu tests/test_providers.py`: "
                     f"{tests.get('summary') or tests.get('skipped') or tests.get('error')}")
    lines.append("")

    agreement = sections.get("agreement", {})
    if agreement and "error" not in agreement and "skipped" not in agreement:
        lines += ["## Maps vs the CPU's (worst |diff| / layer max, every post layer)", "",
                  "| model | layers | exact (default) | worst layer | with --tf32 |",
                  "|---|---|---|---|---|"]
        for name, entry in agreement.items():
            if not isinstance(entry, dict) or "exact" not in entry:
                continue
            exact, tf32 = entry["exact"], entry["tf32"]
            mark = "" if exact["worst"] <= 1e-4 else " **> 1e-4**"
            lines.append(f"| {name} | {exact['layers']} | {exact['worst']:.2e}{mark} | "
                         f"`{exact['worst_layer']}` | {tf32['worst']:.2e} |")
        lines.append("")
    first = sections.get("first-run", {})
    if first and "skipped" not in first and "error" not in first:
        lines += ["## First run of the exposed detector (one process each)", "",
                  "| cuDNN algorithm search | session | first inference | steady |",
                  "|---|---|---|---|"]
        for search in ("heuristic", "exhaustive", "default"):
            value = first.get(search, {})
            if "error" in value:
                lines.append(f"| {search} | {value['error']} | | |")
            elif value:
                lines.append(f"| {search} | {value['session_s']:.3f} s | {value['first_s']:.3f}"
                             f" s | {value['steady_s'] * 1000:.1f} ms |")
        lines.append("")
    capture = sections.get("capture", {})
    if capture and "skipped" not in capture and "error" not in capture:
        lines += ["## Capture overhead (every post map exposed / plain model)", "",
                  "| model, batch | plain | every map exposed (fmviz run) | per-channel "
                  "reductions only (the scan) |",
                  "|---|---|---|---|"]
        for key, row in capture.items():
            if not isinstance(row, dict) or "plain" not in row:
                continue
            plain = row["plain"].get("seconds")
            lines.append(f"| {key} | {_f(plain * 1000 if plain else None)} ms | "
                         f"{_f(row.get('exposed_ratio'), suffix='x')} | "
                         f"{_f(row.get('reductions_ratio'), suffix='x')} |")
        lines += ["", "Targets (issue 15, on CUDA): <= 1.5x at batch 1, <= 3x at batch 16.", ""]
    run = sections.get("run", {})
    if run and "median_s" in run:
        med = run["median_s"]
        lines += ["## `fmviz run` on the detector, every layer (wall time, median)", "",
                  f"- {provider}: {_f(med.get(provider.lower()) or med.get(_short(provider)))} s;"
                  f" cpu: {_f(med.get('cpu'))} s (exit codes {run.get('exit')})",
                  f"- bare onnxruntime on {provider} (import, session, one inference of the "
                  f"exposed detector, nothing drawn): {_f(med.get('floor'))} s",
                  f"- manifest split (ms): {json.dumps(run.get('timings_ms'))}", ""]
    scan = sections.get("scan", {})
    if scan and "median_s" in scan:
        med = scan["median_s"]
        lines += [f"## `dead-filters` over {scan['inputs']} crops vs the plain loop", "",
                  f"- dead-filters {med['dead-filters']:.2f} s (heuristic), "
                  f"{med['dead-filters-exhaustive']:.2f} s (`--conv-search exhaustive`), "
                  f"{med.get('dead-filters-default', float('nan')):.2f} s (`--conv-search "
                  f"default`); plain "
                  f"loop {med['plain']:.2f} s: **{scan['ratio']:.2f}x** "
                  f"({scan['ratio_exhaustive']:.2f}x exhaustive). Target on CUDA: <= 1.1x. "
                  "The plain loop runs the unmodified model with onnxruntime's default "
                  "provider options (on CUDA: TF32 on, EXHAUSTIVE search).", ""]
    skipped = [f"{k} ({v.get('skipped') or v.get('error')})" for k, v in sections.items()
               if isinstance(v, dict) and ("skipped" in v or "error" in v) and k != "pytest"]
    if skipped:
        lines += ["Skipped or failed: " + "; ".join(skipped), ""]
    return "\n".join(lines)


def _short(full: str) -> str:
    for short, name in SHORT.items():
        if name == full:
            return short
    return full


def summary(results: dict) -> str:
    s = results["sections"]
    parts = [f"provider {results['provider']}, {results.get('total_s', 0):.0f} s"]
    agreement = s.get("agreement", {})
    worst = [(e["exact"]["worst"], e["tf32"]["worst"]) for e in agreement.values()
             if isinstance(e, dict) and "exact" in e]
    if worst:
        parts.append(f"agreement worst {max(w[0] for w in worst):.1e} "
                     f"(tf32 {max(w[1] for w in worst):.1e})")
    first = s.get("first-run", {})
    if first.get("heuristic", {}).get("first_s") is not None:
        parts.append("first inference " + ", ".join(
            f"{k} {v['session_s']:.2f}+{v['first_s']:.2f} s" for k, v in first.items()
            if isinstance(v, dict) and "first_s" in v))
    capture = s.get("capture", {})
    ratios = [f"{k} {_f(v.get('exposed_ratio'), suffix='x')}" for k, v in capture.items()
              if isinstance(v, dict) and "plain" in v]
    if ratios:
        parts.append("capture " + ", ".join(ratios))
    if "median_s" in s.get("run", {}):
        med = s["run"]["median_s"]
        parts.append("run " + ", ".join(f"{k} {_f(v)} s" for k, v in med.items()))
    if "ratio" in s.get("scan", {}):
        parts.append(f"scan/plain {s['scan']['ratio']:.2f}x "
                     f"(exhaustive {s['scan']['ratio_exhaustive']:.2f}x)")
    if "exit" in s.get("pytest", {}):
        parts.append(f"pytest -m gpu: {s['pytest']['summary']}")
    return "SUMMARY: " + " | ".join(parts)


# ----------------------------------------------------------------------------- main

SECTIONS = ("env", "pytest", "agreement", "first-run", "capture", "run", "scan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--provider", default="cuda", help="provider under test (cuda, cpu...)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a dry run")
    parser.add_argument("--budget", type=float, default=330.0,
                        help="seconds for everything; sections that would not fit are skipped")
    parser.add_argument("--only", default=",".join(SECTIONS), help="sections, comma separated")
    parser.add_argument("--out", default=str(HERE / "RESULTS-gpu.md"))
    parser.add_argument("--details", default=os.environ.get("OUT") or str(HERE / "work" / "gpu"))
    parser.add_argument("--work", default=str(HERE / "work"))
    args = parser.parse_args(argv)
    if args.child:
        spec = json.loads(args.child)
        print(json.dumps(CHILDREN[spec["mode"]](spec)))
        return 0
    args.only = set(args.only.split(","))
    bench = Bench(args)
    log(f"building models and inputs in {bench.work}")
    bench.build()
    bench.section("env", 5, bench.env)
    bench.section("pytest", 30, bench.pytest)
    bench.section("agreement", 40, bench.agreement)
    bench.section("first-run", 20, bench.first_run)
    bench.section("capture", 40, bench.capture)
    bench.section("run", 30, bench.run)
    bench.section("scan", 40, bench.scan)
    bench.results["total_s"] = elapsed()
    text = markdown(bench.results)
    Path(args.out).write_text(text + "\n")
    (bench.details / "results.json").write_text(json.dumps(bench.results, indent=1,
                                                           default=str))
    shutil.copy(args.out, bench.details / Path(args.out).name)
    archive = bench.details / "gpu-details.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for item in sorted(bench.details.iterdir()):
            if item != archive and item.is_file():
                tar.add(item, arcname=item.name)
    log(f"wrote {args.out} and {archive}")
    print(summary(bench.results), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
