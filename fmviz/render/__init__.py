"""Arrays to pictures: channel grids, false-colour heatmaps, overlays, series strips, PNG files.

- :mod:`.tiles`: quantising a layer's channels into a tiled palette image, colour maps,
  heatmaps with their colour bar, overlays;
- :mod:`.series`: 1-D layers as a channels x time strip under the input signal;
- :mod:`.layer`: one layer's pictures from ``(map, probe, input)``;
- :mod:`.png`: writing PNG files.
"""

from .png import save_png
from .tiles import (
    LEVELS,
    MIN_TILE,
    NONFINITE,
    PANEL,
    SEPARATOR,
    TEXT,
    GridLayout,
    Tiles,
    check_options,
    colormap_lut,
    default_cmap,
    grid_image,
    heatmap_image,
    is_diverging,
    make_tiles,
    overlay_image,
    strongest_channels,
)

__all__ = [
    "LEVELS",
    "MIN_TILE",
    "NONFINITE",
    "PANEL",
    "SEPARATOR",
    "TEXT",
    "GridLayout",
    "Tiles",
    "check_options",
    "colormap_lut",
    "default_cmap",
    "grid_image",
    "heatmap_image",
    "is_diverging",
    "make_tiles",
    "overlay_image",
    "save_png",
    "strongest_channels",
]
