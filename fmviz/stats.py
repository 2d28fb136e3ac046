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
    # [C, everything else] in float64: sums over millions of float32 values lose digits
    per_channel = np.moveaxis(array, 1, 0).reshape(channels, -1)
    finite = np.isfinite(per_channel)
    all_finite = bool(finite.all())
    values = per_channel.astype(np.float64, copy=False)
    if not all_finite:
        values = np.where(finite, values, 0.0)
    counts = finite.sum(axis=1) if not all_finite else np.full(channels, per_channel.shape[1])
    sums = values.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        channel_mean = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    if all_finite:
        channel_max = per_channel.max(axis=1) if per_channel.shape[1] else np.full(channels, np.nan)
        channel_min = per_channel.min(axis=1) if per_channel.shape[1] else np.full(channels, np.nan)
    else:
        channel_max = np.where(finite, per_channel, -np.inf).max(axis=1)
        channel_min = np.where(finite, per_channel, np.inf).min(axis=1)
    zeros = (per_channel == 0).sum(axis=1)
    positions = max(per_channel.shape[1], 1)

    total = int(counts.sum())
    mean = float(sums.sum() / total) if total else float("nan")
    # two-pass variance: the sum-of-squares shortcut loses precision for maps far from 0
    deviations = values - mean
    if not all_finite:
        deviations[~finite] = 0.0
    variance = float(np.square(deviations).sum() / total) if total else float("nan")
    stats = {
        "min": _finite_or_none(channel_min.min()) if channels else None,
        "max": _finite_or_none(channel_max.max()) if channels else None,
        "mean": _finite_or_none(mean),
        "std": _finite_or_none(np.sqrt(variance)) if total else None,
        "zero_fraction": float(zeros.sum() / (positions * channels)) if channels else 0.0,
        "nonfinite": int(per_channel.size - total),
    }
    channel_stats = {
        "max": [_finite_or_none(v) for v in channel_max],
        "mean": [_finite_or_none(v) for v in channel_mean],
        "zero_fraction": [float(z / positions) for z in zeros],
    }
    return stats, channel_stats
