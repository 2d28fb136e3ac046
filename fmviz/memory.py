"""Memory-bounded capture: what the exposed maps will take, and how to split them into passes.

Pure bookkeeping (no onnxruntime): the runner (:mod:`fmviz.runner`) estimates each probe's bytes
for the input at hand, :func:`plan_passes` groups them, and each pass runs the model pinned with
:func:`fmviz.graph.edits.pin` so that every pass gives the numbers one pass would.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .errors import OptionError

if TYPE_CHECKING:  # pragma: no cover
    from .probes import Probe


# ----------------------------------------------------------------------------- memory bound
#
# Every captured map is a graph output, and onnxruntime keeps every graph output until the run
# returns: the maps of one pass are all in memory at once. When their bytes (estimated from
# shapes, before anything runs) exceed ``max_memory``, the layers are captured in groups, one
# pass per group. To give the same numbers as a single pass, every pass must run the same
# kernels: onnxruntime's fusions (Conv+BatchNormalization folding, Conv+Add, Conv+activation,
# the NCHWc layout) depend on which tensors are graph outputs, so a pass that exposed only its
# own group would fold the other layers differently and change later maps in the last bits.
# Each pass therefore "pins" the selected tensors outside its group with a ReduceMax to a
# scalar: the tensor gets an extra consumer exactly where a graph output would keep it from
# being fused away, while the memory it holds is released as soon as it is reduced.

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)


def parse_size(text: str | int) -> int:
    """Bytes from a SIZE like ``4G``, ``512M``, ``1.5GiB``, ``64k`` or ``1048576``.

    Units are binary (K = 1024), as in ``docker --memory`` and ``java -Xmx``; a bare number is
    bytes. An :class:`OptionError` for anything else, or for zero.
    """
    if isinstance(text, int):
        value = text
    else:
        match = _SIZE_RE.match(str(text))
        if not match:
            raise OptionError(
                "max_memory",
                f"{text!r} is not a size (a number with K, M, G or T, e.g. 4G or 512M)",
            )
        value = int(float(match.group(1)) * _UNITS[match.group(2).lower()])
    if value < 1:
        raise OptionError("max_memory", f"{text!r} must be more than 0 bytes")
    return value


def format_size(value: float) -> str:
    """``1.5 GiB``, ``512 MiB``, ``12 KiB``, ``100 B``."""
    for unit, size in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if value >= size:
            number = value / size
            return f"{number:.1f} {unit}" if number < 10 else f"{number:.0f} {unit}"
    return f"{int(value)} B"


def physical_memory() -> int | None:
    """Physical memory in bytes, lowered to the cgroup's limit in a container; None if unknown."""
    total = None
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        if sys.platform == "win32":
            total = _windows_memory()
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) > 0 and (total is None or int(text) < total):
            total = int(text)
        break
    return total if total and total > 0 else None


def _windows_memory() -> int | None:  # pragma: no cover - Windows only
    import ctypes

    class MemoryStatus(ctypes.Structure):
        _fields_ = [("length", ctypes.c_ulong), ("load", ctypes.c_ulong)] + [
            (name, ctypes.c_ulonglong)
            for name in ("total", "avail", "page_total", "page_avail", "virt_total",
                         "virt_avail", "ext_avail")
        ]

    status = MemoryStatus()
    status.length = ctypes.sizeof(MemoryStatus)
    if ctypes.windll.kernel32.GlobalMemoryStatusEx(ctypes.byref(status)):  # type: ignore[attr-defined]
        return int(status.total)
    return None


def default_max_memory() -> int:
    """A quarter of physical memory (4 GiB where it cannot be read)."""
    total = physical_memory()
    return total // 4 if total else 4 << 30


@dataclass
class MemoryPlan:
    """How the maps of one input are captured: the estimate, the budget and the passes."""

    groups: list[list[Probe]]
    layer_bytes: dict[int, int]  # estimated bytes of each layer's map, by layer index
    total_bytes: int
    max_memory: int
    guessed: list[int] = field(default_factory=list)  # layers whose shape shape inference missed

    @property
    def passes(self) -> int:
        return len(self.groups)

    def notices(self) -> list[str]:
        if self.passes <= 1:
            return []
        notes = [
            f"the maps of {len(self.layer_bytes)} layers take about "
            f"{format_size(self.total_bytes)}, more than the memory budget (--max-memory) of "
            f"{format_size(self.max_memory)}: capturing them in {self.passes} passes"
        ]
        alone = [i for i, size in self.layer_bytes.items() if size > self.max_memory // 3]
        if alone:
            notes.append(
                f"{len(alone)} layer(s) alone take more than a third of the memory budget "
                f"(largest {format_size(max(self.layer_bytes[i] for i in alone))}); "
                "each is captured on its own"
            )
        return notes


def plan_passes(
    probes: Sequence[Probe], layer_bytes: Mapping[int, int], budget: int, guessed: Sequence[int]
) -> MemoryPlan:
    """Group ``probes`` into passes: all in one when their maps fit ``budget``, else passes of
    at most a third of it (a pass's maps exist twice for a moment, onnxruntime's and the copies
    that outlive its session, while the previous group may still be being read); a layer larger
    than that third gets a pass of its own. Groups keep the probes' order (rendering reads them
    in order)."""
    total = sum(layer_bytes[p.index] for p in probes)
    if total <= budget or len(probes) <= 1:
        groups = [list(probes)] if probes else []
    else:
        groups = []
        current: list[Probe] = []
        size = 0
        for probe in probes:
            need = layer_bytes[probe.index]
            if current and size + need > budget // 3:
                groups.append(current)
                current, size = [], 0
            current.append(probe)
            size += need
        if current:
            groups.append(current)
    return MemoryPlan(groups, dict(layer_bytes), total, budget, list(guessed))


def guess_bytes(probe: Probe, feeds: Mapping[str, np.ndarray]) -> int:
    """No shape known: the largest input's elements per channel times the layer's channels."""
    largest = max((np.asarray(a) for a in feeds.values()), key=np.size, default=None)
    if largest is None or largest.ndim < 2:
        return 0
    per_channel = largest.size // max(1, min(largest.shape[1], largest.shape[-1]))
    return per_channel * (probe.channels or 1) * probe.itemsize
