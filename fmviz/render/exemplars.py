"""Exemplar pictures: per layer, one row per channel, its top inputs' crops in order of score.

Crops are cut from the original input (the picture as shown, EXIF orientation applied) over the
winning position's receptive field, drawn at a common size. The part of a field that lies
outside the input (the network's padding) is drawn as a grey hatch, never as picture. For 1-D
layers each crop is a snippet of the signal (every input channel, one colour each) around the
winning window, the window shaded.

Renderers never read the model: they take pixels, boxes and scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from . import tiles

TILE = 72  # pixels of one crop
SNIPPET = (120, 48)  # width, height of one series snippet
LABEL_W = 64
CAPTION_H = 13
HEADER_H = 18
GAP = 4
BACKGROUND = (255, 255, 255)
TEXT = (20, 20, 20)
PAD_A = (150, 150, 150)  # the padding hatch
PAD_B = (190, 190, 190)
WINDOW = (255, 236, 170)
SERIES_COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
                  (140, 86, 75), (227, 119, 194), (127, 127, 127)]


_HATCH: list[np.ndarray] = []


def hatch(height: int, width: int) -> np.ndarray:
    """The padding pattern: diagonal grey stripes, [H, W, 3] uint8 (a fresh array)."""
    if height <= 256 and width <= 256:
        if not _HATCH:
            _HATCH.append(_hatch(256, 256))
        return _HATCH[0][:height, :width].copy()
    return _hatch(height, width)


def _hatch(height: int, width: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    stripe = ((x + y) // 3) % 2 == 0
    out = np.empty((height, width, 3), dtype=np.uint8)
    out[stripe] = PAD_A
    out[~stripe] = PAD_B
    return out


PAD_SHOWN = 0.125  # at most this fraction of the field's size is drawn as padding per side


def crop_window(box: Sequence[float], height: int, width: int, size: int = TILE
                ) -> tuple[tuple[float, float, float, float], tuple[int, int, int, int]]:
    """Where a crop of ``box`` = ``[top, left, bottom, right]`` (original pixels, unclipped)
    reads the picture and where it lands in the tile.

    The field is cut to the picture, plus at most ``PAD_SHOWN`` of its size of padding on each
    side (a deep layer's field is many times the picture: drawn whole, the picture would be a
    speck in a sea of padding; the hatched margin still says that the field goes on). The
    region keeps its aspect ratio: it is scaled to fit ``size`` x ``size`` and centred.
    Returns the region ``(top, left, bottom, right)`` and the tile rectangle ``(y, x, h, w)``.
    """
    top, left, bottom, right = (float(v) for v in box)
    margin_y = PAD_SHOWN * (bottom - top)
    margin_x = PAD_SHOWN * (right - left)
    top, bottom = max(top, -margin_y), min(bottom, height + margin_y)
    left, right = max(left, -margin_x), min(right, width + margin_x)
    span_y, span_x = max(bottom - top, 1e-9), max(right - left, 1e-9)
    scale = size / max(span_y, span_x)
    h = min(size, max(1, round(span_y * scale)))
    w = min(size, max(1, round(span_x * scale)))
    return (top, left, bottom, right), ((size - h) // 2, (size - w) // 2, h, w)


def crop_cell(box: Sequence[float], height: int, width: int, size: int = TILE
              ) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int, int]]:
    """The source row and column each pixel of a :func:`crop_picture` tile's drawn rectangle
    samples (nearest, at the pixel's centre), and that rectangle ``(y, x, h, w)``."""
    (top, left, bottom, right), rect = crop_window(box, height, width, size)
    _, _, h, w = rect
    ys = np.floor(top + (np.arange(h) + 0.5) * (bottom - top) / h).astype(np.int64)
    xs = np.floor(left + (np.arange(w) + 0.5) * (right - left) / w).astype(np.int64)
    return ys, xs, rect


def crop_picture(picture: np.ndarray, box: Sequence[float], size: int = TILE) -> np.ndarray:
    """The receptive field ``box`` = ``[top, left, bottom, right]`` (original pixels,
    unclipped) of ``picture`` ([H, W, 3] uint8) as a ``size`` x ``size`` tile (see
    :func:`crop_window`): picture pixels sampled at cell centres, the padding beyond the
    picture's edges as a grey hatch, the rest of the tile (aspect ratio) background."""
    height, width = picture.shape[:2]
    ys, xs, (y0, x0, h, w) = crop_cell(box, height, width, size)
    out = np.full((size, size, 3), BACKGROUND, dtype=np.uint8)
    region = hatch(h, w)
    rows = np.flatnonzero((ys >= 0) & (ys < height))
    cols = np.flatnonzero((xs >= 0) & (xs < width))
    if rows.size and cols.size:
        region[np.ix_(rows, cols)] = picture[np.ix_(ys[rows], xs[cols])]
    out[y0:y0 + h, x0:x0 + w] = region
    return out


def snippet(signal: np.ndarray, window: Sequence[float], original: int,
            size: tuple[int, int] = SNIPPET) -> np.ndarray:
    """A line plot of ``signal`` ([C, L]) around ``window`` = ``[t0, t1)`` (unclipped), with
    half the window's length of context on each side; the window shaded, samples beyond the
    original signal (``original`` samples) hatched. [H, W, 3] uint8."""
    width, height = size
    t0, t1 = float(window[0]), float(window[1])
    span = max(t1 - t0, 1.0)
    lo, hi = t0 - span / 2, t1 + span / 2
    image = Image.new("RGB", (width, height), BACKGROUND)
    pixels = np.asarray(image).copy()

    def to_x(t: float) -> int:
        return int(round((t - lo) / (hi - lo) * (width - 1)))

    left_pad, right_pad = to_x(0), to_x(original)
    if left_pad > 0:
        pixels[:, :min(left_pad, width)] = hatch(height, width)[:, :min(left_pad, width)]
    if right_pad < width - 1:
        start = max(right_pad, 0)
        pixels[:, start:] = hatch(height, width)[:, start:]
    a, b = max(to_x(t0), 0), min(to_x(t1), width - 1)
    if b >= a:
        region = pixels[:, a:b + 1]
        plain = (region == BACKGROUND).all(axis=2)
        region[plain] = WINDOW
    image = Image.fromarray(pixels)
    draw = ImageDraw.Draw(image)
    first, last = max(int(np.floor(lo)), 0), min(int(np.ceil(hi)), original, signal.shape[1])
    if last > first:
        part = np.asarray(signal[:, first:last], dtype=np.float64)
        finite = part[np.isfinite(part)]
        peak = float(np.max(np.abs(finite))) if finite.size else 0.0
        peak = peak or 1.0
        xs = [(t - lo) / (hi - lo) * (width - 1) for t in range(first, last)]
        for c in range(part.shape[0]):
            ys = [(height - 1) / 2 - v / peak * (height / 2 - 2) for v in part[c]]
            points = [(x, y) for x, y in zip(xs, ys, strict=True) if np.isfinite(y)]
            colour = SERIES_COLOURS[c % len(SERIES_COLOURS)]
            if len(points) > 1:
                draw.line(points, fill=colour, width=1)
            elif points:
                draw.point(points, fill=colour)
    return np.asarray(image)


@dataclass
class Row:
    """One channel's row: its index and its crops with their scores, best first."""

    channel: int
    tiles: list[np.ndarray]  # [h, w, 3] uint8 each, all the same size
    scores: list[float]


def _fmt(score: float) -> str:
    return f"{score:.3g}" if np.isfinite(score) else str(score)


def exemplar_image(rows: Sequence[Row], k: int, title: str = "",
                   tile: tuple[int, int] = (TILE, TILE)) -> Image.Image:
    """The picture: a title line, then per row the channel label and up to ``k`` tiles, each
    with its score underneath. Tiles start at ``x = LABEL_W + j * (w + GAP)`` and ``y =
    HEADER_H + i * (h + CAPTION_H + GAP)`` (see :func:`tile_origin`)."""
    tw, th = tile
    font = tiles._font()
    # as wide as the tiles, or as the title when it is longer (tiles keep their places)
    title_w = int(np.ceil(ImageDraw.Draw(Image.new("L", (1, 1))).textlength(title, font=font)))
    width = max(LABEL_W + k * (tw + GAP), title_w + 8)
    height = HEADER_H + max(len(rows), 1) * (th + CAPTION_H + GAP)
    canvas = np.full((height, width, 3), BACKGROUND, dtype=np.uint8)
    for i, row in enumerate(rows):
        for j, pixels in enumerate(row.tiles[:k]):
            x, y = tile_origin(i, j, tile)
            canvas[y:y + th, x:x + tw] = pixels
    image = Image.fromarray(canvas)
    draw = ImageDraw.Draw(image)
    if title:
        draw.text((4, 3), title, fill=TEXT, font=font)
    if not rows:
        draw.text((4, HEADER_H + 4), "no exemplars", fill=TEXT, font=font)
    for i, row in enumerate(rows):
        _, y = tile_origin(i, 0, tile)
        draw.text((4, y + th // 2 - 6), f"ch {row.channel}", fill=TEXT, font=font)
        for j, score in enumerate(row.scores[:k]):
            x, y = tile_origin(i, j, tile)
            draw.text((x + 1, y + th + 1), _fmt(score), fill=TEXT, font=font)
    return image


def tile_origin(row: int, column: int, tile: tuple[int, int] = (TILE, TILE)) -> tuple[int, int]:
    """Top-left pixel of tile ``column`` of row ``row`` in :func:`exemplar_image`."""
    tw, th = tile
    return LABEL_W + column * (tw + GAP), HEADER_H + row * (th + CAPTION_H + GAP)


def tensor_picture(array: np.ndarray, axes: Sequence[int]) -> np.ndarray:
    """A fed image tensor ([N, ...], first row) as RGB uint8 for crops: three channels as
    colour, others as the mean over channels, each scaled from its min to its max."""
    item = np.asarray(array[0], dtype=np.float64)
    spatial = [a % array.ndim - 1 for a in axes]
    channel_axes = [a for a in range(item.ndim) if a not in spatial]
    item = np.moveaxis(item, spatial, [item.ndim - 2, item.ndim - 1])
    item = item.reshape(-1, *item.shape[-2:]) if channel_axes else item[np.newaxis]
    if item.shape[0] != 3:
        item = item.mean(axis=0, keepdims=True).repeat(3, axis=0)
    finite = item[np.isfinite(item)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    scaled = (item - lo) / (hi - lo) if hi > lo else np.zeros_like(item)
    return (np.clip(np.nan_to_num(scaled), 0, 1) * 255).round().astype(np.uint8).transpose(1, 2, 0)
