"""1-D layers: the input signal on top, the layer's channels below as a channels x time strip.

One picture per layer, ``{stem}.series.png``::

    title: layer name, shape, time step and offset
    +--------+---------------------------------------------+
    | in 0   |  ~~~~ input signal, one lane per channel ~~~ |
    | in 1   |  ~~~~                                        |
    +--------+---------------------------------------------+------------+
    |   0    |  false-colour row per shown channel          | colour bar |
    |   3    |  (same time axis as the lanes above)         | + range    |
    +--------+---------------------------------------------+------------+
             0        100        200     t (input samples)

**Time alignment.** Output index ``j`` of a layer is centred on input sample
``offset + stride * j``. The two numbers come from the layer's probe (:attr:`Probe.time_axis`),
which :mod:`fmviz.graph.receptive` derives from the strides, pads and dilations on the path from
the input (exact, or an estimate where a ConvTranspose or SAME padding makes it uneven: the
manifest's ``time_axis.method`` then says ``graph-estimate``). Where the graph does not say
(Resize, a time-axis Concat, control flow) or the answer does not fit the lengths, the fallback
is the length ratio: ``stride = L_in / L_out`` rounded to a whole number (or its inverse), with
the layer's span centred on the input (``length-ratio``).

**Display only.** Each pixel column stands for a span of input samples. Lanes draw the min..max
envelope of the samples in a column (plus the line to its neighbours), so a one-sample spike in a
million samples still shows. Strip columns show the maximum of the layer outputs centred in the
column (for maps with negative values: the value of largest magnitude, sign kept). Ranges,
channel choice and statistics always use the full-resolution arrays.

Drawing is numpy into a palette ("P") image plus Pillow's ImageDraw for text; matplotlib only
supplies colour-map tables (:func:`fmviz.tiles.colormap_lut`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..inputs import PreparedInput
from ..probes import Probe
from . import tiles
from .png import save_png

__all__ = ["TimeAxis", "layer_time_axis", "render_series", "series_image"]

# Palette: 0..LEVELS-1 colour map, then render's specials, then two of our own.
LINE = 254  # signal lines
LIGHT = 255  # lane frames, zero lines, strip columns the layer does not cover
_COLOURS = {
    tiles.SEPARATOR: (30, 60, 110),
    tiles.PANEL: (255, 255, 255),
    tiles.TEXT: (0, 0, 0),
    tiles.NONFINITE: (255, 0, 255),
    LINE: (31, 119, 180),
    LIGHT: (222, 222, 222),
}

# Geometry (pixels).
MIN_PLOT, MAX_PLOT = 512, 1024  # plot width: short series upscaled by whole pixels, long ones cut
LEFT = 76  # label margin
PANEL_WIDTH = 96  # colour bar panel
TITLE_HEIGHT = 18
MAX_LANES = 16
STRIP_TARGET = 512  # strip height aimed at; rows are 2..18 px
AXIS_HEIGHT = 32
BAR_WIDTH = 14
TEXT_HEIGHT = 12



# ----------------------------------------------------------------------------- time axis


@dataclass(frozen=True)
class TimeAxis:
    """Output index ``j`` of a layer is centred on input sample ``offset + stride * j``."""

    stride: float
    offset: float
    method: str  # "graph" | "graph-estimate" | "length-ratio" | "identity"
    input_length: int
    output_length: int

    def centre(self, j):
        return self.offset + self.stride * np.asarray(j, dtype=np.float64)

    def to_json(self) -> dict:
        return {
            "stride": _clean(self.stride),
            "offset": _clean(self.offset),
            "method": self.method,
            "input_length": self.input_length,
            "output_length": self.output_length,
        }


def _clean(value: float) -> float | int:
    value = float(value)
    return int(value) if value.is_integer() else round(value, 6)


def layer_time_axis(probe: Probe, length_in: int, length_out: int) -> TimeAxis:
    """Where each output step of ``probe``'s layer sits on the input's time axis: the graph's
    answer (:attr:`Probe.time_axis`) where it fits the lengths, else the length ratio."""
    if probe.time_axis is not None and length_in > 0:
        stride, offset, exact = probe.time_axis
        last = offset + stride * (length_out - 1)
        slack = stride + 1.0
        if stride > 0 and offset >= -slack and last <= length_in - 1 + slack:
            method = "graph" if exact else "graph-estimate"
            return TimeAxis(float(stride), float(offset), method, length_in, length_out)
    return ratio_time_axis(length_in, length_out)


def ratio_time_axis(length_in: int, length_out: int) -> TimeAxis:
    """The fallback: whole-number stride from the lengths, the output span centred on the input."""
    if length_in <= 0 or length_out <= 0 or length_in == length_out:
        return TimeAxis(1.0, 0.0, "identity" if length_in == length_out else "length-ratio",
                        max(length_in, 0), max(length_out, 0))
    ratio = length_in / length_out
    stride = float(round(ratio)) if ratio >= 1 else 1.0 / round(1.0 / ratio)
    offset = (length_in - 1 - stride * (length_out - 1)) / 2
    return TimeAxis(stride, offset, "length-ratio", length_in, length_out)


# ----------------------------------------------------------------------------- rendering


def render_series(
    first: np.ndarray, probe: Probe, source: PreparedInput, folder: Path, stem: str, options
) -> dict:
    """Write ``{stem}.series.png`` for one 1-D layer; returns its manifest fields.

    ``first`` is the layer's first batch item ``[C, L_out]``; the input signal is
    ``source.signal`` (``[C, L]`` as fed).
    """
    maps = np.asarray(first)
    if maps.ndim == 1:
        maps = maps[np.newaxis]
    if maps.ndim != 2:
        raise ValueError(f"a series layer must be [C, L], got shape {maps.shape}")
    if not np.issubdtype(maps.dtype, np.floating):
        maps = maps.astype(np.float64)
    signal, names = _input_signal(source)
    if signal is not None:
        axis = layer_time_axis(probe, signal.shape[1], maps.shape[1])
    else:  # nothing to align with: the layer's own steps are the time axis
        axis = ratio_time_axis(maps.shape[1], maps.shape[1])
    if maps.size == 0:
        return {"files": {}, "shown_channels": [], "view": "series", "empty": True,
                "time_axis": axis.to_json()}
    channels = tiles.strongest_channels(maps, options.max_channels)
    lo, hi = tiles.finite_range(maps)
    if hasattr(options, "scale_kind"):
        kind, cmap = options.scale_kind(lo, hi, getattr(probe, "activation", None))
    else:  # a bare options object: the rule, with its --cmap
        kind = tiles.choose_scale(lo, hi, getattr(probe, "activation", None))
        cmap = options.cmap or tiles.default_cmap(kind == "diverging")
    centred = kind == "diverging"
    sample_rate = (source.preprocess or {}).get("sample_rate")
    image, ranges, layout, lanes = series_image(
        maps,
        channels,
        signal,
        axis,
        cmap=cmap,
        normalize=options.normalize,
        clip=options.clip,
        centred=centred,
        title=f"{probe.index:03d} {probe.name}",
        signal_names=names,
        sample_rate=sample_rate,
    )
    files = {"series": f"{stem}.series.png"}
    save_png(image, Path(folder) / files["series"])
    return {
        "files": files,
        "shown_channels": [int(c) for c in channels],
        "cmap": cmap,
        "scale": {"kind": kind, "normalize": options.normalize,
                  "lo": lo if options.normalize == "layer" else None,
                  "hi": hi if options.normalize == "layer" else None},
        "view": "series",
        "ranges": [[float(lo), float(hi)] for lo, hi in ranges],
        "time_axis": axis.to_json(),
        "input_channels_shown": lanes,
        "series_layout": layout,
    }


def _input_signal(source: PreparedInput) -> tuple[np.ndarray | None, list[str] | None]:
    """The input as [C, L] float64 and its channel names (None when it is not a series)."""
    if source.signal is None:
        return None, None
    record = source.preprocess or {}
    signal = np.asarray(source.signal, dtype=np.float64)
    if signal.ndim == 1:
        signal = signal[np.newaxis]
    if signal.ndim != 2 or signal.size == 0:
        return None, None
    names = record.get("channel_names")
    if names is None:
        names = [f"in {c}" for c in record.get("channels_used", range(signal.shape[0]))]
    return signal, [str(n) for n in names]


def _finite_min(maps: np.ndarray) -> float:
    finite = np.isfinite(maps)
    if not finite.any():
        return 0.0
    return float(maps.min()) if finite.all() else float(maps[finite].min())


_font = tiles._font


@functools.lru_cache(maxsize=32)
def _palette(cmap: str) -> list[int]:
    """The grid's palette of ``cmap`` with this view's own special colours."""
    table = np.asarray(tiles._palette(tiles.colormap_lut(cmap)), dtype=np.uint8).reshape(256, 3)
    for index, rgb in _COLOURS.items():
        table[index] = rgb
    return table.ravel().tolist()


def plot_width(length: int) -> int:
    """Pixels for ``length`` input samples: whole-pixel upscale to >= MIN_PLOT, at most MAX_PLOT."""
    if length <= 0:
        return MIN_PLOT
    if length < MIN_PLOT:
        return length * math.ceil(MIN_PLOT / length)
    return min(length, MAX_PLOT)


def _column_edges(length: int, width: int) -> np.ndarray:
    """Sample coordinates of the ``width + 1`` pixel column edges (sample i sits at i)."""
    return np.arange(width + 1, dtype=np.float64) * (length / width) - 0.5


def _ranges(shown: np.ndarray, normalize: str, clip: float | None, centred: bool) -> np.ndarray:
    """lo, hi per shown channel from the full-resolution values (finite only): the grid's rule."""
    cube = shown[:, np.newaxis, :]
    finite = np.isfinite(cube)
    return tiles.value_ranges(cube, finite, bool(finite.all()), normalize, clip, centred)


def _strip_columns(
    shown: np.ndarray, axis: TimeAxis, length_in: int, width: int, signed: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Display values [n, width] of the layer rows and a mask of columns the layer covers."""
    n, length_out = shown.shape
    edges = _column_edges(length_in, width)
    bounds = np.ceil((edges - axis.offset) / axis.stride - 1e-9)
    bounds = np.clip(bounds, 0, length_out).astype(np.intp)
    start, stop = bounds[:-1], bounds[1:]
    full = stop > start
    mid = (edges[:-1] + edges[1:]) / 2
    nearest = np.rint((mid - axis.offset) / axis.stride).astype(np.int64)
    # A column with no output centred inside it shows the nearest output, if that output's
    # own span [centre - stride/2, centre + stride/2] reaches the column.
    # own span [centre - stride/2, centre + stride/2], widened by half a sample (samples are
    # whole: the edge sample an output half-owns is drawn with it), reaches the column.
    pick = np.clip(nearest, 0, max(length_out - 1, 0))
    reach = np.abs(mid - axis.centre(pick)) <= axis.stride / 2 + 0.5 + (edges[1] - edges[0]) / 2
    covered = full | reach
    out = np.zeros((n, width), dtype=np.float64)
    out[:, ~full] = shown[:, pick[~full]]
    if full.any():
        starts = start[full]
        values = shown[:, : stop[full][-1]]
        high = np.maximum.reduceat(values, starts, axis=1)
        if signed:
            low = np.minimum.reduceat(values, starts, axis=1)
            high = np.where(np.abs(low) > np.abs(high), low, high)
        out[:, full] = high
    return out, covered


def _quantise(values: np.ndarray, ranges: np.ndarray, centred: bool) -> np.ndarray:
    """Palette levels of the display columns [n, width]: the grid's quantisation."""
    cube = values[:, np.newaxis, :]
    finite = np.isfinite(cube)
    return tiles.quantise(cube, finite, bool(finite.all()), ranges, centred)[:, 0, :]


def _lane_pixels(x: np.ndarray, width: int, height: int, lo: float, hi: float) -> np.ndarray:
    """Boolean [height, width] mask of one signal's min..max envelope line."""
    length = x.shape[0]
    edges = _column_edges(length, width)
    if length == 1:
        at_edges = np.full(width + 1, x[0])
    else:
        base = np.clip(np.floor(edges), 0, length - 2).astype(np.intp)
        frac = np.clip(edges - base, 0.0, 1.0)
        at_edges = x[base] * (1 - frac) + x[base + 1] * frac
    col_lo = np.minimum(at_edges[:-1], at_edges[1:])
    col_hi = np.maximum(at_edges[:-1], at_edges[1:])
    bounds = np.clip(np.ceil(edges), 0, length).astype(np.intp)
    full = bounds[1:] > bounds[:-1]
    if full.any():
        starts = bounds[:-1][full]
        values = x[: bounds[1:][full][-1]]
        col_hi[full] = np.maximum(col_hi[full], np.maximum.reduceat(values, starts))
        col_lo[full] = np.minimum(col_lo[full], np.minimum.reduceat(values, starts))
    inner = height - 6
    if hi > lo:
        scale = (inner - 1) / (hi - lo)
        top = 3 + np.floor((hi - col_hi) * scale)
        bottom = 3 + np.ceil((hi - col_lo) * scale)
    else:
        top = bottom = np.full(width, 3 + (inner - 1) // 2)
    rows = np.arange(height)[:, None]
    return (rows >= top[None, :]) & (rows <= np.maximum(bottom, top + 1)[None, :])


def _text(draw, x: float, y_mid: float, text: str, align: str = "left") -> None:
    """Draw ``text`` vertically centred on ``y_mid``; ``x`` is its left, right or centre."""
    font = _font()
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    anchor = {"left": left, "right": right, "centre": (left + right) / 2}[align]
    draw.text((round(x - anchor), round(y_mid - (top + bottom) / 2)), text, fill=tiles.TEXT,
              font=font)


def _fit_text(draw, text: str, width: int) -> str:
    font = _font()
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def _nice_step(span: float, target: int) -> float:
    raw = span / max(target, 1)
    if raw <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if factor * power >= raw:
            return max(1.0, factor * power)
    return max(1.0, 10 * power)


def series_image(
    maps: np.ndarray,
    channels: Iterable[int],
    signal: np.ndarray | None,
    axis: TimeAxis,
    cmap: str = "magma",
    normalize: str = "channel",
    clip: float | None = None,
    centred: bool = False,
    title: str = "",
    signal_names: list[str] | None = None,
    sample_rate: int | None = None,
) -> tuple[Image.Image, np.ndarray, dict, list[int]]:
    """Draw the picture; returns it, the per-row ranges, its geometry and the lanes shown."""
    channels = np.asarray(list(channels), dtype=np.intp)
    shown = maps[channels]
    length_in = axis.input_length if signal is not None else shown.shape[1]
    width = plot_width(length_in)
    ranges = _ranges(shown, normalize, clip, centred)
    data_ranges = _ranges(shown, normalize, None, False)  # the values' own lo, hi (captions)
    values, covered = _strip_columns(shown, axis, length_in, width, signed=centred)
    levels = _quantise(values, ranges, centred)
    levels[:, ~covered] = LIGHT

    n = len(channels)
    row = int(np.clip(STRIP_TARGET // max(n, 1), 2, 18))
    gap = 1 if row >= 6 else 0
    lanes = list(range(min(signal.shape[0], MAX_LANES))) if signal is not None else []
    lane_height = 44 if len(lanes) <= 3 else 32 if len(lanes) <= 8 else 22
    lanes_top = TITLE_HEIGHT + 2
    lanes_bottom = lanes_top + len(lanes) * (lane_height + 2)
    strip_top = lanes_bottom + (8 if lanes else 0)
    strip_height = n * (row + gap) - gap
    axis_top = strip_top + strip_height + 2
    height = max(axis_top + AXIS_HEIGHT, strip_top + max(strip_height, 100) + 58)
    total_width = LEFT + width + PANEL_WIDTH
    canvas = np.full((height, total_width), tiles.PANEL, dtype=np.uint8)

    # the strip
    pitch = row + gap
    body = np.full((n, pitch, width), tiles.PANEL, dtype=np.uint8)
    body[:, :row, :] = levels[:, None, :]
    canvas[strip_top : strip_top + strip_height, LEFT : LEFT + width] = body.reshape(
        n * pitch, width
    )[:strip_height]

    # the lanes
    lane_ranges = []
    for k in lanes:
        assert signal is not None  # lanes exist only for a signal
        top = lanes_top + k * (lane_height + 2)
        x = signal[k]
        finite = np.isfinite(x)
        lo = float(x[finite].min()) if finite.any() else 0.0
        hi = float(x[finite].max()) if finite.any() else 0.0
        lane_ranges.append((lo, hi))
        area = canvas[top : top + lane_height, LEFT : LEFT + width]
        area[[0, -1], :] = LIGHT
        area[:, [0, -1]] = LIGHT
        if lo < 0 < hi:
            zero = 3 + round((hi - 0) * (lane_height - 7) / (hi - lo))
            area[zero, 1:-1] = LIGHT
        mask = _lane_pixels(np.where(finite, x, 0.0), width, lane_height, lo, hi)
        area[mask] = LINE

    # the colour bar, beside the strip
    bar_x = LEFT + width + 10
    bar_top = strip_top
    bar_h = max(strip_height, 100)
    ramp = np.rint(np.linspace(tiles.LEVELS - 1, 0, bar_h)).astype(np.uint8)
    canvas[bar_top : bar_top + bar_h, bar_x : bar_x + BAR_WIDTH] = ramp[:, None]

    # the time axis
    xs_per_sample = width / max(length_in, 1)
    canvas[axis_top, LEFT : LEFT + width] = tiles.TEXT
    step = _nice_step(length_in, max(2, width // 90))
    ticks = np.arange(0, length_in, step)
    tick_x = LEFT + np.minimum(((ticks + 0.5) * xs_per_sample).astype(int), width - 1)
    for x in tick_x:
        canvas[axis_top : axis_top + 4, x] = tiles.TEXT

    image = Image.fromarray(canvas)
    image.putpalette(_palette(cmap))
    draw = ImageDraw.Draw(image)
    draw.fontmode = "1"  # no anti-aliasing: it would invent palette indices
    frame = (bar_x - 1, bar_top - 1, bar_x + BAR_WIDTH, bar_top + bar_h)
    draw.rectangle(frame, outline=tiles.TEXT)

    shown_text = f", {n} strongest shown" if n < maps.shape[0] else ""
    header = (
        f"{title}   [{maps.shape[0]} ch x {maps.shape[1]}{shown_text}]   one step = "
        f"{_clean(axis.stride)} input samples, first at {_clean(axis.offset)}"
    )
    _text(draw, 4, TITLE_HEIGHT / 2 + 1, _fit_text(draw, header, total_width - 8))
    for k, (lo, hi) in zip(lanes, lane_ranges, strict=True):
        top = lanes_top + k * (lane_height + 2)
        name = signal_names[k] if signal_names and k < len(signal_names) else f"in {k}"
        if lane_height >= 30:
            _text(draw, LEFT - 4, top + lane_height / 2 - 6, _fit_text(draw, name, LEFT - 8),
                  "right")
            peak = max(abs(lo), abs(hi))
            _text(draw, LEFT - 4, top + lane_height / 2 + 6,
                  _fit_text(draw, f"±{peak:.3g}", LEFT - 8), "right")
        else:
            _text(draw, LEFT - 4, top + lane_height / 2, _fit_text(draw, name, LEFT - 8), "right")
    if signal is not None and signal.shape[0] > len(lanes):
        _text(draw, LEFT + 4, lanes_bottom + 3, f"(+{signal.shape[0] - len(lanes)} more inputs)")
    every = max(1, math.ceil(TEXT_HEIGHT / pitch))
    for i in range(0, n, every):
        _text(draw, LEFT - 4, strip_top + i * pitch + row / 2, f"ch {channels[i]}", "right")

    label_x = bar_x + BAR_WIDTH + 5
    bar_bottom = bar_top + bar_h - 1
    if normalize == "layer":
        lo, hi = (float(v) for v in ranges[0])
        labels: list[tuple[float, str]] = [(bar_top, f"{hi:.3g}"), (bar_bottom, f"{lo:.3g}")]
        if centred:
            labels.append(((bar_top + bar_bottom) / 2, "0"))
    else:
        labels = (
            [(bar_top, "+max"), ((bar_top + bar_bottom) / 2, "0"), (bar_bottom, "-max")]
            if centred
            else [(bar_top, "max"), (bar_bottom, "min")]
        )
    for y, text in labels:
        draw.line((bar_x + BAR_WIDTH, round(y), bar_x + BAR_WIDTH + 3, round(y)), fill=tiles.TEXT)
        _text(draw, label_x, y, text)
    below = bar_bottom + 16
    overall = (float(data_ranges[:, 0].min()), float(data_ranges[:, 1].max())) if n else (0, 0)
    if normalize == "layer" and centred:
        _text(draw, bar_x - 6, below, "data")
        _text(draw, bar_x - 6, below + 12, f"lo {overall[0]:.3g}")
        _text(draw, bar_x - 6, below + 24, f"hi {overall[1]:.3g}")
    if normalize != "layer":
        _text(draw, bar_x - 6, below, "per channel")
        _text(draw, bar_x - 6, below + 12, f"lo {overall[0]:.3g}")
        _text(draw, bar_x - 6, below + 24, f"hi {overall[1]:.3g}")
    for t, x in zip(ticks, tick_x, strict=True):
        _text(draw, x, axis_top + 11, f"{int(t)}", "centre")
    unit = f"time: input samples @ {sample_rate} Hz" if sample_rate else "time: input samples"
    _text(draw, LEFT + width, axis_top + 23, unit, "right")

    layout = {
        "width": total_width,
        "height": height,
        "plot_x": LEFT,
        "plot_width": width,
        "lanes_top": lanes_top,
        "lane_height": lane_height,
        "lane_gap": 2,
        "strip_top": strip_top,
        "row_height": row,
        "row_gap": gap,
        "samples_per_pixel": round(length_in / width, 6),
    }
    return image, ranges, layout, lanes
