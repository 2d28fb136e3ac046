"""One layer's pictures: a map, its probe and the input in; files and their description out.

The renderers never read the model: what they need to know about a layer is in its
:class:`~fmviz.probes.Probe`, and what they need of the input (the picture to overlay, the
signal to align with) in the :class:`~fmviz.inputs.PreparedInput`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import OptionError
from ..inputs import PreparedInput
from ..probes import Probe
from . import tiles
from .png import save_png


@dataclass(frozen=True)
class RenderOptions:
    """How maps become pictures (the CLI's rendering options)."""

    normalize: str = "channel"
    clip: float | None = None
    cmap: str | None = None  # None: magma, or RdBu_r for diverging scales (tiles.choose_scale)
    max_channels: int = 256
    alpha: float = 0.5
    center: str | None = None  # None: the rule of tiles.choose_scale; "zero" | "none" force it
    overlay_channel: int | None = None  # overlay this channel instead of the layer's energy

    def validate(self) -> None:
        """Fail on a bad option before anything runs (the renderers' own checks and messages)."""
        tiles.check_options(self.normalize, self.clip, self.max_channels, self.alpha)
        if self.cmap is not None:
            tiles.colormap_lut(self.cmap)  # unknown names fail now, before any work
        if self.center not in (None, "zero", "none"):
            raise OptionError("center", f"{self.center!r} must be 'zero' or 'none'")
        if self.overlay_channel is not None and self.overlay_channel < 0:
            raise OptionError("overlay_channel", f"{self.overlay_channel} must be at least 0")

    def to_json(self) -> dict:
        return {"normalize": self.normalize, "clip": self.clip, "cmap": self.cmap,
                "max_channels": self.max_channels, "alpha": self.alpha, "center": self.center,
                "overlay_channel": self.overlay_channel}

    def scale_kind(self, lo: float, hi: float, activation: str | None) -> tuple[str, str]:
        """``(kind, cmap)`` for values spanning lo..hi: the README's rule (or --center), and the
        colormap (``--cmap``, else magma / RdBu_r). A sequential ``--cmap`` is never centred
        unless ``--center zero`` asks for it."""
        kind = tiles.choose_scale(lo, hi, activation, self.center)
        if self.cmap is not None and self.center is None and not tiles.is_diverging(self.cmap):
            kind = "sequential"
        return kind, self.cmap or tiles.default_cmap(kind == "diverging")


NEAR_1X1 = 2  # maps at most this many positions on each side are drawn as a channel strip


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
    if first.ndim == 2 and first.shape[1] == 1:  # [C, 1]: one step of a 1-D layer
        first = first[:, :, np.newaxis]
    if first.ndim == 2:  # [C, L]: a 1-D convolution
        from .series import render_series

        return render_series(first, probe, source, folder, stem, options)
    if first.ndim == 1:  # [N, C] (or rank <= 1): one value per channel
        first = first[:, np.newaxis, np.newaxis]
    elif first.ndim > 3:  # 3-D convolutions [C, D, H, W]: max projection over depth
        first = first.max(axis=tuple(range(1, first.ndim - 2)))
        view["view"] = "max-projection over depth"
    maps = first
    lo, hi = tiles.finite_range(maps)
    kind, cmap = options.scale_kind(lo, hi, probe.activation)
    centred = kind == "diverging"
    files = {"grid": f"{stem}.grid.png", "heatmap": f"{stem}.heatmap.png"}
    if max(maps.shape[1:]) <= NEAR_1X1:
        # 1x1 and near-1x1 maps: every channel as one strip of cells on one layer-wide scale
        grid = tiles.strip_tiles(maps, centred, options.clip)
        normalize = "layer"
        view = {"view": "strip", "strip_origin": list(tiles.STRIP_ORIGIN)}
        channels = np.arange(maps.shape[0])
    else:
        normalize = options.normalize
        channels = tiles.strongest_channels(maps, options.max_channels)
        if len(channels) == 1:
            normalize = "layer"  # one tile: its own range is the layer's, printed in numbers
        grid = tiles.make_tiles(maps, channels, normalize, options.clip, centred=centred)
    # channel numbers on both pictures, each inside its tile's top-left label box (recorded as
    # grid.label_box): every other pixel of the grid keeps its true value
    if view.get("view") != "strip":
        view["labels"] = tiles.label_tiles(grid)
    save_png(tiles.grid_image(grid), folder / files["grid"])
    save_png(tiles.heatmap_image(grid, cmap, normalize), folder / files["heatmap"])
    fields: dict = {}
    picture = source.overlay_picture()
    if picture is not None and view.get("view") is None:
        files["overlay"] = f"{stem}.overlay.png"
        channel = options.overlay_channel
        if channel is not None and channel >= maps.shape[0]:
            channel = None  # the layer has no such channel: its energy instead
        overlay, o_lo, o_hi = tiles.overlay_with_range(maps, picture, options.alpha,
                                                       channel=channel)
        save_png(overlay, folder / files["overlay"])
        fields["overlay"] = {"shows": "energy" if channel is None else "channel",
                             "channel": channel, "lo": o_lo, "hi": o_hi}
    scale_lo, scale_hi = (lo, hi) if normalize == "layer" else (None, None)
    if normalize == "layer" and options.clip is not None and len(grid.ranges):
        scale_lo, scale_hi = (float(v) for v in grid.ranges[0])
        if centred:
            scale_lo, scale_hi = max(scale_lo, lo), min(scale_hi, hi)
    return {
        "shown_channels": [int(c) for c in channels],
        "files": files,
        "cmap": cmap,
        "scale": {"kind": kind, "normalize": normalize, "lo": scale_lo, "hi": scale_hi},
        "grid": grid.layout.to_json(),
        "ranges": [[float(lo), float(hi)] for lo, hi in grid.ranges],
        **fields,
        **view,
    }
