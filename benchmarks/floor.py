"""The floor `fmviz run` is measured against: the same capture, the same pixels, nothing else.

    python benchmarks/floor.py SPEC.json

SPEC (written by benchmarks/run.py) names a model file that already has the captured tensors as
graph outputs (exposing them is fmviz's work, not the floor's), the picture, the output folder,
the provider, and the palettes as tables (so matplotlib is not imported). The script creates
the onnxruntime session, feeds the picture (RGB, x/255, NCHW; the picture already has the
model's size), and for each captured tensor writes ``NNN.grid.png`` and ``NNN.heatmap.png``
with the same pixels fmviz writes (per-channel min..max, 250 levels, near-square grid with 1-px
separators, magma or RdBu_r centred on 0 when the map has negatives, the colour bar), encoded
by Pillow as palette PNGs at compress_level=1, layers spread over the same thread pool size as
fmviz. No statistics, overlays, manifest, layer analysis or atomic renames: this is the
physical floor (inference + the bytes that must be encoded). With ``"overlay": true`` in the
SPEC it also writes ``NNN.overlay.png`` as fmviz does (energy blended over the picture), to
compare with every file fmviz draws.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image, ImageDraw, ImageFont

LEVELS, SEPARATOR, PANEL, TEXT, NONFINITE = 250, 250, 251, 252, 253
MIN_TILE = 48
SPECIAL = {SEPARATOR: (30, 60, 110), PANEL: (255, 255, 255), TEXT: (0, 0, 0),
           NONFINITE: (255, 0, 255)}
PANEL_WIDTH, PANEL_MIN_HEIGHT = 92, 140
BAR_X, BAR_WIDTH, BAR_TOP, BAR_BOTTOM_MARGIN = 10, 14, 12, 28
CAPTION_LINE = 12
LABEL_X = BAR_X + BAR_WIDTH + 6


def palette(lut) -> list[int]:
    pal = np.zeros((256, 3), dtype=np.uint8)
    pal[:LEVELS] = np.asarray(lut, dtype=np.uint8).reshape(LEVELS, 3)
    for index, rgb in SPECIAL.items():
        pal[index] = rgb
    return pal.ravel().tolist()


def tiles(maps: np.ndarray, centred: bool) -> np.ndarray:
    """[C, H, W] -> uint8 index canvas (all values finite in these benchmarks)."""
    c, h, w = maps.shape
    flat = maps.reshape(c, -1)
    lo = flat.min(axis=1).astype(np.float64)
    hi = flat.max(axis=1).astype(np.float64)
    if centred:
        m = np.maximum(np.abs(lo), np.abs(hi))
        lo, hi = 0.0 - m, m
    span = hi - lo
    flat_tile = span <= 0
    safe = np.where(flat_tile, 1.0, span)
    x = maps.astype(np.float64)
    np.clip(x, lo[:, None, None], hi[:, None, None], out=x)
    x -= lo[:, None, None]
    x /= safe[:, None, None]
    x *= LEVELS - 1
    np.rint(x, out=x)
    levels = x.astype(np.uint8)
    if flat_tile.any():
        zero = int(np.rint((LEVELS - 1) / 2)) if centred else 0
        levels[flat_tile] = np.where(lo == 0, zero, LEVELS // 2)[flat_tile, None, None]
    cols = min(c, max(1, math.ceil(math.sqrt(c * h / w))))
    rows = math.ceil(c / cols)
    cols = math.ceil(c / rows)
    scale = max(1, math.ceil(MIN_TILE / max(h, w)))
    if scale > 1:
        levels = levels.repeat(scale, axis=1).repeat(scale, axis=2)
    th, tw = h * scale, w * scale
    canvas = np.full((rows * (th + 1) + 1, cols * (tw + 1) + 1), SEPARATOR, dtype=np.uint8)
    for k in range(c):
        r, q = divmod(k, cols)
        y, x0 = 1 + r * (th + 1), 1 + q * (tw + 1)
        canvas[y:y + th, x0:x0 + tw] = levels[k]
    return canvas


def text_at(draw, font, x, y_mid, text):
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    draw.text((x - left, round(y_mid - (top + bottom) / 2)), text, fill=TEXT, font=font)


def heatmap(grid: np.ndarray, pal: list[int], centred: bool, span: tuple[float, float]
            ) -> Image.Image:
    grid_h, grid_w = grid.shape
    height = max(grid_h, PANEL_MIN_HEIGHT)
    canvas = np.full((height, grid_w + PANEL_WIDTH), PANEL, dtype=np.uint8)
    canvas[:grid_h, :grid_w] = grid
    margin = BAR_BOTTOM_MARGIN + 2 * CAPTION_LINE  # "per channel", "lo ...", "hi ..."
    bar_x, bar_bottom = grid_w + BAR_X, height - margin
    bar_h = bar_bottom - BAR_TOP
    ramp = np.rint(np.linspace(LEVELS - 1, 0, bar_h)).astype(np.uint8)
    canvas[BAR_TOP:bar_bottom, bar_x:bar_x + BAR_WIDTH] = ramp[:, None]
    image = Image.fromarray(canvas)
    image.putpalette(pal)
    draw = ImageDraw.Draw(image)
    draw.fontmode = "1"
    font = ImageFont.load_default()
    draw.rectangle((bar_x - 1, BAR_TOP - 1, bar_x + BAR_WIDTH, bar_bottom), outline=TEXT)
    top_y, mid_y, bottom_y = BAR_TOP, BAR_TOP + (bar_h - 1) / 2, bar_bottom - 1
    if centred:
        labels = [(top_y, "+max"), (mid_y, "0"), (bottom_y, "-max")]
    else:
        labels = [(top_y, "max"), (bottom_y, "min")]
    captions = ["per channel", f"lo {span[0]:.3g}", f"hi {span[1]:.3g}"]
    for row, caption in enumerate(captions):
        left, _, right, _ = draw.textbbox((0, 0), caption, font=font)
        text_at(draw, font, grid_w + max(2, (PANEL_WIDTH - (right - left)) // 2),
                height - margin + BAR_BOTTOM_MARGIN / 2 + row * CAPTION_LINE, caption)
    for y, text in labels:
        yi = round(y)
        draw.line((bar_x + BAR_WIDTH, yi, bar_x + BAR_WIDTH + 3, yi), fill=TEXT)
        text_at(draw, font, grid_w + LABEL_X, y, text)
    return image


def overlay(maps: np.ndarray, picture: Image.Image, alpha: float, pal: list[int]) -> Image.Image:
    """Energy (mean |a| over channels) / its peak, upsampled bilinearly, blended by Pillow."""
    energy = np.abs(maps).mean(axis=0, dtype=np.float64)
    peak = float(energy.max()) if energy.size else 0.0
    energy = energy / peak if peak > 0 else np.zeros_like(energy)
    e = np.asarray(Image.fromarray(energy.astype(np.float32)).resize(
        picture.size, Image.Resampling.BILINEAR))
    e = np.clip(e, 0.0, 1.0)
    colour = Image.fromarray(np.rint(e * (LEVELS - 1)).astype(np.uint8))
    colour.putpalette(pal)
    mask = Image.fromarray(np.rint(e * (alpha * 255)).astype(np.uint8))
    return Image.composite(colour.convert("RGB"), picture, mask)


def main(spec_path: str) -> int:
    started = time.perf_counter()
    with open(spec_path, encoding="utf-8") as handle:
        spec = json.load(handle)
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    session = ort.InferenceSession(spec["model"], options, providers=spec["providers"])
    picture = Image.open(spec["image"]).convert("RGB")
    x = (np.asarray(picture).astype(np.float64) * (1 / 255)).astype(np.float32)
    x = x.transpose(2, 0, 1)[None]
    names = [t for _, t in spec["tensors"]]
    outputs = dict(zip(names, session.run(names, {spec["input"]: x}), strict=True))
    pal = {name: palette(lut) for name, lut in spec["palettes"].items()}
    out = spec["out"]
    os.makedirs(out, exist_ok=True)

    def one(item):
        stem, tensor = item
        maps = outputs[tensor][0]
        centred = bool(maps.min() < 0)
        grid = tiles(maps, centred)
        image = Image.fromarray(grid)
        image.putpalette(pal["grey"])
        image.save(os.path.join(out, f"{stem}.grid.png"), compress_level=1)
        peak = float(np.abs(maps).max())
        span = (-peak, peak) if centred else (float(maps.min()), float(maps.max()))
        hm = heatmap(grid, pal["RdBu_r" if centred else "magma"], centred, span)
        hm.save(os.path.join(out, f"{stem}.heatmap.png"), compress_level=1)
        if spec.get("overlay"):
            ov = overlay(maps, picture, spec.get("alpha", 0.5), pal["inferno"])
            ov.save(os.path.join(out, f"{stem}.overlay.png"), compress_level=1)

    with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
        list(pool.map(one, spec["tensors"]))
    print(json.dumps({"seconds": time.perf_counter() - started}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
