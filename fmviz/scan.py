"""Dataset scans: stream many inputs through a model, keep per-channel statistics only.

The pieces, usable by any engine (this module's local one, or a cluster's):

- :class:`Scanner` is opened once per model and options; ``scanner.scan(paths)`` runs those
  inputs and returns a :class:`ScanPartial` (per-layer :class:`~fmviz.stats.ChannelStats`,
  counts, skipped inputs). Nothing per input is kept, so a partial's size depends on the
  layers and channels only.
- ``partial.merge(other)`` adds another partial: partials over any split of the inputs merge
  into the partial over all of them.
- ``scanner.result(partial, total)`` is the final :class:`ScanResult`, which
  :func:`fmviz.reports.deadfilters.build_report` turns into the report.

Inside ``scan(paths)``: a thread pool decodes inputs ahead of inference (at most two batches
ahead) while the calling thread runs batches through the model with reductions added next to
each layer (:mod:`fmviz.graph.reductions`), so only ``[N, C]`` arrays leave onnxruntime.
Inputs are grouped by tensor shape; a model with a fixed batch size gets exactly that many rows
(a short batch is padded with copies, which are not counted). A batch whose sums show NaN or
infinity is run again with the raw maps and reduced in numpy, where such values are counted.
An input that cannot be read, or that the model rejects, is skipped and listed (``strict``
makes it an error).

:func:`scan` is the local engine: one scanner over every input, with a checkpoint file saved
every ``checkpoint_every`` inputs and on Ctrl-C, from which the same scan resumes.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .crash import named_call
from .errors import FmvizError, InputError, ModelError, OptionError, RejectedInput
from .graph import ModelInput
from .graph.reductions import ReducedOutputs, Target, numpy_reductions, reduction_model
from .inputs import InputOptions, load_input
from .inputs.collect import collect_inputs
from .model import Model
from .probes import Probe
from .stats import ChannelStats

__all__ = ["DEFAULT_BATCH", "ScanOptions", "ScanPartial", "ScanResult", "Scanner",
           "collect_inputs", "scan"]

DEFAULT_BATCH = 16
Progress = Callable[[int, int], None]


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
            raise OptionError("eps", f"{self.eps}: must be a finite number >= 0")
        if self.batch_size is not None and self.batch_size < 1:
            raise OptionError("batch_size", f"{self.batch_size}: must be at least 1")
        if self.limit is not None and self.limit < 1:
            raise OptionError("limit", f"{self.limit}: must be at least 1")
        if self.checkpoint_every < 1:
            raise OptionError("checkpoint_every", f"{self.checkpoint_every}: must be at least 1")


@dataclass
class ScanPartial:
    """Statistics over some of a scan's inputs; merges with the partials over the others.

    ``skipped`` entries are ``{"index", "path", "error"}``, ``index`` the input's position in
    the whole scan (the final report lists them in that order, however the work was split).
    """

    stats: list[ChannelStats | None]  # per probe; None until a batch has been seen
    inputs_scanned: int = 0
    samples: int = 0  # maps merged: an input tensor with a batch of 4 counts 4
    skipped: list[dict] = field(default_factory=list)

    def merge(self, other: ScanPartial) -> ScanPartial:
        """Add everything ``other`` has seen to this partial (in place); returns it."""
        if len(other.stats) != len(self.stats):
            raise ValueError(f"cannot merge {len(other.stats)} layers into {len(self.stats)}")
        for position, theirs in enumerate(other.stats):
            if theirs is None:
                continue
            mine = self.stats[position]
            self.stats[position] = (theirs.snapshot() if mine is None
                                    else mine.snapshot().merge(theirs))
        self.inputs_scanned += other.inputs_scanned
        self.samples += other.samples
        self.skipped = self.skipped + list(other.skipped)
        return self

    def snapshot(self) -> ScanPartial:
        """A copy that later updates of this partial leave unchanged (cheap: shares arrays)."""
        return ScanPartial(
            stats=[s.snapshot() if s is not None else None for s in self.stats],
            inputs_scanned=self.inputs_scanned,
            samples=self.samples,
            skipped=list(self.skipped),
        )

    @property
    def nbytes(self) -> int:
        return sum(s.nbytes for s in self.stats if s is not None)


@dataclass
class ScanResult:
    """The merged statistics of a scan and what it went through."""

    probes: list[Probe]
    eps: float
    stats: list[ChannelStats]
    providers: list[str]
    inputs_scanned: int
    samples: int
    skipped: list[dict]
    batch_size: int
    total: int  # inputs in the (limited) list
    resumed_from: int = 0  # inputs taken from a checkpoint
    notices: list[str] = field(default_factory=list)
    provider_options: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def stage(self) -> str:
        return self.probes[0].stage if self.probes else "post"


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


def _rows(group: Iterable[_Decoded]) -> int:
    return sum(item.rows.shape[0] for item in group if item.rows is not None)


# ----------------------------------------------------------------------------- the scanner


class Scanner:
    """The statistics of a model's layers over inputs, in mergeable partials.

    Opened once per model and options (cheap: onnxruntime's session is made on the first
    batch); ``notify`` gets each one-line notice once (extra inputs fed zeros, ...).
    """

    def __init__(self, model: Model, options: ScanOptions,
                 notify: Callable[[str], None] | None = None):
        options.validate()
        self.model = model
        self.options = options
        self.probes = model.probes(options.patterns, options.stage, options.inputs)
        self.target = model.primary_input(options.inputs)
        self.batch_size, self.fixed_batch = _batch_size(self.target, options.batch_size)
        self.notices: list[str] = []
        self._notify = notify or (lambda message: None)
        self._outputs: dict[str, ReducedOutputs] | None = None
        self._names: list[str] = []
        self._providers: list[str] | None = None
        self._provider_options: dict[str, dict[str, str]] = {}

    @property
    def providers(self) -> list[str]:
        return self._providers if self._providers is not None else list(self.model.providers)

    def empty(self) -> ScanPartial:
        return ScanPartial(stats=[None] * len(self.probes))

    def notice(self, message: str) -> None:
        if message not in self.notices:
            self.notices.append(message)
            self._notify(message)

    # ------------------------------------------------------------------ the loop
    def scan(
        self,
        paths: Sequence[Path],
        first_index: int = 0,
        progress: Progress | None = None,
        total: int | None = None,
        checkpoint: Callable[[int, ScanPartial], None] | None = None,
        start: ScanPartial | None = None,
    ) -> ScanPartial:
        """Run ``paths`` (input ``first_index + i`` of the whole scan is ``paths[i]``).

        ``progress(done, total)`` is called as inputs are consumed. ``checkpoint(done,
        partial)``, when given, receives a consistent partial covering the first ``done``
        inputs of the whole scan every ``checkpoint_every`` inputs, at the end, and on Ctrl-C
        (then the interrupt goes on). ``start`` is a partial to continue from.
        """
        options = self.options
        partial = start if start is not None else self.empty()
        total = total if total is not None else first_index + len(paths)
        progress = progress or (lambda done, total: None)
        committed = (first_index, partial.snapshot())
        pending: dict[tuple, list[_Decoded]] = {}
        workers = options.workers or max(1, min(4, os.cpu_count() or 1))
        read_ahead = max(2 * self.batch_size, workers)
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fmviz-decode")
        queue: deque[Future] = deque()
        todo = iter(range(len(paths)))
        consumed = first_index

        inputs = self.model.input_options(options.inputs)

        def refill() -> None:
            while len(queue) < read_ahead:
                i = next(todo, None)
                if i is None:
                    return
                queue.append(pool.submit(_decode, first_index + i, Path(paths[i]), self.target,
                                         inputs))

        def flush(key: tuple) -> None:
            group = pending.pop(key, [])
            if group:
                self._run_group(group, partial, total)

        def flush_all() -> None:
            for key in list(pending):
                flush(key)

        try:
            refill()  # decoding starts while onnxruntime builds its session
            progress(consumed, total)
            while queue:
                item = queue.popleft().result()
                refill()
                for message in item.notices:
                    self.notice(message)
                if item.rows is None:
                    self._skip(item, item.error or "cannot be read", partial)
                else:
                    key = (item.rows.shape[1:], item.rows.dtype.str)
                    group = pending.setdefault(key, [])
                    if group and _rows(group) + item.rows.shape[0] > self.batch_size:
                        flush(key)
                        group = pending.setdefault(key, [])
                    group.append(item)
                    if _rows(group) >= self.batch_size:
                        flush(key)
                    elif sum(_rows(g) for g in pending.values()) > 2 * self.batch_size:
                        # many shapes at once: run the fullest group rather than hold more
                        flush(max(pending, key=lambda k: _rows(pending[k])))
                consumed = item.index + 1
                if not pending:
                    committed = (consumed, partial.snapshot())
                if checkpoint is not None and consumed % options.checkpoint_every == 0:
                    flush_all()
                    committed = (consumed, partial.snapshot())
                    checkpoint(*committed)
                progress(consumed, total)
            flush_all()
            committed = (consumed, partial.snapshot())
            if checkpoint is not None:
                checkpoint(*committed)
        except KeyboardInterrupt:
            if checkpoint is not None:
                checkpoint(*committed)
            raise
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
        return committed[1]

    def result(self, partial: ScanPartial, total: int, resumed_from: int = 0) -> ScanResult:
        """The final result; an :class:`InputError` when no input could be read at all."""
        skipped = sorted(partial.skipped, key=lambda item: item.get("index", -1))
        if partial.inputs_scanned == 0:
            first = f" (first: {skipped[0]['path']}: {skipped[0]['error']})" if skipped else ""
            raise InputError(
                f"no input could be read: {len(skipped)} of {total} skipped{first}"
            )
        stats = [
            s if s is not None else ChannelStats(probe.channels or 0, self.options.eps)
            for s, probe in zip(partial.stats, self.probes, strict=True)
        ]
        return ScanResult(
            probes=self.probes,
            eps=self.options.eps,
            stats=stats,
            providers=self.providers,
            inputs_scanned=partial.inputs_scanned,
            samples=partial.samples,
            skipped=[{"path": s["path"], "error": s["error"]} for s in skipped],
            batch_size=self.batch_size,
            total=total,
            resumed_from=resumed_from,
            notices=list(self.notices),
            provider_options=self._provider_options or {
                name: self.model.runner.settings.options(name) for name in self.providers},
        )

    # ------------------------------------------------------------------ batches
    def _skip(self, item: _Decoded, error: str, partial: ScanPartial) -> None:
        if self.options.strict:
            raise InputError(f"{item.path}: {error} (--strict stops at the first bad input)")
        partial.skipped.append({"index": item.index, "path": str(item.path), "error": error})

    # A scanner of another kind (fmviz.exemplars) keeps this loop and supplies these two.
    BATCH_NAME = "scan"

    def _batch(self, rows: np.ndarray, source: str) -> Any:
        """What one batch gives: per layer, the ``[n, C]`` reductions."""
        return self._reduce(rows, source)

    def _add(self, partial: Any, group: list[_Decoded], rows: np.ndarray, out: Any) -> None:
        """Merge one batch's output into ``partial``."""
        for position, (probe, values) in enumerate(zip(self.probes, out, strict=True)):
            stats = partial.stats[position]
            channels = values["min"].shape[1]
            if stats is None:
                stats = partial.stats[position] = ChannelStats(channels, self.options.eps)
            self._check_channels(probe, channels, stats.channels, group)
            stats.add_reduced(**values)

    def _check_channels(self, probe: Probe, channels: int, before: int,
                        group: list[_Decoded]) -> None:
        if channels != before:
            raise ModelError(f"{self.model.path}: layer {probe.name!r} gave {channels} channels "
                             f"for {group[0].path}, {before} before")

    def _run_group(self, group: list[_Decoded], partial: Any, total: int) -> None:
        rows = np.concatenate([i.rows for i in group if i.rows is not None])
        first, last = group[0].index + 1, group[-1].index + 1
        try:  # named frame: a crash dump (SIGSEGV in onnxruntime) says which batch was running
            out = named_call(f"<- {self.BATCH_NAME} batch of inputs {first}-{last} of {total} "
                             f"(first: {group[0].path})", self._batch, rows, str(group[0].path))
        except RejectedInput as exc:
            if len(group) == 1:
                self._skip(group[0], _without_path(str(exc), group[0].path), partial)
            else:  # find the culprit(s): run each input on its own
                for item in group:
                    self._run_group([item], partial, total)
            return
        self._add(partial, group, rows, out)
        partial.inputs_scanned += len(group)
        partial.samples += rows.shape[0]

    def _session(self):
        runner = self.model.runner
        tensors = tuple(p.tensor for p in self.probes)
        targets = [Target(tensor=p.tensor, non_negative=p.non_negative, quantized=p.quantized)
                   for p in self.probes]

        def build() -> tuple[bytes, list[ReducedOutputs]]:
            return reduction_model(self.model.graph, targets, self.options.eps)

        session = runner.session(("reduce", tensors, self.options.eps), build)
        if self._outputs is None:
            self._outputs = {o.tensor: o for o in session.info}
            self._names = [name for o in session.info for name in o.names()]
        self._providers = list(session.providers)
        self._provider_options = dict(session.provider_options)
        for message in runner.take_notices():  # e.g. CUDA did not start, running on the CPU
            self.notice(message)
        return session

    def _feeds(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        feeds, _, notices = self.model.runner.feeds(self.target, batch, self.options.inputs)
        for message in notices:  # e.g. "input 'scale' ... gets zeros"
            self.notice(message)
        return feeds

    def _reduce(self, rows: np.ndarray, source: str) -> list[dict[str, np.ndarray]]:
        """Reductions of every layer for ``rows`` (``[n, ...]``), padded to a fixed batch."""
        n = rows.shape[0]
        if self.fixed_batch and n != self.batch_size:
            if n > self.batch_size:
                parts = [self._reduce(rows[i:i + self.batch_size], source)
                         for i in range(0, n, self.batch_size)]
                return [{k: np.concatenate([p[j][k] for p in parts]) for k in parts[0][j]}
                        for j in range(len(self.probes))]
            pad = np.repeat(rows[-1:], self.batch_size - n, axis=0)
            batch = np.concatenate([rows, pad])
        else:
            batch = rows
        session = self._session()
        assert self._outputs is not None  # set when the session was built
        values = self.model.runner.run(session, self._feeds(batch), self._names, source)
        results: list[dict[str, np.ndarray]] = []
        redo: list[int] = []
        for position, probe in enumerate(self.probes):
            names = self._outputs[probe.tensor]
            shape = values[names.shape]
            if len(shape) < 2 or shape[0] != batch.shape[0]:
                raise ModelError(
                    f"{self.model.path}: layer {probe.name!r} gives maps of shape "
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
        if redo:  # maps with NaN/inf (or float32 overflow of the sums): reduce them in numpy
            tensors = [self.probes[p].tensor for p in redo]
            maps = self.model.runner.run(self.model.runner.exposing(tensors), self._feeds(batch),
                                         list(dict.fromkeys(tensors)), source)
            for position, tensor in zip(redo, tensors, strict=True):
                results[position] = numpy_reductions(maps[tensor][:n], self.options.eps)
        return results


def _batch_size(target: ModelInput, requested: int | None) -> tuple[int, bool]:
    dim = target.shape[0] if target.shape else None
    if isinstance(dim, int) and dim > 0:
        if requested is not None and requested != dim:
            raise OptionError(
                "batch_size", f"{requested}: input {target.name!r} has a fixed batch of {dim}"
            )
        return dim, True
    return (requested or DEFAULT_BATCH), False


# ----------------------------------------------------------------------------- the local engine


def scan(
    model: Model,
    paths: Sequence[str | Path],
    options: ScanOptions,
    progress: Progress | None = None,
    notify: Callable[[str], None] | None = None,
) -> ScanResult:
    """Scan ``paths`` (see :func:`collect_inputs`) on this machine and return the result.

    ``progress(done, total)`` is called as inputs are consumed; ``notify`` gets one-line notices
    (extra inputs fed zeros, a resumed checkpoint, an interruption). Raises :class:`FmvizError`
    when no input could be read, on the first bad input with ``strict``, and for a checkpoint
    made for another model or other options.
    """
    from .checkpoint import checkpoint_header, load_checkpoint, save_checkpoint

    notify = notify or (lambda message: None)
    scanner = Scanner(model, options, notify)
    todo = [p if isinstance(p, Path) else Path(p) for p in paths]
    if options.limit is not None:
        todo = todo[: options.limit]
    if not todo:
        raise InputError("no input files to scan")
    done, start = 0, scanner.empty()
    save = None
    saved = [0]  # inputs the checkpoint file covers
    if options.checkpoint is not None:
        where = Path(options.checkpoint)
        header = checkpoint_header(model, options, [p.tensor for p in scanner.probes])
        if where.exists():
            done, start = load_checkpoint(where, header, todo, len(scanner.probes))
            notify(f"resuming from {where}: {done} of {len(todo)} inputs done")

        def save(covered: int, partial: ScanPartial) -> None:
            save_checkpoint(where, header, todo, covered, partial)
            saved[0] = covered

    try:
        partial = scanner.scan(todo[done:], first_index=done, progress=progress,
                               total=len(todo), checkpoint=save, start=start)
    except KeyboardInterrupt:
        if options.checkpoint is not None:
            notify(f"interrupted: {options.checkpoint} holds {saved[0]} of {len(todo)} inputs; "
                   "run the same command again to resume")
        raise
    return scanner.result(partial, len(todo), resumed_from=done)
