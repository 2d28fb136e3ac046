"""ChannelStats: merging over any split of the inputs equals one pass over all of them."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fmviz.graph.reductions import numpy_reductions
from fmviz.stats import ChannelStats

EPS = 1e-6

# Values that exercise every statistic: exact zeros, values at and just around eps, negatives,
# large magnitudes, and (sometimes) NaN and infinities.
_SPECIAL = [0.0, -0.0, EPS, np.nextafter(EPS, 1), -EPS, 1e-7, 3.0, -2.5, 1e6]


@st.composite
def map_batches(draw):
    """A list of maps [n_i, C, L] (same C and L) and cut points splitting it in parts."""
    channels = draw(st.integers(1, 5))
    length = draw(st.integers(1, 6))
    count = draw(st.integers(1, 8))
    nonfinite = draw(st.booleans())
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    maps = []
    for _ in range(count):
        n = draw(st.integers(1, 3))
        values = rng.normal(0, draw(st.sampled_from([1e-7, 1.0, 1e3])), (n, channels, length))
        mask = rng.random(values.shape) < 0.3
        values[mask] = rng.choice(_SPECIAL, size=int(mask.sum()))
        dead = rng.random(channels) < 0.3  # some channels all zero
        values[:, dead, :] = 0.0
        if nonfinite:
            bad = rng.random(values.shape) < 0.05
            values[bad] = rng.choice([np.nan, np.inf, -np.inf], size=int(bad.sum()))
        maps.append(values.astype(np.float32))
    cuts = sorted(draw(st.lists(st.integers(0, count), max_size=4)))
    return maps, cuts


def _split(items, cuts):
    bounds = [0, *cuts, len(items)]
    return [items[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(map_batches())
def test_merge_over_any_split_equals_one_pass(data):
    maps, cuts = data
    channels = maps[0].shape[1]
    whole = ChannelStats.from_maps(np.concatenate(maps), EPS)

    merged = ChannelStats(channels, EPS)
    for part in _split(maps, cuts):
        accumulator = ChannelStats(channels, EPS)
        for array in part:
            accumulator.add_maps(array)
        merged.merge(accumulator)

    assert merged.equals(whole, rtol=1e-9)
    assert merged.inputs == whole.inputs == sum(m.shape[0] for m in maps)
    for name in ("dead", "constant"):
        assert np.array_equal(getattr(merged, name)(), getattr(whole, name)())
    assert np.array_equal(merged.rare(0.3), whole.rare(0.3))
    np.testing.assert_array_equal(merged.active_fraction, whole.active_fraction)


@settings(max_examples=60, deadline=None)
@given(map_batches())
def test_reduced_updates_equal_full_maps(data):
    """Adding per-input reductions (what onnxruntime returns) equals adding the maps."""
    maps, _ = data
    channels = maps[0].shape[1]
    from_maps = ChannelStats(channels, EPS)
    from_reduced = ChannelStats(channels, EPS)
    for array in maps:
        from_maps.add_maps(array)
        from_reduced.add_reduced(**numpy_reductions(array, EPS))
    assert from_reduced.equals(from_maps, rtol=0)


def test_statistics_against_numpy():
    rng = np.random.default_rng(0)
    maps = rng.normal(0, 1, (4, 3, 5, 5)).astype(np.float32)
    maps[:, 1] = 0.0  # dead
    maps[:, 2] = 2.0  # constant
    maps[0, 0, 0, 0] = np.float32(EPS)  # at eps: not active
    stats = ChannelStats.from_maps(maps, EPS)
    flat = np.moveaxis(maps, 1, 0).reshape(3, -1).astype(np.float64)
    np.testing.assert_array_equal(stats.count, [100, 100, 100])
    np.testing.assert_array_equal(stats.active, (np.abs(flat) > EPS).sum(axis=1))
    np.testing.assert_array_equal(stats.max_abs, np.abs(flat).max(axis=1))
    np.testing.assert_allclose(stats.mean, flat.mean(axis=1), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(stats.std, flat.std(axis=1), rtol=1e-9, atol=1e-12)
    assert stats.dead().tolist() == [False, True, False]
    assert stats.constant().tolist() == [False, False, True]
    assert stats.rare(0.5).tolist() == [False, False, False]


def test_nonfinite_values_are_counted_and_left_out():
    maps = np.zeros((1, 2, 4), dtype=np.float32)
    maps[0, 0] = [1.0, np.nan, np.inf, -2.0]
    maps[0, 1] = [np.nan, 0.0, 0.0, 0.0]  # NaN in an otherwise zero channel: not dead
    stats = ChannelStats.from_maps(maps, EPS)
    assert stats.nonfinite.tolist() == [2, 1]
    assert stats.max.tolist() == [1.0, 0.0] and stats.min.tolist() == [-2.0, 0.0]
    assert stats.active.tolist() == [3, 0]  # inf counts as active, NaN does not
    assert stats.mean[0] == pytest.approx(-0.5)
    assert stats.dead().tolist() == [False, False]
    assert stats.constant().tolist() == [False, False]


def test_size_does_not_depend_on_the_number_of_inputs():
    rng = np.random.default_rng(1)
    small, large = ChannelStats(8, EPS), ChannelStats(8, EPS)
    small.add_maps(rng.normal(size=(2, 8, 16)).astype(np.float32))
    for _ in range(200):
        large.add_maps(rng.normal(size=(4, 8, 16)).astype(np.float32))
    assert small.nbytes == large.nbytes == ChannelStats(8, EPS).nbytes
    assert large.inputs == 800


def test_snapshot_is_not_changed_by_later_updates():
    stats = ChannelStats(2, EPS)
    stats.add_maps(np.ones((1, 2, 3), dtype=np.float32))
    snap = stats.snapshot()
    stats.add_maps(np.full((1, 2, 3), 5, dtype=np.float32))
    assert snap.max.tolist() == [1.0, 1.0] and snap.inputs == 1
    assert stats.max.tolist() == [5.0, 5.0] and stats.inputs == 2


def test_arrays_round_trip():
    stats = ChannelStats.from_maps(np.random.default_rng(2).normal(size=(3, 4, 7)), EPS)
    back = ChannelStats.from_arrays(stats.to_arrays(prefix="l0_"), EPS, prefix="l0_")
    assert back.equals(stats, rtol=0)


def test_merge_refuses_other_shapes_and_eps():
    with pytest.raises(ValueError, match="channels"):
        ChannelStats(2, EPS).merge(ChannelStats(3, EPS))
    with pytest.raises(ValueError, match="eps"):
        ChannelStats(2, EPS).merge(ChannelStats(2, 1e-3))
