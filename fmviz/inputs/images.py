"""Images: decode safely, orient, convert, resize and scale as the model expects."""

from __future__ import annotations

import contextlib
import re
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, OptionError
from ..graph import ModelInput
from ..text import format_shape

OVERLAY_MAX_SIDE = 2048
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# value = x * scale + offset, with x the 0..255 pixel value
PRESET_AFFINE = {
    "unit": (1 / 255, 0.0),
    "imagenet": (1 / 255, 0.0),
    "signed": (2 / 255, -1.0),
    "raw": (1.0, 0.0),
}


def image_layout(target: ModelInput, override: str | None = None) -> str:
    """NCHW or NHWC: ``override`` if given, else read from where a 1/3/4 channel dim sits."""
    if override:
        return override.upper()
    shape = target.shape or ()
    if len(shape) == 4:
        first, last = shape[1], shape[3]
        if last in (1, 3, 4) and first not in (1, 3, 4):
            return "NHWC"
    return "NCHW"


def open_picture(path: Path, max_pixels: int | None = None):
    """Decode the first frame of an image with EXIF orientation applied.

    Decompression bombs (more pixels than ``max_pixels``, default Pillow's limit) are refused
    before any pixel is decoded. Returns the image and a record of what was found.
    """
    from PIL import Image

    from .safe import open_regular

    limit = max_pixels if max_pixels is not None else Image.MAX_IMAGE_PIXELS
    handle = open_regular(path)  # a FIFO or device named x.png is refused, never waited on
    try:
        return _open_picture(path, handle, limit, max_pixels)
    finally:
        handle.close()


def _open_picture(path: Path, handle, limit, max_pixels):
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with warnings.catch_warnings(), _pillow_limit(max_pixels):
            # The limit (--max-pixels, else Pillow's warning threshold) is checked just below,
            # with a message that gives the size; Pillow's own warning would only repeat it.
            # Its other warnings (corrupt metadata, skipped tags) would be noise on stderr.
            warnings.simplefilter("ignore")
            if path.stat().st_size == 0:
                raise InputError(f"{path}: empty file, not an image")
            image = Image.open(handle)
            width, height = image.size
            if limit and width * height > limit:
                raise InputError(
                    f"{path}: {width}x{height} pixels is over the limit of {limit} "
                    "(a decompression bomb?); raise it with --max-pixels"
                )
            frames = getattr(image, "n_frames", 1)
            image.seek(0)
            image.load()
    except InputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Pillow's hard stop (twice its limit) fires while opening: only the count is known.
        found = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{found.group(1)} pixels" if found else "the image"
        raise InputError(
            f"{path}: {size} is over the limit of {limit} (a decompression bomb?); "
            "raise it with --max-pixels"
        ) from exc
    except UnidentifiedImageError as exc:
        raise InputError(f"{path}: not an image Pillow can read") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:  # truncated / corrupt data
        raise InputError(f"{path}: cannot decode image ({exc})") from exc
    except Exception as exc:  # Pillow's decoders also raise struct.error, IndexError, ...
        raise InputError(f"{path}: cannot decode image ({type(exc).__name__}: {exc})") from exc
    record: dict[str, Any] = {"format": image.format, "mode": image.mode, "size": [width, height]}
    if frames > 1:
        record["frames"] = frames
        record["frame"] = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Corrupt EXIF data" and the like
        orientation = _exif_orientation(image)
        oriented: Image.Image = image
        if orientation not in (None, 1):  # exif_transpose copies even when nothing turns
            try:
                oriented = ImageOps.exif_transpose(image)
            except Exception:  # a corrupt EXIF block should not lose the picture itself
                oriented = image
    if orientation not in (None, 1):
        record["exif_orientation"] = orientation
    return oriented, record


_PILLOW_LIMIT_LOCK = threading.Lock()


@contextlib.contextmanager
def _pillow_limit(max_pixels: int | None):
    """Raise Pillow's hard decompression-bomb stop (2x MAX_IMAGE_PIXELS, checked when a file is
    opened) to ``max_pixels`` for the duration, so a larger --max-pixels really lets an image in.
    """
    from PIL import Image

    current = Image.MAX_IMAGE_PIXELS
    if max_pixels is None or current is None or max_pixels <= current:
        yield
        return
    with _PILLOW_LIMIT_LOCK:
        Image.MAX_IMAGE_PIXELS = max_pixels
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = current


def _exif_orientation(image) -> int | None:
    """The EXIF Orientation (1..8), or None when absent or not a SHORT in range (a RATIONAL or
    UNDEFINED value written by a broken tool is ignored: the picture is used as stored)."""
    try:
        value = image.getexif().get(0x0112)
    except Exception:
        return None
    if type(value) is not int or not 1 <= value <= 8:
        return None
    return value


def picture_array(
    image, channels: int, size: tuple[int, int] | None = None
) -> tuple[np.ndarray, dict]:
    """Pixels as float32 [H, W, channels] on the 0..255 scale, from any Pillow mode, resized
    (bilinear) to ``size`` = (width, height) when given.

    8-bit pictures are resized by Pillow on their 8-bit data, as image pipelines (and the
    training scripts in models/) do; 16-bit and float pictures are resized in float so no
    precision is lost. 16-bit images ("I;16" modes) are always scaled down to 0..255
    (x / 257), however dark; 32-bit integer images ("I") only when their values exceed 255.
    """
    values, record = picture_pixels(image, channels, size)
    return values.astype(np.float32, copy=False), record


def picture_pixels(
    image, channels: int, size: tuple[int, int] | None = None
) -> tuple[np.ndarray, dict]:
    """:func:`picture_array` without the float copy of 8-bit pictures: uint8 [H, W, channels]
    for 8-bit modes (the same values), float32 for 16-bit, 32-bit and float modes."""
    mode = image.mode
    record: dict = {}
    if size == image.size:
        size = None
    if mode.startswith("I;16") or mode == "I" or mode == "F":
        values = np.asarray(image, dtype=np.float32)
        if _is_16_bit(mode, values):
            values = values / 257.0
            record["bit_depth"] = 16
        values = values[..., np.newaxis]
        if size is not None:
            values = _resize(values, size)
            record.update(resized_to=list(size), resample="bilinear", resample_on="float")
        if channels == 3:
            values = np.repeat(values, 3, axis=2)
        elif channels == 4:
            alpha = np.full(values.shape[:2] + (1,), 255.0, dtype=np.float32)
            values = np.concatenate([np.repeat(values, 3, axis=2), alpha], axis=2)
        return values, record
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    target_mode = {1: "L", 3: "RGB", 4: "RGBA"}[channels]
    if image.mode != target_mode:
        record["converted"] = f"{image.mode}->{target_mode}"
        image = image.convert(target_mode)
    if size is not None:
        from PIL import Image

        image = image.resize(size, Image.Resampling.BILINEAR)
        record.update(resized_to=list(size), resample="bilinear", resample_on="8-bit")
    values = np.asarray(image)
    if values.ndim == 2:
        values = values[..., np.newaxis]
    return values, record


def _is_16_bit(mode: str, values: np.ndarray) -> bool:
    if mode.startswith("I;16"):
        return True
    return mode == "I" and bool(values.size) and float(values.max()) > 255


def _resize(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize (Pillow's filter) of float [H, W, C] to ``size`` = (width, height)."""
    from PIL import Image

    if values.shape[1] == size[0] and values.shape[0] == size[1]:
        return values
    planes = [
        np.asarray(
            Image.fromarray(values[..., c], mode="F").resize(size, Image.Resampling.BILINEAR)
        )
        for c in range(values.shape[2])
    ]
    return np.stack(planes, axis=2)


_REDUCIBLE_MODES = ("L", "LA", "RGB", "RGBA", "CMYK", "I", "F")


def _reduce_large(picture, model_h, model_w, size, record: dict):
    """Shrink a picture far larger than the model's size by an integer factor first.

    ``Image.reduce(k)`` (the mean of each k x k block, on the decoded 8-bit data) keeps at least
    two source pixels per output pixel for the bilinear resize that follows and the long side at
    least OVERLAY_MAX_SIDE for the overlay, so only very large pictures are touched: a
    100-megapixel photo then becomes float at a sixteenth of its size (a few hundred MB in
    all, not several GB). Recorded as ``reduced_by``. Only where the target size does not
    depend on the picture's own size (static model dims or --size).
    """
    width, height = picture.size
    (target_w, target_h), rule = _target_size(model_h, model_w, height, width, size)
    if rule not in ("model", "--size", "model+--size") or picture.mode not in _REDUCIBLE_MODES:
        return picture
    factor = min(
        width // (2 * target_w), height // (2 * target_h), max(width, height) // OVERLAY_MAX_SIDE
    )
    if factor < 2:
        return picture
    record["reduced_by"] = factor
    return picture.reduce(factor)


def _target_size(model_h, model_w, height: int, width: int, size) -> tuple[tuple[int, int], str]:
    """(width, height) to resize to, and the rule that chose it.

    Static model dims always win (the model accepts nothing else); a dynamic one comes from
    ``--size``, else, beside a static one (OCR models: [N, C, 32, W]), from the picture's aspect
    ratio, else the picture keeps its size.
    """
    static_h = model_h if isinstance(model_h, int) and model_h > 0 else None
    static_w = model_w if isinstance(model_w, int) and model_w > 0 else None
    if static_h and static_w:
        return (static_w, static_h), "model"
    if size is not None:
        rule = "--size" if not (static_h or static_w) else "model+--size"
        return (static_w or size[0], static_h or size[1]), rule
    if static_h:
        return (max(1, round(width * static_h / height)), static_h), "model+aspect"
    if static_w:
        return (static_w, max(1, round(height * static_w / width))), "model+aspect"
    return (width, height), "none"


def _per_channel(values: tuple[float, ...] | None, channels: int, what: str) -> np.ndarray | None:
    if values is None:
        return None
    if len(values) == 1:
        return np.full(channels, values[0], dtype=np.float64)
    if len(values) != channels:
        raise OptionError(
            what, f"has {len(values)} values; the model takes {channels} channels "
            "(give one value or one per channel)"
        )
    return np.asarray(values, dtype=np.float64)


def load_image(path: Path, target: ModelInput, options):

    from . import PreparedInput

    shape = target.shape
    if shape is None or len(shape) != 4:
        raise InputError(
            f"{path}: an image needs a rank-4 model input ([N,C,H,W] or [N,H,W,C]); input "
            f"{target.name!r} has shape {format_shape(shape)} "
            "(feed a .npy tensor instead)"
        )
    layout = image_layout(target, options.layout)
    channel_dim, height_dim, width_dim = (1, 2, 3) if layout == "NCHW" else (3, 1, 2)
    channels = shape[channel_dim] if isinstance(shape[channel_dim], int) else 3
    if channels not in (1, 3, 4):
        raise InputError(
            f"{path}: input {target.name!r} takes {channels} channels in layout {layout}; "
            "images give 1, 3 or 4 (check --layout, or feed a .npy tensor)"
        )
    picture, record = open_picture(path, options.max_pixels)
    wanted = options.size
    notices = []
    model_h, model_w = shape[height_dim], shape[width_dim]
    if wanted is None and options.model_size is not None and not (
        isinstance(model_h, int) and model_h > 0 and isinstance(model_w, int) and model_w > 0
    ):
        wanted = options.model_size
        notices.append(
            f"size {wanted[0]}x{wanted[1]} from the model's imgsz metadata "
            "(--size overrides)"
        )
    picture = _reduce_large(picture, shape[height_dim], shape[width_dim], wanted, record)
    size, record["resize_rule"] = _target_size(
        shape[height_dim], shape[width_dim], picture.size[1], picture.size[0], wanted
    )
    if wanted is not options.size:
        record["resize_rule"] = record["resize_rule"].replace("--size", "metadata")
    _check_fed_size(path, target, layout, channels, size)
    values, convert_record = picture_pixels(picture, channels, size)
    record.update(convert_record)
    if options.size is not None and record["resize_rule"] == "model":
        notices.append(
            f"--size {options.size[0]}x{options.size[1]} ignored: input {target.name!r} has "
            f"the static size {size[0]}x{size[1]}"
        )

    is_float_model = target.dtype is None or target.dtype.kind == "f"
    preset = options.preset or ("unit" if is_float_model else "raw")
    scale, offset = PRESET_AFFINE[preset]
    mean = _per_channel(options.mean, channels, "mean")
    std = _per_channel(options.std, channels, "std")
    if preset == "imagenet":
        imagenet_mean = np.asarray(IMAGENET_MEAN if channels != 1 else (np.mean(IMAGENET_MEAN),))
        imagenet_std = np.asarray(IMAGENET_STD if channels != 1 else (np.mean(IMAGENET_STD),))
        mean = mean if mean is not None else np.resize(imagenet_mean, channels)
        std = std if std is not None else np.resize(imagenet_std, channels)
    if std is not None and np.any(std == 0):
        raise OptionError("std", "values must not be 0")
    # --mean/--std are in unit scale; carry them into the preset's scale so that
    # value = (x * scale + offset - mean') / std' with mean' = mean*255*scale + offset.
    model_mean = mean * 255 * scale + offset if mean is not None else np.zeros(channels)
    model_std = std * 255 * scale if std is not None else np.ones(channels)
    if options.bgr and channels < 3:
        raise OptionError("bgr", "needs a model with 3 or 4 input channels")
    dtype = target.dtype or np.dtype(np.float32)
    # output channel j holds picture channel sources[j] (--bgr swaps the first three)
    sources = [2 - j if options.bgr and j < 3 else j for j in range(channels)]
    tensor, exact = _normalised(values, layout, dtype, scale, offset, model_mean, model_std,
                                sources)
    if not exact:
        raise InputError(
            f"{path}: input {target.name!r} is {dtype}; preset {preset!r} gives "
            "values that are not exact integers in range (use --preset raw)"
        )
    record.update(
        {
            "channels": channels,
            "layout": layout,
            "preset": preset,
            "scale": scale,
            "offset": offset,
            "mean": [float(m) for m in model_mean],
            "std": [float(s) for s in model_std],
            "formula": "(x * scale + offset - mean) / std, x = pixel value 0..255",
            "bgr": bool(options.bgr),
        }
    )
    batch = shape[0]
    if isinstance(batch, int) and batch > 1:  # a static batch: fill it with copies
        tensor = np.repeat(tensor, batch, axis=0)
        record["batch_copies"] = batch
    return PreparedInput(
        path=path,
        kind="image",
        array=tensor,
        preprocess=record,
        picture=lambda: _overlay_picture(picture),  # made on first use: scans never need it
        notices=notices,
    )


def _check_fed_size(path: Path, target: ModelInput, layout: str, channels: int, size) -> None:
    """Refuse (before resizing) a tensor too large to prepare (in the model's dtype, at least
    four bytes a value: 16-bit and float pictures pass through float32 planes)."""
    from .safe import check_bytes

    first = target.shape[0] if target.shape else None
    batch = first if isinstance(first, int) and first > 0 else 1
    width, height = size
    shape = [batch, channels, height, width] if layout == "NCHW" else [
        batch, height, width, channels]
    itemsize = max(4, (target.dtype or np.dtype(np.float32)).itemsize)
    check_bytes(shape, itemsize, f"{path}: input {target.name!r} fed {shape}")


def _normalised(values: np.ndarray, layout: str, dtype: np.dtype, scale: float, offset: float,
                mean: np.ndarray, std: np.ndarray, sources: list[int]) -> tuple[np.ndarray, bool]:
    """The tensor ``[1, C, H, W]`` (or ``[1, H, W, C]``) in ``dtype``: output channel j is
    ``(x * scale + offset - mean[s]) / std[s]`` of picture channel ``s = sources[j]``, computed
    in float64 and rounded once to ``dtype`` (to an exact integer for integer dtypes).

    8-bit pictures go through a 256-entry table per channel, each entry computed with that
    formula: the same bits as the formula applied to every pixel, with no float64 copy of
    the picture. Other pictures (16-bit, float) are computed one channel plane at a time.
    Also returns False when an integer ``dtype`` gets a value that is not an integer in range.
    """
    height, width, channels = values.shape
    shape = (1, channels, height, width) if layout == "NCHW" else (1, height, width, channels)
    tensor = np.empty(shape, dtype=dtype)
    exact = True
    for j, source in enumerate(sources):
        plane = values[..., source]
        out = tensor[0, j] if layout == "NCHW" else tensor[0, ..., j]
        if values.dtype == np.uint8:
            formula = np.arange(256, dtype=np.float64) * scale + offset
            table, ok = _cast((formula - mean[source]) / std[source], dtype)
            if not ok.all():  # only values that occur count against the picture
                exact = exact and not (~ok)[plane].any()
            np.take(table, plane, out=out, mode="clip")  # uint8 < 256: no check needed
        else:
            formula = plane.astype(np.float64) * scale + offset
            out[...], ok = _cast((formula - mean[source]) / std[source], dtype)
            exact = exact and bool(ok.all())
    return tensor, exact


def _cast(array: np.ndarray, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """``array`` (float64) in ``dtype``, and where that is exact: integer dtypes take the
    nearest integer where it is within 1e-6 (relative 1e-5) and in range."""
    if dtype.kind == "f":
        return array.astype(dtype), np.ones(array.shape, dtype=bool)
    rounded = np.rint(array)
    ok = np.isclose(rounded, array, atol=1e-6)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        ok &= (rounded >= info.min) & (rounded <= info.max)
    return rounded.astype(dtype), ok


def _overlay_picture(picture):
    """The RGB picture overlays are drawn on: the oriented input, long side <= 2048."""
    from PIL import Image

    display = picture if picture.mode in ("RGB", "L") else _display_copy(picture)
    if display.mode != "RGB":
        display = display.convert("RGB")
    if max(display.size) > OVERLAY_MAX_SIDE:
        display = display.copy()
        display.thumbnail((OVERLAY_MAX_SIDE, OVERLAY_MAX_SIDE), Image.Resampling.BILINEAR)
    return display


def _display_copy(picture):
    """An 8-bit RGB view of pictures whose mode PIL cannot show directly (16-bit, float)."""
    from PIL import Image

    if picture.mode.startswith("I") or picture.mode == "F":
        grey = np.asarray(picture, dtype=np.float32)
        if _is_16_bit(picture.mode, grey):
            grey = grey / 257.0
        return Image.fromarray(np.clip(grey, 0, 255).astype(np.uint8), mode="L")
    return picture.convert("RGBA").convert("RGB")
