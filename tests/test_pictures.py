"""Issue 13: pictures that read right (scale rule, colour bars, separators, 1x1 strips,
overlays, channel numbers) and `inactive` channels, each checked against numpy."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import onnx
from onnx import numpy_helper
from PIL import Image

from fmviz import render
from fmviz.cli import main
from fmviz.render import tiles
from fmviz.render.layer import RenderOptions, render_layer
from tests import models


def probe(activation=None):
    return SimpleNamespace(activation=activation, index=0, name="layer")


def source(picture=None):
    return SimpleNamespace(overlay_picture=lambda: picture, signal=None, preprocess={})


# ----------------------------------------------------------------------------- the scale rule


def test_hardswish_floor_and_all_negative_layers_stay_sequential_symmetric_is_diverging(
        tmp_path):
    rng = np.random.default_rng(0)
    pre = rng.standard_normal((1, 4, 12, 12)).astype(np.float32) * 3
    hardswish = pre * np.clip(pre + 3, 0, 6) / 6  # min -0.375
    logits = -9 - 8 * rng.random((1, 4, 12, 12)).astype(np.float32)  # -17..-9
    cases = [(hardswish, "HardSwish", "sequential"), (hardswish, None, "sequential"),
             (logits, None, "sequential"), (pre, None, "diverging")]
    for k, (array, activation, kind) in enumerate(cases):
        result = render_layer(array, probe(activation), source(), tmp_path, f"l{k}",
                              RenderOptions(normalize="layer"))
        assert result["scale"]["kind"] == kind, (k, activation)
        assert result["cmap"] == ("RdBu_r" if kind == "diverging" else "magma")
        # the scale spans the data's own range
        assert result["scale"]["lo"] == float(array.min())
        assert result["scale"]["hi"] == float(array.max())
    # --center overrides the rule both ways
    forced = render_layer(hardswish, probe("HardSwish"), source(), tmp_path, "f",
                          RenderOptions(center="zero"))
    assert forced["scale"]["kind"] == "diverging" and forced["cmap"] == "RdBu_r"
    plain = render_layer(pre, probe(), source(), tmp_path, "p", RenderOptions(center="none"))
    assert plain["scale"]["kind"] == "sequential" and plain["scale"]["lo"] is None


def test_colour_bar_text_equals_the_data_range():
    rng = np.random.default_rng(1)
    maps = rng.standard_normal((6, 10, 10)) * 2 + 1.5  # both signs, asymmetric
    lo, hi = maps.min(), maps.max()
    for centred in (False, True):
        layer = render.make_tiles(maps, normalize="layer", centred=centred)
        labels, _ = tiles.bar_labels(layer, "layer")
        assert labels[:2] == [f"{hi:.3g}", f"{lo:.3g}"]  # never ±max when the data is not
        channel = render.make_tiles(maps, centred=centred)
        _, captions = tiles.bar_labels(channel, "channel")
        assert captions == ["per channel", f"lo {lo:.3g}", f"hi {hi:.3g}"]


def test_separators_and_empty_slots_differ_from_every_palette_colour(tmp_path):
    maps = np.random.default_rng(2).standard_normal((18, 6, 6))  # 18 tiles: empty slots
    layer = render.make_tiles(maps, centred=True)
    assert (layer.levels == render.SEPARATOR).any()
    for cmap in ("magma", "RdBu_r", "inferno", "viridis", "coolwarm"):
        path = tmp_path / f"{cmap}.png"
        render.save_png(render.heatmap_image(layer, cmap, "channel"), path)
        palette = np.array(Image.open(path).getpalette()[: 256 * 3]).reshape(256, 3)
        gap = palette[render.SEPARATOR].astype(float)
        distance = np.sqrt(((palette[: render.LEVELS] - gap) ** 2).sum(axis=1))
        assert distance.min() > 40, cmap
    grid = tmp_path / "grid.png"
    render.save_png(render.grid_image(layer), grid)
    palette = np.array(Image.open(grid).getpalette()[: 256 * 3]).reshape(256, 3)
    gap = palette[render.SEPARATOR]
    assert not (palette[: render.LEVELS] == gap).all(axis=1).any()
    assert len(set(gap.tolist())) > 1  # a colour, not one of the greys


# ----------------------------------------------------------------------------- 1x1 and thin


def test_1x1_strip_decoded_cell_by_cell_equals_the_channel_values_levels(tmp_path):
    values = np.random.default_rng(3).uniform(0.455, 0.535, 1000).astype(np.float32)
    array = values.reshape(1, 1000, 1, 1)
    result = render_layer(array, probe("HardSigmoid"), source(), tmp_path, "se",
                          RenderOptions())  # max_channels 256: the strip still shows all
    assert result["view"] == "strip" and result["shown_channels"] == list(range(1000))
    assert result["scale"] == {"kind": "sequential", "normalize": "layer",
                               "lo": float(values.min()), "hi": float(values.max())}
    grid = np.asarray(Image.open(tmp_path / result["files"]["grid"]))
    g = result["grid"]
    x0, y0 = result["strip_origin"]
    lo, hi = values.min().astype(np.float64), values.max().astype(np.float64)
    want = np.rint((values.astype(np.float64) - lo) / (hi - lo) * 249)
    got = [grid[y0 + g["gap"] + (c // g["cols"]) * (g["tile_height"] + g["gap"])
                + g["tile_height"] // 2,
                x0 + g["gap"] + (c % g["cols"]) * (g["tile_width"] + g["gap"])
                + g["tile_width"] // 2] for c in range(1000)]
    np.testing.assert_array_equal(got, want)
    assert len(np.unique(got)) > 200  # the 0.08 spread is visible, not one colour


def test_thin_map_is_stretched_to_a_readable_height(tmp_path):
    array = np.random.default_rng(4).standard_normal((1, 1, 4, 2100)).astype(np.float32)
    result = render_layer(array, probe(), source(), tmp_path, "dfl", RenderOptions())
    g = result["grid"]
    assert g["tile_height"] >= 40 and g["tile_width"] == 2100
    heat = Image.open(tmp_path / result["files"]["heatmap"])
    assert heat.size[1] <= g["tile_height"] + 2 + 60  # the bar is not much taller than the data


def test_heatmap_tiles_carry_their_channel_numbers(tmp_path):
    maps = np.random.default_rng(5).random((1, 300, 7, 7)).astype(np.float32)
    result = render_layer(maps, probe(), source(), tmp_path, "h", RenderOptions())
    assert result["labels"] is True
    heat = np.asarray(Image.open(tmp_path / result["files"]["heatmap"]))
    g = result["grid"]
    for k in (0, 5, len(g["channels"]) - 1):
        x = g["gap"] + (k % g["cols"]) * (g["tile_width"] + g["gap"])
        y = g["gap"] + (k // g["cols"]) * (g["tile_height"] + g["gap"])
        corner = heat[y : y + 12, x : x + 24]
        assert (corner == render.PANEL).any() and (corner == render.TEXT).any()


# ----------------------------------------------------------------------------- overlays


def test_overlay_tint_is_concentrated_where_the_energy_is(tmp_path):
    maps = np.full((1, 3, 16, 16), 1.0, np.float32)  # a floor everywhere (the old wash)
    maps[0, :, 2:6, 9:14] += 4.0  # energy in one region
    picture = Image.new("RGB", (320, 320), (120, 120, 120))
    result = render_layer(maps, probe(), source(picture), tmp_path, "o", RenderOptions())
    out = np.asarray(Image.open(tmp_path / result["files"]["overlay"]).convert("RGB"))
    change = np.abs(out[:, :320].astype(int) - 120).sum(axis=2)
    hot = np.zeros((16, 16), bool)
    hot[2:6, 9:14] = True
    hot_px = np.repeat(np.repeat(hot, 20, axis=0), 20, axis=1)
    inside, outside = change[hot_px].mean(), change[~hot_px].mean()
    assert inside > 100 and outside < 0.1 * inside  # not a uniform tint
    assert result["overlay"]["shows"] == "energy" and result["overlay"]["hi"] > 4
    assert out.shape[1] > 320  # a colour bar panel on the right
    # one channel instead of the energy
    maps[0, 1] = 0
    maps[0, 1, 12:15, 1:4] = 7.0
    result = render_layer(maps, probe(), source(picture), tmp_path, "c",
                          RenderOptions(overlay_channel=1))
    out = np.asarray(Image.open(tmp_path / result["files"]["overlay"]).convert("RGB"))
    change = np.abs(out[:, :320].astype(int) - 120).sum(axis=2)
    assert change[12 * 20 + 20, 1 * 20 + 20] > 100 and change[3 * 20, 11 * 20] < 10
    assert result["overlay"] == {"shows": "channel", "channel": 1, "lo": 0.0, "hi": 7.0}


# ----------------------------------------------------------------------------- inactive


def test_inactive_list_equals_a_numpy_oracle_on_a_planted_silu_layer(tmp_path, capsys):
    model = models.silu()
    weights = {t.name: numpy_helper.to_array(t).copy() for t in model.graph.initializer}
    w, b = weights["conv.w"], weights["conv.b"]
    w[1] = 0
    b[1] = -1.0  # pre-activation -1 everywhere: SiLU -0.269, never fires, not dead
    w[2] = 0
    b[2] = 0.0  # SiLU(0) = 0: dead
    w[3] *= 0.01
    b[3] = -2.0  # stays below 0 for these inputs
    for t in model.graph.initializer:
        if t.name in ("conv.w", "conv.b"):
            t.CopyFrom(numpy_helper.from_array(weights[t.name], t.name))
    path = models.save(model, tmp_path / "silu.onnx")
    rng = np.random.default_rng(6)
    inputs = []
    for k in range(3):
        x = rng.standard_normal((3, 16, 16)).astype(np.float32)
        np.save(tmp_path / f"x{k}.npy", x)
        inputs.append(x)
    code = main(["dead-filters", str(path), *[str(tmp_path / f"x{k}.npy") for k in range(3)],
                 "--json", "-q"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    from onnx.reference import ReferenceEvaluator

    ref = ReferenceEvaluator(onnx.load(str(path)))
    maps = np.concatenate([ref.run(["silu_out"], {"input": x[None]})[0] for x in inputs])
    per = np.moveaxis(maps, 1, 0).reshape(maps.shape[1], -1)
    eps = 1e-6
    dead = np.abs(per).max(axis=1) <= eps
    want = [int(c) for c in np.flatnonzero(~dead & (per.max(axis=1) <= eps))]
    layer = report["layers"][-1]
    assert layer["activation"] == "SiLU"
    assert layer["inactive"] == want and 1 in want and 3 in want and 2 not in want
    assert report["summary"]["inactive"] == len(want)
    gate = main(["dead-filters", str(path), str(tmp_path / "x0.npy"), "--fail-on-inactive",
                 "-q"])
    assert gate == 1
