"""``fmviz run`` end to end: files, arrays, manifest, rendering options and the output folder.

Feature maps are compared with ``onnx.reference.ReferenceEvaluator`` on the same input tensor;
statistics with numpy; PNGs are decoded and checked pixel by pixel against numpy quantisation
of the saved arrays.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import matplotlib
import numpy as np
import onnx
import pytest
from onnx.reference import ReferenceEvaluator
from PIL import Image

from fmviz.cli import main
from fmviz.errors import OptionError
from fmviz.model import open_model
from fmviz.visualize import RenderOptions, RunOptions, run
from tests import models

LEVELS = 250  # grey levels a grid uses: value level l is drawn as round(l * 255 / 249)
GREY_OF_LEVEL = np.rint(np.arange(LEVELS) * 255 / (LEVELS - 1)).astype(int)

SPEC_TOP = {"schema", "fmviz", "model", "input", "providers", "stage", "layers", "timings_ms"}
SPEC_MODEL = {"path", "sha256", "opset", "inputs"}
SPEC_INPUT = {"path", "kind", "tensor_shape", "preprocess", "feeds"}
SPEC_LAYER = {
    "index",
    "name",
    "op",
    "tensor",
    "stage",
    "activation",
    "shape",
    "channels",
    "shown_channels",
    "files",
    "stats",
    "channel_stats",
}
SPEC_STATS = {"min", "max", "mean", "std", "zero_fraction", "nonfinite"}
SPEC_CHANNEL_STATS = {"min", "max", "mean", "zero_fraction"}

# conv_bn_relu(): layer -> (pre tensor, post tensor, activation, channels)
CBR = {
    "conv1": ("conv1_out", "relu1_out", "Relu", 8),
    "conv2": ("conv2_out", "relu2_out", "Relu", 4),
}


def cli(args, capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def reference(model: onnx.ModelProto, tensors, x: np.ndarray) -> dict[str, np.ndarray]:
    outputs = ReferenceEvaluator(model).run(list(tensors), {"input": x})
    return dict(zip(tensors, outputs, strict=True))


def files_under(root: Path) -> set[Path]:
    return {Path(d) / f for d, _, fs in os.walk(root) for f in fs}


def tile_pixels(png: Path, layout: dict) -> list[np.ndarray]:
    """Each tile of a grid PNG as grey values, one pixel per map position; the map positions
    under the channel number's corner box (``label_box``) are NaN."""
    image = Image.open(png)
    assert image.mode == "P"
    grey = np.asarray(image.convert("L")).astype(int)
    th, tw, gap, scale = (layout[k] for k in ("tile_height", "tile_width", "gap", "scale"))
    tiles = []
    for k in range(len(layout["channels"])):
        r, c = divmod(k, layout["cols"])
        x, y = gap + c * (tw + gap), gap + r * (th + gap)
        tile = grey[y : y + th, x : x + tw].astype(float)
        if layout.get("label_box"):
            bw, bh = layout["label_box"]
            tile[: -(-bh // scale) * scale, : -(-bw // scale) * scale] = np.nan
        # nearest upscaling: every scale x scale block is one value
        blocks = np.kron(tile[::scale, ::scale], np.ones((scale, scale)))
        np.testing.assert_array_equal(tile, blocks)
        tiles.append(tile[::scale, ::scale])
    return tiles


def assert_tile(tile: np.ndarray, want: np.ndarray, atol: float = 1) -> None:
    """``tile`` (from :func:`tile_pixels`) equals ``want`` outside its label box."""
    keep = ~np.isnan(tile)
    assert keep.mean() > 0.5  # the label takes a corner, not the tile
    np.testing.assert_allclose(tile[keep], np.asarray(want)[keep], atol=atol)


def expected_grey(channel: np.ndarray, lo: float, hi: float) -> np.ndarray:
    x = np.clip(channel.astype(np.float64), lo, hi)
    levels = np.rint((x - lo) / (hi - lo) * (LEVELS - 1)).astype(int)
    return GREY_OF_LEVEL[levels]


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def cbr(tmp_path_factory) -> dict:
    """conv_bn_relu saved, a 40x30 picture, a batch-2 tensor, and one image run with arrays."""
    root = tmp_path_factory.mktemp("cbr")
    model = models.conv_bn_relu()
    model_path = models.save(model, root / "model.onnx")
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    picture = root / "photo.png"
    Image.fromarray(pixels).save(picture)
    batch = rng.standard_normal((2, 3, 16, 16)).astype(np.float32)
    tensor = root / "batch.npy"
    np.save(tensor, batch)
    out = root / "out"
    code = main(["run", str(model_path), str(picture), "-o", str(out), "--save-arrays", "-q"])
    assert code == 0
    folder = out / "photo"
    return {
        "root": root,
        "model": model,
        "model_path": model_path,
        "picture": picture,
        "pixels": pixels,
        "tensor": tensor,
        "batch": batch,
        "folder": folder,
        "manifest": json.loads((folder / "manifest.json").read_text()),
    }


@pytest.fixture(scope="module")
def batch_runs(cbr) -> dict:
    """The batch-2 tensor run at both stages through fmviz.visualize.run, with arrays."""
    model = open_model(cbr["model_path"], ("cpu",))
    result = {}
    for stage in ("pre", "post"):
        out = cbr["root"] / f"batch-{stage}"
        options = RunOptions(out=out, stage=stage, save_arrays=True)
        [(folder, manifest)] = list(run(model, [cbr["tensor"]], options))
        with np.load(folder / "arrays.npz", allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        result[stage] = {"folder": folder, "manifest": manifest, "arrays": arrays}
    return result


# ----------------------------------------------------------------------------- files


def test_every_spec_file_exists_for_every_layer(cbr):
    folder, manifest = cbr["folder"], cbr["manifest"]
    assert [layer["name"] for layer in manifest["layers"]] == ["conv1", "conv2"]
    expected = {folder / "manifest.json", folder / "arrays.npz"}
    for layer in manifest["layers"]:
        stem = f"{layer['index']:03d}-{layer['name']}"
        files = {
            "grid": f"{stem}.grid.png",
            "heatmap": f"{stem}.heatmap.png",
            "overlay": f"{stem}.overlay.png",
        }
        assert layer["files"] == files
        expected |= {folder / name for name in files.values()}
    assert files_under(folder) == expected  # nothing else, no temporary files


def test_manifest_has_the_spec_fields(cbr):
    manifest = cbr["manifest"]
    assert set(manifest) >= SPEC_TOP
    assert manifest["schema"] == "fmviz/run/1"
    from fmviz import __version__

    assert manifest["fmviz"] == __version__
    model = manifest["model"]
    assert set(model) >= SPEC_MODEL
    assert model["path"] == str(cbr["model_path"])
    assert model["sha256"] == hashlib.sha256(cbr["model_path"].read_bytes()).hexdigest()
    assert model["opset"] == 17
    assert model["inputs"] == [{"name": "input", "shape": ["N", 3, 16, 16], "dtype": "float32"}]
    inp = manifest["input"]
    assert set(inp) >= SPEC_INPUT
    assert inp["path"] == str(cbr["picture"])
    assert inp["kind"] == "image"
    assert inp["tensor_shape"] == [1, 3, 16, 16]
    assert inp["feeds"] == {}
    pre = inp["preprocess"]
    assert pre["preset"] == "unit" and pre["layout"] == "NCHW" and pre["bgr"] is False
    assert pre["resized_to"] == [16, 16] and pre["size"] == [40, 30]
    assert manifest["providers"] == ["CPUExecutionProvider"]
    assert manifest["stage"] == "post"
    assert isinstance(manifest["timings_ms"], dict) and manifest["timings_ms"]
    assert all(isinstance(v, (int, float)) and v >= 0 for v in manifest["timings_ms"].values())
    for layer in manifest["layers"]:
        assert set(layer) >= SPEC_LAYER
        pre_t, post_t, activation, channels = CBR[layer["name"]]
        assert layer["op"] == "Conv"
        assert layer["tensor"] == post_t
        assert layer["stage"] == "post"
        assert layer["activation"] == activation
        assert layer["channels"] == channels
        assert layer["shown_channels"] == list(range(channels))
        assert set(layer["stats"]) == SPEC_STATS
        assert set(layer["channel_stats"]) == SPEC_CHANNEL_STATS
        assert all(len(v) == channels for v in layer["channel_stats"].values())
    assert [layer["index"] for layer in manifest["layers"]] == [0, 1]
    assert manifest["layers"][0]["shape"] == [1, 8, 16, 16]
    assert manifest["layers"][1]["shape"] == [1, 4, 8, 8]


def test_image_arrays_equal_the_reference_on_the_fed_tensor(cbr):
    # the tensor fmviz fed is reproduced from the picture by hand: bilinear resize, x / 255
    resized = np.asarray(Image.open(cbr["picture"]).resize((16, 16), Image.BILINEAR), np.float32)
    x = (resized / 255).transpose(2, 0, 1)[None]
    want = reference(cbr["model"], ["relu1_out", "relu2_out"], x)
    with np.load(cbr["folder"] / "arrays.npz", allow_pickle=False) as npz:
        assert set(npz.files) == {"relu1_out", "relu2_out"}
        for name, value in want.items():
            # the hand resize rounds to whole levels: a loose tolerance here, exact ones below
            np.testing.assert_allclose(npz[name], value, atol=0.05)


@pytest.mark.parametrize("stage", ["pre", "post"])
def test_arrays_equal_the_reference_evaluator(cbr, batch_runs, stage):
    arrays = batch_runs[stage]["arrays"]
    names = [CBR[layer][0 if stage == "pre" else 1] for layer in ("conv1", "conv2")]
    assert set(arrays) == set(names)  # keyed by the exact tensor names
    want = reference(cbr["model"], names, cbr["batch"])
    for name in names:
        assert arrays[name].dtype == np.float32
        assert arrays[name].shape[0] == 2  # batch kept
        np.testing.assert_allclose(arrays[name], want[name], rtol=1e-4, atol=1e-5)
    if stage == "pre":
        assert (arrays["conv1_out"] < 0).any()  # really the conv output, not the ReLU


@pytest.mark.parametrize("stage", ["pre", "post"])
def test_stats_equal_numpy_on_the_reference_maps(cbr, batch_runs, stage):
    manifest = batch_runs[stage]["manifest"]
    assert manifest["stage"] == stage
    assert manifest["input"]["kind"] == "tensor"
    assert manifest["input"]["tensor_shape"] == [2, 3, 16, 16]
    names = [layer["tensor"] for layer in manifest["layers"]]
    want = reference(cbr["model"], names, cbr["batch"])
    for layer in manifest["layers"]:
        a = want[layer["tensor"]].astype(np.float64)
        assert layer["stage"] == stage
        assert layer["shape"] == list(a.shape)
        assert layer["activation"] == (CBR[layer["name"]][2] if stage == "post" else None)
        stats = layer["stats"]
        approx = dict(rel=1e-4, abs=1e-5)
        assert stats["min"] == pytest.approx(a.min(), **approx)
        assert stats["max"] == pytest.approx(a.max(), **approx)
        assert stats["mean"] == pytest.approx(a.mean(), **approx)
        assert stats["std"] == pytest.approx(a.std(), **approx)
        assert stats["zero_fraction"] == pytest.approx((a == 0).mean(), abs=2e-3)
        assert stats["nonfinite"] == 0
        channel = layer["channel_stats"]
        np.testing.assert_allclose(channel["max"], a.max(axis=(0, 2, 3)), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(channel["mean"], a.mean(axis=(0, 2, 3)), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(
            channel["zero_fraction"], (a == 0).mean(axis=(0, 2, 3)), atol=5e-3
        )
    if stage == "post":
        assert manifest["layers"][0]["stats"]["zero_fraction"] > 0.05  # ReLU zeros counted


def test_tensor_inputs_have_no_overlay(batch_runs):
    for layer in batch_runs["post"]["manifest"]["layers"]:
        assert set(layer["files"]) == {"grid", "heatmap"}


# ----------------------------------------------------------------------------- pictures


def test_pngs_decode_consistent_with_the_manifest(cbr, batch_runs):
    folder, manifest = batch_runs["post"]["folder"], batch_runs["post"]["manifest"]
    arrays = batch_runs["post"]["arrays"]
    for layer in manifest["layers"]:
        layout = layer["grid"]
        n = len(layer["shown_channels"])
        assert layout["channels"] == layer["shown_channels"]
        assert layout["rows"] * layout["cols"] >= n > (layout["rows"] - 1) * layout["cols"]
        assert n > (layout["cols"] - 1) * layout["rows"]  # no column left empty
        grid = Image.open(folder / layer["files"]["grid"])
        width = layout["cols"] * (layout["tile_width"] + layout["gap"]) + layout["gap"]
        height = layout["rows"] * (layout["tile_height"] + layout["gap"]) + layout["gap"]
        assert grid.size == (width, height)
        h, w = layer["shape"][2:]
        assert layout["tile_height"] == h * layout["scale"]
        assert layout["tile_width"] == w * layout["scale"]
        assert np.asarray(grid.convert("L")).std() > 10  # not blank
        heatmap = Image.open(folder / layer["files"]["heatmap"]).convert("RGB")
        assert heatmap.size[0] > grid.size[0] and heatmap.size[1] >= grid.size[1]
        assert len(np.unique(np.asarray(heatmap).reshape(-1, 3), axis=0)) > 20
        # channel normalisation of the first batch item, tile by tile
        first = arrays[layer["tensor"]][0]
        for tile, c in zip(
            tile_pixels(folder / layer["files"]["grid"], layout), layout["channels"], strict=True
        ):
            lo, hi = float(first[c].min()), float(first[c].max())
            if hi > lo:
                assert_tile(tile, expected_grey(first[c], lo, hi))


def _upscaled_picture(cbr, factor=7):
    return np.repeat(np.repeat(cbr["pixels"], factor, axis=0), factor, axis=1)


def test_overlay_is_drawn_on_the_picture_upscaled_with_a_colour_bar(cbr):
    for layer in cbr["manifest"]["layers"]:
        overlay = Image.open(cbr["folder"] / layer["files"]["overlay"])
        # 40x30 is tiny: upscaled 7 times (long side >= 256), a 92-px colour bar panel right
        assert overlay.size == (280 + 92, 210)
        pixels = np.asarray(overlay.convert("RGB")).astype(int)[:, :280]
        assert np.abs(pixels - _upscaled_picture(cbr)).max() > 0  # something was blended on
        assert layer["overlay"]["shows"] == "energy"


def test_overlay_with_alpha_zero_is_the_picture(cbr, tmp_path, capsys):
    code, _, _ = cli(
        ["run", cbr["model_path"], cbr["picture"], "-o", tmp_path, "--alpha", "0", "-q"], capsys
    )
    assert code == 0
    overlay = Image.open(tmp_path / "photo" / "000-conv1.overlay.png").convert("RGB")
    np.testing.assert_array_equal(np.asarray(overlay)[:, :280], _upscaled_picture(cbr))


def _run_tensor(cbr, out, *extra, capsys, stage="post"):
    code, stdout, stderr = cli(
        [
            "run",
            cbr["model_path"],
            cbr["tensor"],
            "-o",
            out,
            "--save-arrays",
            "--json",
            "--stage",
            stage,
            *extra,
        ],
        capsys,
    )
    assert code == 0, stderr
    manifest = json.loads(stdout)
    folder = Path(out) / "batch"
    with np.load(folder / "arrays.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    return folder, manifest, arrays


def test_normalize_layer_uses_one_range(cbr, tmp_path, capsys):
    folder, manifest, arrays = _run_tensor(cbr, tmp_path, "--normalize", "layer", capsys=capsys)
    layer = manifest["layers"][0]
    first = arrays[layer["tensor"]][0]
    lo, hi = float(first.min()), float(first.max())
    tiles = tile_pixels(folder / layer["files"]["grid"], layer["grid"])
    for tile, c in zip(tiles, layer["grid"]["channels"], strict=True):
        assert_tile(tile, expected_grey(first[c], lo, hi))
    # unlike channel normalisation, a weaker channel never reaches white
    peaks = [np.nanmax(tile) for tile in tiles]
    assert max(peaks) == 255 and min(peaks) < 250
    assert manifest["render"]["normalize"] == "layer"


def test_clip_uses_percentiles(cbr, tmp_path, capsys):
    folder, manifest, arrays = _run_tensor(cbr, tmp_path, "--clip", "10", capsys=capsys)
    assert manifest["render"]["clip"] == 10
    for layer in manifest["layers"]:
        first = arrays[layer["tensor"]][0]
        tiles = tile_pixels(folder / layer["files"]["grid"], layer["grid"])
        for tile, c in zip(tiles, layer["grid"]["channels"], strict=True):
            lo, hi = np.percentile(first[c].astype(np.float64), [10, 90])
            if hi > lo:
                assert_tile(tile, expected_grey(first[c], lo, hi))
                assert (tile[~np.isnan(tile)] == 255).mean() >= 0.09  # the top 10 % saturate


def test_max_channels_keeps_the_strongest_by_energy(cbr, tmp_path, capsys):
    folder, manifest, arrays = _run_tensor(
        cbr, tmp_path, "--max-channels", "3", "--layers", "conv1", capsys=capsys, stage="pre"
    )
    [layer] = manifest["layers"]
    first = arrays["conv1_out"][0]
    energy = np.abs(first.astype(np.float64)).mean(axis=(1, 2))
    strongest = sorted(int(c) for c in np.argsort(-energy)[:3])
    assert layer["shown_channels"] == strongest
    assert layer["grid"]["channels"] == strongest
    assert layer["channels"] == 8
    assert len(layer["channel_stats"]["max"]) == 8  # statistics still cover every channel
    tiles = tile_pixels(folder / layer["files"]["grid"], layer["grid"])
    assert len(tiles) == 3


def test_cmap_paints_the_heatmap(cbr, tmp_path, capsys):
    folder, manifest, _ = _run_tensor(cbr, tmp_path, "--cmap", "viridis", capsys=capsys)
    layer = manifest["layers"][0]
    lut = np.rint(matplotlib.colormaps["viridis"](np.linspace(0, 1, LEVELS))[:, :3] * 255)
    level_of_grey = {int(g): level for level, g in enumerate(GREY_OF_LEVEL)}
    grid = np.asarray(Image.open(folder / layer["files"]["grid"]).convert("L")).astype(int)
    heat = np.asarray(Image.open(folder / layer["files"]["heatmap"]).convert("RGB")).astype(int)
    layout = layer["grid"]
    th, tw, gap = layout["tile_height"], layout["tile_width"], layout["gap"]
    # the bottom half of the first tile (its channel number sits in the heatmap's corner)
    tile_grey = grid[gap + th // 2 : gap + th, gap : gap + tw]
    tile_rgb = heat[gap + th // 2 : gap + th, gap : gap + tw]
    levels = np.vectorize(level_of_grey.__getitem__)(tile_grey)
    np.testing.assert_allclose(tile_rgb, lut[levels], atol=1)


def test_unknown_cmap_is_an_exact_error_before_any_work(cbr, tmp_path, capsys):
    model = open_model(cbr["model_path"], ("cpu",))
    out = tmp_path / "never"
    options = RunOptions(out=out, render=RenderOptions(cmap="nope"))
    with pytest.raises(OptionError) as info:
        list(run(model, [cbr["picture"]], options))
    assert info.value.for_cli() == (
        "--cmap 'nope' is not a matplotlib colormap; try viridis, magma, inferno, RdBu_r, "
        "coolwarm, ..."
    )
    assert not out.exists()
    code, stdout, stderr = cli(
        ["run", cbr["model_path"], cbr["picture"], "-o", out, "--cmap", "nope"], capsys
    )
    assert code == 2
    assert stderr == f"Error: {info.value.for_cli()}\n"
    assert stdout == ""


# ----------------------------------------------------------------------------- stdout, folders


def test_json_prints_one_line_per_input(cbr, tmp_path, capsys):
    code, stdout, stderr = cli(
        ["run", cbr["model_path"], cbr["picture"], cbr["tensor"], "-o", tmp_path, "--json"],
        capsys,
    )
    assert code == 0
    lines = stdout.splitlines()
    assert len(lines) == 2
    for line, stem in zip(lines, ["photo", "batch"], strict=True):
        printed = json.loads(line)
        assert printed == json.loads((tmp_path / stem / "manifest.json").read_text())
    assert "Traceback" not in stderr


def test_repeated_stems_get_numbered(cbr, tmp_path, capsys):
    (tmp_path / "sub").mkdir()
    a = tmp_path / "a.png"
    b = tmp_path / "sub" / "a.png"
    c = tmp_path / "a.npy"
    Image.fromarray(cbr["pixels"]).save(a)
    Image.fromarray(cbr["pixels"][::-1]).save(b)
    np.save(c, cbr["batch"][:1])
    out = tmp_path / "out"
    code, stdout, _ = cli(["run", cbr["model_path"], a, b, c, "-o", out, "-q"], capsys)
    assert code == 0
    assert sorted(os.listdir(out)) == ["a", "a-2", "a-3"]
    for stem, source in [("a", a), ("a-2", b), ("a-3", c)]:
        manifest = json.loads((out / stem / "manifest.json").read_text())
        assert manifest["input"]["path"] == str(source)


def test_hostile_names_never_write_outside_out(tmp_path, capsys):
    root = tmp_path / "root"
    model_path = models.save(models.awkward_names(), root / "model.onnx")
    x = np.random.default_rng(1).standard_normal((1, 4, 8, 8)).astype(np.float32)
    np.save(root / "x.npy", x)
    out = root / "a" / "b" / "out"
    before = files_under(tmp_path)
    for stage in ("pre", "post"):
        code, _, stderr = cli(
            ["run", model_path, root / "x.npy", "-o", out, "--save-arrays", "--stage", stage, "-q"],
            capsys,
        )
        assert code == 0, stderr
        folder = out / "x"
        manifest = json.loads((folder / "manifest.json").read_text())
        assert [layer["name"] for layer in manifest["layers"]] == [
            layer for layer, *_ in models.AWKWARD_LAYERS
        ]
        column = 2 if stage == "pre" else 3
        tensors = [t[column] for t in models.AWKWARD_LAYERS]
        with np.load(folder / "arrays.npz", allow_pickle=False) as npz:
            assert set(npz.files) == set(tensors)  # exact names, "/" and ".." included
            want = reference(models.awkward_names(), sorted(set(tensors)), x)
            for name in tensors:
                np.testing.assert_allclose(npz[name], want[name], rtol=1e-4, atol=1e-5)
        for layer in manifest["layers"]:
            for name in layer["files"].values():
                assert "/" not in name and not name.startswith(".")
                assert (folder / name).is_file()
    after = files_under(tmp_path)
    new = after - before
    assert new and all(out in path.parents for path in new)
    assert not any(p.name.endswith(".part") for p in new)


def test_existing_out_is_overwritten_file_by_file(cbr, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["run", cbr["model_path"], cbr["picture"], "-o", out, "-q"]
    assert cli([*args, "--stage", "pre"], capsys)[0] == 0
    folder = out / "photo"
    notes = folder / "notes.txt"
    notes.write_text("mine")
    old_grid = (folder / "000-conv1.grid.png").read_bytes()
    assert json.loads((folder / "manifest.json").read_text())["stage"] == "pre"
    assert cli([*args, "--stage", "post"], capsys)[0] == 0
    assert sorted(os.listdir(out)) == ["photo"]  # the same folder, no "photo-2"
    assert json.loads((folder / "manifest.json").read_text())["stage"] == "post"
    assert (folder / "000-conv1.grid.png").read_bytes() != old_grid
    assert notes.read_text() == "mine"  # other files are left alone
    assert not [p for p in folder.iterdir() if p.name.endswith(".part")]


def test_out_that_is_a_file_is_an_error(cbr, tmp_path, capsys):
    out = tmp_path / "taken"
    out.write_text("x")
    code, stdout, stderr = cli(["run", cbr["model_path"], cbr["picture"], "-o", out], capsys)
    assert code == 2
    assert stderr == f"Error: {out}: exists and is not a folder\n"
    assert out.read_text() == "x"


def test_input_folder_that_is_a_file_is_an_error(cbr, tmp_path, capsys):
    (tmp_path / "photo").write_text("x")
    code, _, stderr = cli(["run", cbr["model_path"], cbr["picture"], "-o", tmp_path], capsys)
    assert code == 2
    assert stderr == f"Error: {tmp_path / 'photo'}: exists and is not a folder\n"


def test_extra_inputs_notice_and_feeds_in_the_manifest(tmp_path, capsys):
    model_path = models.save(models.extra_inputs(), tmp_path / "extra.onnx")
    picture = tmp_path / "p.png"
    Image.new("RGB", (16, 16), (100, 150, 200)).save(picture)
    code, stdout, stderr = cli(
        ["run", model_path, picture, "-o", tmp_path / "out", "--json", "--feed", "scale=2"],
        capsys,
    )
    assert code == 0
    assert stderr == (
        "note: input 'steps' [1] int64 gets zeros (set it with --feed steps=FILE.npy|NUMBER)\n"
    )
    manifest = json.loads(stdout)
    assert manifest["input"]["feeds"] == {
        "scale": {"source": "number", "value": 2.0, "shape": [1], "dtype": "float32"},
        "steps": {"source": "zeros", "shape": [1], "dtype": "int64"},
    }
    code, _, stderr = cli(
        ["run", model_path, picture, "-o", tmp_path / "out", "-q", "--feed", "scale=inf"], capsys
    )
    assert code == 0, stderr  # a non-finite feed is recorded, not a crash


def test_tensor_names_that_clash_with_numpy_savez_arguments(tmp_path, capsys):
    # np.savez(file, *args, allow_pickle=..., **arrays) cannot take these names as keys
    rng = np.random.default_rng(2)
    c1, i1 = models.conv(rng, "conv_a", "input", "file", 3, 4)
    c2, i2 = models.conv(rng, "conv_b", "allow_pickle", "arr_0", 4, 4)
    model = models.make_model(
        [c1, models.relu("relu", "file", "allow_pickle"), c2],
        [models.tensor_input("input", ["N", 3, 8, 8])],
        [models.tensor_input("arr_0", ["N", 4, 8, 8])],
        i1 + i2,
    )
    model_path = models.save(model, tmp_path / "clash.onnx")
    x = rng.standard_normal((1, 3, 8, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    for stage, names in (("pre", ["file", "arr_0"]), ("post", ["allow_pickle", "arr_0"])):
        code, _, stderr = cli(
            [
                "run",
                model_path,
                tmp_path / "x.npy",
                "-o",
                tmp_path / stage,
                "--save-arrays",
                "--stage",
                stage,
                "-q",
            ],
            capsys,
        )
        assert code == 0, stderr
        want = reference(model, names, x)
        with np.load(tmp_path / stage / "x" / "arrays.npz", allow_pickle=False) as npz:
            assert sorted(npz.files) == sorted(names)
            for name in names:
                np.testing.assert_allclose(npz[name], want[name], rtol=1e-4, atol=1e-5)


def test_workers_change_nothing_but_the_time(cbr, tmp_path, capsys):
    """Layers drawn one after another or on a pool: the same files, pixel for pixel."""
    from PIL import Image

    outs = {}
    for workers in ("1", "3"):
        out = tmp_path / f"w{workers}"
        code, _, _ = cli(["run", cbr["model_path"], cbr["picture"], "-o", out, "--workers",
                          workers, "-q"], capsys)
        assert code == 0
        outs[workers] = out
    one = sorted(p.relative_to(outs["1"]) for p in outs["1"].rglob("*.png"))
    three = sorted(p.relative_to(outs["3"]) for p in outs["3"].rglob("*.png"))
    assert one == three and one
    for name in one:
        with Image.open(outs["1"] / name) as a, Image.open(outs["3"] / name) as b:
            assert np.array_equal(np.asarray(a.convert("RGB")), np.asarray(b.convert("RGB")))
