"""Channels-last capture (fmviz.layout): which maps are asked for NHWC, and that the values
are the same bits as NCHW outputs and agree with onnx's reference evaluator.

Which maps onnxruntime really keeps in its blocked NCHWc layout is read from onnxruntime's own
optimised model (``optimized_model_filepath``): every map fmviz picks must be one that
onnxruntime folds into a channels-last reorder, or the ``Transpose`` would cost a real pass.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper
from onnx.reference import ReferenceEvaluator

from fmviz import layout
from fmviz.model import open_model
from tests import models as m

CPU = ["CPUExecutionProvider"]
needs_nchwc = pytest.mark.skipif(
    not layout.wanted(CPU), reason="onnxruntime's NCHWc layout exists on x86-64 only"
)


def blocked_net(opset: int = m.OPSET) -> onnx.ModelProto:
    """Six convolutions, 16x20 input, channel counts chosen for and against NCHWc.

    stem: 3->16 + BN + Relu; c2: 16->32 + Clip(0, 6); dw: depthwise 32 + BN + SiLU;
    odd: 32->24 + Relu (24 output channels: padded to the block); c12: 24->16 + Mul by a
    per-channel constant + Relu (24 input channels fit no 16-block; the Mul is not kept
    blocked); hs: 16->16 + hard-swish (HardSigmoid is not kept blocked unless fused).
    """
    rng = np.random.default_rng(7)
    nodes, inits = [], []

    def add(pair):
        node, weights = pair
        nodes.append(node)
        inits.extend(weights)

    add(m.conv(rng, "stem", "input", "stem_out", 3, 16))
    add(m.batchnorm(rng, "stem_bn", "stem_out", "stem_bn_out", 16))
    nodes.append(m.relu("stem_relu", "stem_bn_out", "stem_relu_out"))
    add(m.conv(rng, "c2", "stem_relu_out", "c2_out", 16, 32))
    inits += [m.const("zero", 0.0), m.const("six", 6.0)]
    nodes.append(helper.make_node("Clip", ["c2_out", "zero", "six"], ["c2_clip"], name="c2_clip"))
    add(m.conv(rng, "dw", "c2_clip", "dw_out", 32, 32, group=32))
    add(m.batchnorm(rng, "dw_bn", "dw_out", "dw_bn_out", 32))
    nodes.append(helper.make_node("Sigmoid", ["dw_bn_out"], ["dw_sig"], name="dw_sig"))
    nodes.append(helper.make_node("Mul", ["dw_bn_out", "dw_sig"], ["dw_silu"], name="dw_silu"))
    add(m.conv(rng, "odd", "dw_silu", "odd_out", 32, 24, kernel=(1, 1)))
    nodes.append(m.relu("odd_relu", "odd_out", "odd_relu_out"))
    add(m.conv(rng, "c12", "odd_relu_out", "c12_out", 24, 16))
    inits.append(m.const("c12_scale", rng.uniform(0.5, 1.5, (1, 16, 1, 1))))
    nodes.append(helper.make_node("Mul", ["c12_out", "c12_scale"], ["c12_mul"], name="c12_mul"))
    nodes.append(m.relu("c12_relu", "c12_mul", "c12_relu_out"))
    add(m.conv(rng, "hs", "c12_relu_out", "hs_out", 16, 16))
    nodes.append(helper.make_node("HardSigmoid", ["hs_out"], ["hs_gate"], name="hs_gate",
                                  alpha=1 / 6, beta=0.5))
    nodes.append(helper.make_node("Mul", ["hs_out", "hs_gate"], ["hs_act"], name="hs_act"))
    nodes.append(helper.make_node("GlobalAveragePool", ["hs_act"], ["output"], name="pool"))
    return m.make_model(
        nodes,
        [m.tensor_input("input", [1, 3, 16, 20])],
        [m.tensor_input("output", [1, 16, 1, 1])],
        inits,
        opset=opset,
    )


EXPECTED = {
    "stem_out", "stem_relu_out", "c2_out", "c2_clip", "dw_out", "dw_silu", "odd_out",
    "odd_relu_out", "hs_out",
}


def _opened(tmp_path, model=None):
    return open_model(m.save(model or blocked_net(), tmp_path / "net.onnx"), providers=("cpu",))


def _folded_by_onnxruntime(tmp_path, opened, tensors) -> set[str]:
    """The tensors onnxruntime turns into a channels-last reorder when each feeds a Transpose."""
    import onnxruntime as ort

    names = layout.nhwc_names(opened.graph.proto, tensors)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.optimized_model_filepath = str(tmp_path / "optimised.onnx")
    ort.InferenceSession(opened.graph.exposed_model_bytes(tensors, names), options,
                         providers=CPU)
    optimised = onnx.load(str(tmp_path / "optimised.onnx"))
    tensor_of = {alias: tensor for tensor, alias in names.items()}
    return {
        tensor_of[out]
        for node in optimised.graph.node
        if node.op_type == "ReorderOutput"
        and any(a.name == "channels_last" and a.i == 1 for a in node.attribute)
        for out in node.output
        if out in tensor_of
    }


def test_picks_the_maps_the_rules_keep_blocked(tmp_path):
    opened = _opened(tmp_path)
    assert layout.blocked_tensors(opened.graph.proto, opened.layers) == EXPECTED


@needs_nchwc
@pytest.mark.parametrize("stage", ["post", "pre"])
def test_every_pick_is_one_onnxruntime_keeps_blocked(tmp_path, stage):
    opened = _opened(tmp_path)
    tensors = [layer.tensor(stage) for layer in opened.layers]  # one stage at a time, as fmviz
    folded = _folded_by_onnxruntime(tmp_path, opened, tensors)
    # a pick onnxruntime does not fold would cost a real Transpose
    assert EXPECTED & set(tensors) <= folded


def test_opset_21_models_keep_nchw_outputs(tmp_path):
    opened = _opened(tmp_path, blocked_net(opset=21))
    assert layout.blocked_tensors(opened.graph.proto, opened.layers) == set()


def test_only_the_cpu_provider_on_x86_64_asks_for_channels_last(monkeypatch):
    monkeypatch.setattr(layout.platform, "machine", lambda: "x86_64")
    assert layout.wanted(CPU)
    assert not layout.wanted(["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(layout.platform, "machine", lambda: "arm64")
    assert not layout.wanted(CPU)


@needs_nchwc
@pytest.mark.parametrize("stage", ["post", "pre"])
def test_channels_last_maps_are_the_same_bits_as_nchw_ones(tmp_path, monkeypatch, stage):
    x = np.random.default_rng(3).standard_normal((1, 3, 16, 20)).astype(np.float32)
    opened = _opened(tmp_path)
    tensors = [layer.tensor(stage) for layer in opened.layers]
    session = opened.session(tensors)
    assert set(session.channels_last) == set(tensors) & EXPECTED
    assert set(session.outputs) == {"output", *tensors}  # the tensors, not their aliases
    fast = opened.capture(x, stage=stage)

    monkeypatch.setattr(layout, "wanted", lambda providers: False)
    plain_model = _opened(tmp_path / "plain")
    assert plain_model.session(tensors).channels_last == {}
    plain = plain_model.capture(x, stage=stage)
    expected = ReferenceEvaluator(blocked_net()).run(tensors, {"input": x})
    for layer, want_reference in zip(fast.layers, expected, strict=True):
        got, want = fast.maps[layer.index], plain.maps[layer.index]
        assert got.shape == want.shape == want_reference.shape
        assert np.array_equal(got, want), layer.name
        np.testing.assert_allclose(got, want_reference, rtol=1e-4, atol=1e-4)
