"""Convolution weights as pictures (``fmviz filters``).

- **colour templates** (the first layer of a 3-channel image model): one RGB tile per output
  channel, ``value = 0.5 + w / (2 m)`` with ``m`` the filter's largest ``|w|``, so 0 is
  mid-grey and the scale symmetric (per filter: folded batch norms scale filters by factors
  of 100 and more, which one shared scale would draw as flat grey);
- **greyscale** (any other 2-D layer): a row per output channel, its input channels' kernels as
  tiles, the strongest (largest L2) input channels first, capped; one symmetric scale per row;
- **line plots** (1-D kernels): per output channel a small plot of each input channel's kernel
  (strongest first, capped), with the zero line.

Renderers never read the model: they take weight arrays.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from . import tiles
from .exemplars import SERIES_COLOURS

BACKGROUND = (255, 255, 255)
TEXT = (20, 20, 20)
HEADER_H = 30
LABEL_W = 56
GAP = 3


def symmetric_levels(w: np.ndarray, peak: float) -> np.ndarray:
    """uint8 levels of ``w`` on ``[-peak, peak]``, 0 at 128 (mid-grey)."""
    if peak <= 0 or not np.isfinite(peak):
        return np.full(w.shape, 128, dtype=np.uint8)
    return np.clip(np.round(127.5 + 127.5 * w / peak), 0, 255).astype(np.uint8)


def _cell(kernel_h: int, kernel_w: int) -> int:
    """Pixels per weight so a tile is at least 36 pixels wide (nearest upscaling)."""
    return max(1, -(-36 // max(kernel_h, kernel_w, 1)))


def _canvas(width: int, height: int, title: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    width = max(width, 8 + 6 * max((len(line) for line in title), default=0))
    return np.full((height, width, 3), BACKGROUND, dtype=np.uint8), list(title)


def _finish(canvas: np.ndarray, title: Sequence[str], labels: Sequence[tuple[int, int, str]]
            ) -> Image.Image:
    image = Image.fromarray(canvas)
    draw = ImageDraw.Draw(image)
    font = tiles._font()
    for i, line in enumerate(title):
        draw.text((4, 2 + 12 * i), line, fill=TEXT, font=font)
    for x, y, text in labels:
        draw.text((x, y), text, fill=TEXT, font=font)
    return image


def colour_templates(w: np.ndarray, channels: Sequence[int], title: Sequence[str],
                     per_row: int = 16, near_zero: Sequence[int] = ()) -> Image.Image:
    """``w`` ``[out, 3, kh, kw]`` as RGB tiles (input channel 0, 1, 2 = red, green, blue), or
    ``[out, 1, kh, kw]`` (greyscale first layers, depthwise layers) as grey tiles."""
    kh, kw = w.shape[2:]
    cell = _cell(kh, kw)
    tw, th = kw * cell, kh * cell
    columns = min(per_row, max(len(channels), 1))
    rows = -(-len(channels) // columns) if channels else 1
    row_h = th + 14 + GAP
    canvas, title = _canvas(max(columns * (tw + GAP) + 8, 320), HEADER_H + rows * row_h, title)
    labels = []
    for n, c in enumerate(channels):
        x = 4 + (n % columns) * (tw + GAP)
        y = HEADER_H + (n // columns) * row_h
        # a near-zero filter is drawn flat grey: stretched to its own max it would show noise
        peak = 0.0 if c in near_zero else float(np.max(np.abs(w[c]))) if w[c].size else 0.0
        tile = symmetric_levels(w[c], peak).transpose(1, 2, 0)  # [kh, kw, 3 or 1]
        if tile.shape[2] != 3:
            tile = np.repeat(tile[..., :1], 3, axis=2)
        canvas[y:y + th, x:x + tw] = np.repeat(np.repeat(tile, cell, axis=0), cell, axis=1)
        labels.append((x, y + th + 1, f"{c} ~0" if c in near_zero else str(c)))
    return _finish(canvas, title, labels)


def greyscale_rows(w: np.ndarray, channels: Sequence[int], title: Sequence[str],
                   max_inputs: int = 16, near_zero: Sequence[int] = ()) -> Image.Image:
    """``w`` ``[out, in, kh, kw]``: a row per output channel, its strongest input channels'
    kernels as greyscale tiles (labelled with the input channel), one symmetric scale."""
    kh, kw = w.shape[2:]
    cell = _cell(kh, kw)
    tw, th = kw * cell, kh * cell
    shown = min(max_inputs, w.shape[1])
    row_h = th + 14 + GAP
    width = LABEL_W + shown * (tw + GAP) + 4
    canvas, title = _canvas(max(width, 360), HEADER_H + max(len(channels), 1) * row_h, title)
    labels = []
    for r, c in enumerate(channels):
        y = HEADER_H + r * row_h
        labels.append((4, y + th // 2 - 6, f"out {c}" + (" ~0" if c in near_zero else "")))
        peak = 0.0 if c in near_zero else float(np.max(np.abs(w[c]))) if w[c].size else 0.0
        strength = np.sqrt(np.square(w[c]).reshape(w.shape[1], -1).sum(axis=1))
        order = sorted(range(w.shape[1]), key=lambda i: (-strength[i], i))[:shown]
        for j, i in enumerate(order):
            x = LABEL_W + j * (tw + GAP)
            level = symmetric_levels(w[c, i], peak)
            tile = np.repeat(np.repeat(level, cell, axis=0), cell, axis=1)
            canvas[y:y + th, x:x + tw] = tile[..., np.newaxis]
            labels.append((x, y + th + 1, f"in {i}"))
    return _finish(canvas, title, labels)


def line_plots(w: np.ndarray, channels: Sequence[int], title: Sequence[str],
               max_inputs: int = 8, size: tuple[int, int] = (140, 44)) -> Image.Image:
    """``w`` ``[out, in, k]``: per output channel a plot of its strongest input channels'
    kernels on one symmetric scale, with the zero line; four plots per row."""
    pw, ph = size
    per_row = 4
    rows = -(-len(channels) // per_row) if channels else 1
    row_h = ph + 14 + GAP
    canvas, title = _canvas(per_row * (pw + 8) + 8, HEADER_H + rows * row_h, title)
    image = Image.fromarray(canvas)
    draw = ImageDraw.Draw(image)
    labels = []
    k = w.shape[2]
    for n, c in enumerate(channels):
        x0 = 4 + (n % per_row) * (pw + 8)
        y0 = HEADER_H + (n // per_row) * row_h
        draw.rectangle([x0, y0, x0 + pw - 1, y0 + ph - 1], outline=(200, 200, 200))
        mid = y0 + (ph - 1) / 2
        draw.line([(x0, mid), (x0 + pw - 1, mid)], fill=(170, 170, 170))
        peak = float(np.max(np.abs(w[c]))) or 1.0
        strength = np.sqrt(np.square(w[c]).sum(axis=1))
        order = sorted(range(w.shape[1]), key=lambda i: (-strength[i], i))[:max_inputs]
        for rank, i in enumerate(order):
            xs = [x0 + 2 + (t / max(k - 1, 1)) * (pw - 5) for t in range(k)]
            ys = [mid - v / peak * (ph / 2 - 3) for v in w[c, i]]
            colour = SERIES_COLOURS[rank % len(SERIES_COLOURS)]
            if k > 1:
                draw.line(list(zip(xs, ys, strict=True)), fill=colour, width=1)
            else:
                draw.point(list(zip(xs, ys, strict=True)), fill=colour)
        labels.append((x0, y0 + ph + 1, f"out {c}"))
    return _finish(np.asarray(image).copy(), title, labels)
