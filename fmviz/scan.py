"""``fmviz dead-filters``: stream many inputs through a model, keep per-channel statistics only.

The flow, for N inputs:

1. :func:`collect_inputs` turns files, folders and ``-`` (paths on stdin) into one ordered list
   of paths (folders searched recursively and sorted, hidden entries skipped), so that a scan
   is deterministic and can resume from a checkpoint by position.
2. A thread pool decodes the inputs ahead of inference (at most two batches ahead), while the
   main thread runs batches through onnxruntime. Inputs are grouped by tensor shape; a group
   runs when it holds a full batch. A model with a fixed batch size gets exactly that many rows
   (a short last batch is padded with copies, which are not counted).
3. The session is the model with reductions added next to each layer
   (:mod:`fmviz.reductions`): each batch returns ``[N, C]`` arrays, merged into one
   :class:`~fmviz.stats.ChannelStats` per layer. Nothing per input is kept, so memory stays flat
   however many inputs there are. A batch whose sums show NaN or infinity is run again with the
   raw maps of the layers concerned and reduced in numpy, where such values are counted.
4. An input that cannot be read, or that the model rejects, is skipped and listed (``strict``
   makes it an error). With a checkpoint file, the merged statistics are saved every
   ``checkpoint_every`` inputs and on Ctrl-C; the same scan started again resumes there.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import zipfile
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TextIO

import numpy as np

from . import __version__
from .crash import named_call
from .errors import FmvizError, InputError, ModelError, OptionError
from .graph import Layer, ModelInput
from .inputs import InputOptions, PreparedInput, build_feeds, input_kind, load_input, primary_input
from .io import atomic_write_with, ensure_dir
from .reductions import NON_NEGATIVE_ACTIVATIONS, ReducedOutputs, Target, reduction_model
from .session import describe_error, open_session
from .stats import ChannelStats

DEFAULT_BATCH = 16
CHECKPOINT_SCHEMA = "fmviz/dead-filters-checkpoint/1"
_QUANTIZED_OPS = frozenset({"QLinearConv", "ConvInteger"})


@dataclass(frozen=True)
class ScanOptions:
    """What to scan and how (the ``dead-filters`` options that shape the statistics)."""

    patterns: tuple[str, ...] = ()
    stage: str = "post"
    inputs: InputOptions = field(default_factory=InputOptions)
    eps: float = 1e-6
    batch_size: int | None = None  # None: 16 for a dynamic batch dim, else the model's
    strict: bool = False
    limit: int | None = None
    workers: int | None = None  # decoding threads; None: min(4, CPU count)
    checkpoint: Path | None = None
    checkpoint_every: int = 64

    def validate(self) -> None:
        if not (self.eps >= 0 and np.isfinite(self.eps)):
            raise OptionError(f"--eps {self.eps}: must be a finite number >= 0")
        if self.batch_size is not None and self.batch_size < 1:
            raise OptionError(f"--batch-size {self.batch_size}: must be at least 1")
        if self.limit is not None and self.limit < 1:
            raise OptionError(f"--limit {self.limit}: must be at least 1")
        if self.checkpoint_every < 1:
            raise OptionError(f"--checkpoint-every {self.checkpoint_every}: must be at least 1")


@dataclass
class ScanResult:
    """The merged statistics of a scan and what it went through."""

    layers: list[Layer]
    stage: str
    eps: float
    stats: list[ChannelStats]
    providers: list[str]
    inputs_scanned: int
    samples: int  # maps merged: an input tensor with a batch of 4 counts 4
    skipped: list[dict]
    batch_size: int
    total: int  # inputs in the (limited) list
    resumed_from: int = 0  # inputs taken from a checkpoint
    notices: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------- inputs


def collect_inputs(items: Sequence[str], stdin: TextIO | None = None) -> list[Path]:
    """Files, folders and ``-`` (newline-separated paths on stdin) as one ordered list.

    Folders are searched recursively for the input kinds fmviz reads, hidden files and folders
    skipped, in sorted order; a path named here that does not exist is an :class:`InputError`
    (raised before anything runs). Paths read from stdin are taken as they are: one that does
    not exist is skipped later like any unreadable input. A file listed twice is scanned once.
    """
    paths: list[Path] = []
    for item in items:
        if item == "-":
            source = stdin if stdin is not None else sys.stdin
            for line in source:
                line = line.strip()
                if not line:
                    continue
                path = Path(line)
                paths.extend(_walk(path) if path.is_dir() else [path])
            continue
        path = Path(item)
        if not path.exists():
            raise InputError(f"{item}: no such file or folder")
        paths.extend(_walk(path) if path.is_dir() else [path])
    unique: dict[str, Path] = {}
    for path in paths:
        unique.setdefault(os.path.normpath(str(path)), path)
    return list(unique.values())


def _walk(folder: Path) -> list[Path]:
    """Input files below ``folder``, sorted, skipping hidden entries and symlink loops."""
    found: list[Path] = []
    seen: set[str] = set()
    for root, dirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith(".") and input_kind(name) is not None:
                found.append(Path(root) / name)
    return sorted(found, key=lambda p: p.relative_to(folder).parts)


# ----------------------------------------------------------------------------- decoding


@dataclass
class _Decoded:
    index: int
    path: Path
    rows: np.ndarray | None = None  # [n, ...] in the model input's dtype
    error: str | None = None
    notices: list[str] = field(default_factory=list)


def _decode(index: int, path: Path, target: ModelInput, options: InputOptions) -> _Decoded:
    """Load one input in a worker thread; user-fixable problems become a skip, not a crash."""
    try:
        prepared = load_input(path, target, options)
    except OptionError:
        raise  # an option that cannot work (--std 0, ...) is the user's, not this file's
    except FmvizError as exc:
        return _Decoded(index, path, error=_without_path(str(exc), path))
    rows = prepared.array
    if prepared.preprocess.get("batch_copies"):  # a fixed batch filled with copies: one is enough
        rows = rows[:1]
    return _Decoded(index, path, rows=np.ascontiguousarray(rows), notices=prepared.notices)


def _without_path(message: str, path: Path) -> str:
    prefix = f"{path}: "
    return message[len(prefix):] if message.startswith(prefix) else message


# ----------------------------------------------------------------------------- running batches


class _Rejected(Exception):
    """onnxruntime refused a batch (a shape or type the model cannot take)."""


class _Runner:
    """Runs batches through the reduction session; returns per-layer ``[n, C]`` reductions."""

    def __init__(self, model, layers: list[Layer], stage: str, eps: float, target: ModelInput,
                 options: InputOptions, batch_size: int, fixed_batch: bool,
                 notice: Callable[[str], None]):
        self.model = model
        self.layers = layers
        self.stage = stage
        self.eps = eps
        self.target = target
        self.options = options
        self.batch_size = batch_size
        self.fixed_batch = fixed_batch
        targets = [
            Target(
                tensor=layer.tensor(stage),
                non_negative=layer.activation_at(stage) in NON_NEGATIVE_ACTIVATIONS,
                quantized=layer.op in _QUANTIZED_OPS and layer.tensor(stage) == layer.pre_tensor,
            )
            for layer in layers
        ]
        data, outputs = reduction_model(model.graph.proto, targets, eps)
        self.outputs: dict[str, ReducedOutputs] = {o.tensor: o for o in outputs}
        self.names = [name for o in outputs for name in o.names()]
        self.session = open_session(data, model.providers, model.threads, source=str(model.path))
        del data
        self._feeds: dict[tuple, dict[str, np.ndarray]] = {}
        self.notice = notice  # the scanner's: says each notice once

    @property
    def providers(self) -> list[str]:
        return self.session.providers

    def feeds(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        key = (batch.shape, batch.dtype.str)
        if key not in self._feeds and len(self._feeds) >= 16:  # many sizes: keep a few
            self._feeds.pop(next(iter(self._feeds)))
        if key not in self._feeds:
            placeholder = PreparedInput(path=Path("<batch>"), kind="tensor", array=batch,
                                        preprocess={})
            feeds, _, notices = build_feeds(self.model.inputs, self.target, placeholder,
                                            self.options, self.model.path)
            feeds.pop(self.target.name)
            self._feeds[key] = feeds
            for notice in notices:  # e.g. "input 'scale' ... gets zeros"
                self.notice(notice)
        return {self.target.name: batch, **self._feeds[key]}

    def run(self, rows: np.ndarray) -> list[dict[str, np.ndarray]]:
        """Reductions of every layer for ``rows`` (``[n, ...]``), padded to a fixed batch."""
        n = rows.shape[0]
        if self.fixed_batch and n != self.batch_size:
            if n > self.batch_size:
                parts = [self.run(rows[i:i + self.batch_size])
                         for i in range(0, n, self.batch_size)]
                return [{k: np.concatenate([p[j][k] for p in parts]) for k in parts[0][j]}
                        for j in range(len(self.layers))]
            pad = np.repeat(rows[-1:], self.batch_size - n, axis=0)
            batch = np.concatenate([rows, pad])
        else:
            batch = rows
        feeds = self.feeds(batch)
        try:
            values = self.session.run(feeds, self.names)
        except Exception as exc:  # onnxruntime's own error types: shapes/types it refuses
            raise _Rejected(describe_error(exc)) from exc
        results: list[dict[str, np.ndarray]] = []
        redo: list[int] = []
        for position, layer in enumerate(self.layers):
            names = self.outputs[layer.tensor(self.stage)]
            shape = values[names.shape]
            if len(shape) < 2 or shape[0] != batch.shape[0]:
                raise ModelError(
                    f"{self.model.path}: layer {layer.name!r} gives maps of shape "
                    f"{list(shape)}; fmviz needs [N, C, ...] with N the batch size"
                )
            reduced = {
                "positions": np.full(n, int(np.prod(shape[2:])), dtype=np.int64),
                "min": values[names.min][:n],
                "max": values[names.max][:n],
                "sum": values[names.sum][:n],
                "sumsq": values[names.sumsq][:n],
                "active": values[names.active][:n],
            }
            if not (np.isfinite(reduced["sum"]).all() and np.isfinite(reduced["sumsq"]).all()):
                redo.append(position)
            results.append(reduced)
        if redo:
            self._reduce_raw(batch, n, redo, results)
        return results

    def _reduce_raw(self, batch: np.ndarray, n: int, positions: list[int],
                    results: list[dict]) -> None:
        """Maps with NaN/inf (or float32 overflow of the sums): reduce them in numpy."""
        from .reductions import numpy_reductions

        tensors = [self.layers[p].tensor(self.stage) for p in positions]
        session = self.model.session(tensors)
        maps = session.run(self.feeds(batch), list(dict.fromkeys(tensors)))
        for position, tensor in zip(positions, tensors, strict=True):
            results[position] = numpy_reductions(maps[tensor][:n], self.eps)


# ----------------------------------------------------------------------------- the scan


@dataclass
class _State:
    """What a checkpoint holds: statistics over the first ``done`` inputs.

    ``skipped`` only ever grows, so a snapshot shares the list and remembers its length.
    """

    stats: list[ChannelStats | None]
    done: int = 0
    inputs_scanned: int = 0
    samples: int = 0
    skipped: list[dict] = field(default_factory=list)
    skipped_count: int | None = None  # set on snapshots

    def snapshot(self) -> _State:
        return _State(
            stats=[s.snapshot() if s is not None else None for s in self.stats],
            done=self.done,
            inputs_scanned=self.inputs_scanned,
            samples=self.samples,
            skipped=self.skipped,
            skipped_count=len(self.skipped),
        )

    @property
    def skipped_items(self) -> list[dict]:
        count = len(self.skipped) if self.skipped_count is None else self.skipped_count
        return self.skipped[:count]


def scan(
    model,
    paths: Sequence[str | Path],
    options: ScanOptions,
    progress: Callable[[int, int], None] | None = None,
    notify: Callable[[str], None] | None = None,
) -> ScanResult:
    """Scan ``paths`` (see :func:`collect_inputs`) and return the merged statistics.

    ``progress(done, total)`` is called as inputs are consumed; ``notify`` gets one-line notices
    (extra inputs fed zeros, a resumed checkpoint, an interruption). Raises :class:`FmvizError`
    when no input could be read, on the first bad input with ``strict``, and for a checkpoint
    made for another model or other options.
    """
    options.validate()
    notify = notify or (lambda message: None)
    layers = model.select(options.patterns, options.stage)
    target = primary_input(model.inputs, options.inputs.input_name, model.path)
    batch_size, fixed = _batch_size(target, options.batch_size)
    paths = [p if isinstance(p, Path) else Path(p) for p in paths]
    if options.limit is not None:
        paths = paths[: options.limit]
    if not paths:
        raise InputError("no input files to scan")
    tensors = [layer.tensor(options.stage) for layer in layers]
    header = _checkpoint_header(model, options, tensors)

    state = _State(stats=[None] * len(layers))
    if options.checkpoint is not None and Path(options.checkpoint).exists():
        state = _load_checkpoint(Path(options.checkpoint), header, paths, len(layers))
        notify(f"resuming from {options.checkpoint}: {state.done} of {len(paths)} inputs done")
    scanner = _Scanner(model, layers, options, target, batch_size, fixed, paths, header, state,
                       progress, notify)
    return scanner.run()


def _batch_size(target: ModelInput, requested: int | None) -> tuple[int, bool]:
    dim = target.shape[0] if target.shape else None
    if isinstance(dim, int) and dim > 0:
        if requested is not None and requested != dim:
            raise OptionError(
                f"--batch-size {requested}: input {target.name!r} has a fixed batch of {dim}"
            )
        return dim, True
    return (requested or DEFAULT_BATCH), False


class _Scanner:
    def __init__(self, model, layers, options: ScanOptions, target, batch_size, fixed, paths,
                 header, state: _State, progress, notify):
        self.model = model
        self.layers = layers
        self.options = options
        self.target = target
        self.batch_size = batch_size
        self.fixed = fixed
        self.paths = paths
        self.header = header
        self.state = state
        self.committed = state.snapshot()
        self.resumed_from = state.done
        self.progress = progress or (lambda done, total: None)
        self.notify = notify
        self.pending: dict[tuple, list[_Decoded]] = {}
        self.consumed = state.done
        self.runner: _Runner | None = None
        self.notices: list[str] = []

    # ------------------------------------------------------------------ main loop
    def run(self) -> ScanResult:
        options = self.options
        workers = options.workers or max(1, min(4, os.cpu_count() or 1))
        read_ahead = max(2 * self.batch_size, workers)
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fmviz-decode")
        queue: deque[Future] = deque()
        todo = iter(range(self.state.done, len(self.paths)))

        def refill() -> None:
            while len(queue) < read_ahead:
                index = next(todo, None)
                if index is None:
                    return
                queue.append(pool.submit(_decode, index, self.paths[index], self.target,
                                         options.inputs))

        try:
            refill()  # decoding starts while onnxruntime builds its session
            self.progress(self.consumed, len(self.paths))
            if queue:
                self.runner = _Runner(self.model, self.layers, options.stage, options.eps,
                                      self.target, options.inputs, self.batch_size, self.fixed,
                                      self._notice)
            while queue:
                item = queue.popleft().result()
                refill()
                self._consume(item)
                self.consumed = item.index + 1
                if not self.pending:
                    self._commit()
                if options.checkpoint is not None and self.consumed % options.checkpoint_every == 0:
                    self._flush_all()
                    self._commit()
                    self._save(self.committed)
                self.progress(self.consumed, len(self.paths))
            self._flush_all()
            self._commit()
            if options.checkpoint is not None:
                self._save(self.committed)
        except KeyboardInterrupt:
            if options.checkpoint is not None:
                self._save(self.committed)
                self.notify(
                    f"interrupted: {options.checkpoint} holds {self.committed.done} of "
                    f"{len(self.paths)} inputs; run the same command again to resume"
                )
            raise
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
        return self._result()

    def _notice(self, message: str) -> None:
        if message not in self.notices:
            self.notices.append(message)
            self.notify(message)

    def _consume(self, item: _Decoded) -> None:
        for notice in item.notices:
            self._notice(notice)
        if item.rows is None:
            self._skip(item, item.error or "cannot be read")
            return
        key = (item.rows.shape[1:], item.rows.dtype.str)
        group = self.pending.setdefault(key, [])
        if group and _rows(group) + item.rows.shape[0] > self.batch_size:
            self._flush(key)
            group = self.pending.setdefault(key, [])
        group.append(item)
        if _rows(group) >= self.batch_size:
            self._flush(key)
        elif sum(_rows(g) for g in self.pending.values()) > 2 * self.batch_size:
            # many shapes at once: run the fullest group rather than hold more in memory
            self._flush(max(self.pending, key=lambda k: _rows(self.pending[k])))

    def _flush(self, key: tuple) -> None:
        group = self.pending.pop(key, [])
        if group:
            self._run_group(group)

    def _flush_all(self) -> None:
        for key in list(self.pending):
            self._flush(key)

    def _run_group(self, group: list[_Decoded]) -> None:
        rows = group[0].rows if len(group) == 1 else np.concatenate([i.rows for i in group])
        first, last = group[0].index + 1, group[-1].index + 1
        try:  # named frame: a crash dump (SIGSEGV in onnxruntime) says which batch was running
            reduced = named_call(f"<- scan batch of inputs {first}-{last} of {len(self.paths)} "
                                 f"(first: {group[0].path})", self.runner.run, rows)
        except _Rejected as exc:
            if len(group) == 1:
                self._skip(group[0], f"the model rejected this input: {exc}")
            else:  # find the culprit(s): run each input on its own
                for item in group:
                    self._run_group([item])
            return
        state = self.state
        for position, (layer, values) in enumerate(zip(self.layers, reduced, strict=True)):
            stats = state.stats[position]
            if stats is None:
                stats = state.stats[position] = ChannelStats(values["min"].shape[1],
                                                             self.options.eps)
            elif stats.channels != values["min"].shape[1]:
                raise ModelError(
                    f"{self.model.path}: layer {layer.name!r} gave {values['min'].shape[1]} "
                    f"channels for {group[0].path}, {stats.channels} before"
                )
            stats.add_reduced(**values)
        state.inputs_scanned += len(group)
        state.samples += rows.shape[0]

    def _skip(self, item: _Decoded, error: str) -> None:
        if self.options.strict:
            raise InputError(f"{item.path}: {error} (--strict stops at the first bad input)")
        self.state.skipped.append({"path": str(item.path), "error": error})

    def _commit(self) -> None:
        """Record a consistent state: every input before ``consumed`` is merged or skipped."""
        self.state.done = self.consumed
        self.committed = self.state.snapshot()

    # ------------------------------------------------------------------ checkpoint and result
    def _save(self, state: _State) -> None:
        path = Path(self.options.checkpoint)
        ensure_dir(path.parent if str(path.parent) else Path("."))
        header = dict(self.header)
        header.update(
            done=state.done,
            inputs_sha256=_paths_digest(self.paths[: state.done]),
            inputs_scanned=state.inputs_scanned,
            samples=state.samples,
            skipped=state.skipped_items,
            layers_present=[s is not None for s in state.stats],
        )
        arrays: dict[str, np.ndarray] = {
            "header": np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)
        }
        for position, stats in enumerate(state.stats):
            if stats is not None:
                arrays.update(stats.to_arrays(prefix=f"layer{position}_"))
        atomic_write_with(path, lambda handle: np.savez(handle, **arrays))

    def _result(self) -> ScanResult:
        state = self.committed
        skipped = state.skipped_items
        if state.inputs_scanned == 0:
            first = f" (first: {skipped[0]['path']}: {skipped[0]['error']})" if skipped else ""
            raise InputError(
                f"no input could be read: {len(skipped)} of {len(self.paths)} skipped{first}"
            )
        stats = [
            s if s is not None else ChannelStats(layer.channels or 0, self.options.eps)
            for s, layer in zip(state.stats, self.layers, strict=True)
        ]
        return ScanResult(
            layers=self.layers,
            stage=self.options.stage,
            eps=self.options.eps,
            stats=stats,
            providers=self.runner.providers if self.runner else list(self.model.providers),
            inputs_scanned=state.inputs_scanned,
            samples=state.samples,
            skipped=skipped,
            batch_size=self.batch_size,
            total=len(self.paths),
            resumed_from=self.resumed_from,
            notices=list(self.notices),
        )


def _rows(group: Iterable[_Decoded]) -> int:
    return sum(item.rows.shape[0] for item in group)


# ----------------------------------------------------------------------------- checkpoints


def _options_record(options: ScanOptions) -> dict:
    record = asdict(options.inputs)
    return json.loads(json.dumps(record))  # tuples -> lists, as they come back from JSON


def _checkpoint_header(model, options: ScanOptions, tensors: list[str]) -> dict:
    return {
        "schema": CHECKPOINT_SCHEMA,
        "fmviz": __version__,
        "model_sha256": model.graph.sha256,
        "stage": options.stage,
        "tensors": tensors,
        "eps": options.eps,
        "options": _options_record(options),
    }


def _paths_digest(paths: Sequence[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(os.path.normpath(str(path)).encode("utf-8", "surrogateescape") + b"\n")
    return digest.hexdigest()


def _load_checkpoint(path: Path, expected: dict, paths: list[Path], layers: int) -> _State:
    """Read a checkpoint (never unpickling) and check it belongs to this scan."""
    def bad(reason: str) -> FmvizError:
        return InputError(f"{path}: {reason}; delete it to start over, or use another "
                          "--checkpoint file")

    try:
        with np.load(path, allow_pickle=False) as archive:
            header = json.loads(bytes(archive["header"]).decode("utf-8"))
            if not isinstance(header, dict) or header.get("schema") != CHECKPOINT_SCHEMA:
                raise bad("not an fmviz dead-filters checkpoint")
            wrong = _checkpoint_header_problem(header)
            if wrong is not None:  # checked before anything is used (or saved over it)
                raise bad(f"not a valid fmviz checkpoint ({wrong})")
            present = header.get("layers_present", [])
            stats: list[ChannelStats | None] = []
            if len(present) != layers:
                raise bad(f"holds {len(present)} layers, this scan has {layers}")
            for position, here in enumerate(present):
                stats.append(
                    ChannelStats.from_arrays(archive, header["eps"], prefix=f"layer{position}_")
                    if here else None
                )
    except FmvizError:
        raise
    except (OSError, ValueError, KeyError, EOFError, TypeError, zipfile.BadZipFile,
            UnicodeDecodeError) as exc:
        raise bad(f"not a readable fmviz checkpoint ({exc})") from exc
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
    if header.get("inputs_sha256") != _paths_digest(paths[:done]):
        raise bad(f"the first {done} inputs are not the ones it was made from")
    return _State(
        stats=stats,
        done=done,
        inputs_scanned=int(header.get("inputs_scanned", 0)),
        samples=int(header.get("samples", 0)),
        skipped=list(header.get("skipped", [])),
    )


def _checkpoint_header_problem(header: dict) -> str | None:
    """What is wrong with the types of a checkpoint header's fields, or None."""
    def count(value) -> bool:
        return type(value) is int and value >= 0

    def text(value) -> bool:
        return isinstance(value, str)

    checks = {
        "done": count,
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
    if header["inputs_scanned"] + len(header["skipped"]) != header["done"] or (
        header["samples"] < header["inputs_scanned"]
    ):
        return (f"its counts disagree: {header['done']} done, {header['inputs_scanned']} "
                f"scanned, {len(header['skipped'])} skipped, {header['samples']} samples")
    return None


def _short(value) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= 60 else text[:57] + "..."
