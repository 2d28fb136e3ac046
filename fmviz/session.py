"""Execution providers and onnxruntime sessions.

onnxruntime is imported inside functions: it costs hundreds of milliseconds, and ``--help``
or an error about a missing file should not pay for it.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ModelError, OptionError

PROVIDER_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "rocm": "ROCMExecutionProvider",
    "migraphx": "MIGraphXExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "dml": "DmlExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "qnn": "QNNExecutionProvider",
}
# "auto" picks these, in this order, where the onnxruntime build has them, then the CPU.
GPU_PROVIDERS = (
    "TensorrtExecutionProvider",
    "CUDAExecutionProvider",
    "ROCMExecutionProvider",
    "MIGraphXExecutionProvider",
    "DmlExecutionProvider",
    "CoreMLExecutionProvider",
)
# TensorRT builds an engine per model on first use (minutes); "auto" prefers CUDA when both are
# present, and TensorRT is used only when asked for by name.
_AUTO_SKIP = {"TensorrtExecutionProvider"}


def available_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


# ----------------------------------------------------------------------------- provider options

CONV_SEARCHES = ("heuristic", "exhaustive", "default")
# cuDNN's convolution algorithm search: HEURISTIC asks cuDNN's heuristics (no timing), EXHAUSTIVE
# times every algorithm on the first inference of each input shape, DEFAULT takes cuDNN's
# implicit-GEMM algorithm without asking. Measured on an H200 with the 640x640 detector
# (benchmarks/RESULTS-gpu.md): session + first inference 0.70 s DEFAULT, 1.10 s HEURISTIC,
# 1.62 s EXHAUSTIVE; steady 52, 55 and 44 ms. ``run`` does one inference per input: DEFAULT.
# Scans: SCAN_CONV_SEARCH, measured over 320 crops by the same script.
DEFAULT_CONV_SEARCH = "default"
SCAN_CONV_SEARCH = "heuristic"


def user_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/fmviz`` (default ``~/.cache/fmviz``): compiled engines live here."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "fmviz"


@dataclass(frozen=True)
class ProviderSettings:
    """The knobs fmviz sets on GPU providers (the CPU provider takes none).

    ``tf32``: let CUDA use TensorFloat-32 in convolutions and matrix products (faster; about
    1e-2 relative error on deep layers); off by default, so maps match the CPU's to ~1e-5.
    ``conv_search``: cuDNN's convolution algorithm search (:data:`CONV_SEARCHES`; MIOpen's and
    MIGraphX's exhaustive tuning follow ``exhaustive``). ``cache_dir``: where TensorRT keeps its
    engines and timing cache (default ``user_cache_dir() / "tensorrt"``), so a second run of
    the same model does not rebuild them.
    """

    tf32: bool = False
    conv_search: str = DEFAULT_CONV_SEARCH
    cache_dir: Path | None = None

    def validate(self) -> None:
        if self.conv_search.lower() not in CONV_SEARCHES:
            raise OptionError("conv_search", f"{self.conv_search!r}: choose one of "
                              + ", ".join(CONV_SEARCHES))

    def options(self, provider: str) -> dict[str, str]:
        """The onnxruntime options for ``provider`` (strings, as onnxruntime takes them)."""
        self.validate()
        search = self.conv_search.lower()
        exhaustive = "1" if search == "exhaustive" else "0"
        if provider == "CUDAExecutionProvider":
            return {
                # grow the arena only as needed: feature maps vary in size from run to run
                "arena_extend_strategy": "kSameAsRequested",
                "cudnn_conv_algo_search": search.upper(),
                "use_tf32": "1" if self.tf32 else "0",
            }
        if provider == "TensorrtExecutionProvider":
            cache = str(self.cache_dir or user_cache_dir() / "tensorrt")
            return {
                "trt_engine_cache_enable": "1",
                "trt_engine_cache_path": cache,
                "trt_timing_cache_enable": "1",
                "trt_timing_cache_path": cache,
                "trt_fp16_enable": "0",
            }
        if provider == "ROCMExecutionProvider":
            return {"arena_extend_strategy": "kSameAsRequested",
                    "miopen_conv_exhaustive_search": exhaustive}
        if provider == "MIGraphXExecutionProvider":
            return {"migraphx_fp16_enable": "0", "migraphx_exhaustive_tune": exhaustive}
        return {}

    def prepare(self, provider: str) -> None:
        """Create what ``provider``'s options point at (TensorRT's cache folder)."""
        if provider == "TensorrtExecutionProvider":
            path = Path(self.options(provider)["trt_engine_cache_path"])
            with contextlib.suppress(OSError):  # onnxruntime then says what it cannot write
                path.mkdir(parents=True, exist_ok=True)


def resolve_providers(requested: Sequence[str] = ("auto",)) -> list[str]:
    """Map ``--provider`` values to onnxruntime provider names, in priority order.

    ``auto`` gives the GPU providers this onnxruntime build has, then the CPU. A provider asked
    for by name that the build lacks is an :class:`OptionError` listing the available ones.
    """
    available = available_providers()
    requested = list(requested) or ["auto"]
    resolved: list[str] = []
    for value in requested:
        if value.lower() == "auto":
            picks = [p for p in GPU_PROVIDERS if p in available and p not in _AUTO_SKIP]
            picks.append("CPUExecutionProvider")
        else:
            full = PROVIDER_ALIASES.get(value.lower(), value)
            if full not in available:
                names = ", ".join(_short_name(p) for p in available)
                raise OptionError(
                    "providers", f"{value!r} is not available in this onnxruntime build; "
                    f"available: {names}"
                )
            picks = [full]
        for name in picks:
            if name not in resolved:
                resolved.append(name)
    return resolved


def required_providers(requested: Sequence[str]) -> list[str]:
    """The GPU providers in ``requested`` that must start or be an error: those named, unless
    ``auto`` or ``cpu`` is also named (then the CPU is an intended fallback)."""
    values = [v.lower() for v in requested]
    if "auto" in values or "cpu" in values or "cpuexecutionprovider" in values:
        return []
    return [PROVIDER_ALIASES.get(v.lower(), v) for v in requested
            if PROVIDER_ALIASES.get(v.lower(), v) != "CPUExecutionProvider"]


def _short_name(provider: str) -> str:
    for short, full in PROVIDER_ALIASES.items():
        if full == provider:
            return short
    return provider


@dataclass
class Session:
    """An onnxruntime session over one (exposed) model, and the outputs it returns."""

    inner: Any
    outputs: list[str]
    providers: list[str] = field(default_factory=list)
    info: Any = None  # what the edit that made the model says about it (e.g. output names)
    provider_options: dict[str, dict[str, str]] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)  # e.g. auto fell back to the CPU

    def run(self, feeds: dict[str, np.ndarray], outputs: Sequence[str] | None = None) -> dict:
        # onnxruntime's own run, also on CUDA: IOBinding with device-allocated outputs copied
        # to the host after the run measured 1.1x to 5.5x slower on an H200 (every map still
        # crosses the bus; see benchmarks/RESULTS-gpu.md and NOTES.md)
        names = list(outputs) if outputs is not None else self.outputs
        values = self.inner.run(names, feeds)
        return dict(zip(names, values, strict=True))


_ORT_PREFIX = re.compile(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ")
# "/onnxruntime_src/.../model.cc:256 onnxruntime::Model::Model(args...) " before the message
_ORT_SOURCE = re.compile(r"\S+\.(?:cc|cpp|cu|h|hpp):\d+ (?:[^\s(]+\([^)]*\) )?")


def is_onnxruntime_error(exc: BaseException) -> bool:
    """True for the errors onnxruntime raises about a model or an input (its Fail,
    InvalidGraph, InvalidArgument, RuntimeException, ... types), not for Python's own
    (MemoryError, TypeError, ...)."""
    return type(exc).__module__.startswith("onnxruntime")


def describe_error(exc: BaseException) -> str:
    """onnxruntime's message for ``exc`` on one line, without its status-code prefix and the
    C++ source location: what a user can act on."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else ""
    text = _ORT_SOURCE.sub("", _ORT_PREFIX.sub("", text)).strip()
    return text or type(exc).__name__


def open_session(
    model_bytes: bytes,
    providers: Sequence[str],
    threads: int | None = None,
    source: str = "model",
    settings: ProviderSettings | None = None,
    required: Sequence[str] = (),
) -> Session:
    """Create an onnxruntime session (full graph optimisation) on ``providers``, with the
    options :class:`ProviderSettings` gives each.

    The providers the session actually got are read back: onnxruntime silently falls back to the
    CPU when a GPU provider fails to start (missing CUDA or cuDNN libraries, no device). A
    provider in ``required`` (asked for by name) that did not start is an :class:`OptionError`
    saying why; any other one that did not start becomes a notice on the session.
    """
    import onnxruntime as ort

    settings = settings or ProviderSettings()

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # 4 = fatal only: warnings are noise here, and errors reach the user as one Error: line
    # (onnxruntime would also print them, coloured, on stderr).
    options.log_severity_level = 4
    if threads:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    provider_list: list[Any] = []
    chosen: dict[str, dict[str, str]] = {}
    for name in providers:
        chosen[name] = settings.options(name)
        settings.prepare(name)
        provider_list.append((name, chosen[name]) if chosen[name] else name)

    def create() -> tuple[Any, str]:
        try:
            # "provider not available" warnings and "EP Error" prints: read back, said below
            with warnings.catch_warnings(), _quiet_stdout() as printed:
                warnings.simplefilter("ignore")
                inner = ort.InferenceSession(model_bytes, sess_options=options,
                                             providers=provider_list)
        except Exception as exc:
            if not is_onnxruntime_error(exc):  # out of memory, a bug: not the model's fault
                raise
            message = describe_error(exc)
            raise ModelError(f"{source}: onnxruntime cannot load the model: {message}") from exc
        return inner, printed.getvalue()

    inner, printed = create()
    got = list(inner.get_providers())
    if any(p not in got and p in GPU_PROVIDERS for p in providers) and preload_libraries():
        # a GPU provider did not start: load the nvidia-* wheels' libraries, try once more
        inner, printed = create()
        got = list(inner.get_providers())
    notices = []
    for name in providers:
        if name in got or name == "CPUExecutionProvider":
            continue
        reason = _fallback_reason(printed) or diagnose(name)
        if name in required:
            raise OptionError("providers", f"{_short_name(name)!r} cannot start a session: "
                              f"{reason}")
        notices.append(f"{_short_name(name)} cannot start a session ({reason}); running on "
                       f"{', '.join(_short_name(p) for p in got)}")
    return Session(
        inner=inner,
        outputs=[o.name for o in inner.get_outputs()],
        providers=got,
        provider_options={name: chosen.get(name, {}) for name in got},
        notices=notices,
    )


# ----------------------------------------------------------------------------- diagnosis

# The shared library onnxruntime loads for each GPU provider (next to its Python module).
_PROVIDER_LIBRARIES = {
    "CUDAExecutionProvider": "libonnxruntime_providers_cuda.so",
    "TensorrtExecutionProvider": "libonnxruntime_providers_tensorrt.so",
    "ROCMExecutionProvider": "libonnxruntime_providers_rocm.so",
    "MIGraphXExecutionProvider": "libonnxruntime_providers_migraphx.so",
}
_MISSING = re.compile(r"(lib[\w.+-]+?\.so(?:\.[\d.]+)?): cannot open shared object file")
# library name prefix -> the pip wheel that ships it ({cu}: cu12 or cu13, from the soname)
_WHEELS = (
    ("libcudnn", "nvidia-cudnn-{cu}"),
    ("libcublas", "nvidia-cublas-{cu}"),
    ("libcufft", "nvidia-cufft-{cu}"),
    ("libcurand", "nvidia-curand-{cu}"),
    ("libcudart", "nvidia-cuda-runtime-{cu}"),
    ("libnvrtc", "nvidia-cuda-nvrtc-{cu}"),
    ("libnvJitLink", "nvidia-nvjitlink-{cu}"),
    ("libnvinfer", "tensorrt-{cu}-libs"),
)


_PRELOADED: list[str] = []  # what preload_dlls printed (its failures), once it has run


def preload_libraries() -> bool:
    """Let onnxruntime load the CUDA and cuDNN libraries of the ``nvidia-*`` wheels
    (``onnxruntime.preload_dlls``, onnxruntime >= 1.21), once per process, when a GPU provider
    did not start (a setup that works is left as it is). True when it ran just now: a session
    is then worth trying again. What it printed (the libraries it could not load) is kept for
    :func:`diagnose`."""
    import onnxruntime as ort

    preload = getattr(ort, "preload_dlls", None)
    if _PRELOADED or preload is None or not any(
            p in ort.get_available_providers() for p in _PROVIDER_LIBRARIES):
        return False
    with _quiet_stdout() as printed, _captured_stderr():
        try:
            preload(cuda=True, cudnn=True, msvc=False)
        except Exception as exc:  # noqa: BLE001 - a diagnosis, never a failure
            print(f"preload_dlls: {type(exc).__name__}: {exc}")
    _PRELOADED.append(printed.getvalue())
    return True


def cuda_versions() -> dict[str, str]:
    """The CUDA and cuDNN versions this onnxruntime build was made for (empty on CPU builds)."""
    try:
        from onnxruntime.capi import build_and_package_info as info
    except ImportError:  # pragma: no cover - every wheel has it
        return {}
    return {key: str(getattr(info, key)) for key in ("cuda_version", "cudnn_version")
            if getattr(info, key, None)}


def install_hint(library: str) -> str:
    """How to install ``library`` (a soname such as ``libcudnn.so.9``) with pip."""
    major = re.search(r"\.so\.(\d+)", library)
    cuda = cuda_versions().get("cuda_version", "")
    cu = "cu" + (cuda.split(".")[0] if cuda else "12")
    if library.startswith(("libcublas", "libcufft", "libcurand", "libcudart", "libnvrtc",
                           "libnvJitLink")) and major and int(major.group(1)) >= 11:
        cu = f"cu{major.group(1)}"
    for prefix, wheel in _WHEELS:
        if library.startswith(prefix):
            return f"pip install {wheel.format(cu=cu)}"
    if library.startswith("libcuda.so"):
        return "install the NVIDIA driver (libcuda comes with it, not from pip)"
    return "install the library that provides it"


def diagnose(provider: str) -> str:
    """Why ``provider`` cannot start a session, as precisely as can be found: the shared
    library its onnxruntime library fails to load (and the wheel that has it), else
    onnxruntime's own log of the attempt."""
    import onnxruntime as ort

    if provider not in ort.get_available_providers():
        return "not in this onnxruntime build (pip install onnxruntime-gpu for CUDA/TensorRT)"
    library = _PROVIDER_LIBRARIES.get(provider)
    if library:
        reason = _dlopen_error(Path(ort.__file__).parent / "capi" / library)
        if reason:
            return reason
    preloaded = _missing_reason("".join(_PRELOADED))
    if preloaded:
        return preloaded
    logged = _logged_failure(provider)
    if logged:
        return logged
    return "onnxruntime fell back to the CPU without saying why (is a GPU visible?)"


def _dlopen_error(path: Path) -> str | None:
    """What loading the provider library ``path`` says is missing, or None when it loads."""
    import ctypes

    if not path.exists():
        return None
    try:
        shared = path.with_name("libonnxruntime_providers_shared.so")
        if shared.exists():
            ctypes.CDLL(str(shared), mode=ctypes.RTLD_GLOBAL)
        ctypes.CDLL(str(path))
    except OSError as exc:
        return _missing_reason(str(exc)) or f"{path.name} does not load: {exc}"
    return None


def _missing_reason(text: str) -> str | None:
    match = _MISSING.search(text)
    if not match:
        return None
    library = match.group(1)
    return f"{library} is missing: {install_hint(library)}"


def _logged_failure(provider: str) -> str | None:
    """Start a tiny session on ``provider`` with onnxruntime's log on, and read the log."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 1
    with _captured_stderr() as log:
        try:
            ort.InferenceSession(tiny_model(), sess_options=options, providers=[provider])
        except Exception as exc:  # noqa: BLE001
            return describe_error(exc)
    text = log.read()
    reason = _missing_reason(text)
    if reason:
        return reason
    for line in text.splitlines():
        if provider.replace("ExecutionProvider", "") in line and (
                "rror" in line or "ail" in line):
            return _one_line_log(line)
    return None


def _one_line_log(line: str) -> str:
    # "2026-11-29 22:00:00.0 [E:onnxruntime:Default, provider_bridge_ort.cc:2251 Get...] msg"
    return re.sub(r"^.*?\] ", "", line.strip())[:300]


class _Log:
    def __init__(self) -> None:
        self.text = ""

    def read(self) -> str:
        return self.text


@contextlib.contextmanager
def _captured_stderr() -> Iterator[_Log]:
    """File descriptor 2 into a temporary file (onnxruntime logs from C++, not Python)."""
    log = _Log()
    with tempfile.TemporaryFile(mode="w+b") as sink:
        saved = os.dup(2)
        try:
            os.dup2(sink.fileno(), 2)
            yield log
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            log.text = sink.read().decode("utf-8", "replace")


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[Any]:
    """Python's stdout into a buffer: onnxruntime *prints* "EP Error ... Falling back" when a
    provider raises while being created, which would corrupt ``--json`` output."""
    import io
    import sys

    saved = sys.stdout
    sys.stdout = buffer = io.StringIO()
    try:
        yield buffer
    finally:
        sys.stdout = saved


_EP_ERROR = re.compile(r"^EP Error (.*?) when using \[", re.DOTALL | re.MULTILINE)


def _fallback_reason(printed: str) -> str | None:
    """The error onnxruntime printed before falling back to other providers, on one line."""
    match = _EP_ERROR.search(printed)
    if not match:
        return None
    return describe_error(RuntimeError(match.group(1))) or None


@functools.lru_cache(maxsize=1)
def tiny_model() -> bytes:
    """A one-convolution model (1x1x8x8 input), made in memory: enough to start a session."""
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((2, 1, 3, 3), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["y"], ["z"])],
        "fmviz-probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 2, 8, 8])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model.SerializeToString()


@dataclass
class ProviderCheck:
    """Whether ``provider`` really starts a session, and if not why."""

    name: str
    starts: bool
    seconds: float = 0.0
    reason: str | None = None
    options: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"name": self.name, "short": _short_name(self.name), "starts": self.starts,
                "seconds": round(self.seconds, 3), "reason": self.reason,
                "options": self.options}


def check_provider(provider: str, settings: ProviderSettings | None = None) -> ProviderCheck:
    """Start a session of :func:`tiny_model` on ``provider`` (and run it once); when a GPU
    provider does not start, once more after :func:`preload_libraries`."""
    settings = settings or ProviderSettings()
    options = settings.options(provider)
    first = _check_once(provider, settings, options)
    if first.starts or provider not in GPU_PROVIDERS or not preload_libraries():
        return first
    return _check_once(provider, settings, options)


def _check_once(provider: str, settings: ProviderSettings,
                options: dict[str, str]) -> ProviderCheck:
    import time

    import onnxruntime as ort

    session_options = ort.SessionOptions()
    session_options.log_severity_level = 4
    started = time.perf_counter()
    try:
        settings.prepare(provider)
        with warnings.catch_warnings(), _quiet_stdout() as printed:
            warnings.simplefilter("ignore")
            session = ort.InferenceSession(
                tiny_model(), sess_options=session_options,
                providers=[(provider, options) if options else provider])
        got = session.get_providers()
        if provider in got:
            session.run(None, {"x": np.ones((1, 1, 8, 8), np.float32)})
    except Exception as exc:  # noqa: BLE001 - the reason is the answer
        return ProviderCheck(provider, False, time.perf_counter() - started,
                             describe_error(exc), options)
    seconds = time.perf_counter() - started
    if provider not in got:
        reason = _fallback_reason(printed.getvalue()) or diagnose(provider)
        return ProviderCheck(provider, False, seconds, reason, options)
    return ProviderCheck(provider, True, seconds, None, options)


def provider_report(settings: ProviderSettings | None = None) -> dict:
    """What ``fmviz providers`` prints: the build, its providers, and a check of each GPU one."""
    import onnxruntime as ort

    try:
        from onnxruntime.capi import build_and_package_info as info
        package = getattr(info, "package_name", "onnxruntime")
    except ImportError:  # pragma: no cover
        package = "onnxruntime"
    available = available_providers()
    build = ort.get_build_info() if hasattr(ort, "get_build_info") else ""
    checks = [check_provider(p, settings).to_json() for p in available if p in GPU_PROVIDERS]
    return {
        "onnxruntime": ort.__version__,
        "package": package,
        "build": build,
        "device": ort.get_device(),
        **cuda_versions(),
        "preload_dlls": hasattr(ort, "preload_dlls"),
        "preload_dlls_output": "".join(_PRELOADED).strip() or None,
        "available": available,
        "auto": resolve_providers(["auto"]),
        "checks": checks,
    }
