"""Execution providers and onnxruntime sessions.

onnxruntime is imported inside functions: it costs hundreds of milliseconds, and ``--help``
or an error about a missing file should not pay for it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
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

    def run(self, feeds: dict[str, np.ndarray], outputs: Sequence[str] | None = None) -> dict:
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
) -> Session:
    """Create an onnxruntime session (full graph optimisation) on ``providers``.

    The providers the session actually got are read back: onnxruntime silently falls back to the
    CPU when a GPU provider fails to load, and the manifest must say what really ran.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # 4 = fatal only: warnings are noise here, and errors reach the user as one Error: line
    # (onnxruntime would also print them, coloured, on stderr).
    options.log_severity_level = 4
    if threads:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    provider_list: list[Any] = []
    for name in providers:
        if name == "CUDAExecutionProvider":
            # Grow the arena only as needed: feature maps vary in size from run to run.
            provider_list.append((name, {"arena_extend_strategy": "kSameAsRequested"}))
        else:
            provider_list.append(name)
    try:
        inner = ort.InferenceSession(model_bytes, sess_options=options, providers=provider_list)
    except Exception as exc:
        if not is_onnxruntime_error(exc):  # out of memory, a bug: not the model's fault
            raise
        message = describe_error(exc)
        raise ModelError(f"{source}: onnxruntime cannot load the model: {message}") from exc
    return Session(
        inner=inner,
        outputs=[o.name for o in inner.get_outputs()],
        providers=list(inner.get_providers()),
    )
