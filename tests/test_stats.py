"""fmviz.stats.summarize against plain numpy."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fmviz.stats import summarize


def expected(array: np.ndarray) -> tuple[dict, dict]:
    """The manifest statistics computed the obvious way, channel by channel."""
    a = np.asarray(array, dtype=np.float64)
    channels = a.shape[1]
    per = [a[:, c].ravel() for c in range(channels)]
    finite_all = np.concatenate([p[np.isfinite(p)] for p in per]) if channels else np.array([])
    size = a.size

    def f(v):
        return None if v is None or not np.isfinite(v) else float(v)

    stats = {
        "min": f(finite_all.min()) if finite_all.size else None,
        "max": f(finite_all.max()) if finite_all.size else None,
        "mean": f(finite_all.mean()) if finite_all.size else None,
        "std": f(finite_all.std()) if finite_all.size else None,
        "zero_fraction": float((a == 0).sum() / size) if size else 0.0,
        "nonfinite": int((~np.isfinite(a)).sum()),
    }
    cmin, cmax, cmean, czero = [], [], [], []
    for p in per:
        fin = p[np.isfinite(p)]
        cmin.append(f(fin.min()) if fin.size else None)
        cmax.append(f(fin.max()) if fin.size else None)
        cmean.append(f(fin.mean()) if fin.size else None)
        czero.append(float((p == 0).sum() / p.size) if p.size else 0.0)
    return stats, {"min": cmin, "max": cmax, "mean": cmean, "zero_fraction": czero}


def assert_close(got, want, rtol=1e-9, atol=1e-12):
    if want is None:
        assert got is None
    else:
        assert got is not None
        assert got == pytest.approx(want, rel=rtol, abs=atol)


def check(array):
    stats, channel = summarize(array)
    want_stats, want_channel = expected(array)
    assert set(stats) == {"min", "max", "mean", "std", "zero_fraction", "nonfinite"}
    assert set(channel) == {"min", "max", "mean", "zero_fraction"}
    for key in ("min", "max", "mean", "std", "zero_fraction"):
        assert_close(stats[key], want_stats[key])
    assert stats["nonfinite"] == want_stats["nonfinite"]
    assert isinstance(stats["nonfinite"], int)
    for key in channel:
        assert len(channel[key]) == array.shape[1]
        for got, want in zip(channel[key], want_channel[key], strict=True):
            assert_close(got, want)
    json.dumps([stats, channel], allow_nan=False)  # the manifest refuses NaN
    return stats, channel


def test_random_maps_match_numpy():
    rng = np.random.default_rng(0)
    array = rng.standard_normal((2, 5, 7, 6)).astype(np.float32)
    array[array < -0.5] = 0  # some exact zeros, like after a ReLU
    check(array)


def test_stats_cover_the_whole_batch():
    array = np.zeros((2, 1, 2, 2), np.float32)
    array[1, 0, 0, 0] = 10.0  # only in the second item
    stats, channel = check(array)
    assert stats["max"] == 10.0
    assert channel["max"] == [10.0]
    assert stats["zero_fraction"] == pytest.approx(7 / 8)


def test_nan_and_inf_are_counted_and_left_out():
    rng = np.random.default_rng(1)
    array = rng.standard_normal((1, 3, 4, 4)).astype(np.float32)
    array[0, 0, 0, 0] = np.nan
    array[0, 1, 1, 1] = np.inf
    array[0, 1, 2, 2] = -np.inf
    stats, channel = check(array)
    assert stats["nonfinite"] == 3
    finite = array[np.isfinite(array)].astype(np.float64)
    assert stats["min"] == pytest.approx(finite.min())
    assert stats["max"] == pytest.approx(finite.max())
    assert stats["mean"] == pytest.approx(finite.mean())
    assert stats["std"] == pytest.approx(finite.std())


def test_constant_channels():
    array = np.stack([np.full((3, 3), 2.5), np.zeros((3, 3)), np.full((3, 3), -1.0)])[None]
    stats, channel = check(array.astype(np.float32))
    assert channel["max"] == [2.5, 0.0, -1.0]
    assert channel["mean"] == [2.5, 0.0, -1.0]
    assert channel["zero_fraction"] == [0.0, 1.0, 0.0]
    assert stats["zero_fraction"] == pytest.approx(1 / 3)


def test_channel_without_any_finite_value():
    array = np.ones((1, 2, 3, 3), np.float32)
    array[0, 1] = np.nan
    stats, channel = check(array)
    assert channel["max"] == [1.0, None]
    assert channel["mean"] == [1.0, None]
    assert stats["nonfinite"] == 9
    assert stats["min"] == stats["max"] == 1.0


def test_everything_non_finite():
    array = np.full((1, 2, 2, 2), np.inf, np.float32)
    stats, channel = check(array)
    assert stats == {
        "min": None,
        "max": None,
        "mean": None,
        "std": None,
        "zero_fraction": 0.0,
        "nonfinite": 8,
    }
    assert channel == {"min": [None, None], "max": [None, None], "mean": [None, None],
                       "zero_fraction": [0.0, 0.0]}


def test_empty_channels():
    array = np.zeros((1, 3, 0, 4), np.float32)
    stats, channel = check(array)
    assert stats["nonfinite"] == 0
    assert stats["min"] is None and stats["mean"] is None
    assert channel["max"] == [None, None, None]


def test_values_far_from_zero_keep_their_std():
    # a naive E[x^2] - E[x]^2 in float32 would lose the spread entirely
    array = (1e4 + np.random.default_rng(2).standard_normal((1, 2, 50, 50))).astype(np.float32)
    stats, _ = check(array)
    assert stats["std"] == pytest.approx(array.astype(np.float64).std(), rel=1e-9)


def test_integer_and_low_rank_arrays():
    check(np.arange(24, dtype=np.int32).reshape(2, 3, 4))  # [N, C, L]
    stats, channel = summarize(np.array([1.0, 0.0, 3.0]))  # rank 1: one channel
    assert stats["max"] == 3.0 and channel["zero_fraction"] == [pytest.approx(1 / 3)]


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.sampled_from([0.0, 1.0, -2.5, 1e-3, 7.0, np.nan, np.inf, -np.inf]),
        min_size=1,
        max_size=24,
    ),
    st.integers(1, 3),
)
def test_any_mix_of_values(values, channels):
    n = len(values) * channels
    array = np.resize(np.array(values, dtype=np.float32), n).reshape(1, channels, -1)
    check(array)
