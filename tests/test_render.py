"""fmviz.render: every expectation is recomputed here with plain numpy, and PNGs are decoded."""

from __future__ import annotations

import json
import math
import os

import matplotlib
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from fmviz import render
from fmviz.errors import OptionError, OutputError
from fmviz.render import LEVELS, NONFINITE, PANEL, SEPARATOR, TEXT
from fmviz.render.colormap_tables import TABLES

pytestmark = pytest.mark.filterwarnings("error")  # any numpy/Pillow warning fails the test


def expected_levels(x, lo, hi):
    """The contract's formula, in float64, on one tile."""
    x = np.clip(np.asarray(x, dtype=np.float64), lo, hi)
    return np.clip(np.round((x - lo) / (hi - lo) * (LEVELS - 1)), 0, LEVELS - 1).astype(np.uint8)


def upscale(tile, scale):
    return np.kron(tile, np.ones((scale, scale), dtype=tile.dtype))


def tile_pixels(levels, layout, k):
    x, y, w, h = layout.box(k)
    return levels[y : y + h, x : x + w]


def outside_boxes(levels, layout):
    mask = np.ones(levels.shape, dtype=bool)
    for k in range(len(layout.channels)):
        x, y, w, h = layout.box(k)
        mask[y : y + h, x : x + w] = False
    return mask


def decode(path):
    with Image.open(path) as im:
        im.load()
        return im.mode, im.size, np.asarray(im), np.array(im.getpalette()[:768]).reshape(-1, 3)


# --------------------------------------------------------------------------- grid


def test_grid_png_layout_levels_and_separators(tmp_path):
    rng = np.random.default_rng(1)
    maps = rng.normal(size=(10, 12, 20)).astype(np.float32)  # H=12, W=20: upscaled x3
    tiles = render.make_tiles(maps)
    lay = tiles.layout

    # scale = ceil(48 / 20) = 3; cols = ceil(sqrt(10 * 12 / 20)) = 3; rows = ceil(10 / 3) = 4
    assert (lay.scale, lay.tile_height, lay.tile_width, lay.gap) == (3, 36, 60, 1)
    assert (lay.rows, lay.cols) == (4, 3)
    assert lay.channels == tuple(range(10))

    path = tmp_path / "g.png"
    render.save_png(render.grid_image(tiles), path)
    mode, size, pix, pal = decode(path)
    assert mode == "P"
    assert size == (3 * 61 + 1, 4 * 37 + 1)
    np.testing.assert_array_equal(pix, tiles.levels)

    # palette: linear grey ramp for the levels, the fixed special colours
    ramp = np.round(np.arange(LEVELS) * 255 / (LEVELS - 1))
    np.testing.assert_array_equal(pal[:LEVELS], np.stack([ramp] * 3, axis=1))
    assert tuple(pal[SEPARATOR]) == render.tiles.separator_colour(pal[:LEVELS])
    assert np.sqrt(((pal[:LEVELS].astype(float) - pal[SEPARATOR]) ** 2).sum(axis=1)).min() > 60
    assert tuple(pal[NONFINITE]) == (255, 0, 255)

    # each tile: the formula on its own channel, nearest-upscaled; nothing else but separators
    for k in range(10):
        x, y, w, h = lay.box(k)
        assert (x, y) == (1 + (k % 3) * 61, 1 + (k // 3) * 37)
        ch = maps[k].astype(np.float64)
        want = upscale(expected_levels(ch, ch.min(), ch.max()), 3)
        np.testing.assert_array_equal(tile_pixels(pix, lay, k), want)
        np.testing.assert_allclose(tiles.ranges[k], [ch.min(), ch.max()])
    outside = outside_boxes(pix, lay)
    assert (pix[outside] == SEPARATOR).all()
    assert (pix[~outside] != SEPARATOR).all()
    # the 2 unused slots of the 4x3 grid are background; border rows/cols are separators
    assert (pix[0] == SEPARATOR).all() and (pix[:, -1] == SEPARATOR).all()
    assert (pix[3 * 37 + 1 :, 61 + 1 :] == SEPARATOR).all()


def test_known_pixel_level():
    maps = np.zeros((1, 50, 50), dtype=np.float32)
    maps[0, 0, 0] = -2.0
    maps[0, 0, 1] = 6.0
    maps[0, 10, 20] = 1.3
    tiles = render.make_tiles(maps)
    x, y, _, _ = tiles.layout.box(0)
    assert tiles.levels[y + 10, x + 20] == round((1.3 - -2.0) / 8.0 * 249)  # 103
    assert tiles.levels[y, x] == 0 and tiles.levels[y, x + 1] == 249
    assert tiles.levels[y + 5, x + 5] == round(2.0 / 8.0 * 249)  # the zeros: 62


@pytest.mark.parametrize(
    "n, h, w",
    [
        (1, 7, 7),
        (2, 16, 16),
        (3, 5, 9),
        (64, 80, 80),
        (65, 28, 28),
        (8, 4, 64),
        (256, 3, 3),
        (6, 30, 10),
    ],
)
def test_layout_is_near_square_without_empty_rows(n, h, w):
    lay = render.make_tiles(np.ones((n, h, w), dtype=np.float32)).layout
    scale = max(1, math.ceil(48 / max(h, w)))
    assert lay.scale == scale and max(lay.tile_height, lay.tile_width) >= 48
    assert lay.rows * lay.cols >= n > (lay.rows - 1) * lay.cols
    assert lay.rows * lay.cols - n < lay.rows  # no column that only the last row lacks
    width = lay.cols * (lay.tile_width + 1) + 1
    height = lay.rows * (lay.tile_height + 1) + 1
    if n >= 4:
        assert 1 / 2.5 <= width / height <= 2.5


def test_channel_subset_and_layout_json():
    rng = np.random.default_rng(2)
    maps = rng.normal(size=(6, 8, 8))
    shown = [5, 1, 3]
    tiles = render.make_tiles(maps, channels=shown)
    assert tiles.layout.channels == (5, 1, 3)
    assert tiles.ranges.shape == (3, 2) and tiles.ranges.dtype == np.float64
    for k, c in enumerate(shown):
        want = upscale(expected_levels(maps[c], maps[c].min(), maps[c].max()), tiles.layout.scale)
        np.testing.assert_array_equal(tile_pixels(tiles.levels, tiles.layout, k), want)
    data = json.loads(json.dumps(tiles.layout.to_json()))
    assert data == {
        "rows": tiles.layout.rows,
        "cols": tiles.layout.cols,
        "tile_height": 48,
        "tile_width": 48,
        "scale": 6,
        "scale_y": 6,
        "gap": 1,
        "channels": [5, 1, 3],
        "label_box": None,
    }
    with pytest.raises(IndexError):
        tiles.layout.box(3)
    with pytest.raises(ValueError):
        render.make_tiles(maps, channels=[6])


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_any_float_dtype(dtype):
    maps = (np.arange(2 * 48 * 48).reshape(2, 48, 48) % 17).astype(dtype)
    tiles = render.make_tiles(maps)
    want = expected_levels(maps[1].astype(np.float64), 0, 16)
    np.testing.assert_array_equal(tile_pixels(tiles.levels, tiles.layout, 1), want)


# --------------------------------------------------------------------------- special values


def test_constant_and_dead_channels_render_flat():
    maps = np.zeros((3, 10, 10), dtype=np.float32)
    maps[1] = 3.5
    maps[2] = np.linspace(-1, 5, 100).reshape(10, 10)
    tiles = render.make_tiles(maps)
    assert np.isfinite(tiles.ranges).all()
    assert (tile_pixels(tiles.levels, tiles.layout, 0) == 0).all()  # dead: lowest level
    assert (tile_pixels(tiles.levels, tiles.layout, 1) == LEVELS // 2).all()  # flat, mid
    assert tile_pixels(tiles.levels, tiles.layout, 2).max() == LEVELS - 1

    # layer mode: the constant takes its place in the layer range, as any value would
    layer = render.make_tiles(maps, normalize="layer")
    np.testing.assert_allclose(layer.ranges, [[-1, 5]] * 3)
    assert (tile_pixels(layer.levels, layer.layout, 1) == round(4.5 / 6 * 249)).all()
    assert (tile_pixels(layer.levels, layer.layout, 0) == round(1 / 6 * 249)).all()

    # a whole layer of zeros: flat, level 0, still no NaN
    dead = render.make_tiles(np.zeros((4, 5, 5)), normalize="layer", clip=2)
    assert np.isfinite(dead.ranges).all() and (dead.ranges == 0).all()
    assert set(np.unique(dead.levels)) == {0, SEPARATOR}


def test_centred_zero_tile_sits_at_the_middle():
    # In a symmetric range [-m, m] the value 0 is mid-scale (white in RdBu_r), not "-max".
    maps = np.zeros((2, 6, 6))
    maps[1, 0, 0] = -2.0
    tiles = render.make_tiles(maps, centred=True)
    mid = round(0.5 * 249)  # the formula's own level for 0 in [-m, m]
    assert (tile_pixels(tiles.levels, tiles.layout, 0) == mid).all()
    assert tile_pixels(tiles.levels, tiles.layout, 1)[1:, 1:].max() == mid
    assert not np.signbit(tiles.ranges[0]).any()  # (0, 0), not (-0, 0)


def test_nonfinite_pixels_are_marked_and_ignored_by_ranges():
    rng = np.random.default_rng(3)
    maps = rng.normal(size=(3, 16, 16)).astype(np.float32)
    maps[0, 1, 2] = np.nan
    maps[0, 3, 4] = np.inf
    maps[0, 5, 6] = -np.inf
    maps[2] = np.nan  # a channel with no finite value at all
    for kwargs in ({}, {"clip": 5}, {"normalize": "layer"}, {"normalize": "layer", "clip": 5}):
        tiles = render.make_tiles(maps, **kwargs)
        lay = tiles.layout
        assert np.isfinite(tiles.ranges).all()
        t0 = tile_pixels(tiles.levels, lay, 0)
        assert (t0 == NONFINITE).sum() == 3 * lay.scale**2
        for yy, xx in [(1, 2), (3, 4), (5, 6)]:
            assert t0[yy * lay.scale, xx * lay.scale] == NONFINITE
        assert (tile_pixels(tiles.levels, lay, 2) == NONFINITE).all()
        assert (tile_pixels(tiles.levels, lay, 1) != NONFINITE).all()
        assert (tiles.levels == NONFINITE).sum() == (3 + 256) * lay.scale**2

    tiles = render.make_tiles(maps)
    finite0 = maps[0][np.isfinite(maps[0])].astype(np.float64)
    np.testing.assert_allclose(tiles.ranges[0], [finite0.min(), finite0.max()])
    np.testing.assert_array_equal(tiles.ranges[2], [0.0, 0.0])
    clipped = render.make_tiles(maps, clip=5)
    np.testing.assert_allclose(clipped.ranges[0], np.percentile(finite0, [5, 95]))


def test_extreme_float64_values_do_not_overflow():
    maps = np.array([[[-1.7e308, 1.7e308], [0.0, 1.0]]])
    tiles = render.make_tiles(maps)
    t = tile_pixels(tiles.levels, tiles.layout, 0)[:: tiles.layout.scale, :: tiles.layout.scale]
    np.testing.assert_array_equal(t, [[0, 249], [124, 124]])


# --------------------------------------------------------------------------- normalisation


def test_layer_and_channel_normalisation_differ_as_they_should():
    rng = np.random.default_rng(4)
    maps = np.stack([rng.random((20, 20)), 10 * rng.random((20, 20)) - 3])
    per_channel = render.make_tiles(maps, normalize="channel")
    layer = render.make_tiles(maps, normalize="layer")
    for k in range(2):
        assert tile_pixels(per_channel.levels, per_channel.layout, k).min() == 0
        assert tile_pixels(per_channel.levels, per_channel.layout, k).max() == 249
    lo, hi = maps.min(), maps.max()
    np.testing.assert_allclose(layer.ranges, [[lo, hi], [lo, hi]])
    for k in range(2):
        want = upscale(expected_levels(maps[k], lo, hi), layer.layout.scale)
        np.testing.assert_array_equal(tile_pixels(layer.levels, layer.layout, k), want)
    assert tile_pixels(layer.levels, layer.layout, 0).max() < 249 * 4.5 / hi  # small channel dim


def test_clip_uses_percentiles():
    rng = np.random.default_rng(5)
    maps = rng.normal(size=(3, 30, 30)).astype(np.float32)
    maps[0, 0, 0] = 1000.0  # an outlier that would flatten the tile without clipping
    tiles = render.make_tiles(maps, clip=2)
    for k in range(3):
        lo, hi = np.percentile(maps[k].astype(np.float64), [2, 98])
        np.testing.assert_allclose(tiles.ranges[k], [lo, hi], rtol=1e-12)
        want = upscale(expected_levels(maps[k], *tiles.ranges[k]), tiles.layout.scale)
        np.testing.assert_array_equal(tile_pixels(tiles.levels, tiles.layout, k), want)
    t0 = tile_pixels(tiles.levels, tiles.layout, 0)
    assert t0[0, 0] == 249 and (t0 == 249).mean() > 0.015 and np.median(t0) > 60

    layer = render.make_tiles(maps, channels=[0, 2], normalize="layer", clip=10)
    want = np.percentile(maps[[0, 2]].astype(np.float64), [10, 90])
    np.testing.assert_allclose(layer.ranges, [want, want], rtol=1e-12)

    for bad in (-1, 50, 70, float("nan")):
        with pytest.raises(OptionError, match="clip"):
            render.make_tiles(maps, clip=bad)
    with pytest.raises(OptionError, match="normalize"):
        render.make_tiles(maps, normalize="global")


def test_centred_ranges_are_symmetric():
    rng = np.random.default_rng(6)
    maps = np.stack([rng.normal(size=(12, 12)) + 2, -5 * rng.random((12, 12))])
    tiles = render.make_tiles(maps, centred=True)
    assert tiles.centred
    for k in range(2):
        m = np.abs(maps[k]).max()
        np.testing.assert_allclose(tiles.ranges[k], [-m, m])
        want = upscale(expected_levels(maps[k], -m, m), tiles.layout.scale)
        np.testing.assert_array_equal(tile_pixels(tiles.levels, tiles.layout, k), want)
    layer = render.make_tiles(maps, normalize="layer", centred=True, clip=1)
    lo, hi = np.percentile(maps, [1, 99])
    m = max(abs(lo), abs(hi))
    np.testing.assert_allclose(layer.ranges, [[-m, m]] * 2)


# --------------------------------------------------------------------------- channel choice


def test_strongest_channels_matches_argsort():
    rng = np.random.default_rng(7)
    maps = rng.normal(size=(40, 5, 6)) * rng.random(40)[:, None, None] * 10
    maps[3, 0, 0] = np.nan  # ignored, not poisoning channel 3
    maps[3] *= 100
    energy = np.array([np.abs(m[np.isfinite(m)]).mean() for m in maps])
    want = np.sort(np.argsort(energy)[::-1][:12])
    got = render.strongest_channels(maps, 12)
    np.testing.assert_array_equal(got, want)
    assert 3 in got
    np.testing.assert_array_equal(render.strongest_channels(maps, 40), np.arange(40))
    np.testing.assert_array_equal(render.strongest_channels(maps[:5], 256), np.arange(5))
    series = np.sign(rng.normal(size=(9, 100))) * np.arange(9)[:, None]  # any rank [C, ...]
    np.testing.assert_array_equal(render.strongest_channels(series, 3), [6, 7, 8])


# --------------------------------------------------------------------------- colour


def test_colormap_lut_and_unknown_name():
    lut = render.colormap_lut("viridis")
    assert lut.shape == (LEVELS, 3) and lut.dtype == np.uint8
    want = np.round(matplotlib.colormaps["viridis"](np.linspace(0, 1, LEVELS))[:, :3] * 255)
    np.testing.assert_array_equal(lut, want)
    with pytest.raises(OptionError) as err:
        render.colormap_lut("nosuchmap")
    assert err.value.for_cli() == (
        "--cmap 'nosuchmap' is not a matplotlib colormap; "
        "try viridis, magma, inferno, RdBu_r, coolwarm, ..."
    )
    assert render.is_diverging("RdBu_r") and render.is_diverging("coolwarm")
    assert not render.is_diverging("magma") and not render.is_diverging("viridis_r")
    assert render.default_cmap(False) == "magma" and render.default_cmap(True) == "RdBu_r"
    assert render.is_diverging(render.default_cmap(True))


def text_pattern(text):
    """The TEXT-pixel pattern that ImageFont.load_default() draws for ``text`` (no anti-alias)."""
    font = ImageFont.load_default()
    im = Image.new("L", (200, 40), 0)
    draw = ImageDraw.Draw(im)
    draw.fontmode = "1"
    draw.text((10, 10), text, fill=255, font=font)
    mask = np.asarray(im) > 0
    ys, xs = np.nonzero(mask)
    return mask[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]


def contains_text(text_mask, text):
    pat = text_pattern(text)
    if pat.shape[0] > text_mask.shape[0] or pat.shape[1] > text_mask.shape[1]:
        return False
    windows = np.lib.stride_tricks.sliding_window_view(text_mask, pat.shape)
    return bool((windows == pat).all(axis=(2, 3)).any())


def check_heatmap(path, tiles, cmap, full_ramp=True, layer=False):
    mode, (w, h), pix, pal = decode(path)
    grid_h, grid_w = tiles.levels.shape
    assert mode == "P"
    assert 70 <= w - grid_w <= 110 and h == max(grid_h, 84 if layer else 140)
    np.testing.assert_array_equal(pal[:LEVELS], render.colormap_lut(cmap))
    assert tuple(pal[PANEL]) == (255, 255, 255) and tuple(pal[TEXT]) == (0, 0, 0)
    np.testing.assert_array_equal(pix[:grid_h, :grid_w], tiles.levels)  # same tile pixels
    assert (pix[grid_h:, :grid_w] == PANEL).all()  # grid shorter than the panel: PANEL fill
    panel = pix[:, grid_w:]
    assert set(np.unique(panel)) <= set(range(LEVELS)) | {PANEL, TEXT}
    assert (panel == PANEL).mean() > 0.5 and (panel == TEXT).sum() > 50
    # the bar: one column holding the whole ramp, high at the top
    counts = (panel < LEVELS).sum(axis=0)
    col = panel[:, int(np.argmax(counts))]
    bar = col[col < LEVELS].astype(int)
    assert bar[0] == LEVELS - 1 and (np.diff(bar) <= 0).all()
    if full_ramp:
        assert bar[-1] == 0 and len(np.unique(bar)) >= min(LEVELS, len(bar)) * 0.9
    return panel == TEXT


def test_heatmap_colour_bar_layer_mode(tmp_path):
    maps = np.stack([np.full((6, 6), -0.5), np.linspace(-0.5, 2.25, 36).reshape(6, 6)])
    tiles = render.make_tiles(maps, normalize="layer")
    path = tmp_path / "h.png"
    render.save_png(render.heatmap_image(tiles, "magma", "layer"), path)
    text = check_heatmap(path, tiles, "magma", layer=True)
    assert contains_text(text, "2.25") and contains_text(text, "-0.5")
    assert not contains_text(text, "max") and not contains_text(text, "per channel")

    centred = render.make_tiles(maps * 1000, normalize="layer", centred=True)
    render.save_png(render.heatmap_image(centred, "RdBu_r", "layer"), path)
    text = check_heatmap(path, centred, "RdBu_r", full_ramp=False, layer=True)
    # the bar covers the data's own range (-500..2250) on the centred scale, 0 marked
    assert contains_text(text, "2.25e+03") and contains_text(text, "-500")
    assert not contains_text(text, "-2.25e+03") and contains_text(text, "0")


def test_heatmap_colour_bar_channel_mode(tmp_path):
    rng = np.random.default_rng(8)
    maps = rng.normal(size=(70, 9, 9))
    tiles = render.make_tiles(maps)  # a grid taller than 140 px
    path = tmp_path / "h.png"
    render.save_png(render.heatmap_image(tiles, "inferno", "channel"), path)
    text = check_heatmap(path, tiles, "inferno")
    assert contains_text(text, "max") and contains_text(text, "min")
    assert contains_text(text, "per channel") and not contains_text(text, "+max")
    # SPEC: the scale prints the range it stands for: the span the tiles' ranges cover
    lo, hi = maps.min(), maps.max()
    assert contains_text(text, f"lo {lo:.3g}") and contains_text(text, f"hi {hi:.3g}")

    tiles = render.make_tiles(maps[:2], centred=True)
    render.save_png(render.heatmap_image(tiles, "coolwarm", "channel"), path)
    text = check_heatmap(path, tiles, "coolwarm")
    for label in ("+max", "-max", "0", "per channel"):
        assert contains_text(text, label)


# --------------------------------------------------------------------------- overlay


def test_overlay_places_the_hot_spot_and_keeps_the_picture():
    maps = np.zeros((2, 10, 10), dtype=np.float32)
    maps[0, 2, 7] = 5.0
    maps[1, 2, 7] = -3.0
    maps[1, 9, 0] = np.nan  # treated as 0, no warning
    picture = Image.new("RGB", (300, 150), (90, 120, 150))  # 30 x 15 px per cell

    out = render.overlay_image(maps, picture, alpha=0.8, cmap="inferno", colour_bar=False)
    assert out.mode == "RGB" and out.size == picture.size
    got = np.asarray(out).astype(int)
    base = np.asarray(picture).astype(int)
    change = np.abs(got - base).sum(axis=2)
    y, x = np.unravel_index(np.argmax(change), change.shape)
    assert abs(x - 7.5 * 30) <= 15 and abs(y - 2.5 * 15) <= 8
    assert (got[90:, :150] == base[90:, :150]).all()  # far from the spot: the picture itself

    # the blend formula, with e scaled between the 5th and 99.5th percentiles of the energy
    energy = np.abs(np.nan_to_num(maps)).mean(axis=0).astype(np.float64)
    lo, hi = np.percentile(energy, [5, 99.5])
    e = np.asarray(
        Image.fromarray(((energy - lo) / (hi - lo)).clip(0, 1).astype(np.float32)).resize(
            picture.size, Image.Resampling.BILINEAR
        )
    ).clip(0, 1)[..., None]
    lut = render.colormap_lut("inferno")[np.round(e[..., 0] * 249).astype(int)]
    want = base * (1 - 0.8 * e) + lut * 0.8 * e
    assert np.abs(got - want).max() <= 1.0

    unchanged = render.overlay_image(maps, picture, alpha=0.0, colour_bar=False)
    np.testing.assert_array_equal(np.asarray(unchanged), base)
    grey = Image.new("L", (330, 170), 77)
    flat = render.overlay_image(np.zeros((1, 4, 4)), grey, colour_bar=False)  # all-zero energy
    assert flat.size == (330, 170)
    np.testing.assert_array_equal(np.asarray(flat), 77)
    with pytest.raises(OptionError, match="alpha"):
        render.overlay_image(maps, picture, alpha=1.5)


# --------------------------------------------------------------------------- saving


def test_save_png_is_atomic_and_keeps_indices_and_palette(tmp_path):
    image = render.grid_image(render.make_tiles(np.arange(32.0).reshape(2, 4, 4)))
    target = tmp_path / "x.png"
    render.save_png(image, str(target))
    assert os.listdir(tmp_path) == ["x.png"]
    with Image.open(target) as im:
        assert im.mode == "P" and im.size == image.size
        np.testing.assert_array_equal(np.asarray(im), np.asarray(image))
        assert im.getpalette()[: 256 * 3] == image.getpalette()[: 256 * 3]


def test_save_png_failure_leaves_nothing_under_the_final_name(tmp_path, monkeypatch):
    from fmviz.render import png

    def exploding(pixels, palette=None):
        raise RuntimeError("encoder gremlin")

    monkeypatch.setattr(png, "encode_png", exploding)
    image = render.grid_image(render.make_tiles(np.ones((2, 4, 4))))
    target = tmp_path / "y.png"
    with pytest.raises(RuntimeError, match="gremlin"):
        render.save_png(image, target)
    assert os.listdir(tmp_path) == []
    target.write_bytes(b"old")  # an earlier run's file stays whole
    with pytest.raises(RuntimeError):
        render.save_png(image, target)
    assert os.listdir(tmp_path) == ["y.png"] and target.read_bytes() == b"old"
    monkeypatch.undo()
    with pytest.raises(OutputError):
        render.save_png(image, tmp_path / "missing-dir" / "z.png")


@pytest.mark.parametrize("name", sorted(TABLES))
def test_built_in_colour_tables_equal_matplotlib(name):
    """The default maps draw without importing matplotlib; their tables must be matplotlib's."""
    from fmviz.render.tiles import colormap_lut, matplotlib_lut

    np.testing.assert_array_equal(colormap_lut(name), matplotlib_lut(name))
    assert colormap_lut(name).shape == (render.LEVELS, 3)


@pytest.mark.parametrize("shape", [(1, 1, 3), (7, 5, 3), (64, 80, 3)])
def test_rgb_png_decodes_to_the_same_pixels(tmp_path, shape):
    pixels = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    pixels[0, :] = 255
    pixels[1:2, :] = 0  # wrap-around in the Up filter (0 - 255 mod 256)
    path = tmp_path / "rgb.png"
    render.save_png(Image.fromarray(pixels), path)
    with Image.open(path) as decoded:
        assert decoded.format == "PNG" and decoded.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(decoded), pixels)
