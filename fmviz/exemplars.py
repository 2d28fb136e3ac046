"""Exemplars: the inputs that make each channel fire most, streamed over a dataset.

The pieces follow :mod:`fmviz.scan`'s protocol, so any engine that runs a dead-filter scan
(the local one below, or a cluster's) runs this one too:

- :class:`ExemplarScanner` is opened once per model and options; ``scanner.scan(paths,
  first_index=0, progress=None, total=None)`` runs those inputs and returns an
  :class:`ExemplarPartial`; ``scanner.empty()`` is the partial over no input.
- ``partial.merge(other)`` adds another partial. Per channel a partial keeps the ``top`` best
  inputs only (score, then input path, then row of the input's batch, then map position, then
  the input's index in the whole scan break ties), so merging is order-independent: partials
  over any split of the inputs merge into the partial one pass would give, and its size depends
  on layers x channels x top, never on the number of inputs.
- ``scanner.result(partial, total)`` is the :class:`ExemplarResult`.

Scores come from onnxruntime: :func:`fmviz.graph.reductions.score_model` adds, next to each
layer, a ReduceMax (``score="max"``) or ReduceMean (``"mean"``) and an ArgMax per channel, so
only ``[N, C]`` arrays leave the session. Boxes and crops are made afterwards by
:func:`locate`, which reads only the winning inputs again (:mod:`fmviz.render.exemplars`
draws them, :mod:`fmviz.reports.exemplars` writes the JSON and HTML).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import FmvizError, InputError, ModelError, OptionError
from .graph.reductions import SCORES, ScoreOutputs, Target, numpy_scores, score_model
from .inputs import InputOptions, PreparedInput, load_input
from .model import Model
from .probes import Probe
from .render.png import encode_png
from .scan import Progress, Scanner, ScanOptions, _Decoded

__all__ = ["DEFAULT_TOP", "ExemplarOptions", "ExemplarPartial", "ExemplarResult",
           "ExemplarScanner", "TopK", "Winner", "find_exemplars", "locate"]

DEFAULT_TOP = 9


@dataclass(frozen=True)
class ExemplarOptions:
    """What to scan and keep (the ``exemplars`` options that shape the result)."""

    patterns: tuple[str, ...] = ()
    stage: str = "post"
    inputs: InputOptions = field(default_factory=InputOptions)
    top: int = DEFAULT_TOP
    score: str = "max"
    batch_size: int | None = None
    strict: bool = False
    limit: int | None = None
    workers: int | None = None

    def validate(self) -> None:
        if self.top < 1:
            raise OptionError("top", f"{self.top}: must be at least 1")
        if self.score not in SCORES:
            raise OptionError("score", f"{self.score!r}: choose {' or '.join(SCORES)}")
        self.scan_options().validate()

    def scan_options(self) -> ScanOptions:
        return ScanOptions(patterns=self.patterns, stage=self.stage, inputs=self.inputs,
                           batch_size=self.batch_size, strict=self.strict, limit=self.limit,
                           workers=self.workers)


# ----------------------------------------------------------------------------- top K


@dataclass
class TopK:
    """The ``k`` best inputs of every channel of one layer, best first (``[C, k]`` arrays).

    An empty slot has ``index`` -1. ``position`` holds the flat index of the maximum in the
    map, ``shape`` the map's spatial shape (``[C, k, D]``: inputs of other sizes give maps of
    other sizes). ``count``, ``total`` and ``total_sq`` are the number, sum and sum of squares
    of every score seen (for the channels' selectivity).
    """

    scores: np.ndarray
    paths: np.ndarray  # unicode
    index: np.ndarray
    row: np.ndarray
    position: np.ndarray
    shape: np.ndarray
    count: int = 0
    total: np.ndarray | None = None
    total_sq: np.ndarray | None = None

    @classmethod
    def empty(cls, channels: int, k: int, dims: int) -> TopK:
        return cls(
            scores=np.full((channels, k), -np.inf),
            paths=np.full((channels, k), "", dtype="<U1"),
            index=np.full((channels, k), -1, dtype=np.int64),
            row=np.zeros((channels, k), dtype=np.int64),
            position=np.zeros((channels, k), dtype=np.int64),
            shape=np.zeros((channels, k, dims), dtype=np.int64),
            total=np.zeros(channels),
            total_sq=np.zeros(channels),
        )

    @property
    def channels(self) -> int:
        return self.scores.shape[0]

    @property
    def k(self) -> int:
        return self.scores.shape[1]

    def copy(self) -> TopK:
        return TopK(self.scores.copy(), self.paths.copy(), self.index.copy(), self.row.copy(),
                    self.position.copy(), self.shape.copy(), self.count,
                    None if self.total is None else self.total.copy(),
                    None if self.total_sq is None else self.total_sq.copy())

    def merge(self, other: TopK) -> TopK:
        """The best ``k`` of both (a new TopK; order-independent, see module docs)."""
        if other.channels != self.channels:
            raise ValueError(f"cannot merge {other.channels} channels into {self.channels}")
        if other.shape.shape[2] != self.shape.shape[2]:
            raise ValueError("cannot merge maps of different ranks")

        def cat(a: np.ndarray, b: np.ndarray) -> np.ndarray:
            return np.concatenate([a, b], axis=1)

        scores = cat(self.scores, other.scores)
        paths = cat(self.paths, other.paths)
        index = cat(self.index, other.index)
        row = cat(self.row, other.row)
        position = cat(self.position, other.position)
        shape = cat(self.shape, other.shape)
        empty = index < 0
        # np.lexsort: the last key is the primary one
        order = np.lexsort((index, position, row, paths, -scores, empty), axis=-1)[:, :self.k]

        def take(a: np.ndarray) -> np.ndarray:
            if a.ndim == 3:
                return np.take_along_axis(a, order[:, :, np.newaxis], axis=1)
            return np.take_along_axis(a, order, axis=1)

        total = (self.total if self.total is not None else 0) + (
            other.total if other.total is not None else 0)
        total_sq = (self.total_sq if self.total_sq is not None else 0) + (
            other.total_sq if other.total_sq is not None else 0)
        return TopK(take(scores), take(paths), take(index), take(row), take(position),
                    take(shape), self.count + other.count, np.asarray(total, dtype=np.float64),
                    np.asarray(total_sq, dtype=np.float64))

    def rows(self, channels: np.ndarray) -> TopK:
        """The TopK of ``channels`` only (no totals)."""
        return TopK(self.scores[channels], self.paths[channels], self.index[channels],
                    self.row[channels], self.position[channels], self.shape[channels])

    def update(self, batch: TopK) -> TopK:
        """:meth:`merge` with a batch, sorting only the channels where a new input can enter
        (a score at least the worst kept, or a free slot): after the first batches that is a
        few channels per batch. Same result as ``merge``."""
        could = (self.index[:, -1] < 0) | (batch.scores >= self.scores[:, -1:]).any(axis=1)
        channels = np.flatnonzero(could)
        merged = self.rows(channels).merge(batch.rows(channels)) if channels.size else None
        width = max(self.paths.dtype.itemsize, batch.paths.dtype.itemsize) // 4
        total = (self.total if self.total is not None else 0) + (
            batch.total if batch.total is not None else 0)
        total_sq = (self.total_sq if self.total_sq is not None else 0) + (
            batch.total_sq if batch.total_sq is not None else 0)
        out = TopK(self.scores.copy(), self.paths.astype(f"<U{max(width, 1)}"),
                   self.index.copy(), self.row.copy(), self.position.copy(), self.shape.copy(),
                   self.count + batch.count, np.asarray(total, dtype=np.float64),
                   np.asarray(total_sq, dtype=np.float64))
        if merged is not None:
            for name in ("scores", "paths", "index", "row", "position", "shape"):
                getattr(out, name)[channels] = getattr(merged, name)
        return out

    def selectivity(self) -> np.ndarray:
        """Per channel: how far its top inputs' mean score stands above the mean score of all
        inputs, in standard deviations of those scores (0 where nothing varies)."""
        kept = np.where(self.index >= 0, self.scores, np.nan)
        with np.errstate(invalid="ignore", divide="ignore"):
            finite = np.where(np.isfinite(kept), kept, np.nan)
            top_mean = np.nanmean(finite, axis=1) if finite.size else np.zeros(self.channels)
            n = max(self.count, 1)
            mean = (self.total if self.total is not None else 0) / n
            var = (self.total_sq if self.total_sq is not None else 0) / n - np.square(mean)
            std = np.sqrt(np.maximum(var, 0))
            z = (top_mean - mean) / std
        return np.where(np.isfinite(z), z, 0.0)


# ----------------------------------------------------------------------------- partials


@dataclass
class ExemplarPartial:
    """The top inputs over some of a scan's inputs; merges with the partials over the others.

    ``skipped`` entries are ``{"index", "path", "error"}`` as in :class:`fmviz.scan.ScanPartial`.
    """

    tops: list[TopK | None]  # per probe; None until a batch has been seen
    inputs_scanned: int = 0
    samples: int = 0
    skipped: list[dict] = field(default_factory=list)

    def merge(self, other: ExemplarPartial) -> ExemplarPartial:
        """Add everything ``other`` has seen to this partial (in place); returns it."""
        if len(other.tops) != len(self.tops):
            raise ValueError(f"cannot merge {len(other.tops)} layers into {len(self.tops)}")
        for position, theirs in enumerate(other.tops):
            if theirs is None:
                continue
            mine = self.tops[position]
            self.tops[position] = theirs.copy() if mine is None else mine.merge(theirs)
        self.inputs_scanned += other.inputs_scanned
        self.samples += other.samples
        self.skipped = self.skipped + list(other.skipped)
        return self

    def snapshot(self) -> ExemplarPartial:
        """A copy that later updates of this partial leave unchanged (updates replace the
        arrays rather than write into them, so sharing them is safe)."""
        return ExemplarPartial(list(self.tops), self.inputs_scanned, self.samples,
                               list(self.skipped))

    @property
    def nbytes(self) -> int:
        return sum(t.scores.nbytes + t.paths.nbytes + t.index.nbytes * 3 + t.shape.nbytes
                   for t in self.tops if t is not None)


@dataclass(frozen=True)
class Winner:
    """One of a channel's top inputs."""

    path: str
    index: int  # the input's position in the whole scan
    row: int  # row of the input's tensor (0 for files that give one map)
    score: float
    position: tuple[int, ...]  # in the layer's map: (y, x) or (t,)


@dataclass
class ExemplarResult:
    """The merged top inputs of a scan and what it went through."""

    probes: list[Probe]
    top: int
    score: str
    tops: list[TopK]
    providers: list[str]
    inputs_scanned: int
    samples: int
    skipped: list[dict]
    batch_size: int
    total: int
    notices: list[str] = field(default_factory=list)

    @property
    def stage(self) -> str:
        return self.probes[0].stage if self.probes else "post"

    def winners(self, layer: int) -> list[list[Winner]]:
        """Per channel of the ``layer``-th probe, its top inputs, best first."""
        top = self.tops[layer]
        channels: list[list[Winner]] = []
        scores, paths, index = top.scores.tolist(), top.paths.tolist(), top.index.tolist()
        rows, flat, shapes = top.row.tolist(), top.position.tolist(), top.shape.tolist()
        for c in range(top.channels):
            found = []
            for j in range(top.k):
                if index[c][j] < 0:
                    break
                position = []
                rest = flat[c][j]
                for dim in reversed(shapes[c][j]):  # np.unravel_index, C order
                    position.append(rest % dim if dim else 0)
                    rest = rest // dim if dim else 0
                found.append(Winner(paths[c][j], index[c][j], rows[c][j], scores[c][j],
                                    tuple(reversed(position))))
            channels.append(found)
        return channels


# ----------------------------------------------------------------------------- the scanner


class ExemplarScanner(Scanner):
    """Each channel's top inputs over inputs, in mergeable partials (see module docs).

    Same protocol and input handling as :class:`fmviz.scan.Scanner` (decoding threads, batches
    grouped by shape, fixed batches padded, bad inputs skipped with their global index or, with
    ``strict``, an error).
    """

    def __init__(self, model: Model, options: ExemplarOptions,
                 notify: Callable[[str], None] | None = None):
        options.validate()
        super().__init__(model, options.scan_options(), notify)
        self.exemplar_options = options
        self._score_outputs: dict[str, ScoreOutputs] | None = None
        # how partials name inputs: a URL's temporary copy -> its URL (fmviz.engines sets it
        # while it scans fetched inputs, so paths and their tie-breaks are the URLs')
        self.names: dict[str, str] = {}

    def empty(self) -> ExemplarPartial:  # type: ignore[override]
        return ExemplarPartial(tops=[None] * len(self.probes))

    def result(self, partial: ExemplarPartial, total: int,  # type: ignore[override]
               resumed_from: int = 0) -> ExemplarResult:
        """The final result; an :class:`InputError` when no input could be read at all."""
        skipped = sorted(partial.skipped, key=lambda item: item.get("index", -1))
        if partial.inputs_scanned == 0:
            first = f" (first: {skipped[0]['path']}: {skipped[0]['error']})" if skipped else ""
            raise InputError(
                f"no input could be read: {len(skipped)} of {total} skipped{first}"
            )
        tops = [t if t is not None else TopK.empty(p.channels or 0, self.exemplar_options.top, 0)
                for t, p in zip(partial.tops, self.probes, strict=True)]
        return ExemplarResult(
            probes=self.probes, top=self.exemplar_options.top, score=self.exemplar_options.score,
            tops=tops, providers=self.providers, inputs_scanned=partial.inputs_scanned,
            samples=partial.samples,
            skipped=[{"path": s["path"], "error": s["error"]} for s in skipped],
            batch_size=self.batch_size, total=total, notices=list(self.notices),
        )

    BATCH_NAME = "exemplars"

    def _batch(self, rows: np.ndarray, source: str):
        return self._scores(rows, source)

    def _add(self, partial, group: list[_Decoded], rows: np.ndarray, scored) -> None:
        counts = [(i, i.rows.shape[0]) for i in group if i.rows is not None]
        names = self.names
        paths = np.array([names.get(str(i.path), str(i.path)) for i, n in counts
                          for _ in range(n)])
        index = np.array([i.index for i, n in counts for _ in range(n)], dtype=np.int64)
        row = np.concatenate([np.arange(n) for _, n in counts]).astype(np.int64)
        k = self.exemplar_options.top
        for at, (probe, (scores, argmax, shape)) in enumerate(
                zip(self.probes, scored, strict=True)):
            n, channels = scores.shape
            current = partial.tops[at]
            dims = len(shape) - 2
            if current is None:
                current = TopK.empty(channels, k, dims)
            self._check_channels(probe, channels, current.channels, group)
            values = np.where(np.isnan(scores), -np.inf, scores).T  # [C, n]
            finite = np.where(np.isfinite(values), values, 0.0)
            batch = TopK(
                scores=values,
                paths=np.broadcast_to(paths, (channels, n)),
                index=np.broadcast_to(index, (channels, n)),
                row=np.broadcast_to(row, (channels, n)),
                position=argmax.T.astype(np.int64),
                shape=np.broadcast_to(np.asarray(shape[2:], dtype=np.int64), (channels, n, dims)),
                count=n, total=finite.sum(axis=1), total_sq=np.square(finite).sum(axis=1),
            )
            partial.tops[at] = current.update(batch)

    def _score_session(self):
        runner = self.model.runner
        tensors = tuple(p.tensor for p in self.probes)
        targets = [Target(tensor=p.tensor, quantized=p.quantized) for p in self.probes]
        score = self.exemplar_options.score
        session = runner.session(("scores", tensors, score),
                                 lambda: score_model(self.model.graph, targets, score))
        if self._score_outputs is None:
            self._score_outputs = {o.tensor: o for o in session.info}
            self._names = [name for o in session.info for name in o.names()]
        self._providers = list(session.providers)
        return session

    def _scores(self, rows: np.ndarray, source: str) -> list[tuple[np.ndarray, np.ndarray, tuple]]:
        """``(scores [n, C], argmax [n, C], map shape)`` per probe for ``rows``."""
        n = rows.shape[0]
        if self.fixed_batch and n != self.batch_size:
            if n > self.batch_size:
                parts = [self._scores(rows[i:i + self.batch_size], source)
                         for i in range(0, n, self.batch_size)]
                return [(np.concatenate([p[j][0] for p in parts]),
                         np.concatenate([p[j][1] for p in parts]), parts[0][j][2])
                        for j in range(len(self.probes))]
            batch = np.concatenate([rows, np.repeat(rows[-1:], self.batch_size - n, axis=0)])
        else:
            batch = rows
        session = self._score_session()
        assert self._score_outputs is not None
        values = self.model.runner.run(session, self._feeds(batch), self._names, source)
        results = []
        for probe in self.probes:
            names = self._score_outputs[probe.tensor]
            shape = tuple(int(d) for d in values[names.shape])
            if len(shape) < 2 or shape[0] != batch.shape[0]:
                raise ModelError(
                    f"{self.model.path}: layer {probe.name!r} gives maps of shape "
                    f"{list(shape)}; fmviz needs [N, C, ...] with N the batch size"
                )
            scores = np.asarray(values[names.score][:n], dtype=np.float64)
            argmax = np.asarray(values[names.argmax][:n], dtype=np.int64)
            if not np.isfinite(scores).all():  # NaN/inf: onnxruntime's argmax is unreliable
                maps = self.model.runner.run(self.model.runner.exposing([probe.tensor]),
                                             self._feeds(batch), [probe.tensor], source)
                raw = np.asarray(maps[probe.tensor][:n], dtype=np.float64)
                raw = np.where(np.isnan(raw), -np.inf, raw)
                scores, argmax = numpy_scores(raw, self.exemplar_options.score)
            results.append((scores, argmax, (n,) + shape[1:]))
        return results


def find_exemplars(
    model: Model,
    paths: Sequence[str | Path],
    options: ExemplarOptions,
    progress: Progress | None = None,
    notify: Callable[[str], None] | None = None,
) -> ExemplarResult:
    """The local engine: every input through one scanner on this machine."""
    scanner = ExemplarScanner(model, options, notify)
    todo = [p if isinstance(p, Path) else Path(p) for p in paths]
    if options.limit is not None:
        todo = todo[: options.limit]
    if not todo:
        raise InputError("no input files to scan")
    partial = scanner.scan(todo, progress=progress, total=len(todo))
    assert isinstance(partial, ExemplarPartial)
    return scanner.result(partial, len(todo))


# ----------------------------------------------------------------------------- boxes


@dataclass
class Geometry:
    """How the fed tensor's spatial axes sit on the original input.

    ``fed`` and ``original`` are per spatial axis (rows, columns for images; samples for
    series); fed coordinate ``u`` is original coordinate ``u * scale``.
    """

    fed: tuple[int, ...]
    original: tuple[int, ...]
    scale: tuple[float, ...]


def geometry(prepared: PreparedInput, axes: Sequence[int]) -> Geometry:
    """The mapping from the fed tensor to the original input: resizing to the model's size,
    EXIF orientation (the original is the picture as shown) and ``reduced_by`` for images,
    crop or zero-padding for series (samples keep their numbers), none for tensors."""
    shape = prepared.array.shape
    fed = tuple(int(shape[a]) for a in axes)
    record = prepared.preprocess
    if prepared.kind == "image" and "size" in record and len(fed) == 2:
        width, height = (int(v) for v in record["size"])
        if record.get("exif_orientation") in (5, 6, 7, 8):
            width, height = height, width
        reduced = int(record.get("reduced_by") or 1)
        # Image.reduce keeps a last partial block: ceil(size / factor) pixels, each `factor` wide
        span_w = math.ceil(width / reduced) * reduced
        span_h = math.ceil(height / reduced) * reduced
        return Geometry(fed, (height, width), (span_h / fed[0], span_w / fed[1]))
    if prepared.kind == "series" and len(fed) == 1:
        original = int(record.get("original_length", fed[0]))
        return Geometry(fed, (original,), (1.0,))
    return Geometry(fed, fed, tuple(1.0 for _ in fed))


def unclipped_box(probe: Probe, position: Sequence[int], where: Geometry) -> list[float]:
    """``[begin_0.., end_0..]`` on the original input (per spatial axis, unclipped: may reach
    into the padding), the whole input where the field is unknown."""
    field_ = probe.field
    if field_ is None:
        return [0.0] * len(where.original) + [float(n) for n in where.original]
    spatial = field_.position(_full_index(field_, position))
    begins, ends = [], []
    for axis, j, scale, n in zip(field_.axes, spatial, where.scale, where.original, strict=True):
        span = axis.span(int(j))
        if span is None:
            begins.append(0.0)
            ends.append(float(n))
        else:
            begins.append(span[0] * scale)
            ends.append(span[1] * scale)
    return begins + ends


def _full_index(field_, position: Sequence[int]) -> tuple[int, ...]:
    """A full map index ``(0, 0, *position)``: ``Field.tensor_axes`` count from the end."""
    return (0, 0, *(int(p) for p in position))


def clip_box(box: Sequence[float], where: Geometry) -> list[int]:
    """The box rounded outwards and clipped to the original input."""
    d = len(where.original)
    out = []
    for i in range(d):
        out.append(min(max(math.floor(box[i] + 1e-9), 0), where.original[i]))
    for i in range(d):
        out.append(min(max(math.ceil(box[d + i] - 1e-9), 0), where.original[i]))
    return out


def json_box(box: Sequence[int]) -> list[int]:
    """SPEC order: ``[x0, y0, x1, y1]`` for images (from rows, columns), ``[t0, t1]``."""
    if len(box) == 4:
        top, left, bottom, right = box
        return [left, top, right, bottom]
    return list(box)


@dataclass
class Located:
    """A winner with its box on the original input."""

    winner: Winner
    box: list[int] | None  # clipped, SPEC order; None where the input has no spatial axes
    unclipped: list[float] | None  # per-axis begins then ends (rows, cols / samples)
    geometry: Geometry | None


def locate(
    model: Model,
    result: ExemplarResult,
    options: InputOptions,
    channels: Sequence[Sequence[int]] | None = None,
    visit: Callable[[PreparedInput, list[tuple[int, int, int]], list], None] | None = None,
) -> list[list[list[Located]]]:
    """Boxes of the winners (per layer, per channel, per rank), reading each winning input
    once. ``channels[layer]`` limits which channels get boxes (the others' winners keep
    ``box=None``); ``visit(prepared, entries, located)`` is called with each winning input,
    its ``(layer, channel, rank)`` entries and the result so far, while it is loaded."""
    from .inputs import spatial_axes

    target = model.primary_input(options)
    axes = spatial_axes(target, options.layout)
    winners = [result.winners(i) for i in range(len(result.probes))]
    located = [[[Located(w, None, None, None) for w in found] for found in per_channel]
               for per_channel in winners]
    wanted: dict[str, list[tuple[int, int, int]]] = {}
    for layer, per_channel in enumerate(winners):
        chosen = range(len(per_channel)) if channels is None else channels[layer]
        for c in chosen:
            for rank, winner in enumerate(per_channel[c]):
                wanted.setdefault(winner.path, []).append((layer, c, rank))
    for path, local in _readable(sorted(wanted)):
        if local is None:  # a URL that cannot be read again: no box, no crop
            continue
        try:
            prepared = load_input(local, target, options)
        except OptionError:
            raise
        except Exception:  # changed on disk since the scan: no box, no crop
            continue
        where = geometry(prepared, axes) if axes else None
        for layer, c, rank in wanted[path]:
            entry = located[layer][c][rank]
            if where is not None:
                entry.unclipped = unclipped_box(result.probes[layer], entry.winner.position, where)
                entry.box = json_box(clip_box(entry.unclipped, where))
                entry.geometry = where
        if visit is not None:
            visit(prepared, wanted[path], located)
    return located


URL_BATCH = 32  # winning URL inputs fetched (and held on disk) at a time


def _readable(paths: Sequence[str]) -> Iterator[tuple[str, str | Path | None]]:
    """``(path, local)`` per path, in order: a local path as it is; a URL (``memory://``,
    ``s3://``, ...) read through :mod:`fmviz.inputs.remote` into a temporary file under its own
    name (so the loader sees its extension), removed once the next batch is fetched; None for a
    URL that cannot be read."""
    import shutil
    import tempfile

    from .inputs.remote import fetch, is_url, url_name

    for start in range(0, len(paths), URL_BATCH):
        chunk = paths[start:start + URL_BATCH]
        urls = [p for p in chunk if is_url(p)]
        if not urls:
            yield from ((p, p) for p in chunk)
            continue
        fetched = fetch(urls)
        folder = Path(tempfile.mkdtemp(prefix="fmviz-exemplars-"))
        try:
            for n, path in enumerate(chunk):
                if not is_url(path):
                    yield path, path
                    continue
                data = fetched.get(path)
                if not isinstance(data, bytes):
                    yield path, None
                    continue
                local = folder / str(n) / url_name(path)
                local.parent.mkdir()
                local.write_bytes(data)
                yield path, local
        finally:
            shutil.rmtree(folder, ignore_errors=True)


# ----------------------------------------------------------------------------- writing


DEFAULT_MAX_CHANNELS = 32


@dataclass
class Crops:
    """What :func:`cut_crops` produced: per layer, the channels shown (most selective first),
    their located winners and tiles, and (for the HTML page) each winning input's thumbnail and
    each winner's map."""

    shown: list[list[int]]
    located: list[list[list[Located]]]
    tiles: dict[tuple[int, int, int], np.ndarray]
    thumbnails: dict[str, bytes] = field(default_factory=dict)  # path -> JPEG
    maps: dict[tuple[int, int, int], bytes] = field(default_factory=dict)  # -> PNG


def shown_channels(result: ExemplarResult, max_channels: int) -> list[list[int]]:
    """Per layer, up to ``max_channels`` channels with exemplars, most selective first (ties:
    lower index first)."""
    shown = []
    for top in result.tops:
        selectivity = top.selectivity()
        has = np.flatnonzero(top.index[:, 0] >= 0) if top.k else np.array([], dtype=np.int64)
        order = sorted(has.tolist(), key=lambda c: (-selectivity[c], c))
        shown.append(order[:max_channels])
    return shown


def cut_crops(model: Model, result: ExemplarResult, options: InputOptions,
              max_channels: int = DEFAULT_MAX_CHANNELS, html: bool = False) -> Crops:
    """Locate the shown channels' winners and cut their crops, reading each winning input once
    (and, with ``html``, running it once more to keep the winning channels' maps)."""
    from .inputs import spatial_axes
    from .render import exemplars as draw

    target = model.primary_input(options)
    axes = spatial_axes(target, options.layout) or ()
    shown = shown_channels(result, max_channels)
    tiles: dict[tuple[int, int, int], np.ndarray] = {}
    crops = Crops(shown, [], tiles)

    def visit(prepared: PreparedInput, entries: list[tuple[int, int, int]], located) -> None:
        crops.located = located
        picture = None
        if prepared.kind == "image":
            # the decoded picture the loader keeps for overlays (oriented, long side <= 2048):
            # no second decode; boxes scale to it from the original's pixels
            try:
                display = prepared.overlay_picture()
                picture = np.asarray(display.convert("RGB") if display.mode != "RGB"
                                     else display)
            except Exception:
                picture = None
        elif prepared.kind == "tensor" and len(axes) == 2:
            picture = draw.tensor_picture(prepared.array, axes)
        for layer, c, rank in entries:
            entry = located[layer][c][rank]
            if entry.unclipped is None:
                continue
            if len(axes) == 2 and picture is not None:
                box = entry.unclipped
                if entry.geometry is not None:
                    sy = picture.shape[0] / max(entry.geometry.original[0], 1)
                    sx = picture.shape[1] / max(entry.geometry.original[1], 1)
                    box = [box[0] * sy, box[1] * sx, box[2] * sy, box[3] * sx]
                tiles[(layer, c, rank)] = draw.crop_picture(picture, box)
            elif len(axes) == 1 and prepared.signal is not None:
                original = (entry.geometry.original[0] if entry.geometry
                            else prepared.signal.shape[1])
                tiles[(layer, c, rank)] = draw.snippet(prepared.signal, entry.unclipped, original)
        if html:
            _html_extras(model, result, prepared, picture, entries, crops, options)

    crops.located = locate(model, result, options, shown, visit)
    return crops


def _html_extras(model, result, prepared, picture, entries, crops: Crops, options) -> None:
    """The winning input's thumbnail and, per entry, that channel's map for it (PNG bytes)."""
    import io

    from PIL import Image

    layer, c, rank = entries[0]  # the winner's own name (a URL's input is a temporary copy)
    path = (crops.located[layer][c][rank].winner.path if crops.located
            else str(prepared.path))
    if picture is not None and path not in crops.thumbnails:
        image = Image.fromarray(picture)
        image.thumbnail((320, 320))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=80)
        crops.thumbnails[path] = buffer.getvalue()
    layers = sorted({layer for layer, _, _ in entries})
    probes = [result.probes[i] for i in layers]
    try:
        capture = model.capture(prepared, probes, options=options)
    except FmvizError:  # the input no longer loads or runs: no map for the page, said nowhere
        return
    for layer, c, rank in entries:
        winner = crops.located[layer][c][rank].winner if crops.located else None
        row = winner.row if winner is not None else 0
        maps = capture.maps.get(result.probes[layer].index)
        if maps is None or maps.ndim < 3 or row >= maps.shape[0] or c >= maps.shape[1]:
            continue
        values = np.asarray(maps[row, c], dtype=np.float64)
        if values.ndim == 1:
            values = values[np.newaxis]
        values = values.reshape(values.shape[0], -1) if values.ndim > 2 else values
        finite = values[np.isfinite(values)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        scaled = (values - lo) / (hi - lo) if hi > lo else np.zeros_like(values)
        grey = (np.clip(np.nan_to_num(scaled), 0, 1) * 255).round().astype(np.uint8)
        crops.maps[(layer, c, rank)] = encode_png(grey)


def write_exemplars(model: Model, result: ExemplarResult, options: InputOptions, out: Path,
                    max_channels: int = DEFAULT_MAX_CHANNELS, html: bool = False) -> dict:
    """Write ``exemplars.json``, per layer ``NNN-<safe>.exemplars.png`` and (``html``)
    ``index.html`` into ``out``; returns the report."""
    from .io import atomic_write_text, ensure_dir, safe_name
    from .render import exemplars as draw
    from .render.png import save_png
    from .reports.exemplars import build_report, field_json, write_html

    if max_channels < 1:
        raise OptionError("max_channels", f"{max_channels}: must be at least 1")
    folder = ensure_dir(out)
    crops = cut_crops(model, result, options, max_channels, html)
    files: dict[int, str] = {}
    for at, probe in enumerate(result.probes):
        rows = []
        tile_size = (draw.TILE, draw.TILE)
        for c in crops.shown[at]:
            tiles, scores = [], []
            for rank, entry in enumerate(crops.located[at][c]):
                tile = crops.tiles.get((at, c, rank))
                if tile is None:
                    continue
                tiles.append(tile)
                scores.append(entry.winner.score)
                tile_size = (tile.shape[1], tile.shape[0])
            if tiles:
                rows.append(draw.Row(c, tiles, scores))
        receptive, stride = field_json(probe)
        about = (f"field {'x'.join(map(str, receptive))} stride {'x'.join(map(str, stride))}"
                 if receptive and stride else "field: whole input (not exactly known)")
        title = (f"{probe.index} {probe.name}  top {result.top} by {result.score}  {about}  "
                 f"{len(rows)} of {result.tops[at].channels} channels, most selective first")
        name = f"{probe.index:03d}-{safe_name(probe.name)}.exemplars.png"
        save_png(draw.exemplar_image(rows, result.top, title, tile_size), folder / name)
        files[at] = name
    report = build_report(model.graph.to_json(), result, crops.located, crops.shown, files)
    import json

    # compact: json's C encoder (indent would take the slow pure-Python one: seconds for the
    # tens of thousands of exemplars of a large model)
    atomic_write_text(folder / "exemplars.json",
                      json.dumps(report, separators=(",", ":")) + "\n")
    if html:
        write_html(folder / "index.html", report, crops)
    return report
