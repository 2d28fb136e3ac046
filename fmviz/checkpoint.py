"""Checkpoints of long scans: the merged statistics over the first inputs, and a way back in.

A checkpoint is an ``.npz`` (never unpickled) holding a JSON header (what scan it belongs to:
the model's sha256, stage, tensors, eps, input options, a digest of the inputs covered) and
each layer's :class:`~fmviz.stats.ChannelStats` arrays. The same scan started again with the
same checkpoint resumes after the inputs it covers.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import __version__
from .errors import FmvizError, InputError
from .io import atomic_write_with, ensure_dir
from .stats import ChannelStats

if TYPE_CHECKING:  # pragma: no cover
    from .model import Model
    from .scan import ScanOptions, ScanPartial

CHECKPOINT_SCHEMA = "fmviz/dead-filters-checkpoint/1"


def save_checkpoint(path: Path, header: dict, paths: Sequence[Path], done: int,
                    partial: ScanPartial) -> None:
    """Write ``partial`` (the statistics over ``paths[:done]``) to ``path`` atomically."""
    ensure_dir(path.parent if str(path.parent) else Path("."))
    header = dict(header)
    header.update(done=done, inputs_sha256=paths_digest(paths[:done]))
    write_partial(path, header, partial)


def write_partial(path: Path, header: dict, partial: ScanPartial) -> None:
    """``partial`` and ``header`` (plus its counts) as a checkpoint file, atomically: an .npz
    of a JSON header and each layer's ChannelStats arrays (both engines' checkpoints)."""
    header = dict(
        header,
        inputs_scanned=partial.inputs_scanned,
        samples=partial.samples,
        skipped=[dict(item) for item in partial.skipped],
        layers_present=[s is not None for s in partial.stats],
    )
    arrays: dict[str, np.ndarray] = {
        "header": np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)
    }
    for position, stats in enumerate(partial.stats):
        if stats is not None:
            arrays.update(stats.to_arrays(prefix=f"layer{position}_"))
    atomic_write_with(path, lambda handle: np.savez(handle, **arrays))  # type: ignore[arg-type]


def read_partial(
    path: Path, schema: str, layers: int, bad: Callable[[str], FmvizError], done_field: str
) -> tuple[dict, ScanPartial]:
    """The header and partial of a checkpoint written by :func:`write_partial` (never
    unpickling), its fields' types and counts checked before anything is used; ``bad(reason)``
    makes the error. ``done_field`` is the header field that counts the inputs covered."""
    from .inputs.safe import check_regular
    from .scan import ScanPartial

    check_regular(path)  # a FIFO named scan.npz is refused, never waited on
    try:
        with np.load(path, allow_pickle=False) as archive:
            header = json.loads(bytes(archive["header"]).decode("utf-8"))
            if not isinstance(header, dict) or header.get("schema") != schema:
                raise bad("not a checkpoint of this kind of scan")
            wrong = _checkpoint_header_problem(header, done_field)
            if wrong is not None:  # checked before anything is used (or saved over it)
                raise bad(f"not a valid fmviz checkpoint ({wrong})")
            present = header["layers_present"]
            if len(present) != layers:
                raise bad(f"holds {len(present)} layers, this scan has {layers}")
            stats = [ChannelStats.from_arrays(archive, header["eps"], prefix=f"layer{i}_")
                     if here else None for i, here in enumerate(present)]
    except FmvizError:
        raise
    except (OSError, ValueError, KeyError, EOFError, TypeError, zipfile.BadZipFile,
            UnicodeDecodeError) as exc:
        raise bad(f"not a readable fmviz checkpoint ({exc})") from exc
    return header, ScanPartial(stats=stats, inputs_scanned=header["inputs_scanned"],
                               samples=header["samples"], skipped=list(header["skipped"]))


def _options_record(options: ScanOptions) -> dict:
    record = asdict(options.inputs)
    return json.loads(json.dumps(record))  # tuples -> lists, as they come back from JSON


def checkpoint_header(model: Model, options: ScanOptions, tensors: list[str]) -> dict:
    return {
        "schema": CHECKPOINT_SCHEMA,
        "fmviz": __version__,
        "model_sha256": model.graph.sha256,
        "stage": options.stage,
        "tensors": tensors,
        "eps": options.eps,
        "options": _options_record(options),
    }


def paths_digest(paths: Sequence[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(os.path.normpath(str(path)).encode("utf-8", "surrogateescape") + b"\n")
    return digest.hexdigest()


def load_checkpoint(
    path: Path, expected: dict, paths: list[Path], layers: int
) -> tuple[int, ScanPartial]:
    """Read a checkpoint (never unpickling) and check it belongs to this scan."""
    def bad(reason: str) -> FmvizError:
        return InputError(f"{path}: {reason}; delete it to start over, or use another "
                          "--checkpoint file")

    header, partial = read_partial(path, CHECKPOINT_SCHEMA, layers, bad, "done")
    if header.get("model_sha256") != expected["model_sha256"]:
        raise bad(
            f"made for another model (sha256 {str(header.get('model_sha256'))[:12]}, "
            f"this one {expected['model_sha256'][:12]})"
        )
    for key, label in (("stage", "--stage"), ("tensors", "--layers"), ("eps", "--eps"),
                       ("options", "input options")):
        if header.get(key) != expected[key]:
            raise bad(f"made with other {label} ({_short(header.get(key))} vs "
                      f"{_short(expected[key])})")
    done = int(header.get("done", 0))
    if done > len(paths):
        raise bad(f"covers {done} inputs, more than the {len(paths)} given")
    if header.get("inputs_sha256") != paths_digest(paths[:done]):
        raise bad(f"the first {done} inputs are not the ones it was made from")
    return done, partial


def _checkpoint_header_problem(header: dict, done_field: str = "done") -> str | None:
    """What is wrong with the types of a checkpoint header's fields, or None. ``done_field``:
    ``done`` (inputs covered, local scans) or ``partitions_done`` (partitions, dask scans)."""
    def count(value) -> bool:
        return type(value) is int and value >= 0

    def text(value) -> bool:
        return isinstance(value, str)

    checks = {
        done_field: count if done_field == "done" else (
            lambda v: isinstance(v, list) and all(count(x) for x in v)),
        "inputs_scanned": count,
        "samples": count,
        "inputs_sha256": text,
        "model_sha256": text,
        "layers_present": lambda v: isinstance(v, list) and all(type(x) is bool for x in v),
        "eps": lambda v: type(v) in (int, float),
        "skipped": lambda v: isinstance(v, list) and all(
            isinstance(x, dict) and text(x.get("path")) and text(x.get("error")) for x in v
        ),
    }
    for key, valid in checks.items():
        if key not in header:
            return f"no {key!r} field"
        if not valid(header[key]):
            return f"field {key!r} is {_short(header[key])}"
    if (done_field == "done"
            and header["inputs_scanned"] + len(header["skipped"]) != header["done"]) or (
        header["samples"] < header["inputs_scanned"]
    ):
        return (f"its counts disagree: {header[done_field]} done, {header['inputs_scanned']} "
                f"scanned, {len(header['skipped'])} skipped, {header['samples']} samples")
    return None


def _short(value) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= 60 else text[:57] + "..."
