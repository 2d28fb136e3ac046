"""One layer's pictures: a map, its probe and the input in; files and their description out.

The renderers never read the model: what they need to know about a layer is in its
:class:`~fmviz.probes.Probe`, and what they need of the input (the picture to overlay, the
signal to align with) in the :class:`~fmviz.inputs.PreparedInput`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..inputs import PreparedInput
from ..probes import Probe
from . import tiles
from .png import save_png


@dataclass(frozen=True)
class RenderOptions:
    """How maps become pictures (the CLI's rendering options)."""

    normalize: str = "channel"
    clip: float | None = None
    cmap: str | None = None  # None: magma, or RdBu_r centred on 0 for maps with negatives
    max_channels: int = 256
    alpha: float = 0.5

    def validate(self) -> None:
        """Fail on a bad option before anything runs (the renderers' own checks and messages)."""
        tiles.check_options(self.normalize, self.clip, self.max_channels, self.alpha)
        if self.cmap is not None:
            tiles.colormap_lut(self.cmap)  # unknown names fail now, before any work

    def to_json(self) -> dict:
        return {"normalize": self.normalize, "clip": self.clip, "cmap": self.cmap,
                "max_channels": self.max_channels, "alpha": self.alpha}


def render_layer(
    array: np.ndarray,
    probe: Probe,
    source: PreparedInput,
    folder: Path,
    stem: str,
    options: RenderOptions,
) -> dict:
    """Write one layer's pictures from its map ``array`` ``[N, C, ...]`` (the first batch item
    is drawn); returns the manifest fields describing them."""
    if array.size == 0:  # nothing computed (e.g. a branch that did not run): no picture
        return {"files": {}, "shown_channels": [], "view": "empty"}
    first = np.asarray(array[0]) if array.ndim >= 2 else np.asarray(array).reshape(-1)
    view: dict = {}
    if first.ndim == 2:  # [C, L]: a 1-D convolution
        from .series import render_series

        return render_series(first, probe, source, folder, stem, options)
    normalize = options.normalize
    if first.ndim == 1:  # [N, C] (or rank <= 1): one value per channel, as a one-row strip
        strip = tiles.strongest_channels(first[:, np.newaxis], options.max_channels)
        cell = max(1, min(16, -(-256 // len(strip))))  # display only: cells >= 1 px, row 16 px
        row = np.repeat(first[strip], cell)
        first = np.repeat(row[np.newaxis, np.newaxis, :], 16, axis=1)
        normalize = "layer"  # one tile: its colour bar prints the values
        view = {"view": "strip", "strip_channels": [int(c) for c in strip], "strip_cell": cell}
    elif first.ndim > 3:  # 3-D convolutions [C, D, H, W]: max projection over depth
        first = first.max(axis=tuple(range(1, first.ndim - 2)))
        view["view"] = "max-projection over depth"
    maps = first
    channels = tiles.strongest_channels(maps, options.max_channels)
    has_negative = bool(np.nanmin(np.where(np.isfinite(maps), maps, 0)) < 0) if maps.size else False
    cmap = options.cmap or tiles.default_cmap(has_negative)
    centred = has_negative and tiles.is_diverging(cmap)
    grid = tiles.make_tiles(maps, channels, normalize, options.clip, centred=centred)
    files = {"grid": f"{stem}.grid.png", "heatmap": f"{stem}.heatmap.png"}
    save_png(tiles.grid_image(grid), folder / files["grid"])
    save_png(tiles.heatmap_image(grid, cmap, normalize), folder / files["heatmap"])
    if view.get("view") == "strip":
        channels = view["strip_channels"]
    picture = source.overlay_picture()
    if picture is not None and view.get("view") is None:
        files["overlay"] = f"{stem}.overlay.png"
        save_png(tiles.overlay_image(maps, picture, options.alpha), folder / files["overlay"])
    return {
        "shown_channels": [int(c) for c in channels],
        "files": files,
        "cmap": cmap,
        "grid": grid.layout.to_json(),
        "ranges": [[float(lo), float(hi)] for lo, hi in grid.ranges],
        **view,
    }
