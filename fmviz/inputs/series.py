"""Time series: CSV/TSV tables and WAV audio become ``[N, C, L]`` (or ``[N, L]``) tensors.

Both readers produce float64 ``[channels, samples]`` plus a record of what the file held; then
:func:`fit_series` picks the channels the model takes and crops or zero-pads to its length.

* CSV/TSV: columns are channels, rows are time. The delimiter follows the extension (``.tsv``:
  tab, else comma). A first row that is not all numbers is a header (its cells name the
  channels). Every later cell must be a finite number; errors name the row and column the way a
  spreadsheet shows them (1-based, header row included).
* WAV: the RIFF chunks are parsed here (the stdlib ``wave`` module of Python 3.11 reads neither
  float nor WAVE_FORMAT_EXTENSIBLE files). PCM 8/16/24/32-bit and IEEE float 32/64-bit, any
  channel count. Integers are scaled to [-1, 1): 8-bit is unsigned, ``(x - 128) / 128``; the
  signed widths are ``x / 2**(bits - 1)``. Floats are taken as they are. Only the data chunk is
  read, and only the samples the model will use.
"""

from __future__ import annotations

import csv
import io
import math
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, OptionError
from ..graph import ModelInput
from ..text import format_shape

MAX_TEXT_BYTES = 32 * 1024 * 1024  # a CSV larger than this is almost surely a mistake
MAX_LINE_BYTES = 1024 * 1024  # one row longer than this is not a row of samples
WAVE_FORMAT_PCM = 0x0001
WAVE_FORMAT_IEEE_FLOAT = 0x0003
WAVE_FORMAT_EXTENSIBLE = 0xFFFE
# The last 14 bytes of the KSDATAFORMAT_SUBTYPE GUIDs are shared; the first two are the tag.
_GUID_TAIL = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
_FORMAT_NAMES = {
    0x0002: "Microsoft ADPCM",
    0x0006: "A-law",
    0x0007: "mu-law",
    0x0011: "IMA ADPCM",
    0x0055: "MP3",
}


# ----------------------------------------------------------------------------- entry point


def load_series(path: Path, target: ModelInput, options):
    """Read a ``.csv``, ``.tsv`` or ``.wav`` file and prepare it for ``target``.

    ``target`` must be ``[N, C, L]`` (``[N, L, C]`` where the model says so, see
    :func:`series_layout`) or ``[N, L]``. Returns a :class:`~fmviz.inputs.PreparedInput` of kind
    ``"series"`` whose ``signal`` is the ``[C, L]`` float array as fed (before the dtype cast).
    """
    from . import PreparedInput

    path = Path(path)
    layout = series_layout(target, getattr(options, "layout", None), path)
    suffix = path.suffix.lower()
    if suffix == ".wav":
        data, record = read_wav(path, max_frames=_frames_needed(target, layout, options))
    else:
        data, record = read_table(path, delimiter="\t" if suffix == ".tsv" else ",")
    signal, fit_record, notices = fit_series(data, record, target, layout, options, path)
    record.update(fit_record)

    dtype = target.dtype or np.dtype(np.float32)
    if dtype.kind != "f":
        raise InputError(
            f"{path}: input {target.name!r} is {dtype}; series are fed as floating-point values "
            "(feed a .npy tensor instead)"
        )
    tensor = signal[np.newaxis] if layout != "NL" else signal[:1]  # [1, C, L] or [1, L]
    if layout == "NLC":
        tensor = tensor.transpose(0, 2, 1)
    batch = target.shape[0] if target.shape else None
    if isinstance(batch, int) and batch > 1:  # a static batch: fill it with copies
        tensor = np.repeat(tensor, batch, axis=0)
        record["batch_copies"] = batch
    with np.errstate(over="ignore"):
        cast = np.ascontiguousarray(tensor.astype(dtype))
    if not np.isfinite(cast).all():
        raise InputError(f"{path}: values overflow the model's {dtype}")
    return PreparedInput(
        path=path,
        kind="series",
        array=cast,
        preprocess=record,
        signal=np.ascontiguousarray(signal, dtype=np.float32),
        notices=notices,
    )


def series_layout(target: ModelInput, override: str | None, path: Path) -> str:
    """``"NCL"``, ``"NLC"`` or ``"NL"`` for the model input ``target``.

    Rank 2 is raw audio ``[N, L]``. Rank 3 is channels-first unless ``--layout NHWC`` says
    channels-last, or the model itself does: a static last dimension after a dynamic one
    (``[N, T, 6]``) can only be channels-last.
    """
    shape = target.shape
    if shape is None:
        return "NCL"
    if len(shape) == 2:
        return "NL"
    if len(shape) != 3:
        raise InputError(
            f"{path}: a series needs a model input [N, C, L] or [N, L]; input {target.name!r} "
            f"has shape {format_shape(shape)} (feed a .npy tensor instead)"
        )
    if override:
        return "NLC" if override.upper() == "NHWC" else "NCL"
    if not _static(shape[1]) and _static(shape[2]):
        return "NLC"
    return "NCL"


def _static(dim) -> bool:
    return isinstance(dim, int) and dim > 0


def _axes(target: ModelInput, layout: str) -> tuple[Any, Any]:
    """(channel dim, length dim) of the model input as declared (None for rank 2's channel)."""
    shape = target.shape or (None, None, None)
    if layout == "NL":
        return 1, shape[1]
    if layout == "NLC":
        return shape[2], shape[1]
    return shape[1], shape[2]


def _target_length(target: ModelInput, layout: str, options) -> tuple[int | None, str]:
    _, length = _axes(target, layout)
    if _static(length):
        return int(length), "model"
    if options.length is not None:
        return int(options.length), "--length"
    return None, "none"


def _frames_needed(target: ModelInput, layout: str, options) -> int | None:
    length, _ = _target_length(target, layout, options)
    return length


# ----------------------------------------------------------------------------- fitting


def fit_series(
    data: np.ndarray, record: dict, target: ModelInput, layout: str, options, path: Path
) -> tuple[np.ndarray, dict, list[str]]:
    """Pick channels and crop or pad ``data`` [channels, samples] for ``target``.

    Returns the ``[C, L]`` float64 signal, its record and one-line notices.
    """
    notices: list[str] = []
    available = data.shape[0]
    names = record.get("header")
    want, _ = _axes(target, layout)
    channel = options.channel
    if channel is not None and channel >= available:
        raise OptionError(
            "channel", f"{channel}: {path} has {available} channel"
            f"{'s' if available != 1 else ''} (0..{available - 1})"
        )
    dynamic = not _static(want) and layout != "NL"
    if (_static(want) and want > 1) or (dynamic and channel is None):
        if channel is not None:
            raise OptionError(
                "channel", f"{channel}: input {target.name!r} takes {want} channels; --channel "
                "picks the one channel of models that take one"
            )
        if _static(want) and available != want:
            raise InputError(
                f"{path}: has {available} channel{'s' if available != 1 else ''}; input "
                f"{target.name!r} takes {want} (shape {format_shape(target.shape)})"
            )
        used = list(range(available))
    else:  # one channel: [N, L] raw audio, [N, 1, L], or --channel for a dynamic C
        pick = channel if channel is not None else 0
        used = [pick]
        if available > 1 and channel is None:
            notices.append(
                f"{path}: {available} channels; the model takes one, using channel 0 "
                "(choose another with --channel K)"
            )
    signal = data[used]

    original = signal.shape[1]
    length, rule = _target_length(target, layout, options)
    out: dict = {
        "layout": layout,
        "channels_used": used,
        "original_length": int(record.get("frames") or original),
        "length_rule": rule,
    }
    if names is not None:
        out["channel_names"] = [names[i] for i in used]
    total = int(record.get("frames") or original)  # WAV reads may stop early at the model's length
    if options.length is not None and rule == "model":
        notices.append(
            f"{path}: --length {options.length} ignored; input {target.name!r} has the static "
            f"length {length}"
        )
    if length is not None and total != length:
        where = "the model's length" if rule == "model" else "--length"
        if total > length:
            signal = signal[:, :length]
            out["cropped"] = {"from": total, "to": length, "kept": [0, length]}
            notices.append(f"{path}: {total} samples cropped to {where} {length}")
        else:
            from .safe import check_bytes

            check_bytes((signal.shape[0], length), 8,
                        f"{path}: input {target.name!r} fed {signal.shape[0]}x{length} samples")
            pad = length - signal.shape[1]
            signal = np.pad(signal, ((0, 0), (0, pad)))
            out["padded"] = {"from": total, "to": length, "zeros_at_end": pad}
            notices.append(f"{path}: {total} samples zero-padded to {where} {length}")
    if signal.shape[1] == 0:
        raise InputError(f"{path}: no samples to feed")
    out["length"] = int(signal.shape[1])
    return signal, out, notices


# ----------------------------------------------------------------------------- CSV / TSV


def read_table(path: Path, delimiter: str = ",") -> tuple[np.ndarray, dict]:
    """Numbers of a CSV/TSV file as float64 ``[columns, rows]`` and a record of the file."""
    from .safe import open_regular

    with open_regular(path) as handle:  # only a regular file: never /dev/zero or a FIFO
        try:
            size = os.fstat(handle.fileno()).st_size
            if size > MAX_TEXT_BYTES:
                raise InputError(
                    f"{path}: {size} bytes is too large for a table (limit {MAX_TEXT_BYTES}); "
                    "convert it to .npy"
                )
            raw = handle.read(MAX_TEXT_BYTES + 1)  # bounded even if the file grows meanwhile
        except OSError as exc:
            raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if len(raw) > MAX_TEXT_BYTES:
        raise InputError(
            f"{path}: more than {MAX_TEXT_BYTES} bytes is too large for a table; "
            "convert it to .npy"
        )
    _check_line_lengths(raw, path)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{path}: not UTF-8 text (byte {exc.start}); is it really a table?"
        ) from exc
    if "\x00" in text:
        raise InputError(f"{path}: holds NUL bytes; not a text table")

    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    rows: list[list[str]] = []
    lines: list[int] = []  # the file line each row starts on (1-based), for error messages
    try:
        line = 1
        for row in reader:
            if any(cell.strip() for cell in row):
                rows.append(row)
                lines.append(line)
            line = reader.line_num + 1
    except csv.Error as exc:
        raise InputError(f"{path}: row {reader.line_num}: {exc}") from exc
    if not rows:
        raise InputError(f"{path}: empty file, no rows of numbers")

    # A trailing delimiter on every row ("1,2,") is an empty last column, not a channel.
    if all(len(r) > 1 and not r[-1].strip() for r in rows):
        rows = [r[:-1] for r in rows]

    header = None
    if not all(_is_number(cell) for cell in rows[0]):
        header = [cell.strip() for cell in rows[0]]
        rows, lines = rows[1:], lines[1:]
        if not rows:
            raise InputError(f"{path}: has a header row but no rows of numbers")

    width = len(header) if header is not None else len(rows[0])
    for row, line in zip(rows, lines, strict=True):
        if len(row) != width:
            above = "the header has" if header is not None else "the first row has"
            raise InputError(
                f"{path}: row {line} has {len(row)} column{'s' if len(row) != 1 else ''}; "
                f"{above} {width}"
            )
    try:
        values = np.array(rows, dtype=np.float64)
    except ValueError:
        values = None
    if values is None or not np.isfinite(values).all():
        _raise_bad_cell(path, rows, lines)
    assert values is not None  # _raise_bad_cell always raises
    record = {
        "format": "tsv" if delimiter == "\t" else "csv",
        "delimiter": delimiter,
        "header": header,
        "file_channels": width,
        "frames": len(rows),
    }
    return np.ascontiguousarray(values.T), record


def _check_line_lengths(raw: bytes, path: Path) -> None:
    """Refuse a line longer than MAX_LINE_BYTES before the csv module builds it."""
    if len(raw) <= MAX_LINE_BYTES:
        return
    codes = np.frombuffer(raw, dtype=np.uint8)
    ends = np.flatnonzero((codes == 10) | (codes == 13))
    bounds = np.concatenate(([-1], ends, [len(raw)]))
    gaps = np.diff(bounds) - 1
    longest = int(np.argmax(gaps))
    if gaps[longest] > MAX_LINE_BYTES:
        line = int(np.count_nonzero(codes[: bounds[longest] + 1] == 10)) + 1
        raise InputError(
            f"{path}: line {line} is longer than {MAX_LINE_BYTES} bytes; not a table of samples"
        )


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _raise_bad_cell(path: Path, rows: list[list[str]], lines: list[int]) -> None:
    for row, line in zip(rows, lines, strict=True):
        for column, cell in enumerate(row, start=1):
            try:
                value = float(cell)
            except ValueError:
                if not cell.strip():
                    raise InputError(f"{path}: row {line}, column {column}: empty cell") from None
                hint = next(
                    (
                        f" (values seem separated by {name}; fmviz reads .csv as comma- and "
                        ".tsv as tab-separated)"
                        for sep, name in ((";", "';'"), ("\t", "tabs"), (",", "commas"))
                        if sep in cell
                    ),
                    "",
                )
                raise InputError(
                    f"{path}: row {line}, column {column}: {cell.strip()!r} is not a number{hint}"
                ) from None
            if not math.isfinite(value):
                raise InputError(
                    f"{path}: row {line}, column {column}: {cell.strip()!r} is not a finite number"
                )
    raise InputError(f"{path}: cannot read the table as numbers")  # not reached


# ----------------------------------------------------------------------------- WAV


def read_wav(path: Path, max_frames: int | None = None) -> tuple[np.ndarray, dict]:
    """Samples of a WAV file as float64 ``[channels, frames]`` scaled to [-1, 1].

    Only the first ``max_frames`` frames are decoded when given (the record still counts all).
    Any malformed file is an :class:`InputError` that says what is wrong.
    """
    from .safe import open_regular

    handle = open_regular(path)  # only a regular file: never /dev/zero or a FIFO
    with handle:
        file_size = os.fstat(handle.fileno()).st_size
        head = handle.read(12)
        if len(head) < 12:
            raise InputError(f"{path}: too short to be a WAV file ({len(head)} bytes)")
        riff, _, wave_id = struct.unpack("<4sI4s", head)
        if riff == b"RF64":
            raise InputError(f"{path}: RF64 (64-bit WAV) is not supported; convert it to WAV")
        if riff != b"RIFF" or wave_id != b"WAVE":
            raise InputError(f"{path}: not a WAV file (no RIFF/WAVE header)")
        fmt = None
        data_offset = data_size = None
        position = 12
        while position + 8 <= file_size:
            handle.seek(position)
            chunk_id, chunk_size = struct.unpack("<4sI", handle.read(8))
            body = position + 8
            if chunk_id == b"fmt ":
                if chunk_size < 16 or body + chunk_size > file_size:
                    raise InputError(f"{path}: 'fmt ' chunk is truncated ({chunk_size} bytes)")
                fmt = handle.read(min(chunk_size, 64))
            elif chunk_id == b"data":
                data_offset, data_size = body, chunk_size
                break  # samples come last in every WAV we read; trailing chunks do not matter
            position = body + chunk_size + (chunk_size & 1)  # chunks are padded to even sizes
        if fmt is None:
            raise InputError(f"{path}: no 'fmt ' chunk before the samples; not a valid WAV file")
        if data_offset is None or data_size is None:
            raise InputError(f"{path}: no 'data' chunk; the WAV file holds no samples")
        info = _parse_fmt(fmt, path)
        frame_bytes = info["block_align"]
        available = max(0, file_size - data_offset)
        truncated = data_size > available  # also streaming writers' 0xFFFFFFFF placeholder
        usable = min(data_size, available)
        frames = usable // frame_bytes
        read_frames = frames if max_frames is None else min(frames, max_frames)
        handle.seek(data_offset)
        raw = handle.read(read_frames * frame_bytes)
    if frames == 0:
        raise InputError(f"{path}: the WAV file holds no samples")
    data = _decode(raw, info, read_frames)
    if info["kind"] == "float" and not np.isfinite(data).all():
        raise InputError(f"{path}: holds NaN or infinite samples")
    record = {
        "format": "wav",
        "sample_rate": info["sample_rate"],
        "sample_format": info["kind"],
        "sample_bits": info["bits"],
        "format_tag": f"0x{info['tag']:04X}",
        "file_channels": info["channels"],
        "frames": int(frames),
        "duration_s": round(frames / info["sample_rate"], 6) if info["sample_rate"] else None,
        "scale": info["scale_text"],
    }
    if info.get("valid_bits") and info["valid_bits"] != info["bits"]:
        record["valid_bits"] = info["valid_bits"]
    if truncated:
        record["truncated"] = True
    return data, record


def _parse_fmt(fmt: bytes, path: Path) -> dict:
    tag, channels, rate, _, block_align, bits = struct.unpack("<HHIIHH", fmt[:16])
    valid_bits = None
    if tag == WAVE_FORMAT_EXTENSIBLE:
        if len(fmt) < 40:
            raise InputError(f"{path}: WAVE_FORMAT_EXTENSIBLE header is truncated")
        valid_bits = struct.unpack("<H", fmt[18:20])[0] or None
        guid = fmt[24:40]
        if guid[2:] != _GUID_TAIL:
            raise InputError(f"{path}: unknown WAV sub-format {guid.hex()}")
        tag = struct.unpack("<H", guid[:2])[0]
    if channels == 0:
        raise InputError(f"{path}: the WAV header says 0 channels")
    if tag == WAVE_FORMAT_PCM and bits in (8, 16, 24, 32):
        kind = "pcm"
        scale = "(x - 128) / 128" if bits == 8 else f"x / 2**{bits - 1}"
    elif tag == WAVE_FORMAT_IEEE_FLOAT and bits in (32, 64):
        kind = "float"
        scale = "none (float samples as stored)"
    else:
        name = _FORMAT_NAMES.get(tag, f"format 0x{tag:04X}")
        what = f"{bits}-bit PCM" if tag == WAVE_FORMAT_PCM else (
            f"{bits}-bit float" if tag == WAVE_FORMAT_IEEE_FLOAT else name
        )
        raise InputError(
            f"{path}: {what} WAV is not supported (8/16/24/32-bit PCM and 32/64-bit float are)"
        )
    if block_align != channels * bits // 8:
        raise InputError(
            f"{path}: inconsistent WAV header (block align {block_align} for {channels} "
            f"channels of {bits} bits)"
        )
    return {
        "tag": tag,
        "kind": kind,
        "channels": channels,
        "sample_rate": rate,
        "bits": bits,
        "valid_bits": valid_bits,
        "block_align": block_align,
        "scale_text": scale,
    }


def _decode(raw: bytes, info: dict, frames: int) -> np.ndarray:
    channels, bits = info["channels"], info["bits"]
    if info["kind"] == "float":
        stored = np.frombuffer(raw, dtype="<f4" if bits == 32 else "<f8")
        with np.errstate(invalid="ignore"):  # signalling NaNs; read_wav refuses NaN just after
            values = stored.astype(np.float64)
    elif bits == 8:
        values = (np.frombuffer(raw, dtype=np.uint8).astype(np.float64) - 128.0) / 128.0
    elif bits == 24:
        triples = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        ints = triples[:, 0] | (triples[:, 1] << 8) | (triples[:, 2] << 16)
        ints = np.where(ints >= 1 << 23, ints - (1 << 24), ints)  # sign-extend
        values = ints.astype(np.float64) / float(1 << 23)
    else:
        dtype = "<i2" if bits == 16 else "<i4"
        values = np.frombuffer(raw, dtype=dtype).astype(np.float64) / float(1 << (bits - 1))
    return np.ascontiguousarray(values.reshape(frames, channels).T)
