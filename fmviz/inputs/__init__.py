"""Inputs: image, series and tensor files become the arrays a model is fed.

Every loader returns a :class:`PreparedInput` whose ``preprocess`` record says exactly what was
done, so a run can be reproduced from its manifest.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, ModelError, OptionError
from ..graph import ModelInput

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
SERIES_EXTENSIONS = (".csv", ".tsv", ".wav")
TENSOR_EXTENSIONS = (".npy", ".npz")
KIND_BY_EXTENSION = {
    **dict.fromkeys(IMAGE_EXTENSIONS, "image"),
    **dict.fromkeys(SERIES_EXTENSIONS, "series"),
    **dict.fromkeys(TENSOR_EXTENSIONS, "tensor"),
}
PRESETS = ("unit", "imagenet", "signed", "raw")
LAYOUTS = ("NCHW", "NHWC")


@dataclass(frozen=True)
class InputOptions:
    """How to turn input files into tensors (the CLI's input options)."""

    input_name: str | None = None
    layout: str | None = None  # "NCHW" / "NHWC"; None reads it from the model
    size: tuple[int, int] | None = None  # (width, height) for models with dynamic H, W
    # (width, height) the model's metadata asks for (Ultralytics ``imgsz``); --size wins
    model_size: tuple[int, int] | None = None
    preset: str | None = None  # None: "unit" for float inputs, "raw" for integer ones
    mean: tuple[float, ...] | None = None  # unit scale
    std: tuple[float, ...] | None = None  # unit scale
    bgr: bool = False
    length: int | None = None  # series length for models with a dynamic length
    channel: int | None = None  # series column for rank-2 [N, L] models
    max_pixels: int | None = None  # None: Pillow's own decompression-bomb limit
    feeds: tuple[tuple[str, str], ...] = ()  # (NAME, FILE.npy | NUMBER) for other inputs


@dataclass
class PreparedInput:
    """One input file, ready to feed to the model's primary input."""

    path: Path
    kind: str  # "image" | "series" | "tensor"
    array: np.ndarray  # with the batch dimension, in the model input's dtype
    preprocess: dict[str, Any]
    # PIL RGB image for overlays (long side <= 2048), images only; the loader may give a
    # function that makes it, run on first use by overlay_picture() (scans never need it)
    picture: Any = None
    signal: np.ndarray | None = None  # [C, L] as fed, for series strips
    notices: list[str] = field(default_factory=list)

    def overlay_picture(self):
        """The picture overlays are drawn on, or None for inputs that are not images."""
        if callable(self.picture):
            self.picture = self.picture()
        return self.picture


def input_kind(path: str | Path) -> str | None:
    """"image", "series" or "tensor" by file extension, else None."""
    return KIND_BY_EXTENSION.get(Path(path).suffix.lower())


def primary_input(
    inputs: list[ModelInput], name: str | None = None, model_path: str | Path = "the model"
) -> ModelInput:
    """The input fmviz feeds files into: ``name``, else the first float input of rank >= 2.

    Models whose only tensor inputs are integer (uint8 image models) fall back to the first
    input of rank >= 2 of any numeric type.
    """
    if name is not None:
        for item in inputs:
            if item.name == name:
                return item
        names = ", ".join(repr(i.name) for i in inputs) or "none"
        raise OptionError("input_name", f"{name!r}: the model has no such input (inputs: {names})")

    def rank_ok(item: ModelInput) -> bool:
        return item.shape is None or len(item.shape) >= 2

    for item in inputs:
        if item.dtype is not None and item.dtype.kind == "f" and rank_ok(item):
            return item
    for item in inputs:
        if item.dtype is not None and item.dtype.kind in "iub" and rank_ok(item):
            return item
    raise ModelError(
        f"{model_path}: no numeric input of rank >= 2 to feed files to (name one with --input)"
    )


def check_input_path(path: str | Path) -> str:
    """The kind of an input file; an :class:`InputError` if it is missing or of no known kind."""
    from .safe import check_regular

    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not an input file")
    check_regular(path)  # a FIFO or a link to /dev/zero named x.npy is refused, never opened
    kind = input_kind(path)
    if kind is None:
        raise InputError(
            f"{path}: unsupported input type {path.suffix or '(no extension)'!r} "
            f"(images: {' '.join(IMAGE_EXTENSIONS)}; series: {' '.join(SERIES_EXTENSIONS)}; "
            f"tensors: {' '.join(TENSOR_EXTENSIONS)})"
        )
    return kind


def load_input(path: str | Path, target: ModelInput, options: InputOptions) -> PreparedInput:
    """Read one input file and prepare it for ``target``, by its kind."""
    path = Path(path)
    kind = check_input_path(path)
    if kind == "image":
        from .images import load_image

        return load_image(path, target, options)
    if kind == "series":
        from .series import load_series

        return load_series(path, target, options)
    from .tensors import load_tensor_input

    return load_tensor_input(path, target)


def time_axis_of(target: ModelInput, layout: str | None = None) -> int | None:
    """The time axis (from the end) of a series input: -1 for ``[N, C, L]`` and ``[N, L]``,
    -2 for ``[N, L, C]``; None for inputs that are not series (images, other ranks)."""
    if target.shape is None or len(target.shape) not in (2, 3):
        return None
    from .series import series_layout

    try:
        found = series_layout(target, layout, Path(target.name))
    except InputError:
        return None
    return -2 if found == "NLC" else -1


def spatial_axes(target: ModelInput, layout: str | None = None) -> tuple[int, ...] | None:
    """The input's spatial axes (from the end): ``(-2, -1)`` for NCHW images, ``(-3, -2)`` for
    NHWC, the time axis of a series; None for other inputs."""
    if target.shape is not None and len(target.shape) == 4:
        from .images import image_layout

        return (-3, -2) if image_layout(target, layout) == "NHWC" else (-2, -1)
    axis = time_axis_of(target, layout)
    return (axis,) if axis is not None else None


def concrete_shape(shape, known: dict[str, int] | None = None) -> tuple[int, ...]:
    """A declared shape with dynamic dims replaced: by ``known`` symbols, else 1."""
    known = known or {}
    dims = []
    for dim in shape or ():
        if isinstance(dim, int) and dim > 0:
            dims.append(dim)
        elif isinstance(dim, str) and dim in known:
            dims.append(known[dim])
        else:
            dims.append(1)
    return tuple(dims)


_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$|^[+-]?(inf|nan)$", re.IGNORECASE)


def build_feeds(
    inputs: list[ModelInput],
    primary: ModelInput,
    array: np.ndarray,
    options: InputOptions,
    model_path: str | Path = "the model",
) -> tuple[dict[str, np.ndarray], dict[str, dict], list[str]]:
    """Feeds for every model input: ``array`` for the primary one, ``--feed`` values, or zeros.

    Returns the feed dict, a record of each extra feed for the manifest, and one-line notices
    for inputs that got zeros. Symbolic dims shared with the primary input (a batch dim ``N``)
    take the primary array's size.
    """
    by_name = {i.name: i for i in inputs}
    requested = dict(options.feeds)
    for name in requested:
        if name not in by_name:
            names = ", ".join(repr(n) for n in by_name) or "none"
            raise OptionError("feeds", f"{name}: the model has no input {name!r} (inputs: {names})")
        if name == primary.name:
            raise OptionError("feeds", f"{name}: that is the input the file is fed to")
    known = {
        dim: size
        for dim, size in zip(primary.shape or (), array.shape, strict=False)
        if isinstance(dim, str)
    }
    feeds = {primary.name: array}
    record: dict[str, dict] = {}
    notices: list[str] = []
    for item in inputs:
        if item.name == primary.name:
            continue
        if item.dtype is None or item.dtype.kind not in "biuf":
            raise ModelError(
                f"{model_path}: input {item.name!r} has type {item.dtype}; fmviz can only feed "
                "numeric inputs"
            )
        shape = concrete_shape(item.shape, known)
        value = requested.get(item.name)
        if value is None or _NUMBER.match(value.strip()):
            from .safe import check_bytes

            try:  # estimated before np.zeros / np.full allocate anything
                check_bytes(shape, item.dtype.itemsize, f"input {item.name!r} {list(shape)} "
                            f"{item.dtype} ({'zeros' if value is None else '--feed'})")
            except InputError as exc:
                raise ModelError(f"{model_path}: {exc}") from None
        if value is None:
            feeds[item.name] = np.zeros(shape, dtype=item.dtype)
            record[item.name] = {"source": "zeros", "shape": list(shape), "dtype": str(item.dtype)}
            notices.append(
                f"input {item.name!r} {list(shape)} {item.dtype} gets zeros "
                f"(set it with --feed {item.name}=FILE.npy|NUMBER)"
            )
        elif _NUMBER.match(value.strip()):
            number = float(value)
            with np.errstate(invalid="ignore", over="ignore"):  # checked just below
                array = np.full(shape, number, dtype=item.dtype)
            if array.dtype.kind != "f" and float(array.flat[0]) != number:
                raise OptionError(
                    "feeds", f"{item.name}={value}: not exactly representable as {item.dtype}"
                )
            feeds[item.name] = array
            record[item.name] = {
                "source": "number",
                # inf/nan have no JSON number: record them as text ("inf", "-inf", "nan")
                "value": number if np.isfinite(number) else str(number),
                "shape": list(shape),
                "dtype": str(item.dtype),
            }
        else:
            from .tensors import fit_tensor, read_tensor

            file = Path(value)
            array = fit_tensor(read_tensor(file, item), item, file)
            feeds[item.name] = array
            record[item.name] = {
                "source": str(file),
                "shape": list(array.shape),
                "dtype": str(array.dtype),
            }
    return feeds, record, notices
