"""Statistics of feature maps: a summary per layer and per channel.

All statistics cover the whole batch. Non-finite values are counted, and left out of min, max,
mean and std so that one overflow does not hide everything else.
"""

from __future__ import annotations

import numpy as np


def _finite_or_none(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def summarize(array: np.ndarray) -> tuple[dict, dict]:
    """Layer statistics and per-channel statistics of a map ``[N, C, ...]``.

    Returns ``(stats, channel_stats)`` in the manifest's shape: ``stats`` has min, max, mean,
    std, zero_fraction and nonfinite; ``channel_stats`` has lists max, mean, zero_fraction.
    """
    if array.ndim < 2:
        array = array.reshape(1, 1, -1)
    channels = array.shape[1]
    per_channel = np.moveaxis(array, 1, 0).reshape(channels, -1)  # [C, everything else]
    positions = max(per_channel.shape[1], 1)
    finite = np.isfinite(per_channel)
    all_finite = bool(finite.all())
    if not all_finite:  # rare: zero the non-finite values so they drop out of the sums
        per_channel = np.where(finite, per_channel, 0)
    # Sums accumulate in float64 (float32 sums over millions of values lose digits), reading
    # the float32 maps directly rather than a float64 copy of every map.
    sums = per_channel.sum(axis=1, dtype=np.float64)
    counts = finite.sum(axis=1) if not all_finite else np.full(channels, per_channel.shape[1])
    with np.errstate(invalid="ignore", divide="ignore"):
        channel_mean = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    if per_channel.shape[1] == 0:
        channel_max = channel_min = np.full(channels, np.nan)
    elif all_finite:
        channel_max, channel_min = per_channel.max(axis=1), per_channel.min(axis=1)
    else:
        channel_max = np.where(finite, per_channel, -np.inf).max(axis=1)
        channel_min = np.where(finite, per_channel, np.inf).min(axis=1)
    zeros = per_channel.shape[1] - np.count_nonzero(per_channel, axis=1)
    if not all_finite:
        zeros = zeros - (~finite).sum(axis=1)  # the zeroed non-finite values were not zeros

    total = int(counts.sum())
    mean = float(sums.sum() / total) if total else float("nan")
    # two-pass variance in float64 (the sum-of-squares shortcut loses precision for maps far
    # from 0); the one float64 temporary is squared in place and freed at once
    variance = float("nan")
    if total:
        deviations = per_channel.astype(np.float64)
        deviations -= mean
        if not all_finite:
            deviations[~finite] = 0.0
        variance = float(np.square(deviations, out=deviations).sum() / total)
        del deviations
    stats = {
        "min": _finite_or_none(channel_min.min()) if channels else None,
        "max": _finite_or_none(channel_max.max()) if channels else None,
        "mean": _finite_or_none(mean),
        "std": _finite_or_none(np.sqrt(variance)) if total else None,
        "zero_fraction": float(zeros.sum() / (positions * channels)) if channels else 0.0,
        "nonfinite": int(per_channel.size - total),
    }
    channel_stats = {
        "min": [_finite_or_none(v) for v in channel_min],
        "max": [_finite_or_none(v) for v in channel_max],
        "mean": [_finite_or_none(v) for v in channel_mean],
        "zero_fraction": [float(z / positions) for z in zeros],
    }
    return stats, channel_stats


# ----------------------------------------------------------------------------- mergeable stats


class ChannelStats:
    """Per-channel statistics of one layer's maps over many inputs, mergeable and fixed-size.

    Holds, per channel: ``count`` (positions seen, over all inputs), ``nonfinite`` (of those,
    NaN or infinite), ``active`` (positions with |a| > eps; infinity counts, NaN does not),
    ``sum`` and ``sumsq`` (float64, over the finite values) and ``min``/``max`` (over the finite
    values; +inf/-inf while there is none). Its size depends on the channel count only, never on
    the number of inputs, and two accumulators over any split of the inputs merge into the
    accumulator over all of them (counts, min, max exactly; sums up to float64 rounding).

    Updates never modify an array in place: they bind new arrays. So :meth:`snapshot` is a cheap
    shallow copy that later updates do not change (a scan keeps one to checkpoint on Ctrl-C).
    """

    INT_FIELDS = ("count", "nonfinite", "active")
    FLOAT_FIELDS = ("sum", "sumsq", "min", "max")
    FIELDS = INT_FIELDS + FLOAT_FIELDS

    def __init__(self, channels: int, eps: float):
        self.eps = float(eps)
        self.inputs = 0  # maps merged (items along the batch dimension)
        self.count = np.zeros(channels, dtype=np.int64)
        self.nonfinite = np.zeros(channels, dtype=np.int64)
        self.active = np.zeros(channels, dtype=np.int64)
        self.sum = np.zeros(channels, dtype=np.float64)
        self.sumsq = np.zeros(channels, dtype=np.float64)
        self.min = np.full(channels, np.inf, dtype=np.float64)
        self.max = np.full(channels, -np.inf, dtype=np.float64)

    # ------------------------------------------------------------------ building
    @property
    def channels(self) -> int:
        return int(self.count.shape[0])

    @classmethod
    def from_maps(cls, array: np.ndarray, eps: float) -> ChannelStats:
        """Statistics of a map ``[N, C, ...]`` (computed in numpy, float64)."""
        stats = cls(array.shape[1], eps)
        stats.add_maps(array)
        return stats

    def add_maps(self, array: np.ndarray) -> ChannelStats:
        """Add the maps ``[N, C, ...]`` of N inputs."""
        from .graph.reductions import numpy_reductions

        return self.add_reduced(**numpy_reductions(array, self.eps))

    def add_reduced(
        self,
        positions: np.ndarray,
        min: np.ndarray,
        max: np.ndarray,
        sum: np.ndarray,
        sumsq: np.ndarray,
        active: np.ndarray,
        nonfinite: np.ndarray | None = None,
    ) -> ChannelStats:
        """Add per-input reductions: ``positions`` ``[N]``, the others ``[N, C]``."""
        positions = np.asarray(positions, dtype=np.int64).reshape(-1)
        n = positions.shape[0]
        if n == 0:
            return self
        channels = self.channels
        for name, value in (("min", min), ("max", max), ("sum", sum), ("sumsq", sumsq),
                            ("active", active)):
            if np.shape(value) != (n, channels):
                raise ValueError(f"{name} has shape {np.shape(value)}, expected {(n, channels)}")
        self.inputs += n
        self.count = self.count + int(positions.sum())
        if nonfinite is not None:
            self.nonfinite = self.nonfinite + np.asarray(nonfinite, dtype=np.int64).sum(axis=0)
        self.active = self.active + np.rint(np.asarray(active, np.float64)).astype(np.int64).sum(
            axis=0
        )
        self.sum = self.sum + np.asarray(sum, dtype=np.float64).sum(axis=0)
        self.sumsq = self.sumsq + np.asarray(sumsq, dtype=np.float64).sum(axis=0)
        self.min = np.minimum(self.min, np.asarray(min, dtype=np.float64).min(axis=0))
        self.max = np.maximum(self.max, np.asarray(max, dtype=np.float64).max(axis=0))
        return self

    def merge(self, other: ChannelStats) -> ChannelStats:
        """Add everything ``other`` has seen (same channel count and eps)."""
        if other.channels != self.channels:
            raise ValueError(f"cannot merge {other.channels} channels into {self.channels}")
        if other.eps != self.eps:
            raise ValueError(f"cannot merge statistics for eps {other.eps} into eps {self.eps}")
        self.inputs += other.inputs
        for name in ("count", "nonfinite", "active", "sum", "sumsq"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.min = np.minimum(self.min, other.min)
        self.max = np.maximum(self.max, other.max)
        return self

    def snapshot(self) -> ChannelStats:
        """A copy that later updates of ``self`` leave unchanged (shares the arrays)."""
        copy = ChannelStats.__new__(ChannelStats)
        copy.__dict__.update(self.__dict__)
        return copy

    @property
    def nbytes(self) -> int:
        """Bytes held by the arrays: depends on the channel count only."""
        return sum(getattr(self, name).nbytes for name in self.FIELDS)

    # ------------------------------------------------------------------ derived values
    @property
    def finite_count(self) -> np.ndarray:
        return self.count - self.nonfinite

    @property
    def max_abs(self) -> np.ndarray:
        """max |a| over the finite values (-inf where there is none)."""
        return np.maximum(self.max, -self.min)

    @property
    def mean(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.finite_count > 0, self.sum / np.maximum(self.finite_count, 1),
                            np.nan)

    @property
    def std(self) -> np.ndarray:
        """Population standard deviation from the sums (float64), within its exact bounds
        0 <= std <= (max - min) / 2: a constant channel gets exactly 0, where the float64 sums
        (rounded to ~1e-16 of the mean square) would leave a residue."""
        n = np.maximum(self.finite_count, 1)
        with np.errstate(invalid="ignore", divide="ignore"):
            variance = np.maximum(self.sumsq / n - np.square(self.sum / n), 0.0)
            std = np.minimum(np.sqrt(variance), (self.max - self.min) / 2)
            return np.where(self.finite_count > 0, std, np.nan)

    @property
    def active_fraction(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.count > 0, self.active / np.maximum(self.count, 1), 0.0)

    def dead(self) -> np.ndarray:
        """|a| <= eps at every position of every input (a NaN or infinity is not dead)."""
        return (self.count > 0) & (self.nonfinite == 0) & (self.max_abs <= self.eps)

    def inactive(self, rests_at_or_below_zero: bool = True) -> np.ndarray:
        """Not dead, no NaN or infinity, and max <= eps: the channel never fired (SPEC v2). Only
        for layers whose activation rests at or below 0 (``probe.rests_at_or_below_zero``)."""
        if not rests_at_or_below_zero:
            return np.zeros(self.channels, dtype=bool)
        return ~self.dead() & (self.count > 0) & (self.nonfinite == 0) & (self.max <= self.eps)

    def rare(self, threshold: float) -> np.ndarray:
        """Not dead, and active at fewer than ``threshold`` of the positions."""
        return ~self.dead() & (self.count > 0) & (self.active_fraction < threshold)

    def constant(self) -> np.ndarray:
        """Not dead, and max - min <= eps over the finite values (no NaN or infinity)."""
        with np.errstate(invalid="ignore"):
            flat = (self.max - self.min) <= self.eps
        return ~self.dead() & (self.count > 0) & (self.nonfinite == 0) & flat

    # ------------------------------------------------------------------ persistence
    def to_arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        arrays = {f"{prefix}{name}": getattr(self, name) for name in self.FIELDS}
        arrays[f"{prefix}inputs"] = np.array([self.inputs], dtype=np.int64)
        return arrays

    @classmethod
    def from_arrays(cls, arrays, eps: float, prefix: str = "") -> ChannelStats:
        """Rebuild from :meth:`to_arrays` output (e.g. an ``np.load`` of a checkpoint)."""
        count = np.asarray(arrays[f"{prefix}count"])
        stats = cls(count.shape[0], eps)
        for name in cls.FIELDS:
            value = np.asarray(arrays[f"{prefix}{name}"])
            want = np.int64 if name in cls.INT_FIELDS else np.float64
            if value.shape != count.shape or value.dtype != want:
                raise ValueError(f"{name}: shape {value.shape} {value.dtype}, expected "
                                 f"{count.shape} {np.dtype(want)}")
            setattr(stats, name, value.copy())
        stats.inputs = int(np.asarray(arrays[f"{prefix}inputs"]).reshape(-1)[0])
        return stats

    def equals(self, other: ChannelStats, rtol: float = 1e-9) -> bool:
        """Same counts, min and max exactly, and sums within ``rtol`` (float64 rounding)."""
        if self.channels != other.channels or self.eps != other.eps:
            return False
        if self.inputs != other.inputs:
            return False
        for name in ("count", "nonfinite", "active", "min", "max"):
            if not np.array_equal(getattr(self, name), getattr(other, name)):
                return False
        # |rounding error of a sum| <= rtol * sum |x|, and sum |x| <= sqrt(count * sumsq)
        bound = rtol * (np.sqrt(self.count * self.sumsq) + np.abs(self.sum))
        return bool(
            np.all(np.abs(self.sum - other.sum) <= bound)
            and np.allclose(self.sumsq, other.sumsq, rtol=rtol, atol=0)
        )
