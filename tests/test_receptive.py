"""fmviz.graph.receptive: receptive fields from the graph.

Two kinds of check: hand computations of small chains (the usual r_out = r_in + (k - 1) * d * J,
J_out = J_in * s, start_out = start_in - p * J_in recurrence worked out on paper), and a brute-force
oracle independent of the module: random conv/pool models run with onnxruntime, one input pixel
perturbed at a time; the pixels that change output position j must lie in the computed box and,
for exact fields away from any padding, span it exactly.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

import models as tm
from fmviz.graph.receptive import AxisField, Field, receptive_fields


def _model(nodes, inits, in_shape, outputs=None, opset=tm.OPSET, check=False):
    outs = outputs or [nodes[-1].output[0]]
    return tm.make_model(
        nodes,
        [tm.tensor_input("input", in_shape)],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outs],
        inits,
        opset=opset,
        check=check,
    )


def _w(name, shape, seed=0):
    rng = np.random.default_rng(seed)
    return tm.const(name, rng.standard_normal(shape))


def _axis(field: Field, i: int = 0) -> tuple:
    a = field.axes[i]
    return a.size, a.stride, a.start, a.exact


# ----------------------------------------------------------------------------- hand computations


def test_conv_pool_chain_with_strides_pads_dilations():
    nodes = [
        helper.make_node("Conv", ["input", "w1"], ["c1"], kernel_shape=[3, 3], pads=[1] * 4),
        helper.make_node("Conv", ["c1", "w2"], ["c2"], kernel_shape=[3, 3], strides=[2, 2],
                         pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("MaxPool", ["r2"], ["p2"], kernel_shape=[2, 2], strides=[2, 2]),
        # dilation 2, 3x1 kernel: only the rows grow
        helper.make_node("Conv", ["p2", "w3"], ["c3"], kernel_shape=[3, 1], dilations=[2, 1],
                         pads=[2, 0, 2, 0]),
        helper.make_node("AveragePool", ["c3"], ["p3"], kernel_shape=[3, 3], strides=[1, 2],
                         pads=[0, 1, 0, 0]),
    ]
    inits = [_w("w1", [2, 3, 3, 3]), _w("w2", [2, 2, 3, 3]), _w("w3", [2, 2, 3, 1])]
    fields = receptive_fields(_model(nodes, inits, ["N", 3, 32, 32]).graph, "input", (-2, -1))
    assert fields["input"].axes == (AxisField(1, 1.0, 0.0, True),) * 2
    assert _axis(fields["c1"]) == (3, 1, -1, True)
    assert _axis(fields["c2"]) == (5, 2, -2, True)  # 3 + 2 * 1; start -1 - 1 * 1
    assert fields["r2"] == fields["c2"]
    assert _axis(fields["p2"]) == (7, 4, -2, True)  # 5 + 1 * 2
    # rows: 7 + (3 - 1) * 2 * 4 = 23, start -2 - 2 * 4 = -10; columns unchanged (kernel 1)
    assert _axis(fields["c3"], 0) == (23, 4, -10, True)
    assert _axis(fields["c3"], 1) == (7, 4, -2, True)
    # pool 3x3, stride (1, 2), one leading pad on the columns only
    assert _axis(fields["p3"], 0) == (31, 4, -10, True)  # 23 + 2 * 4
    assert _axis(fields["p3"], 1) == (15, 8, -6, True)  # 7 + 2 * 4, -2 - 1 * 4
    assert fields["p3"].tensor_axes == (-2, -1)
    # boxes: output (2, 1) rows [-10 + 8, -10 + 8 + 31) = [-2, 29), columns [2, 17); clipped
    assert fields["p3"].box((2, 1), (32, 32), clip=False) == [-2, 2, 29, 17]
    assert fields["p3"].box((2, 1), (32, 32)) == [0, 2, 29, 17]
    assert fields["p3"].position((0, 5, 2, 1)) == (2, 1)


def test_same_padding_and_kernel_from_weights():
    # no kernel_shape: the kernel comes from the weight's dims
    nodes = [
        helper.make_node("Conv", ["input", "w"], ["up"], auto_pad="SAME_UPPER", strides=[2]),
        helper.make_node("Conv", ["input", "w"], ["low"], auto_pad="SAME_LOWER", strides=[2]),
        helper.make_node("Conv", ["input", "w"], ["valid"], auto_pad="VALID", strides=[2]),
        helper.make_node("Conv", ["input", "w"], ["one"], auto_pad="SAME_UPPER"),
    ]
    inits = [_w("w", [2, 1, 4])]
    outs = ["up", "low", "valid", "one"]
    # length 10, kernel 4, stride 2: out 5, total pad (5 - 1) * 2 + 4 - 10 = 2 -> 1 before
    even = receptive_fields(_model(nodes, inits, ["N", 1, 10], outs).graph, "input", (-1,))
    assert _axis(even["up"]) == (4, 2, -1, True)
    assert _axis(even["low"]) == (4, 2, -1, True)
    assert _axis(even["valid"]) == (4, 2, 0, True)
    assert _axis(even["one"]) == (4, 1, -1, True)  # total 3: 1 before (UPPER), 2 after
    # length 11: total pad (6 - 1) * 2 + 4 - 11 = 3 -> UPPER 1 before, LOWER 2 before
    odd = receptive_fields(_model(nodes, inits, ["N", 1, 11], outs).graph, "input", (-1,))
    assert _axis(odd["up"]) == (4, 2, -1, True)
    assert _axis(odd["low"]) == (4, 2, -2, True)
    # length unknown: the box holds both cases and says it is not exact (stride 1 still is)
    free = receptive_fields(_model(nodes, inits, ["N", 1, "L"], outs).graph, "input", (-1,))
    assert _axis(free["low"]) == (5, 2, -2, False)
    assert _axis(free["one"]) == (4, 1, -1, True)
    given = receptive_fields(
        _model(nodes, inits, ["N", 1, "L"], outs).graph, "input", (-1,), input_size=(11,)
    )
    assert given["low"] == odd["low"]


def test_residual_join_takes_the_union_and_constants_do_not_join():
    nodes = [
        helper.make_node("Conv", ["input", "w3"], ["a"], kernel_shape=[3, 3], strides=[2, 2],
                         pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["a", "w5"], ["b"], kernel_shape=[5, 5], pads=[2, 2, 2, 2]),
        helper.make_node("Conv", ["input", "w1"], ["short"], kernel_shape=[1, 1],
                         strides=[2, 2]),
        helper.make_node("Add", ["b", "short"], ["sum"]),
        helper.make_node("Add", ["sum", "bias"], ["biased"]),  # an initializer: no join
        helper.make_node("Constant", [], ["k"], value=helper.make_tensor(
            "k", TensorProto.FLOAT, [1], [2.0])),
        helper.make_node("Mul", ["k", "biased"], ["scaled"]),
        helper.make_node("Conv", ["input", "w1"], ["plain"], kernel_shape=[1, 1]),
        helper.make_node("Add", ["plain", "input"], ["mixed"]),  # different strides? no: same
    ]
    inits = [_w("w3", [2, 1, 3, 3]), _w("w5", [2, 2, 5, 5]), _w("w1", [2, 1, 1, 1]),
             tm.const("bias", np.ones((1, 2, 1, 1)))]
    fields = receptive_fields(
        _model(nodes, inits, ["N", 1, 16, 16], ["scaled", "mixed"]).graph, "input", (-2, -1)
    )
    assert _axis(fields["a"]) == (3, 2, -1, True)
    assert _axis(fields["b"]) == (11, 2, -5, True)  # 3 + 4 * 2, -1 - 2 * 2
    assert _axis(fields["short"]) == (1, 2, 0, True)
    assert _axis(fields["sum"]) == (11, 2, -5, True)  # union of [-5, 6) and [0, 1)
    assert fields["biased"] == fields["sum"] == fields["scaled"]
    assert not fields["scaled"].global_context
    assert _axis(fields["mixed"]) == (1, 1, 0, True)
    assert "k" not in fields and "bias" not in fields


def test_join_of_different_strides_is_the_whole_input():
    nodes = [
        helper.make_node("Conv", ["input", "w"], ["a"], kernel_shape=[2], strides=[2]),
        helper.make_node("Slice", ["input", "s", "e", "ax", "st"], ["b"]),  # every 2nd sample
        helper.make_node("Add", ["a", "b"], ["sum"]),
    ]
    inits = [_w("w", [1, 1, 2]), tm.const("s", [0], np.int64), tm.const("e", [99], np.int64),
             tm.const("ax", [2], np.int64), tm.const("st", [2], np.int64)]
    fields = receptive_fields(_model(nodes, inits, ["N", 1, 8]).graph, "input", (-1,))
    assert _axis(fields["b"]) == (1, 2, 0, True)
    assert _axis(fields["a"]) == (2, 2, 0, True)
    assert _axis(fields["sum"]) == (2, 2, 0, True)
    nodes[1] = helper.make_node("Slice", ["input", "s", "e", "ax"], ["b"])
    fields = receptive_fields(_model(nodes, inits, ["N", 1, "L"], check=False).graph, "input",
                              (-1,))
    assert fields["sum"].axes[0].size is None and not fields["sum"].axes[0].exact
    assert fields["sum"].box((3,), (8,)) == [0, 8]


def test_conv_transpose_divides_the_stride():
    nodes = [
        helper.make_node("Conv", ["input", "w"], ["down"], kernel_shape=[3], strides=[4],
                         pads=[1, 1]),
        helper.make_node("ConvTranspose", ["down", "wt"], ["up"], kernel_shape=[4], strides=[2],
                         pads=[1, 1]),
        helper.make_node("ConvTranspose", ["up", "wt"], ["flat"], kernel_shape=[4],
                         pads=[3, 3]),
    ]
    inits = [_w("w", [2, 1, 3]), _w("wt", [2, 2, 4])]
    fields = receptive_fields(_model(nodes, inits, ["N", 1, 32]).graph, "input", (-1,))
    assert _axis(fields["down"]) == (3, 4, -1, True)
    # output o reads inputs i with 2i = o + 1 - t, t = 0..3: i in [(o - 2) / 2, (o + 1) / 2]
    # -> in input samples [-1 + 4 * (o - 2) / 2, -1 + 4 * (o + 1) / 2 + 3) = start -5, size 9;
    # the pattern repeats every 2 outputs, so the uniform box is not exact
    assert _axis(fields["up"]) == (9, 2, -5, False)
    # stride 1 with pads 3 = k - 1: a plain 4-tap convolution read backwards, start -5 + 0 * 2
    assert _axis(fields["flat"]) == (15, 2, -5, False)  # 9 + 3 * 2


def test_1d_chain_through_transpose_reshape_squeeze():
    nodes = [
        helper.make_node("Transpose", ["input"], ["ncl"], perm=[0, 2, 1]),  # [N, L, C] input
        helper.make_node("Pad", ["ncl", "pads"], ["padded"]),  # 3 zeros in front of time
        helper.make_node("MaxPool", ["padded"], ["pooled"], kernel_shape=[2], strides=[2]),
        helper.make_node("Slice", ["pooled", "starts", "ends", "axes"], ["sliced"]),
        helper.make_node("Conv", ["sliced", "w"], ["conv"], kernel_shape=[3], dilations=[2]),
        helper.make_node("Unsqueeze", ["conv", "two"], ["nc1l"]),
        helper.make_node("Reshape", ["nc1l", "shape"], ["back"]),
        helper.make_node("Transpose", ["back"], ["nlc"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["nlc", "proj"], ["linear"]),  # per time step: keeps
        helper.make_node("Flatten", ["nlc"], ["flat"]),  # merges time and channels
        helper.make_node("Squeeze", ["nc1l", "two"], ["squeezed"]),
    ]
    inits = [
        tm.const("pads", [0, 0, 3, 0, 0, 0], np.int64),
        tm.const("starts", [1], np.int64),
        tm.const("ends", [1000], np.int64),
        tm.const("axes", [2], np.int64),
        _w("w", [2, 2, 3]),
        tm.const("two", [2], np.int64),
        tm.const("shape", [0, 0, -1], np.int64),
        _w("proj", [2, 5]),
    ]
    model = _model(nodes, inits, [1, 40, 2], ["linear", "flat", "squeezed"])
    fields = receptive_fields(model.graph, "input", (-2,))
    assert fields["input"].tensor_axes == (-2,)
    assert fields["ncl"].tensor_axes == (-1,) and _axis(fields["ncl"]) == (1, 1, 0, True)
    assert _axis(fields["padded"]) == (1, 1, -3, True)
    assert _axis(fields["pooled"]) == (2, 2, -3, True)
    assert _axis(fields["sliced"]) == (2, 2, -1, True)
    assert _axis(fields["conv"]) == (10, 2, -1, True)  # 2 + 2 * 2 * 2
    assert fields["nc1l"].tensor_axes == (-1,)
    assert fields["back"].tensor_axes == (-1,) and fields["back"].axes == fields["conv"].axes
    assert fields["nlc"].tensor_axes == (-2,)
    assert fields["linear"].tensor_axes == (-2,) and fields["linear"].axes == fields["conv"].axes
    assert fields["flat"].tensor_axes == (None,) and fields["flat"].axes[0].size is None
    assert fields["squeezed"].tensor_axes == (-1,)
    # series_view's (stride, offset): centre of index 0
    assert fields["conv"].axes[0].centre(0) == -1 + 4.5


def test_nhwc_and_squeezed_axis():
    nodes = [
        helper.make_node("Transpose", ["input"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["nchw", "w"], ["c"], kernel_shape=[4, 3], strides=[4, 1]),
        helper.make_node("Squeeze", ["c", "two"], ["seq"]),  # H was 4: one row left
    ]
    inits = [_w("w", [2, 3, 4, 3]), tm.const("two", [2], np.int64)]
    fields = receptive_fields(_model(nodes, inits, [1, 4, 9, 3]).graph, "input", (-3, -2))
    assert fields["nchw"].tensor_axes == (-2, -1)
    assert fields["seq"].tensor_axes == (None, -1)
    assert _axis(fields["seq"], 0) == (4, 4, 0, True) and _axis(fields["seq"], 1) == (3, 1, 0, True)
    assert fields["seq"].box(fields["seq"].position((0, 1, 5)), (4, 9)) == [0, 5, 4, 8]


def test_whole_input_ops_and_global_context():
    nodes = [
        helper.make_node("Conv", ["input", "w"], ["c"], kernel_shape=[3, 3], pads=[1] * 4),
        helper.make_node("GlobalAveragePool", ["c"], ["gap"]),
        helper.make_node("Flatten", ["gap"], ["vec"]),
        helper.make_node("Gemm", ["vec", "fc"], ["fc_out"], transB=1),
        helper.make_node("Sigmoid", ["fc_out"], ["gate_vec"]),
        helper.make_node("Reshape", ["gate_vec", "shape"], ["gate"]),
        helper.make_node("Mul", ["c", "gate"], ["excited"]),  # squeeze-excitation
        helper.make_node("Resize", ["c", "", "scales"], ["up"], mode="nearest"),
        helper.make_node("ReduceMean", ["c"], ["rows"], axes=[3], keepdims=0),
        helper.make_node("InstanceNormalization", ["c", "s", "b"], ["inorm"]),
        helper.make_node("Softmax", ["c"], ["soft"], axis=1),  # over channels: keeps
    ]
    inits = [_w("w", [2, 1, 3, 3]), _w("fc", [2, 2]), tm.const("shape", [-1, 2, 1, 1], np.int64),
             tm.const("scales", [1, 1, 2, 2]), tm.const("s", [1, 1]), tm.const("b", [0, 0])]
    outs = ["excited", "up", "rows", "inorm", "soft"]
    model = _model(nodes, inits, ["N", 1, 8, 8], outs, opset=13)
    fields = receptive_fields(model.graph, "input", (-2, -1))
    for name in ("gap", "vec", "fc_out", "gate"):
        assert all(a.size is None and not a.exact for a in fields[name].axes), name
    assert fields["gap"].tensor_axes == (-2, -1) and fields["vec"].tensor_axes == (None, None)
    assert fields["gap"].box((0, 0), (8, 8)) == [0, 0, 8, 8]
    assert fields["excited"].axes == fields["c"].axes and fields["excited"].global_context
    assert fields["inorm"].axes == fields["c"].axes and fields["inorm"].global_context
    assert fields["soft"] == fields["c"]
    assert fields["up"].axes[0].size is None and fields["up"].axes[0].stride == 0.5
    assert fields["rows"].tensor_axes == (-1, None)
    assert fields["rows"].axes[0] == fields["c"].axes[0] and fields["rows"].axes[1].size is None
    strict = receptive_fields(model.graph, "input", (-2, -1), strict=True)
    assert all(a.size is None for a in strict["excited"].axes)
    assert all(a.size is None for a in strict["inorm"].axes)
    assert strict["soft"] == fields["soft"]


def test_attention_and_control_flow_are_the_whole_input():
    then = helper.make_graph(
        [helper.make_node("Identity", ["c"], ["t"])], "then", [],
        [helper.make_tensor_value_info("t", TensorProto.FLOAT, None)],
    )
    nodes = [
        helper.make_node("Conv", ["input", "w"], ["c"], kernel_shape=[1]),  # [N, C, L]
        helper.make_node("Transpose", ["c"], ["x"], perm=[0, 2, 1]),  # [N, L, C]
        helper.make_node("Transpose", ["c"], ["xt"], perm=[0, 1, 2]),
        helper.make_node("MatMul", ["x", "xt"], ["scores"]),  # [N, L, L]
        helper.make_node("If", ["cond"], ["branch"], then_branch=then, else_branch=then),
    ]
    inits = [_w("w", [2, 1, 1]), tm.const("cond", True, np.bool_)]
    model = _model(nodes, inits, ["N", 1, 8], ["scores", "branch"], check=False)
    fields = receptive_fields(model.graph, "input", (-1,))
    assert fields["x"].tensor_axes == (-2,) and fields["x"].exact
    assert fields["scores"].axes[0].size is None and fields["scores"].tensor_axes == (-2,)
    assert fields["branch"].axes[0].size is None


# ----------------------------------------------------------------------------- brute-force oracle


def _influence(model, shape, spatial, tensors):
    """Per tensor: ``changed[p, *pos]``, True where perturbing input pixel p moves that output."""
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    base = rng.standard_normal(shape).astype(np.float32)
    pixels = int(np.prod([shape[a] for a in spatial]))
    sign = rng.choice([-1.0, 1.0], size=shape[1]).astype(np.float32)
    batch = np.repeat(base, 2 * pixels + 1, axis=0)
    for p in range(pixels):
        where = np.unravel_index(p, [shape[a] for a in spatial])
        for k, s in ((1 + p, 1e4), (1 + pixels + p, -1e4)):
            index = [k, slice(None)] + list(where)
            batch[tuple(index)] += s * sign
    results = sess.run(tensors, {"input": batch})
    changed = {}
    for name, out in zip(tensors, results, strict=True):
        diff = np.abs(out[1:] - out[:1]) > 1e-3 * (1 + np.abs(out[:1]))
        diff = diff[:pixels] | diff[pixels:]
        changed[name] = diff.any(axis=1)  # over channels: [pixels, *spatial_out]
    return changed


def _check_against_oracle(model, shape, fields, tensors, equal=True):
    """Every influence lies in the clipped box; exact boxes inside the input are spanned."""
    spatial = list(range(2, len(shape)))
    size_in = [shape[a] for a in spatial]
    changed = _influence(model, shape, spatial, tensors)
    checked = 0
    for name in tensors:
        field = fields[name]
        mask = changed[name]
        coords = np.array(np.unravel_index(np.arange(mask.shape[0]), size_in))  # [axes, pixels]
        for position in np.ndindex(*mask.shape[1:]):
            hit = mask[(slice(None), *position)]
            box = field.box(position, size_in)
            if not hit.any():
                continue
            lows, highs = coords[:, hit].min(axis=1), coords[:, hit].max(axis=1) + 1
            n = len(size_in)
            assert all(box[i] <= lows[i] and highs[i] <= box[n + i] for i in range(n)), (
                name, position, box, lows.tolist(), highs.tolist())
            raw = field.box(position, size_in, clip=False)
            if equal and field.exact and raw == box:
                assert [*lows.tolist(), *highs.tolist()] == box, (name, position, box)
                checked += 1
    return checked


def _random_chain(seed: int, dims: int):
    """A random conv/pool chain (with residual joins) whose every window ends on the input's end.

    Returns (model, input shape, tensors to check). Lengths are tracked so that no stride leaves
    an unread tail (a position that reads a padding value at an inner layer while its box lies
    inside the input would make the equality check meaningless).
    """
    rng = np.random.default_rng(seed)
    size = [int(rng.integers(14, 22)) for _ in range(dims)] if dims == 2 else [
        int(rng.integers(40, 70))]
    lengths = list(size)
    channels = 2
    nodes, inits, outs = [], [], []
    x = "input"
    for layer in range(int(rng.integers(2, 6))):
        if min(lengths) < 6:
            break
        name = f"t{layer}"
        kind = rng.choice(["conv", "conv", "max", "avg", "res", "pad", "same"])
        if kind == "pad":
            pads = [0, 0] + [int(rng.integers(0, 3)) for _ in range(dims)] + [0, 0] + [
                int(rng.integers(0, 3)) for _ in range(dims)]
            inits.append(tm.const(f"{name}.pads", pads, np.int64))
            nodes.append(helper.make_node("Pad", [x, f"{name}.pads"], [name]))
            lengths = [n + pads[2 + i] + pads[4 + dims + i - 2] for i, n in enumerate(lengths)]
        elif kind == "res":  # x + conv(conv(x)), same length: k odd, pads k // 2
            k = int(rng.choice([1, 3, 5]))
            for step in ("a", "b"):
                inits.append(_w(f"{name}.w{step}", [channels, channels] + [k] * dims, seed + layer))
                src = x if step == "a" else f"{name}.a"
                nodes.append(helper.make_node("Conv", [src, f"{name}.w{step}"], [f"{name}.{step}"],
                                              kernel_shape=[k] * dims, pads=[k // 2] * 2 * dims))
                outs.append(f"{name}.{step}")
            nodes.append(helper.make_node("Add", [x, f"{name}.b"], [name]))
        elif kind == "same":
            k, s = int(rng.integers(1, 5)), int(rng.integers(1, 3))
            if any(n % s for n in lengths):
                s = 1
            inits.append(_w(f"{name}.w", [channels, channels] + [k] * dims, seed + layer))
            nodes.append(helper.make_node(
                "Conv", [x, f"{name}.w"], [name], kernel_shape=[k] * dims, strides=[s] * dims,
                auto_pad=str(rng.choice(["SAME_UPPER", "SAME_LOWER"]))))
            lengths = [n // s for n in lengths]
        else:
            pool = kind in ("max", "avg")
            k = [int(rng.integers(2 if pool else 1, 4)) for _ in range(dims)]
            s = [int(rng.integers(1, min(kk, 3) + 1)) for kk in k]
            d = [1 if pool and kind == "avg" else int(rng.integers(1, 3)) for _ in range(dims)]
            span = [(kk - 1) * dd + 1 for kk, dd in zip(k, d, strict=True)]
            begin = [int(rng.integers(0, kk)) for kk in k]
            end = []
            for i in range(dims):  # the last window ends on the last sample or in padding
                e = (-(lengths[i] + begin[i] - span[i])) % s[i]
                if e >= k[i]:
                    e, begin[i] = 0, 0
                    if (lengths[i] - span[i]) % s[i]:
                        s[i] = 1
                end.append(e)
            attrs = {"kernel_shape": k, "strides": s, "pads": begin + end}
            if kind == "max":
                nodes.append(helper.make_node("MaxPool", [x], [name], dilations=d, **attrs))
            elif kind == "avg":
                nodes.append(helper.make_node("AveragePool", [x], [name], **attrs))
            else:
                inits.append(_w(f"{name}.w", [channels, channels] + k, seed + layer))
                nodes.append(helper.make_node("Conv", [x, f"{name}.w"], [name], dilations=d,
                                              **attrs))
            lengths = [(n + b + e - sp) // st + 1
                       for n, b, e, sp, st in zip(lengths, begin, end, span, s, strict=True)]
        outs.append(name)
        x = name
    first = helper.make_node("Conv", ["input", "w0"], ["start"], kernel_shape=[1] * dims)
    for node in nodes:
        for i, name in enumerate(node.input):
            if name == "input":
                node.input[i] = "start"
    inits.append(_w("w0", [channels, 1] + [1] * dims, seed))
    shape = [1, 1, *size]
    model = _model([first, *nodes], inits, ["N", 1, *size], outs or ["start"])
    return model, shape, outs or ["start"]


@pytest.mark.parametrize("seed", range(24))
def test_oracle_random_1d_chains(seed):
    model, shape, outs = _random_chain(seed, 1)
    fields = receptive_fields(model.graph, "input", (-1,))
    assert all(fields[o].exact for o in outs)
    assert _check_against_oracle(model, shape, fields, outs) > 0


@pytest.mark.parametrize("seed", range(12))
def test_oracle_random_2d_chains(seed):
    model, shape, outs = _random_chain(100 + seed, 2)
    fields = receptive_fields(model.graph, "input", (-2, -1))
    assert all(fields[o].exact for o in outs)
    assert _check_against_oracle(model, shape, fields, outs) > 0


@pytest.mark.parametrize("k,s,pads", [(4, 2, [1, 1]), (3, 2, [0, 0]), (5, 3, [2, 1]),
                                      (3, 1, [1, 1]), (2, 2, [0, 0])])
def test_oracle_conv_transpose_box_holds_the_field(k, s, pads):
    nodes = [
        helper.make_node("Conv", ["input", "w"], ["down"], kernel_shape=[3], strides=[2],
                         pads=[1, 1]),
        helper.make_node("ConvTranspose", ["down", "wt"], ["up"], kernel_shape=[k], strides=[s],
                         pads=pads),
        helper.make_node("Conv", ["up", "w2"], ["after"], kernel_shape=[3], pads=[1, 1]),
    ]
    inits = [_w("w", [2, 1, 3]), _w("wt", [2, 2, k], 1), _w("w2", [2, 2, 3], 2)]
    model = _model(nodes, inits, ["N", 1, 30], ["up", "after"])
    fields = receptive_fields(model.graph, "input", (-1,))
    assert fields["up"].exact == (s == 1)
    assert _check_against_oracle(model, [1, 1, 30], fields, ["up", "after"]) >= 0


def test_oracle_slice_and_strided_residual_hold():
    nodes = [
        helper.make_node("Slice", ["input", "s", "e", "ax"], ["cut"]),
        helper.make_node("Conv", ["cut", "w"], ["a"], kernel_shape=[3, 3], strides=[2, 2],
                         pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["a", "w2"], ["b"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["cut", "w1"], ["short"], kernel_shape=[1, 1], strides=[2, 2]),
        helper.make_node("Add", ["b", "short"], ["sum"]),
    ]
    inits = [tm.const("s", [3, 2], np.int64), tm.const("e", [99, 99], np.int64),
             tm.const("ax", [2, 3], np.int64), _w("w", [2, 1, 3, 3]), _w("w2", [2, 2, 3, 3], 1),
             _w("w1", [2, 1, 1, 1], 2)]
    model = _model(nodes, inits, ["N", 1, 19, 18], ["cut", "a", "b", "short", "sum"])
    fields = receptive_fields(model.graph, "input", (-2, -1))
    assert _axis(fields["sum"], 0) == (7, 2, 3 - 3, True) and _axis(fields["sum"], 1) == (
        7, 2, 2 - 3, True)
    # containment everywhere (padding read at inner layers shrinks some fields)
    _check_against_oracle(model, [1, 1, 19, 18], fields, ["a", "b", "short", "sum"], equal=False)


def test_split_concat_on_the_time_axis_and_recurrent_layers():
    nodes = [
        helper.make_node("Conv", ["input", "w"], ["c"], kernel_shape=[3], strides=[2]),  # L 9
        helper.make_node("Split", ["c", "sizes"], ["first", "second"], axis=2),
        helper.make_node("Concat", ["second", "first"], ["swapped"], axis=2),
        helper.make_node("Concat", ["first", "zeros"], ["extended"], axis=-1),
        helper.make_node("Transpose", ["c"], ["lnc"], perm=[2, 0, 1]),  # [L, N, C]
        helper.make_node("LSTM", ["lnc", "W", "R"], ["y", "y_h"], hidden_size=3),
    ]
    inits = [_w("w", [2, 1, 3]), tm.const("sizes", [4, 5], np.int64),
             tm.const("zeros", np.zeros((1, 2, 3))), _w("W", [1, 12, 2]), _w("R", [1, 12, 3])]
    model = _model(nodes, inits, [1, 1, 19], ["swapped", "extended", "y", "y_h"])
    fields = receptive_fields(model.graph, "input", (-1,))
    assert _axis(fields["first"]) == (3, 2, 0, True)
    assert _axis(fields["second"]) == (3, 2, 8, True)  # starts 4 steps of 2 later
    assert fields["swapped"].axes[0].size is None  # positions restart halfway
    assert fields["extended"].axes == fields["first"].axes  # constant tail: no shift
    assert fields["lnc"].tensor_axes == (-3,)
    assert fields["y"].tensor_axes == (-4,) and fields["y"].axes[0].size is None
    assert fields["y_h"].tensor_axes == (None,)
