"""Arrays to PIL images: channel grids, false-colour heatmaps and overlays.

Everything here is numpy tiling plus a 256-entry palette. A layer's channels are quantised
once to palette indices (:func:`make_tiles`); the greyscale grid and the heatmap are the same
index array with different palettes, so both are "P" images that Pillow encodes fast. No
matplotlib figure is ever drawn: matplotlib only supplies its colour maps, as lookup tables.

Palette layout (shared by every image made here)::

    0 .. LEVELS-1   value levels (low .. high)
    SEPARATOR       tile separators and grid background
    PANEL, TEXT     colour-bar panel background and its labels
    NONFINITE       NaN / inf pixels (magenta)

This module does not name files or write manifests; :func:`save_png` only stores one image.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..errors import OptionError

__all__ = [
    "LEVELS",
    "SEPARATOR",
    "PANEL",
    "TEXT",
    "NONFINITE",
    "MIN_TILE",
    "GridLayout",
    "Tiles",
    "strongest_channels",
    "make_tiles",
    "grid_image",
    "heatmap_image",
    "colormap_lut",
    "is_diverging",
    "default_cmap",
    "overlay_image",
    "value_ranges",
    "quantise",
    "choose_scale",
    "separator_colour",
    "label_tiles",
    "label_box",
    "strip_tiles",
    "bar_labels",
    "FLOOR_ACTIVATIONS",
]

LEVELS = 250  # value levels, palette indices 0..249
SEPARATOR = 250  # tile separators / grid background
PANEL = 251  # colour-bar panel background (white)
TEXT = 252  # text colour (black)
NONFINITE = 253  # NaN/inf pixels (magenta)
MIN_TILE = 48  # tiny maps are upscaled until their long side >= this
THIN_MIN = 40  # thin maps are stretched down the rows until their short side >= this

# Where the value 0 lands in a symmetric range [-m, m]: round(0.5 * (LEVELS - 1)).
_ZERO_LEVEL_CENTRED = int(np.rint((LEVELS - 1) / 2))

_GREY = np.rint(np.arange(LEVELS) * (255 / (LEVELS - 1))).astype(np.uint8)
_SPECIAL = {
    SEPARATOR: (30, 60, 110),  # replaced per palette by separator_colour(lut)
    PANEL: (255, 255, 255),
    TEXT: (0, 0, 0),
    NONFINITE: (255, 0, 255),
}

# Colour-bar panel geometry (pixels).
_PANEL_WIDTH = 92
_PANEL_MIN_HEIGHT = 140
_BAR_X, _BAR_WIDTH = 10, 14
_BAR_TOP, _BAR_BOTTOM_MARGIN = 12, 28  # room at the bottom for the caption
_CAPTION_LINE = 12  # pixels per extra caption line under the bar (default font is 11 px)
_LABEL_X = _BAR_X + _BAR_WIDTH + 6

# Values per quantisation chunk: bounds the float64 working copy (~8 MB) on huge layers and
# keeps it cache-friendly; this is a loop over chunks of channels, not over pixels.
_CHUNK_VALUES = 1 << 20

_DIVERGING = frozenset(
    [
        "PiYG",
        "PRGn",
        "BrBG",
        "PuOr",
        "RdGy",
        "RdBu",
        "RdYlBu",
        "RdYlGn",
        "Spectral",
        "coolwarm",
        "bwr",
        "seismic",
        "berlin",
        "managua",
        "vanimo",
    ]
)


# --------------------------------------------------------------------------- layout


@dataclass(frozen=True)
class GridLayout:
    """Where each shown channel sits in the grid image."""

    rows: int
    cols: int
    tile_height: int  # after upscaling
    tile_width: int
    scale: int  # integer nearest-neighbour upscale factor (across; also down unless scale_y)
    gap: int  # separator width in pixels
    channels: tuple[int, ...]  # channel index shown in each tile, row-major
    scale_y: int = 0  # upscale factor down the rows when thin maps are stretched (0: scale)
    # (width, height) of the top-left box of each tile that holds its channel label, when
    # labels were drawn: pixels inside it are the label's, every other pixel a value
    label_box: tuple[int, int] | None = None

    @property
    def row_scale(self) -> int:
        return self.scale_y or self.scale

    @property
    def width(self) -> int:
        return self.cols * (self.tile_width + self.gap) + self.gap

    @property
    def height(self) -> int:
        return self.rows * (self.tile_height + self.gap) + self.gap

    def box(self, k: int) -> tuple[int, int, int, int]:
        """``(x, y, w, h)`` of tile ``k`` (the k-th shown channel) in the grid image."""
        if not 0 <= k < len(self.channels):
            raise IndexError(f"tile {k} out of range (0..{len(self.channels) - 1})")
        r, c = divmod(k, self.cols)
        x = self.gap + c * (self.tile_width + self.gap)
        y = self.gap + r * (self.tile_height + self.gap)
        return x, y, self.tile_width, self.tile_height

    def to_json(self) -> dict:
        return {
            "rows": self.rows,
            "cols": self.cols,
            "tile_height": self.tile_height,
            "tile_width": self.tile_width,
            "scale": self.scale,
            "scale_y": self.row_scale,
            "gap": self.gap,
            "channels": [int(c) for c in self.channels],
            "label_box": list(self.label_box) if self.label_box else None,
        }


@dataclass
class Tiles:
    """A layer quantised to palette indices, ready for any palette."""

    levels: np.ndarray  # uint8 [height, width]: 0..LEVELS-1, SEPARATOR, NONFINITE
    layout: GridLayout
    ranges: np.ndarray  # float64 [n_shown, 2]: lo, hi each tile was scaled with
    centred: bool  # ranges symmetric around 0 (diverging display)
    data_ranges: np.ndarray | None = None  # float64 [n_shown, 2]: the values' own min, max


def _grid_layout(channels: Sequence[int], height: int, width: int, gap: int = 1) -> GridLayout:
    n = len(channels)
    # Near-square in pixels: cols * W ~ rows * H with rows ~ n / cols  =>  cols ~ sqrt(n H / W).
    # ceil rather than round: on ties the grid comes out landscape, like screens and pages.
    cols = min(n, max(1, math.ceil(math.sqrt(n * height / width))))
    rows = math.ceil(n / cols)
    cols = math.ceil(n / rows)  # drop a column that would stay empty
    scale = max(1, math.ceil(MIN_TILE / max(height, width)))
    # Thin maps (a few rows under a long width, e.g. [4, 2100]) are stretched down the rows until
    # the short side is readable: at least THIN_MIN pixels, or as tall as they are wide.
    scale_y = scale
    if width > 4 * height and height * scale < THIN_MIN:
        scale_y = math.ceil(min(THIN_MIN, width * scale) / height)
    if scale_y != scale:
        cols = min(n, max(1, math.ceil(math.sqrt(n * height * scale_y / (width * scale)))))
        rows = math.ceil(n / cols)
        cols = math.ceil(n / rows)
    return GridLayout(
        rows=rows,
        cols=cols,
        tile_height=height * scale_y,
        tile_width=width * scale,
        scale=scale,
        gap=gap,
        channels=tuple(int(c) for c in channels),
        scale_y=scale_y if scale_y != scale else 0,
    )


# --------------------------------------------------------------------------- channel choice


def _finite_abs_mean(flat: np.ndarray) -> np.ndarray:
    """Mean |a| per row over finite values only (0 for a row with none)."""
    finite = np.isfinite(flat)
    if finite.all():
        return np.abs(flat).mean(axis=1, dtype=np.float64)
    absval = np.abs(np.where(finite, flat, 0))
    counts = finite.sum(axis=1)
    sums = absval.sum(axis=1, dtype=np.float64)
    return np.divide(sums, counts, out=np.zeros(len(sums)), where=counts > 0)


def strongest_channels(maps: np.ndarray, limit: int) -> np.ndarray:
    """Indices (ascending) of the ``limit`` channels with the largest mean |a|.

    ``maps`` is ``[C, ...]``; non-finite values are ignored. Ties go to the lower index.
    """
    arr = np.asarray(maps)
    if arr.ndim < 1:
        raise ValueError("maps must have a channel axis")
    _check_max_channels(limit)
    n_channels = arr.shape[0]
    if n_channels <= limit:
        return np.arange(n_channels)
    flat = arr.reshape(n_channels, -1)
    if not np.issubdtype(flat.dtype, np.floating):
        flat = flat.astype(np.float64)
    energy = _finite_abs_mean(flat)
    order = np.argsort(-energy, kind="stable")[:limit]
    return np.sort(order)


# --------------------------------------------------------------------------- quantisation


def check_options(
    normalize: str = "channel",
    clip: float | None = None,
    max_channels: int = 256,
    alpha: float = 0.5,
) -> None:
    """Raise :class:`OptionError` for a rendering option the functions here would refuse, so a
    run can fail before any work (each function also checks what it is given)."""
    _check_options(normalize, clip)
    _check_max_channels(max_channels)
    _check_alpha(alpha)


def _check_max_channels(limit: int) -> None:
    if limit < 1:
        raise OptionError("max_channels", f"{limit} must be at least 1")


def _check_alpha(alpha: float) -> float:
    alpha = float(alpha)
    if not 0.0 <= alpha <= 1.0:  # also rejects NaN
        raise OptionError("alpha", f"{alpha:g} must be between 0 and 1")
    return alpha


def _check_options(normalize: str, clip) -> float | None:
    if normalize not in ("channel", "layer"):
        raise OptionError("normalize", f"{normalize!r} must be 'channel' or 'layer'")
    if clip is None:
        return None
    clip = float(clip)
    if not 0 <= clip < 50:  # also rejects NaN
        raise OptionError("clip", f"{clip:g} must be at least 0 and below 50 (percent)")
    return clip or None  # clipping to the 0..100 percentiles is min..max: no work to do


def _channel_index(channels, n_channels: int) -> np.ndarray:
    if channels is None:
        return np.arange(n_channels)
    idx = np.asarray(channels)
    if idx.ndim != 1 or (idx.size and not np.issubdtype(idx.dtype, np.integer)):
        raise ValueError("channels must be a 1-D sequence of channel indices")
    idx = idx.astype(np.intp)
    if idx.size == 0:
        raise ValueError("no channels to show")
    if idx.min() < 0 or idx.max() >= n_channels:
        raise ValueError(f"channel index out of range 0..{n_channels - 1}")
    return idx


def value_ranges(
    shown: np.ndarray,
    finite: np.ndarray,
    all_finite: bool,
    normalize: str,
    clip: float | None,
    centred: bool,
) -> np.ndarray:
    """lo, hi per shown channel, float64 [n, 2], from finite values only.

    A channel (or layer) with no finite value gets (0, 0): its pixels are all NONFINITE anyway
    and the range stays JSON-safe.
    """
    n = shown.shape[0]
    flat = shown.reshape(n, -1)
    fin = finite.reshape(n, -1)
    counts = np.full(n, flat.shape[1]) if all_finite else fin.sum(axis=1)

    if normalize == "layer":
        values = flat if all_finite else flat[fin]
        if values.size == 0:
            low = high = 0.0
        elif clip is None:
            low, high = float(values.min()), float(values.max())
        else:
            low, high = (
                float(v) for v in np.percentile(values.astype(np.float64), [clip, 100 - clip])
            )
        if centred:
            m = max(abs(low), abs(high))
            low, high = 0.0 - m, m  # 0.0 - m: a zero range is (0, 0), not (-0, 0)
        return np.tile(np.array([[low, high]], dtype=np.float64), (n, 1))

    if clip is None:
        if all_finite:
            lo = flat.min(axis=1).astype(np.float64)
            hi = flat.max(axis=1).astype(np.float64)
        else:
            lo = np.where(fin, flat, np.inf).min(axis=1).astype(np.float64)
            hi = np.where(fin, flat, -np.inf).max(axis=1).astype(np.float64)
    else:
        q = [clip, 100 - clip]
        lo = np.empty(n)
        hi = np.empty(n)
        clean = counts == flat.shape[1]
        if clean.all():
            lo, hi = np.percentile(flat.astype(np.float64), q, axis=1)
        elif clean.any():
            pct = np.percentile(flat[clean].astype(np.float64), q, axis=1)
            lo[clean], hi[clean] = pct[0], pct[1]
        for c in np.flatnonzero(~clean):  # only channels that hold NaN/inf
            values = flat[c][fin[c]]
            if values.size:
                lo[c], hi[c] = np.percentile(values.astype(np.float64), q)
    empty = counts == 0
    lo[empty] = 0.0
    hi[empty] = 0.0
    if centred:
        m = np.maximum(np.abs(lo), np.abs(hi))
        lo, hi = 0.0 - m, m
    return np.stack([lo, hi], axis=1)


def quantise(
    shown: np.ndarray, finite: np.ndarray, all_finite: bool, ranges: np.ndarray, centred: bool
) -> np.ndarray:
    """Palette indices uint8 [n, H, W]: round((clip(x, lo, hi) - lo) / (hi - lo) * (LEVELS-1))."""
    n = shown.shape[0]
    lo = ranges[:, 0].copy()
    hi = ranges[:, 1].copy()
    with np.errstate(over="ignore", invalid="ignore"):
        span = hi - lo
    if not np.isfinite(span).all():
        # Only float64 values near 1.8e308 get here; halving is exact and keeps every ratio.
        lo *= 0.5
        hi *= 0.5
        span = hi - lo
        halve = True
    else:
        halve = False
    flat_tile = span <= 0  # constant tile (or no finite value): rendered flat below
    safe_span = np.where(flat_tile, 1.0, span)

    out = np.empty(shown.shape, dtype=np.uint8)
    per_channel = max(1, shown[0].size)
    step = max(1, _CHUNK_VALUES // per_channel)
    for s in range(0, n, step):
        e = min(n, s + step)
        x = shown[s:e].astype(np.float64)  # always a fresh copy we may scribble on
        if halve:
            x *= 0.5
        lo_c = lo[s:e, None, None]
        hi_c = hi[s:e, None, None]
        if not all_finite:
            np.copyto(x, lo_c, where=~finite[s:e])  # no NaN ever reaches the arithmetic
        # Clipping first keeps the ratio in [0, 1]: no overflow, no out-of-range levels.
        np.clip(x, lo_c, hi_c, out=x)
        x -= lo_c
        x /= safe_span[s:e, None, None]
        x *= LEVELS - 1
        np.rint(x, out=x)
        out[s:e] = x

    if flat_tile.any():
        # A dead channel reads as "lowest" (black in grey, dark in magma); any other constant
        # sits mid-scale. In a centred range 0 is the middle, so a zero tile goes there.
        zero_level = _ZERO_LEVEL_CENTRED if centred else 0
        flat_level = np.where(lo == 0, zero_level, LEVELS // 2).astype(np.uint8)
        out[flat_tile] = flat_level[flat_tile, None, None]
    if not all_finite:
        out[~finite] = NONFINITE
    return out


def _assemble(levels: np.ndarray, layout: GridLayout) -> np.ndarray:
    """Tile [n, h, w] indices into one [height, width] image with SEPARATOR borders."""
    if layout.scale > 1 or layout.row_scale > 1:
        levels = np.repeat(np.repeat(levels, layout.row_scale, axis=1), layout.scale, axis=2)
    n, th, tw = levels.shape
    rows, cols, gap = layout.rows, layout.cols, layout.gap
    canvas = np.full((layout.height, layout.width), SEPARATOR, dtype=np.uint8)
    # A 4-D view [row, y-in-cell, col, x-in-cell] of the canvas below/right of the top-left
    # border; each cell is a tile plus its right/bottom separator. One vectorised copy fills it.
    cells = np.lib.stride_tricks.as_strided(
        canvas[gap:, gap:],
        shape=(rows, th + gap, cols, tw + gap),
        strides=(
            canvas.strides[0] * (th + gap),
            canvas.strides[0],
            canvas.strides[1] * (tw + gap),
            canvas.strides[1],
        ),
        writeable=True,
    )
    full_rows, rest = divmod(n, cols)
    if full_rows:
        block = levels[: full_rows * cols].reshape(full_rows, cols, th, tw)
        cells[:full_rows, :th, :, :tw] = block.transpose(0, 2, 1, 3)
    if rest:
        cells[full_rows, :th, :rest, :tw] = levels[full_rows * cols :].transpose(1, 0, 2)
    return canvas


def make_tiles(
    maps: np.ndarray,
    channels=None,
    normalize: str = "channel",
    clip: float | None = None,
    centred: bool = False,
) -> Tiles:
    """Quantise the channels of one batch item ``maps`` [C, H, W] into a tiled index image.

    ``normalize="channel"`` scales each tile to its own lo..hi, ``"layer"`` uses one lo..hi for
    all shown tiles. ``clip=P`` first clips to the P..100-P percentiles; ``centred`` makes the
    range symmetric [-m, m]. Non-finite values are ignored for ranges and drawn as NONFINITE.
    """
    clip = _check_options(normalize, clip)
    arr = np.asarray(maps)
    if arr.ndim != 3:
        raise ValueError(f"maps must be [C, H, W], got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float64)
    n_channels, height, width = arr.shape
    if height == 0 or width == 0:
        raise ValueError(f"maps have an empty spatial size {arr.shape[1:]}")
    idx = _channel_index(channels, n_channels)
    shown = arr if np.array_equal(idx, np.arange(n_channels)) else arr[idx]

    finite = np.isfinite(shown)
    all_finite = bool(finite.all())
    ranges = value_ranges(shown, finite, all_finite, normalize, clip, centred)
    levels = quantise(shown, finite, all_finite, ranges, centred)
    layout = _grid_layout(idx.tolist(), height, width)
    data = value_ranges(shown, finite, all_finite, normalize, None, False) if (
        centred or clip is not None) else ranges
    return Tiles(levels=_assemble(levels, layout), layout=layout, ranges=ranges, centred=centred,
                 data_ranges=data)


# --------------------------------------------------------------------------- palettes, images


# Separator / empty-slot colours to choose from: the first that is far from every colour of a
# palette (so a gap can never be read as a value), else the farthest of them. A true neutral
# (a grey) cannot be one: every grey is a value of the greyscale grid, and black/white are the
# ends of magma, inferno and gray. So the first choice is a dull dark bronze, quiet next to any
# palette and >= 61 away from grey, magma, inferno, viridis, RdBu_r, coolwarm, turbo...; a dark
# navy for brown palettes (copper, BrBG, PuOr); the louder ones only when both come near.
_SEPARATOR_CANDIDATES = ((115, 80, 20), (20, 50, 110), (0, 170, 90), (0, 90, 255),
                         (255, 200, 0), (0, 0, 0))
_SEPARATOR_DISTANCE = 60.0


def separator_colour(lut: np.ndarray) -> tuple[int, int, int]:
    """A colour for separators and empty grid slots that no entry of ``lut`` comes near
    (Euclidean RGB distance >= 60 where a candidate allows, else the farthest candidate)."""
    table = np.asarray(lut, dtype=np.float64).reshape(-1, 3)
    best, best_distance = _SEPARATOR_CANDIDATES[0], -1.0
    for rgb in _SEPARATOR_CANDIDATES:
        distance = float(np.sqrt(((table - np.array(rgb)) ** 2).sum(axis=1)).min())
        if distance >= _SEPARATOR_DISTANCE:
            return rgb
        if distance > best_distance:
            best, best_distance = rgb, distance
    return best


def _palette(lut: np.ndarray) -> list[int]:
    pal = np.zeros((256, 3), dtype=np.uint8)
    pal[:LEVELS] = lut
    for index, rgb in _SPECIAL.items():
        pal[index] = rgb
    pal[SEPARATOR] = separator_colour(lut)
    return pal.ravel().tolist()


def _p_image(indices: np.ndarray, palette: list[int]) -> Image.Image:
    image = Image.fromarray(np.ascontiguousarray(indices, dtype=np.uint8))  # mode "L"
    image.putpalette(palette)  # turns "L" into "P" without touching the indices
    return image


def grid_image(tiles: Tiles) -> Image.Image:
    """The tiles as a "P" image with a linear grey ramp: the "true" representation."""
    return _p_image(tiles.levels, _palette(np.repeat(_GREY[:, None], 3, axis=1)))


@functools.lru_cache(maxsize=32)
def colormap_lut(name: str) -> np.ndarray:
    """uint8 [LEVELS, 3]: matplotlib colour map ``name`` sampled at LEVELS evenly spaced points.

    The returned array is cached and read-only. The default maps come from built-in tables
    (:mod:`fmviz.render.colormap_tables`), so only other maps import matplotlib.
    """
    from .colormap_tables import TABLES

    if name in TABLES:
        lut = np.frombuffer(bytes.fromhex(TABLES[name]), dtype=np.uint8).reshape(LEVELS, 3)
        return lut  # frombuffer over bytes: already read-only
    return matplotlib_lut(name)


def matplotlib_lut(name: str) -> np.ndarray:
    """``colormap_lut`` computed by matplotlib (for maps without a built-in table)."""
    import matplotlib  # lazy: ~0.3 s, and only maps other than the defaults need it

    try:
        cmap = matplotlib.colormaps[name]
    except (KeyError, TypeError):
        raise OptionError(
            "cmap", f"{name!r} is not a matplotlib colormap; "
            "try viridis, magma, inferno, RdBu_r, coolwarm, ..."
        ) from None
    rgba = cmap(np.linspace(0.0, 1.0, LEVELS))
    lut = np.rint(rgba[:, :3] * 255).astype(np.uint8)
    lut.setflags(write=False)
    return lut


def is_diverging(name: str) -> bool:
    """True for matplotlib's diverging maps (and their ``_r`` reversals)."""
    base = name[:-2] if name.endswith("_r") else name
    return base in _DIVERGING


def default_cmap(has_negative: bool) -> str:
    """``magma`` for sequential scales, ``RdBu_r`` (centred on 0) for diverging ones."""
    return "RdBu_r" if has_negative else "magma"


# Activations whose negative values are a bounded floor under an unbounded positive side: their
# layers are drawn on a sequential scale whatever the floor's depth (SPEC v2, README "Colour
# scales").
FLOOR_ACTIVATIONS = frozenset(
    {"Relu", "ReLU6", "LeakyRelu", "PRelu", "Elu", "Selu", "Celu", "SiLU", "Swish", "HardSwish",
     "Gelu", "Mish", "Softplus", "Sigmoid", "HardSigmoid"}
)
# Both signs carry real weight when the smaller side reaches at least this share of the larger.
BALANCE = 1 / 3


def choose_scale(lo: float, hi: float, activation: str | None = None,
                 center: str | None = None) -> str:
    """``"diverging"`` (centred on 0) or ``"sequential"`` for values spanning ``lo..hi``.

    The rule: diverging only when both signs carry real weight, i.e. ``lo < 0 < hi`` and
    ``min(-lo, hi) >= max(-lo, hi) / 3``, and the layer's activation is not one whose negative
    side is a bounded floor (SiLU, HardSwish, GELU, Mish, ELU/SELU/CELU, leaky ReLU). An
    activation's small negative floor and an all-negative layer stay sequential.
    ``center="zero"`` forces diverging, ``"none"`` sequential.
    """
    if center == "zero":
        return "diverging"
    if center == "none":
        return "sequential"
    if not (np.isfinite(lo) and np.isfinite(hi)) or not lo < 0 < hi:
        return "sequential"
    if activation in FLOOR_ACTIVATIONS:
        return "sequential"
    return "diverging" if min(-lo, hi) >= BALANCE * max(-lo, hi) else "sequential"


def finite_range(values: np.ndarray) -> tuple[float, float]:
    """min, max over the finite values (0, 0 when there is none)."""
    arr = np.asarray(values)
    if arr.size and not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float64)
    finite = arr[np.isfinite(arr)] if arr.size else arr
    if finite.size == 0:
        return 0.0, 0.0
    return float(finite.min()), float(finite.max())


def _text_at(draw: ImageDraw.ImageDraw, font, x: int, y_mid: float, text: str) -> None:
    """Draw ``text`` left-aligned at ``x`` and vertically centred on ``y_mid``."""
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    draw.text((x - left, round(y_mid - (top + bottom) / 2)), text, fill=TEXT, font=font)


def heatmap_image(tiles: Tiles, cmap: str, normalize: str) -> Image.Image:
    """The tiles through colour map ``cmap`` plus a colour bar that says what the colours mean.

    With ``normalize="layer"`` the bar is labelled with the layer's numeric range; with
    ``"channel"`` every tile has its own range, so it says "max"/"min" and "per channel".
    """
    if normalize not in ("channel", "layer"):
        raise OptionError("normalize", f"{normalize!r} must be 'channel' or 'layer'")
    lut = colormap_lut(cmap)
    grid = tiles.levels
    grid_h, grid_w = grid.shape
    height = max(grid_h, _PANEL_MIN_HEIGHT if normalize == "channel" else 84)
    canvas = np.full((height, grid_w + _PANEL_WIDTH), PANEL, dtype=np.uint8)
    canvas[:grid_h, :grid_w] = grid

    # The bar: the very palette indices the tiles use, high at the top.
    bar_x = grid_w + _BAR_X
    bar_top = _BAR_TOP
    # per channel: the caption and the span the tiles' ranges cover take three lines
    margin = _BAR_BOTTOM_MARGIN + (2 * _CAPTION_LINE if normalize == "channel" else 0)
    bar_bottom = height - margin  # exclusive
    bar_h = bar_bottom - bar_top
    if normalize == "layer":
        # the bar covers exactly the data's range lo..hi, in the colours the tiles give them
        lo, hi, (draw_lo, draw_hi) = _layer_range(tiles)
        ramp = _bar_ramp(lo, hi, draw_lo, draw_hi, bar_h)
    else:
        ramp = np.rint(np.linspace(LEVELS - 1, 0, bar_h)).astype(np.uint8)
    canvas[bar_top:bar_bottom, bar_x : bar_x + _BAR_WIDTH] = ramp[:, None]

    image = _p_image(canvas, _palette(lut))
    draw = ImageDraw.Draw(image)
    draw.fontmode = "1"  # Pillow's default for "P"; anti-aliasing would invent indices
    font = _font()
    draw.rectangle(
        (bar_x - 1, bar_top - 1, bar_x + _BAR_WIDTH, bar_bottom), outline=TEXT
    )  # 1-px frame

    top_y, bottom_y = bar_top, bar_bottom - 1
    texts, captions = bar_labels(tiles, normalize)
    if normalize == "layer":
        positions: list[float] = [top_y, bottom_y]
        if tiles.centred and lo < 0 < hi:
            positions.append(bar_top + (hi / (hi - lo)) * (bar_h - 1))
        labels = list(zip(positions, texts, strict=False))
    else:
        mid_y = bar_top + (bar_h - 1) / 2
        labels = list(zip([top_y, bottom_y, mid_y], texts, strict=False))
        first_y = height - margin + _BAR_BOTTOM_MARGIN / 2
        for row, caption in enumerate(captions):
            left, _, right, _ = draw.textbbox((0, 0), caption, font=font)
            cx = grid_w + max(2, (_PANEL_WIDTH - (right - left)) // 2)
            _text_at(draw, font, cx, first_y + row * _CAPTION_LINE, caption)
    tick_x = bar_x + _BAR_WIDTH
    for y, text in labels:
        yi = round(y)
        draw.line((tick_x, yi, tick_x + 3, yi), fill=TEXT)
        _text_at(draw, font, grid_w + _LABEL_X, y, text)
    return image


def _layer_range(tiles: Tiles) -> tuple[float, float, tuple[float, float]]:
    """The data's lo, hi and the range the levels were drawn on (layer normalisation)."""
    if not len(tiles.ranges):
        return 0.0, 0.0, (0.0, 0.0)
    drawn = (float(tiles.ranges[0][0]), float(tiles.ranges[0][1]))
    data = tiles.data_ranges if tiles.data_ranges is not None else tiles.ranges
    lo, hi = float(np.min(data[:, 0])), float(np.max(data[:, 1]))
    lo, hi = max(lo, drawn[0]), min(hi, drawn[1])  # clipped values are drawn at the ends
    return lo, hi, drawn


def _bar_ramp(lo: float, hi: float, draw_lo: float, draw_hi: float, height: int) -> np.ndarray:
    """Palette levels of a bar running from ``hi`` (top) to ``lo`` on a scale drawn over
    ``draw_lo..draw_hi`` (a centred scale's bar only shows the part the data uses)."""
    span = draw_hi - draw_lo
    if not span > 0 or not np.isfinite(span):
        level = _ZERO_LEVEL_CENTRED if draw_lo != 0 else 0
        return np.full(height, level if lo == hi == 0 else LEVELS // 2, dtype=np.uint8)
    values = np.linspace(hi, lo, height)
    return np.rint((values - draw_lo) / span * (LEVELS - 1)).clip(0, LEVELS - 1).astype(np.uint8)


def _number(value: float) -> str:
    return f"{value:.3g}"


def bar_labels(tiles: Tiles, normalize: str) -> tuple[list[str], list[str]]:
    """The colour bar's texts: labels (top, bottom[, zero]) and captions under the bar.

    Layer normalisation: the data's own hi and lo (and "0" where a centred bar crosses it).
    Per channel: "max"/"min" at the ends and the captions "per channel", "lo X", "hi Y" with the
    data's real range over the shown channels.
    """
    if normalize == "layer":
        lo, hi, _ = _layer_range(tiles)
        labels = [_number(hi), _number(lo)]
        if tiles.centred and lo < 0 < hi:
            labels.append("0")
        return labels, []
    labels = ["+max", "-max", "0"] if tiles.centred else ["max", "min"]
    data = tiles.data_ranges if tiles.data_ranges is not None else tiles.ranges
    if len(data):
        lo, hi = float(np.min(data[:, 0])), float(np.max(data[:, 1]))
    else:
        lo = hi = 0.0
    return labels, ["per channel", f"lo {_number(lo)}", f"hi {_number(hi)}"]


# --------------------------------------------------------------------------- labels, strips


_local = threading.local()


def _font():
    """Pillow's default font, one per thread: layers render in a thread pool and a FreeType
    face is not meant to be shared between threads (loading it takes ~0.05 ms)."""
    font = getattr(_local, "font", None)
    if font is None:
        font = _local.font = ImageFont.load_default()
    return font


def _text_size(draw: ImageDraw.ImageDraw, text: str) -> tuple[int, int, int, int]:
    left, top, right, bottom = draw.textbbox((0, 0), text, font=_font())
    return int(left), int(top), int(right), int(bottom)


def label_box(layout: GridLayout) -> tuple[int, int] | None:
    """(width, height) of the corner box a channel label takes in each tile of ``layout`` (the
    box of its longest number), or None when the tiles are too small to carry one."""
    if not layout.channels:
        return None
    stamp = _label_stamp(str(max(layout.channels)))
    need_h, need_w = stamp.shape
    if layout.tile_width < 2 * need_w or layout.tile_height < 2 * need_h:
        return None
    return need_w, need_h


def label_tiles(tiles: Tiles) -> bool:
    """Write each tile's channel index in its top-left corner (black on a white box), in place,
    when the tiles are large enough to carry it; returns whether labels were drawn. Every label
    lies inside the tile's :func:`label_box`; the rest of the tile keeps its values."""
    layout = tiles.layout
    box = label_box(layout)
    if box is None:
        return False
    tiles.layout = dataclasses.replace(layout, label_box=box)
    levels = tiles.levels
    for k, channel in enumerate(layout.channels):
        x, y, _, _ = layout.box(k)
        stamp = _label_stamp(str(channel))
        levels[y : y + stamp.shape[0], x : x + stamp.shape[1]] = stamp
    return True


@functools.lru_cache(maxsize=4096)
def _label_stamp(text: str) -> np.ndarray:
    """A channel label as palette indices: ``text`` in TEXT on a PANEL box (1-px margins).

    Drawn once per text and pasted with numpy: a layer has up to 256 labels, and drawing each
    with Pillow (which holds the GIL) would serialise the render threads."""
    probe = ImageDraw.Draw(Image.new("L", (1, 1)))
    left, top, right, bottom = _text_size(probe, text)
    image = Image.new("L", (right - left + 4, bottom - top + 3), PANEL)
    draw = ImageDraw.Draw(image)
    draw.fontmode = "1"
    draw.text((2 - left, 1 - top), text, fill=TEXT, font=_font())
    stamp = np.asarray(image).copy()
    stamp.setflags(write=False)
    return stamp


STRIP_ROW = 32  # channel cells per strip row


def strip_tiles(maps: np.ndarray, centred: bool, clip: float | None = None) -> Tiles:
    """Channels of 1x1 (or near-1x1) maps ``[C, h, w]`` as one strip of cells in channel
    order, ``STRIP_ROW`` cells a row, on one layer-wide scale, with a channel-index axis.

    Each cell shows its channel's small map upscaled; the left margin says the first channel of
    each row, the top margin the column offsets. The layout's ``channels`` are all channels.
    """
    arr = np.asarray(maps)
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float64)
    n, h, w = arr.shape
    finite = np.isfinite(arr)
    all_finite = bool(finite.all())
    ranges = value_ranges(arr, finite, all_finite, "layer", clip, centred)
    levels = quantise(arr, finite, all_finite, ranges, centred)
    data = value_ranges(arr, finite, all_finite, "layer", None, False)
    cols = min(n, STRIP_ROW)
    rows = math.ceil(n / cols)
    cell = 24 if n <= 16 else 16
    scale = max(1, cell // max(h, w))
    margin_left, margin_top, gap = 34, 14, 1
    layout = GridLayout(rows=rows, cols=cols, tile_height=h * scale, tile_width=w * scale,
                        scale=scale, gap=gap, channels=tuple(range(n)))
    body = _assemble(levels, layout)
    canvas = np.full((body.shape[0] + margin_top, body.shape[1] + margin_left), PANEL,
                     dtype=np.uint8)
    canvas[margin_top:, margin_left:] = body
    image = Image.fromarray(canvas)
    draw = ImageDraw.Draw(image)
    draw.fontmode = "1"
    step = 4 if cols >= 8 else 1
    for c in range(0, cols, step):
        x = margin_left + gap + c * (layout.tile_width + gap)
        draw.text((x, 1), str(c), fill=TEXT, font=_font())
    for r in range(rows):
        y = margin_top + gap + r * (layout.tile_height + gap) + layout.tile_height / 2
        _text_at(draw, _font(), 2, y, str(r * cols))
    placed = GridLayout(rows=rows, cols=cols, tile_height=layout.tile_height,
                        tile_width=layout.tile_width, scale=scale, gap=gap,
                        channels=layout.channels)
    return Tiles(levels=np.asarray(image).copy(), layout=placed, ranges=ranges, centred=centred,
                 data_ranges=data)


STRIP_ORIGIN = (34, 14)  # (x, y) of a strip's grid inside its picture (after the axis margins)


OVERLAY_MIN_SIDE = 256  # tiny input pictures are upscaled (whole factors) to at least this
OVERLAY_PERCENTILES = (5.0, 99.5)  # the overlay's 0 and full strength: robust, floor removed


def overlay_values(maps: np.ndarray, channel: int | None = None) -> np.ndarray:
    """What an overlay shows, float64 [H, W]: the mean |a| over channels (non-finite as 0), or
    channel ``channel``'s own values."""
    arr = np.asarray(maps)
    if arr.ndim != 3:
        raise ValueError(f"maps must be [C, H, W], got shape {arr.shape}")
    if channel is not None:
        values = arr[channel].astype(np.float64)
        return np.where(np.isfinite(values), values, 0.0)
    finite = np.isfinite(arr)
    absval = np.abs(arr) if finite.all() else np.abs(np.where(finite, arr, 0))
    return absval.mean(axis=0, dtype=np.float64)


def overlay_range(values: np.ndarray) -> tuple[float, float]:
    """The robust range an overlay is scaled to: the 5th and 99.5th percentiles of its values
    (so a floor shared by the whole picture is removed and one hot pixel does not dim the rest)."""
    if values.size == 0:
        return 0.0, 0.0
    lo, hi = np.percentile(values, OVERLAY_PERCENTILES)
    return float(lo), float(hi)


def overlay_image(
    maps: np.ndarray,
    picture: Image.Image,
    alpha: float = 0.5,
    cmap: str = "inferno",
    channel: int | None = None,
    colour_bar: bool = True,
) -> Image.Image:
    """The overlay picture of :func:`overlay_with_range`."""
    return overlay_with_range(maps, picture, alpha, cmap, channel, colour_bar)[0]


def overlay_with_range(
    maps: np.ndarray,
    picture: Image.Image,
    alpha: float = 0.5,
    cmap: str = "inferno",
    channel: int | None = None,
    colour_bar: bool = True,
) -> tuple[Image.Image, float, float]:
    """Blend what the layer shows (its energy, or channel ``channel``) over ``picture``.

    The values v (:func:`overlay_values`) are scaled between robust percentiles
    (:func:`overlay_range`): e = clip((v - lo) / (hi - lo), 0, 1), upsampled bilinearly. Each
    pixel is ``picture * (1 - alpha*e) + colour(e) * alpha*e``, so quiet regions keep the picture
    and hot regions take the colour map. Pictures under OVERLAY_MIN_SIDE pixels are upscaled by
    a whole factor first (nearest neighbour). With ``colour_bar`` a panel on the right states
    what the colours stand for and the range. Returns the picture and the range (lo, hi).
    """
    alpha = _check_alpha(alpha)
    lut = colormap_lut(cmap)
    values = overlay_values(maps, channel)
    lo, hi = overlay_range(values)
    span = hi - lo
    if span > 0 and np.isfinite(span):
        scaled = np.clip((values - lo) / span, 0.0, 1.0)
    else:
        scaled = np.zeros_like(values)
    base = picture if picture.mode == "RGB" else picture.convert("RGB")  # never modified
    long_side = max(base.size)
    if 0 < long_side < OVERLAY_MIN_SIDE:
        factor = math.ceil(OVERLAY_MIN_SIDE / long_side)
        base = base.resize((base.width * factor, base.height * factor), Image.Resampling.NEAREST)

    small = Image.fromarray(scaled.astype(np.float32))  # mode "F"
    e = np.asarray(small.resize(base.size, Image.Resampling.BILINEAR))
    e = np.clip(e, 0.0, 1.0)
    # The blend runs inside Pillow (composite = base*(1-m/255) + colour*m/255, rounded): ~5x
    # faster than float numpy on a 2048-px picture. m = alpha*e in 1/255 steps, so alpha=0
    # (or e=0) leaves the picture's pixels exactly as they were.
    colour = _p_image(np.rint(e * (LEVELS - 1)).astype(np.uint8), _palette(lut)).convert("RGB")
    mask = Image.fromarray(np.rint(e * (alpha * 255)).astype(np.uint8))  # mode "L"
    blended = Image.composite(colour, base, mask)
    if not colour_bar:
        return blended, lo, hi
    what = "mean |a|" if channel is None else f"ch {channel}"
    return _with_rgb_bar(blended, lut, lo, hi, what), lo, hi


def _with_rgb_bar(image: Image.Image, lut: np.ndarray, lo: float, hi: float,
                  what: str) -> Image.Image:
    """``image`` with a white panel on its right: the colour ramp, hi at the top, lo at the
    bottom, and what the values are."""
    height = max(image.height, 96)
    # The panel is drawn on its own (small) image and joined to the picture with one copy:
    # drawing on the whole joined picture would copy it twice more per overlay.
    panel = np.full((height, _PANEL_WIDTH, 3), 255, dtype=np.uint8)
    bar_top, bar_bottom = _BAR_TOP, height - _BAR_BOTTOM_MARGIN
    bar_h = bar_bottom - bar_top
    ramp = np.rint(np.linspace(LEVELS - 1, 0, bar_h)).astype(np.intp)
    panel[bar_top:bar_bottom, _BAR_X : _BAR_X + _BAR_WIDTH] = np.asarray(lut)[ramp][:, None, :]
    side = Image.fromarray(panel)
    draw = ImageDraw.Draw(side)
    draw.rectangle((_BAR_X - 1, bar_top - 1, _BAR_X + _BAR_WIDTH, bar_bottom), outline=(0, 0, 0))
    font = _font()
    for y, text in ((bar_top, f"{hi:.3g}"), (bar_bottom - 1, f"{lo:.3g}")):
        draw.line((_BAR_X + _BAR_WIDTH, y, _BAR_X + _BAR_WIDTH + 3, y), fill=(0, 0, 0))
        left, top, _, bottom = draw.textbbox((0, 0), text, font=font)
        draw.text((_LABEL_X - left, round(y - (top + bottom) / 2)), text, fill=(0, 0, 0),
                  font=font)
    left, _, right, _ = draw.textbbox((0, 0), what, font=font)
    cx = max(2, (_PANEL_WIDTH - (right - left)) // 2)
    draw.text((cx - left, bar_bottom + 8), what, fill=(0, 0, 0), font=font)
    picture = np.asarray(image)
    if picture.shape[0] < height:  # a picture shorter than the bar: white below it
        picture = np.concatenate(
            [picture, np.full((height - picture.shape[0], picture.shape[1], 3), 255, np.uint8)])
    return Image.fromarray(np.concatenate([picture, np.asarray(side)], axis=1))
