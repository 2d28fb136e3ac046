"""The scan's in-graph sums: mean and std right for channels whose spread is tiny next to their
mean (issue 16). A float32 sum of squares cannot resolve a variance of 2.5e-9 around 1.0 (std
5e-5): the scan used to report std 0 for such channels. Expected values: numpy in float64 on
the same maps.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from fmviz.graph import analyse
from fmviz.graph.reductions import Target, numpy_reductions, reduction_model
from fmviz.stats import ChannelStats

EPS = 1e-6


def identity_conv(channels: int, opset: int) -> onnx.ModelProto:
    """A depthwise 1x1 conv with weight 1: the map is the input, bit for bit."""
    weight = numpy_helper.from_array(np.ones((channels, 1, 1, 1), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input", "w"], ["out"], name="identity", group=channels)],
        "identity",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", channels, "H", "W"])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", channels, "H", "W"])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 7
    return model


def planted_maps(rng, n: int, size: int) -> np.ndarray:
    """Channel 0: std 5e-5 around 1.0; 1: std 1e-3 around -300; 2: N(0, 1); 3: 7.0 exactly,
    then, in the first input only, one value of 7.0 + 1 ulp."""
    x = np.empty((n, 4, size, size), np.float32)
    x[:, 0] = 1.0 + 5e-5 * rng.standard_normal((n, size, size))
    x[:, 1] = -300.0 + 1e-3 * rng.standard_normal((n, size, size))
    x[:, 2] = rng.standard_normal((n, size, size))
    x[:, 3] = 7.0
    x[0, 3, 5, 5] = np.nextafter(np.float32(7.0), np.float32(8.0))
    return x


def reference(batches: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and population std per channel, numpy float64, two-pass."""
    values = np.concatenate(batches).astype(np.float64).transpose(1, 0, 2, 3).reshape(4, -1)
    mean = values.mean(axis=1)
    return mean, np.sqrt(((values - mean[:, None]) ** 2).mean(axis=1))


@pytest.mark.parametrize("opset", [9, 13, 18])
def test_tiny_spread_channels_get_their_std(opset):
    rng = np.random.default_rng(16)
    data, (names,) = reduction_model(analyse(identity_conv(4, opset)), [Target("out")], EPS)
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    batches = [planted_maps(rng, 4, 56) for _ in range(3)]
    stats = ChannelStats(4, EPS)
    for x in batches:
        values = dict(zip(names.names(), session.run(names.names(), {"input": x}), strict=True))
        stats.add_reduced(positions=np.full(4, 56 * 56), min=values[names.min],
                          max=values[names.max], sum=values[names.sum],
                          sumsq=values[names.sumsq], active=values[names.active])
    mean, std = reference(batches)
    assert 4.9e-5 < std[0] < 5.1e-5 and 0.9e-3 < std[1] < 1.1e-3  # as planted
    assert np.all(np.abs(stats.mean - mean) <= 1e-7 * np.abs(mean) + 1e-4 * std)
    # before the shifted sums: channel 0 std 0.0, channel 1 std 0.0 or hundreds of times off
    np.testing.assert_allclose(stats.std[:3], std[:3], rtol=1e-4)
    # channel 3, one value 1 ulp above 7.0 among 37632 (std 4.3e-9, a variance 4e-19 of the
    # mean square) is below what float64 sums resolve: reported as (close to) constant
    assert stats.std[3] < 1e-7


def test_sums_equal_numpy_per_input():
    """The float64 sum and sumsq per input agree with numpy's on the same maps."""
    rng = np.random.default_rng(3)
    data, (names,) = reduction_model(analyse(identity_conv(4, 17)), [Target("out")], EPS)
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    x = planted_maps(rng, 5, 31)
    got = dict(zip(names.names(), session.run(names.names(), {"input": x}), strict=True))
    want = numpy_reductions(x, EPS)
    assert got[names.sum].dtype == np.float64 and got[names.sumsq].dtype == np.float64
    # float32 sums of x - shift: rounding relative to sum |x - shift|, far below sum |x|
    absolute = np.abs(x.astype(np.float64)).reshape(5, 4, -1).sum(axis=2)
    assert np.all(np.abs(got[names.sum] - want["sum"]) <= 1e-6 * absolute)
    np.testing.assert_allclose(got[names.sumsq], want["sumsq"], rtol=1e-6)
    # the per-input variance itself, the quantity a float32 sum loses
    n = 31 * 31
    variance = got[names.sumsq] / n - (got[names.sum] / n) ** 2
    want_variance = x.astype(np.float64).reshape(5, 4, -1).var(axis=2)
    np.testing.assert_allclose(variance[:, :3], want_variance[:, :3], rtol=1e-4)


def test_scan_reports_the_std(tmp_path):
    from fmviz.model import open_model
    from fmviz.scan import ScanOptions, scan

    model_path = tmp_path / "identity.onnx"
    onnx.save(identity_conv(4, 17), model_path)
    rng = np.random.default_rng(5)
    maps, paths = [], []
    for i in range(6):
        x = planted_maps(rng, 1, 40)
        maps.append(x)
        paths.append(tmp_path / f"x{i}.npy")
        np.save(paths[-1], x[0])
    result = scan(open_model(model_path), paths, ScanOptions(batch_size=4))
    (stats,) = result.stats
    mean, std = reference(maps)
    assert np.all(np.abs(stats.mean - mean) <= 1e-7 * np.abs(mean) + 1e-4 * std)
    np.testing.assert_allclose(stats.std[:3], std[:3], rtol=1e-4)
    assert not stats.constant()[0]  # max - min is ~5e-4 > eps


def test_constant_channel_has_std_exactly_zero():
    """float64 sums of a constant channel can leave a rounding residue (a std of ~1e-8);
    the std is bounded by (max - min) / 2, which is 0."""
    data, (names,) = reduction_model(analyse(identity_conv(4, 17)), [Target("out")], EPS)
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    stats = ChannelStats(4, EPS)
    maps = []
    for size in (13, 29, 31):
        x = np.full((3, 4, size, size), 1.9176381826400757, np.float32)
        x[:, 1:] = np.random.default_rng(size).normal(0, 1, (3, 3, size, size))
        values = dict(zip(names.names(), session.run(names.names(), {"input": x}), strict=True))
        stats.add_reduced(positions=np.full(3, size * size), min=values[names.min],
                          max=values[names.max], sum=values[names.sum],
                          sumsq=values[names.sumsq], active=values[names.active])
        maps.append(x.transpose(1, 0, 2, 3).reshape(4, -1))
    n = stats.finite_count[0]
    assert stats.sumsq[0] / n - (stats.sum[0] / n) ** 2 > 0  # the residue the sums leave
    assert stats.std[0] == 0.0
    want = np.concatenate(maps, axis=1).astype(np.float64).std(axis=1)
    np.testing.assert_allclose(stats.std[1:], want[1:], rtol=1e-6)
