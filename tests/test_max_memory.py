"""--max-memory: the bytes of the maps are estimated from shapes before anything runs, and a
capture that would take more is made in several passes with the same files and numbers."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper
from PIL import Image

from fmviz.cli import main
from fmviz.errors import OptionError
from fmviz.memory import parse_size
from fmviz.model import open_model
from tests import models as tm


def residual_net() -> onnx.ModelProto:
    """Conv+BN+ReLU, a depthwise Conv+BN+ReLU6, a 1x1 Conv+BN added to the block input, a
    strided conv, then a nearest Resize x2 and a Reshape computed from Shape: the fusions that
    depend on which tensors are outputs (Conv+BN, Conv+Add, Conv+activation, NCHWc) and sizes
    that only concrete shape inference knows (dynamic H and W)."""
    rng = np.random.default_rng(5)
    nodes, inits = [], []

    def block(x, name, cin, cout, act="Relu", group=1, stride=None, kernel=(3, 3)):
        c, ci = tm.conv(rng, f"{name}", x, f"{name}_out", cin, cout, kernel=kernel,
                        group=group, stride=stride)
        bn, bi = tm.batchnorm(rng, f"{name}_bn", f"{name}_out", f"{name}_bn_out", cout)
        nodes.extend([c, bn])
        inits.extend(ci + bi)
        out = f"{name}_bn_out"
        if act == "Relu":
            nodes.append(tm.relu(f"{name}_relu", out, f"{name}_act"))
            out = f"{name}_act"
        elif act == "Clip":
            nodes.append(helper.make_node("Clip", [out, "zero", "six"], [f"{name}_act"]))
            out = f"{name}_act"
        return out

    inits += [tm.const("zero", 0.0), tm.const("six", 6.0), tm.const("scales", [1, 1, 2, 2])]
    x = block("input", "stem", 3, 16)
    y = block(x, "dw", 16, 16, act="Clip", group=16)
    y = block(y, "project", 16, 16, act=None, kernel=(1, 1))
    nodes.append(helper.make_node("Add", [x, y], ["sum"]))
    nodes.append(tm.relu("sum_relu", "sum", "sum_act"))
    z = block("sum_act", "down", 16, 32, stride=(2, 2))
    nodes.append(helper.make_node("Resize", [z, "", "scales"], ["up"], mode="nearest"))
    u = block("up", "head", 32, 16)
    nodes.append(helper.make_node("Shape", [u], ["u_shape"]))
    inits.append(tm.init("keep", np.array([0, 1], dtype=np.int64)))
    inits.append(tm.init("last", np.array([3], dtype=np.int64)))
    inits.append(tm.init("minus_one", np.array([-1], dtype=np.int64)))
    nodes.append(helper.make_node("Gather", ["u_shape", "keep"], ["nc"]))
    nodes.append(helper.make_node("Gather", ["u_shape", "last"], ["w"]))
    nodes.append(helper.make_node("Concat", ["nc", "minus_one", "w"], ["target"], axis=0))
    nodes.append(helper.make_node("Reshape", [u, "target"], ["flat"]))
    c, ci = tm.conv(rng, "tail", "flat", "tail_out", 16, 8, kernel=(1, 1))
    nodes.append(c)
    inits += ci
    return tm.make_model(
        nodes,
        [tm.tensor_input("input", ["N", 3, "H", "W"])],
        [tm.tensor_input("tail_out", ["N", 8, None, None])],
        inits,
    )


@pytest.fixture(scope="module")
def net(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("maxmem")
    model = tm.save(residual_net(), root / "residual.onnx")
    rng = np.random.default_rng(0)
    picture = root / "photo.png"
    Image.fromarray(rng.integers(0, 256, (36, 44, 3), dtype=np.uint8)).save(picture)
    return {"root": root, "model": model, "picture": picture}


def _run(args) -> int:
    return main([str(a) for a in args])


def _pngs(folder: Path) -> dict[str, np.ndarray]:
    return {
        p.name: np.asarray(Image.open(p).convert("RGBA"))
        for p in sorted(folder.glob("*.png"))
    }


def _numbers(manifest: dict) -> dict:
    manifest = dict(manifest)
    manifest.pop("timings_ms")
    return manifest


@pytest.mark.parametrize("stage", ["post", "pre"])
def test_tiny_max_memory_gives_the_same_files_and_numbers(net, stage, capsys, monkeypatch):
    from fmviz.runner import Runner

    passes = []
    run = Runner.run
    monkeypatch.setattr(
        Runner, "run", lambda self, *a, **k: passes.append(1) or run(self, *a, **k)
    )
    one, many = net["root"] / f"one-{stage}", net["root"] / f"many-{stage}"
    common = [net["model"], net["picture"], "--size", "40x32", "--stage", stage,
              "--save-arrays"]
    assert _run(["run", *common, "-o", one, "--max-memory", "1G"]) == 0
    single_err = capsys.readouterr().err
    assert "passes" not in single_err
    passes.clear()  # count the runs of the memory-bounded capture only
    assert _run(["run", *common, "-o", many, "--max-memory", "1K"]) == 0
    err = capsys.readouterr().err
    assert "capturing them in 6 passes" in err  # every layer alone exceeds a third of 1 KiB
    assert len(passes) == 6  # each pass runs once, --save-arrays included

    a, b = _pngs(one / "photo"), _pngs(many / "photo")
    assert a.keys() == b.keys() and len(a) == 3 * 6
    for name in a:
        assert np.array_equal(a[name], b[name]), name
    ma = json.loads((one / "photo" / "manifest.json").read_text())
    mb = json.loads((many / "photo" / "manifest.json").read_text())
    assert _numbers(ma) == _numbers(mb)
    with np.load(one / "photo" / "arrays.npz") as x, np.load(many / "photo" / "arrays.npz") as y:
        assert sorted(x.files) == sorted(y.files)
        for key in x.files:
            assert np.array_equal(x[key], y[key]), key


def test_estimate_equals_the_bytes_onnxruntime_returns(net):
    """Sizes after Resize and a Reshape computed from Shape need concrete shape inference."""
    model = open_model(net["model"], providers=["cpu"])
    x = np.random.default_rng(1).random((2, 3, 30, 42), dtype=np.float32)
    for stage in ("post", "pre"):
        probes = model.probes(stage=stage)
        plan = model.runner.plan(probes, {"input": x}, max_memory=1 << 30)
        assert plan.passes == 1 and not plan.guessed
        capture = model.capture(x, stage=stage)
        for layer in model.layers:
            assert plan.layer_bytes[layer.index] == capture.maps[layer.index].nbytes, layer.name
        assert plan.total_bytes == sum(a.nbytes for a in capture.maps.values())


def test_grouped_capture_matches_one_pass(net):
    model = open_model(net["model"], providers=["cpu"])
    x = np.random.default_rng(2).random((1, 3, 24, 20), dtype=np.float32)
    (single,) = model.captures(x, max_memory="1G")
    total = sum(a.nbytes for a in single.maps.values())
    grouped = list(model.captures(x, max_memory=total // 2))
    assert len(grouped) == grouped[0].passes > 1 and single.passes == 1
    assert [c.pass_index for c in grouped] == list(range(len(grouped)))
    assert any("passes" in note for note in grouped[0].notices)
    maps = {index: array for capture in grouped for index, array in capture.maps.items()}
    assert sorted(maps) == sorted(single.maps)
    for capture in grouped:  # each pass holds its own layers, in order
        assert [p.index for p in capture.probes] == sorted(capture.maps)
    for index, array in single.maps.items():
        assert np.array_equal(maps[index], array)



@pytest.mark.parametrize(
    ("text", "expected"),
    [("4G", 4 << 30), ("512M", 512 << 20), ("512m", 512 << 20), ("1.5GiB", 3 << 29),
     ("64k", 64 << 10), ("2GB", 2 << 30), ("1048576", 1 << 20), (" 8 M ", 8 << 20)],
)
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "G", "4X", "-1G", "0", "1e9", "4 GB extra"])
def test_parse_size_rejects(text):
    with pytest.raises(OptionError):
        parse_size(text)


def test_bad_max_memory_is_a_usage_error(net, capsys, tmp_path):
    code = _run(["run", net["model"], net["picture"], "-o", tmp_path, "--max-memory", "lots"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("Error: --max-memory 'lots' is not a size")
    assert not os.listdir(tmp_path)
