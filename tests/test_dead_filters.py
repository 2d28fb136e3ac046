"""``fmviz dead-filters``: planted dead/rare/constant channels, inputs, reports, gates, resume.

The models are built here with onnx.helper so that the expected answer is known by
construction: Conv -> BatchNormalization -> Relu where BatchNormalization has scale 0 and bias
-100 on some channels makes exactly those channels dead; scale 0 and bias +3 makes a constant
channel; a centre-tap filter with bias -100 fires only on the one large pixel each input has,
1 position in 256, which is rare.
"""

from __future__ import annotations

import csv
import io
import json
import re
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from fmviz.cli import main
from fmviz.graph import analyse
from fmviz.graph.reductions import Target, hard_sigmoid_step, numpy_reductions, reduction_model
from fmviz.scan import ScanOptions, collect_inputs, scan
from fmviz.stats import ChannelStats

SIZE = 16
DEAD, CONSTANT, RARE = [1, 4], [2], [3]
CHANNELS = 6


# ----------------------------------------------------------------------------- models and inputs


def _finish(nodes, inputs, outputs, inits, opset=17) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "planted", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def planted_model(batch="N", size=SIZE, opset=17) -> onnx.ModelProto:
    """conv1 (6 ch) -> BN -> Relu -> conv2 (3 ch) -> Relu, with planted channels in conv1."""
    rng = np.random.default_rng(0)
    w1 = np.abs(rng.normal(0, 0.3, (CHANNELS, 1, 3, 3))).astype(np.float32)
    w1[RARE[0]] = 0
    w1[RARE[0], 0, 1, 1] = 1.0  # centre tap: z = x
    scale = np.ones(CHANNELS, np.float32)
    bias = np.zeros(CHANNELS, np.float32)
    scale[DEAD] = 0
    bias[DEAD] = -100
    scale[CONSTANT] = 0
    bias[CONSTANT] = 3
    bias[RARE] = -100
    w2 = np.abs(rng.normal(0, 0.2, (3, CHANNELS, 3, 3))).astype(np.float32)
    inits = [
        numpy_helper.from_array(w1, "w1"),
        numpy_helper.from_array(scale, "bn_scale"),
        numpy_helper.from_array(bias, "bn_bias"),
        numpy_helper.from_array(np.zeros(CHANNELS, np.float32), "bn_mean"),
        numpy_helper.from_array(np.ones(CHANNELS, np.float32), "bn_var"),
        numpy_helper.from_array(w2, "w2"),
        numpy_helper.from_array(np.full(3, 0.1, np.float32), "b2"),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c1", "bn_scale", "bn_bias", "bn_mean", "bn_var"],
                         ["bn1"], name="bn1", epsilon=0.0),
        helper.make_node("Relu", ["bn1"], ["relu1"], name="relu1"),
        helper.make_node("Conv", ["relu1", "w2", "b2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["relu2"], name="relu2"),
    ]
    return _finish(
        nodes,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 1, size, size])],
        [helper.make_tensor_value_info("relu2", TensorProto.FLOAT, [batch, 3, size, size])],
        inits,
        opset,
    )


def signed_model(opset: int) -> onnx.ModelProto:
    """Conv with no activation (signed maps) and a second conv -> Relu, dynamic H and W."""
    rng = np.random.default_rng(1)
    inits = [
        numpy_helper.from_array(rng.normal(0, 1, (4, 2, 3, 3)).astype(np.float32), "w1"),
        numpy_helper.from_array(rng.normal(0, 1, (3, 4, 1, 1)).astype(np.float32), "w2"),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["c1", "w2"], ["c2"], name="conv2"),
        helper.make_node("Relu", ["c2"], ["out"], name="relu2"),
    ]
    return _finish(
        nodes,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 2, "H", "W"])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        inits,
        opset,
    )


def identity_model() -> onnx.ModelProto:
    """A 1x1 conv with weight 1: the map equals the input (for exact threshold checks)."""
    inits = [numpy_helper.from_array(np.ones((1, 1, 1, 1), np.float32), "w")]
    nodes = [helper.make_node("Conv", ["input", "w"], ["out"], name="identity")]
    return _finish(
        nodes,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, 1, "L"])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 1, 1, "L"])],
        inits,
    )


def planted_inputs(folder: Path, count: int, seed: int = 0, size: int = SIZE) -> list[Path]:
    """``count`` tensors [1, size, size]: uniform values and one pixel of 1000."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        x = rng.uniform(0, 1, (1, size, size)).astype(np.float32)
        x[0, rng.integers(size), rng.integers(size)] = 1000.0
        path = folder / f"input-{i:03d}.npy"
        np.save(path, x)
        paths.append(path)
    return paths


def save(model: onnx.ModelProto, path: Path) -> Path:
    path.write_bytes(model.SerializeToString())
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("dead")
    model = save(planted_model(), root / "planted.onnx")
    inputs = planted_inputs(root / "inputs", 12)
    return {"root": root, "model": model, "inputs": inputs, "folder": root / "inputs"}


def cli(args, capsys) -> tuple[int, str, str]:
    code = main(["dead-filters", *[str(a) for a in args]])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_json(args, capsys) -> dict:
    code, out, err = cli([*args, "--json", "--quiet"], capsys)
    assert code == 0, err
    return json.loads(out)


def assert_error(result, line: str) -> None:
    code, out, err = result
    assert code == 2
    assert err == f"Error: {line}\n"
    assert out == ""


def reference_stats(model_path: Path, inputs: list[Path], tensors: list[str]) -> list:
    """ChannelStats computed in numpy from the full maps onnxruntime returns."""
    proto = onnx.load(model_path)
    proto.graph.output.extend([onnx.ValueInfoProto(name=t) for t in tensors])
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    stats = None
    for path in inputs:
        x = np.load(path)[np.newaxis]
        maps = session.run(tensors, {"input": x})
        if stats is None:
            stats = [ChannelStats(m.shape[1], 1e-6) for m in maps]
        for accumulator, array in zip(stats, maps, strict=True):
            accumulator.add_maps(array)
    return stats


# ----------------------------------------------------------------------------- planted channels


def test_planted_channels_are_named_exactly(setup, capsys):
    report = run_json([setup["model"], setup["folder"]], capsys)
    assert report["schema"] == "fmviz/dead-filters/1"
    assert report["inputs_scanned"] == 12 and report["skipped"] == []
    first, second = report["layers"]
    assert (first["name"], first["tensor"], first["activation"]) == ("conv1", "relu1", "Relu")
    assert first["dead"] == DEAD
    assert first["rare"] == RARE
    assert first["constant"] == CONSTANT
    assert second["dead"] == second["rare"] == second["constant"] == []
    assert first["active_fraction"][RARE[0]] == pytest.approx(1 / SIZE**2)
    assert first["max_abs"][DEAD[0]] == 0.0 and first["max_abs"][CONSTANT[0]] == 3.0
    assert report["summary"] == {
        "layers": 2, "channels": 9, "dead": 2, "rare": 1, "constant": 1, "inactive": 0,
        "dead_fraction": pytest.approx(2 / 9),
    }
    for key in ("fmviz", "model", "providers", "eps", "rare"):
        assert key in report
    assert report["model"]["sha256"] and report["providers"] == ["CPUExecutionProvider"]


def test_rare_threshold_option(setup, capsys):
    report = run_json([setup["model"], setup["folder"], "--rare", "0.001"], capsys)
    assert report["layers"][0]["rare"] == []  # 1/256 is not below 0.001
    assert report["rare"] == 0.001


def test_statistics_equal_numpy_on_the_full_maps(setup, tmp_path):
    from fmviz.model import open_model

    model = open_model(setup["model"])
    result = scan(model, setup["inputs"], ScanOptions(batch_size=5))
    expected = reference_stats(setup["model"], setup["inputs"], ["relu1", "relu2"])
    for got, want in zip(result.stats, expected, strict=True):
        np.testing.assert_array_equal(got.count, want.count)
        np.testing.assert_array_equal(got.active, want.active)
        np.testing.assert_array_equal(got.min, want.min)
        np.testing.assert_array_equal(got.max, want.max)
        np.testing.assert_allclose(got.sum, want.sum, rtol=1e-5)
        np.testing.assert_allclose(got.sumsq, want.sumsq, rtol=1e-5)
    assert result.inputs_scanned == 12 and result.samples == 12


@pytest.mark.parametrize("opset", [11, 13, 18])
def test_reduction_graph_equals_numpy_for_each_opset(opset):
    """Reduce* with axes as attribute (< 13, < 18) or input; signed maps and ReLU maps."""
    proto = signed_model(opset)
    targets = [Target("c1"), Target("out", non_negative=True)]
    data, outputs = reduction_model(analyse(proto), targets, 1e-6)
    assert len(proto.graph.output) == 1 and len(proto.graph.node) == 3  # restored
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    raw = proto.__deepcopy__()
    raw.graph.output.extend([onnx.ValueInfoProto(name="c1"), onnx.ValueInfoProto(name="out")])
    raw_session = ort.InferenceSession(raw.SerializeToString(),
                                       providers=["CPUExecutionProvider"])
    x = np.random.default_rng(2).normal(0, 1, (3, 2, 7, 9)).astype(np.float32)
    x[0, :, :3] = 0
    names = [n for o in outputs for n in o.names()]
    values = dict(zip(names, session.run(names, {"input": x}), strict=True))
    maps = dict(zip(["c1", "out"], raw_session.run(["c1", "out"], {"input": x}), strict=True))
    for o in outputs:
        want = numpy_reductions(maps[o.tensor], 1e-6)
        np.testing.assert_array_equal(values[o.min], want["min"])
        np.testing.assert_array_equal(values[o.max], want["max"])
        np.testing.assert_array_equal(values[o.active], want["active"])
        np.testing.assert_allclose(values[o.sum], want["sum"], rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(values[o.sumsq], want["sumsq"], rtol=1e-5)
        assert list(values[o.shape]) == list(maps[o.tensor].shape)


@pytest.mark.parametrize("eps", [1e-6, 0.5, 3.0, 1e-30, 1e-35, 0.0])
def test_active_count_is_exact_at_the_threshold(eps):
    """|a| > eps counted exactly for values at, just above and just below eps (and -eps)."""
    e32 = np.float32(eps)
    probes = [e32, np.nextafter(e32, np.float32(1)), np.nextafter(e32, np.float32(0)),
              -e32, -np.nextafter(e32, np.float32(1)), 0.0, np.float32(eps * 4), 1.0, -1.0,
              np.float32(np.finfo(np.float32).max), np.float32(1e-45)]
    x = np.array(probes, dtype=np.float32).reshape(1, 1, 1, -1)
    proto = identity_model()
    for non_negative in (False, True):
        data, (names,) = reduction_model(analyse(proto), [Target("out", non_negative=non_negative)],
                                         eps)
        session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        probe = np.abs(x) if non_negative else x
        (active,) = session.run([names.active], {"input": probe})
        assert int(active[0, 0]) == int((np.abs(probe.astype(np.float64)) > eps).sum())
    assert (hard_sigmoid_step(eps) is None) == (eps in (0.0, 1e-35))  # Greater + Cast then


# ----------------------------------------------------------------------------- inputs


def test_collect_inputs_walks_folders_sorted_and_skips_hidden(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / ".hidden").mkdir()
    (tmp_path / "a.npy").touch()
    (tmp_path / "b" / "c.PNG").touch()
    (tmp_path / "b" / "notes.txt").touch()
    (tmp_path / ".secret.npy").touch()
    (tmp_path / ".hidden" / "x.npy").touch()
    (tmp_path / "z.wav").touch()
    found = collect_inputs([str(tmp_path), str(tmp_path / "a.npy")])
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["a.npy", "b/c.PNG", "z.wav"]
    stdin = io.StringIO(f"{tmp_path / 'z.wav'}\n\n{tmp_path / 'missing.png'}\n")
    assert collect_inputs(["-"], stdin=stdin) == [tmp_path / "z.wav", tmp_path / "missing.png"]


def test_missing_path_is_an_error_before_anything_runs(setup, capsys):
    missing = setup["root"] / "nope"
    result = cli([setup["root"] / "no-model.onnx", setup["folder"], missing], capsys)
    assert_error(result, f"{missing}: no such file or folder")


def test_stdin_paths(setup, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("".join(f"{p}\n" for p in setup["inputs"][:5])))
    report = run_json([setup["model"], "-"], capsys)
    assert report["inputs_scanned"] == 5
    assert report["layers"][0]["dead"] == DEAD


def test_limit(setup, capsys):
    report = run_json([setup["model"], setup["folder"], "--limit", "3"], capsys)
    assert report["inputs_scanned"] == 3


def test_bad_inputs_are_skipped_listed_and_counted(setup, tmp_path, capsys):
    folder = tmp_path / "mixed"
    good = planted_inputs(folder, 4)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(200)))
    np.save(folder / "wrong-shape.npy", np.zeros((3, 5), np.float32))
    report = run_json([setup["model"], folder], capsys)
    assert report["inputs_scanned"] == len(good)
    assert [s["path"] for s in report["skipped"]] == [str(folder / "broken.png"),
                                                       str(folder / "wrong-shape.npy")]
    assert all(s["error"] for s in report["skipped"])
    assert report["layers"][0]["dead"] == DEAD

    code, out, err = cli([setup["model"], folder, "--quiet"], capsys)
    assert code == 0 and out == "" and err == ""
    code, out, err = cli([setup["model"], folder], capsys)
    assert code == 0 and "4 inputs scanned, 2 skipped" in out and "broken.png" in out


def test_model_rejecting_an_input_is_a_skip(tmp_path, capsys):
    """A tensor too small for the convolution: onnxruntime refuses it, the scan goes on."""
    model = save(signed_model(17), tmp_path / "signed.onnx")
    np.save(tmp_path / "ok.npy", np.ones((2, 6, 6), np.float32))
    np.save(tmp_path / "ok2.npy", np.ones((2, 6, 6), np.float32))
    np.save(tmp_path / "bad.npy", np.ones((5, 6, 6), np.float32))  # 5 channels, not 2
    report = run_json([model, tmp_path / "ok.npy", tmp_path / "bad.npy", tmp_path / "ok2.npy",
                       "--batch-size", "4"], capsys)
    assert report["inputs_scanned"] == 2
    assert [s["path"] for s in report["skipped"]] == [str(tmp_path / "bad.npy")]


def test_strict_stops_with_exit_2(setup, tmp_path, capsys):
    folder = tmp_path / "strict"
    planted_inputs(folder, 2)
    bad = folder / "broken.png"
    bad.write_bytes(b"not a picture")
    code, out, err = cli([setup["model"], folder, "--strict"], capsys)
    assert code == 2 and out == ""
    assert re.fullmatch(rf"Error: {re.escape(str(bad))}: .+ \(--strict stops at the first bad "
                        r"input\)\n", err)


def test_no_readable_input_is_exit_2(setup, tmp_path, capsys):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a picture")
    code, out, err = cli([setup["model"], bad], capsys)
    assert code == 2 and out == ""
    assert err.startswith(f"Error: no input could be read: 1 of 1 skipped (first: {bad}: ")
    assert_error(cli([setup["model"], _empty_folder(tmp_path)], capsys), "no input files to scan")


def _empty_folder(root: Path) -> Path:
    folder = root / "empty"
    folder.mkdir(exist_ok=True)
    (folder / "readme.txt").write_text("not an input")
    return folder


def test_shapes_are_batched_separately(tmp_path):
    """Inputs of two sizes in one scan (dynamic H, W) give the stats of every map."""
    from fmviz.model import open_model

    model_path = save(signed_model(17), tmp_path / "signed.onnx")
    rng = np.random.default_rng(3)
    paths = []
    for i, size in enumerate([5, 8, 5, 8, 8, 5, 9]):
        path = tmp_path / f"x{i}.npy"
        np.save(path, rng.normal(0, 1, (2, size, size)).astype(np.float32))
        paths.append(path)
    result = scan(open_model(model_path), paths, ScanOptions(batch_size=2))
    expected = reference_stats(model_path, paths, ["c1", "out"])
    for got, want in zip(result.stats, expected, strict=True):
        assert got.equals(want, rtol=1e-5) or (
            np.array_equal(got.count, want.count) and np.array_equal(got.active, want.active)
            and np.array_equal(got.max, want.max) and np.array_equal(got.min, want.min)
            and np.allclose(got.sum, want.sum, rtol=1e-5, atol=1e-4)
        )
    assert result.inputs_scanned == 7


def test_fixed_batch_model_pads_without_counting_the_padding(tmp_path, capsys):
    """A model with batch 3 and 4 pictures: a full batch, then one padded with copies."""
    from PIL import Image

    model = save(planted_model(batch=3), tmp_path / "fixed.onnx")
    folder = tmp_path / "pictures"
    folder.mkdir()
    rng = np.random.default_rng(4)
    for i in range(4):
        grey = rng.integers(0, 256, (SIZE, SIZE), dtype=np.uint8)
        Image.fromarray(grey, mode="L").save(folder / f"p{i}.png")
    report = run_json([model, folder], capsys)
    assert report["inputs_scanned"] == 4 and report["samples"] == 4
    assert report["layers"][0]["positions"] == 4 * SIZE * SIZE
    assert report["layers"][0]["dead"] == sorted(DEAD + RARE)  # pixels <= 1: never above 100
    code, _, err = cli([model, folder / "p0.png", "--batch-size", "2"], capsys)
    assert code == 2 and err == "Error: --batch-size 2: input 'input' has a fixed batch of 3\n"


def test_nonfinite_maps_are_counted_and_the_json_stays_valid(tmp_path, capsys):
    model = save(identity_model(), tmp_path / "identity.onnx")
    x = np.array([[[[np.finfo(np.float32).max, 1.0, 0.0]]]], np.float32)
    np.save(tmp_path / "huge.npy", x)  # finite input, but its square overflows float32
    report = run_json([model, tmp_path / "huge.npy"], capsys)
    layer = report["layers"][0]
    assert layer["nonfinite"] == 0 and layer["dead"] == []
    assert layer["active_fraction"] == [pytest.approx(2 / 3)]
    json.loads(json.dumps(report), parse_constant=lambda c: pytest.fail(f"{c} in JSON"))


# ----------------------------------------------------------------------------- reports and gates


def test_every_report_format_is_written_and_parses(setup, tmp_path, capsys):
    paths = {fmt: tmp_path / "deep" / "er" / f"report.{fmt}" for fmt in ("json", "md", "html",
                                                                         "csv")}
    args = [setup["model"], setup["folder"], "--quiet"]
    for path in paths.values():
        args += ["--report", path]
    code, out, err = cli(args, capsys)
    assert (code, out, err) == (0, "", "")

    report = json.loads(paths["json"].read_text())
    assert report["layers"][0]["dead"] == DEAD

    rows = list(csv.DictReader(paths["csv"].open(newline="")))
    assert list(rows[0]) == ["layer_index", "layer", "tensor", "channel", "max_abs", "mean",
                             "active_fraction", "dead", "rare", "constant", "inactive"]
    assert len(rows) == 9
    assert [(r["layer_index"], r["channel"]) for r in rows if r["dead"] == "true"] == [
        ("0", "1"), ("0", "4")]
    assert [r["channel"] for r in rows if r["rare"] == "true"] == ["3"]
    assert [r["channel"] for r in rows if r["constant"] == "true"] == ["2"]
    assert float(rows[2]["mean"]) == 3.0

    markdown = paths["md"].read_text()
    table = [line for line in markdown.splitlines() if line.startswith("| ")]
    layer_rows = [line for line in table if line.startswith(("| 0 |", "| 1 |"))]
    assert len(layer_rows) == 2
    assert "| 0 | conv1 | Relu | 6 | 2 | 0 | 1 | 1 | 1, 4 |  | 3 |" in layer_rows

    page = paths["html"].read_text()
    # the gallery's scan page: per layer a stacked bar and charts of max |a| and active fraction
    assert page.count("<svg") == page.count("</svg>") >= 2 * 2
    assert "http://" not in page and "https://" not in page
    assert "<script src" not in page and "<link" not in page and "@import" not in page
    assert "conv1" in page and "conv2" in page


def test_unknown_report_extension_is_a_usage_error_before_the_scan(setup, tmp_path, capsys):
    result = cli([tmp_path / "missing.onnx", setup["folder"], "--report", tmp_path / "r.txt"],
                 capsys)
    assert_error(result, f"--report {tmp_path / 'r.txt'}: unknown format '.txt' "
                         "(use .json, .md, .html or .csv)")


def test_human_summary(setup, capsys):
    code, out, err = cli([setup["model"], setup["folder"]], capsys)
    assert code == 0 and err == ""
    assert "12 inputs scanned, 0 skipped" in out
    assert "2 dead of 9 channels (22.2%) in 2 layers, 0 inactive, 1 rare, 1 constant" in out
    assert re.search(r"0\s+conv1\s+Relu\s+6\s+2\s+0\s+1\s+1\s+1, 4", out)


def test_progress_only_when_asked_or_on_a_terminal(setup, capsys):
    code, _, err = cli([setup["model"], setup["folder"], "--json"], capsys)
    assert code == 0 and err == ""  # stderr is no terminal here: silent
    code, _, err = cli([setup["model"], setup["folder"], "--json", "--progress"], capsys)
    assert code == 0 and "12/12" in err and "scanning" in err


@pytest.mark.parametrize(
    ("gate", "code"),
    [([], 0), (["--fail-on-dead"], 1), (["--max-dead-fraction", "0.5"], 0),
     (["--max-dead-fraction", "0.2"], 1), (["--max-dead-fraction", "0.25", "--fail-on-dead"], 1)],
)
def test_gates_and_exit_codes(setup, capsys, gate, code):
    result, out, err = cli([setup["model"], setup["folder"], "--json", *gate], capsys)
    assert result == code
    assert json.loads(out)["summary"]["dead"] == 2  # the report is printed either way
    assert ("gate failed" in err) == (code == 1)


def test_gate_passes_without_dead_channels(setup, capsys):
    code, _, _ = cli([setup["model"], setup["folder"], "--layers", "conv2", "--fail-on-dead",
                      "--quiet"], capsys)
    assert code == 0


# ----------------------------------------------------------------------------- checkpoints


def test_checkpoint_resume_equals_one_run(setup, tmp_path, capsys):
    checkpoint = tmp_path / "ck" / "scan.npz"
    common = [setup["model"], setup["folder"], "--batch-size", "2", "--checkpoint-every", "2"]
    whole = run_json([setup["model"], setup["folder"], "--batch-size", "2"], capsys)
    partial = run_json([*common, "--checkpoint", checkpoint, "--limit", "6"], capsys)
    assert partial["inputs_scanned"] == 6 and checkpoint.exists()
    resumed = run_json([*common, "--checkpoint", checkpoint], capsys)
    assert resumed == whole
    again = run_json([*common, "--checkpoint", checkpoint], capsys)  # all done: same report
    assert again == whole


def test_ctrl_c_saves_the_checkpoint_and_exits_130(setup, tmp_path, capsys, monkeypatch):
    from fmviz import scan as scan_module

    checkpoint = tmp_path / "interrupted.npz"
    args = [setup["model"], setup["folder"], "--batch-size", "2", "--checkpoint", checkpoint]
    original = scan_module.Scanner._reduce
    calls = {"n": 0}

    def interrupt_on_the_fourth_batch(self, rows, source):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return original(self, rows, source)

    monkeypatch.setattr(scan_module.Scanner, "_reduce", interrupt_on_the_fourth_batch)
    code, out, err = cli(args, capsys)
    assert code == 130 and out == ""
    assert f"note: interrupted: {checkpoint} holds 6 of 12 inputs" in err
    monkeypatch.setattr(scan_module.Scanner, "_reduce", original)

    with np.load(checkpoint, allow_pickle=False) as archive:
        header = json.loads(bytes(archive["header"]).decode())
    assert header["done"] == 6 and header["inputs_scanned"] == 6

    resumed = run_json([*args], capsys)
    whole = run_json([setup["model"], setup["folder"], "--batch-size", "2"], capsys)
    assert resumed == whole


def test_checkpoint_from_other_options_or_model_is_refused(setup, tmp_path, capsys):
    checkpoint = tmp_path / "scan.npz"
    run_json([setup["model"], setup["folder"], "--checkpoint", checkpoint, "--limit", "2"],
             capsys)
    code, _, err = cli([setup["model"], setup["folder"], "--checkpoint", checkpoint,
                        "--eps", "0.001"], capsys)
    assert code == 2
    assert err == (f"Error: {checkpoint}: made with other --eps (1e-06 vs 0.001); delete it to "
                   "start over, or use another --checkpoint file\n")
    other = save(signed_model(17), tmp_path / "other.onnx")
    code, _, err = cli([other, setup["folder"], "--checkpoint", checkpoint], capsys)
    assert code == 2 and "made for another model" in err
    code, _, err = cli([setup["model"], setup["inputs"][5], setup["inputs"][6], "--checkpoint",
                        checkpoint], capsys)
    assert code == 2 and "the first 2 inputs are not the ones it was made from" in err
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"PK\x03\x04 not really")
    code, _, err = cli([setup["model"], setup["folder"], "--checkpoint", junk], capsys)
    assert code == 2 and err.startswith(f"Error: {junk}: not a readable fmviz checkpoint")


# ----------------------------------------------------------------------------- memory


def test_statistics_do_not_grow_with_the_number_of_inputs(tmp_path):
    """4x as many inputs: the accumulated statistics keep exactly the same size.

    Nothing per input is kept; peak RSS for N and 4N inputs is measured by the benchmarks
    (a traced-memory peak here would depend on thread timing, so it is not asserted).
    """
    from fmviz.model import open_model

    model = open_model(save(planted_model(size=64), tmp_path / "m64.onnx"))
    few = planted_inputs(tmp_path / "few", 16, seed=1, size=64)
    many = planted_inputs(tmp_path / "many", 64, seed=2, size=64)
    options = ScanOptions(batch_size=4, workers=2)
    sizes = []
    for paths in (few, many):
        result = scan(model, paths, options)
        sizes.append(sum(s.nbytes for s in result.stats))
        assert result.inputs_scanned == len(paths)
    assert sizes[0] == sizes[1]


def test_extra_inputs_get_their_notice_once_per_scan(tmp_path, capsys):
    """SPEC: an input without --feed gets zeros and a one-line notice naming it; the scan
    feeds it in every batch but says so once."""
    from PIL import Image

    import models

    model = models.save(models.extra_inputs(), tmp_path / "extra.onnx")
    for k in range(3):
        Image.new("RGB", (16, 16), (40 * k, 150, 200)).save(tmp_path / f"p{k}.png")
    code, out, err = cli([model, *sorted(tmp_path.glob("p*.png")), "--feed", "scale=2",
                          "--json"], capsys)
    assert code == 0, err
    assert err == (
        "note: input 'steps' [1] int64 gets zeros (set it with --feed steps=FILE.npy|NUMBER)\n"
    )
    assert json.loads(out)["inputs_scanned"] == 3
    _, _, quiet_err = cli([model, tmp_path / "p0.png", "--json", "--quiet"], capsys)
    assert quiet_err == ""
