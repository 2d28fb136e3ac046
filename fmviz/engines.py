"""Scan engines: the same scanner pieces on this machine or on a Dask distributed cluster.

A scan is a map-reduce over inputs. Any scanner with the :class:`ScannerProtocol` (``empty``,
``scan(paths, first_index)``, ``result(partial, total)``; partials with ``merge``) runs on
either engine: :class:`fmviz.scan.Scanner` for ``dead-filters``, the exemplars scanner for
``exemplars``. The Dask engine only schedules those pieces:

- the inputs become a ``dask.bag`` of partitions of ``(index, path)`` pairs;
- one task per partition opens the model and the scanner on its worker (once per worker,
  cached by model sha256 and options, onnxruntime with one intra-op thread per worker thread)
  and returns that partition's partial;
- the partials are merged on the workers by a tree reduction (``Bag.reduction``); only the
  merged partial comes back to the client, which turns it into the result;
- progress counts the inputs of finished partition tasks; a bad input under ``strict`` fails
  its task and the job; Ctrl-C cancels the job (the caller exits 130);
- with a checkpoint, completed partitions are merged on the workers in groups and the client
  saves the merged partial with the partitions it covers; a rerun skips them.

Input paths may be fsspec URLs (see :mod:`fmviz.inputs.remote`); each worker reads them.
Without the ``dask`` extra, :func:`scan_dask` raises an :class:`OptionError` saying how to
install it.
"""

from __future__ import annotations

import copy
import hashlib
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

from .errors import FmvizError, InputError, OptionError
from .inputs.remote import INSTALL_HINT, fetch, is_url, url_name
from .session import GPU_PROVIDERS  # providers whose tasks ask for a GPU worker

__all__ = ["DEFAULT_PARTITION_SIZE", "ENGINES", "CheckpointStore", "EngineOptions",
           "MergeablePartial", "PartialCheckpoint", "ScannerFactory", "ScannerProtocol",
           "collect_any", "scan_dask", "scan_items", "scan_on", "scan_sequential"]

ENGINES = ("local", "dask")
DEFAULT_PARTITION_SIZE = 64  # a ~1 MB partial per 64 inputs: small next to what it summarises
Progress = Callable[[int, int], None]
P = TypeVar("P")
Item = tuple[int, str]  # (index in the whole scan, path or URL)


@runtime_checkable
class MergeablePartial(Protocol):
    """A scanner's partial: merges in place, pickles, deep-copies; ``skipped`` entries are
    ``{"index", "path", "error"}`` dicts (URL inputs are renamed in them)."""

    skipped: list[dict]

    def merge(self, other: Any) -> Any: ...


class CheckpointStore(Protocol):
    """Where a partitioned scan keeps its merged partial (:class:`PartialCheckpoint` for
    ``dead-filters``); ``scan_key`` holds ``partition_size`` and ``inputs_sha256``."""

    path: Path

    def load(self, scan_key: dict) -> tuple[set[int], Any] | None: ...

    def save(self, scan_key: dict, done: set[int], partial: Any) -> None: ...


class ScannerProtocol(Protocol):
    """What an engine needs of a scanner (``fmviz.scan.Scanner`` has it)."""

    notices: list[str]

    def empty(self) -> Any: ...

    def scan(self, paths: Sequence[Path], first_index: int = 0) -> Any: ...

    def result(self, partial: Any, total: int, resumed_from: int = 0) -> Any: ...


# factory(model, options, notify) -> scanner; must be importable by name on the workers
ScannerFactory = Callable[..., ScannerProtocol]


@dataclass(frozen=True)
class EngineOptions:
    """Where a scan runs (the ``--engine``, ``--scheduler``, ``--workers``,
    ``--partition-size`` options)."""

    engine: str = "local"
    scheduler: str | None = None  # None: DASK_SCHEDULER_ADDRESS, else a LocalCluster
    workers: int | None = None  # LocalCluster worker processes (None: one per core)
    partition_size: int | None = None  # inputs per task (None: DEFAULT_PARTITION_SIZE)

    def validate(self) -> None:
        if self.engine not in ENGINES:
            raise OptionError("engine", f"{self.engine!r}: choose {' or '.join(ENGINES)}")
        for name in ("workers", "partition_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise OptionError(name, f"{value}: must be at least 1")

    @property
    def address(self) -> str | None:
        return self.scheduler or os.environ.get("DASK_SCHEDULER_ADDRESS") or None


# ----------------------------------------------------------------------------- one partition


class WorkerError(FmvizError):
    """An :class:`FmvizError` raised on a worker, carried back as its two messages (every
    FmvizError subclass pickles through this, whatever its constructor takes)."""

    def __init__(self, message: str, cli_message: str | None = None, exit_code: int = 2):
        super().__init__(message)
        self.cli_message = cli_message or message
        self.exit_code = exit_code

    def __reduce__(self):
        return (WorkerError, (str(self), self.cli_message, self.exit_code))

    def for_cli(self) -> str:
        return self.cli_message

    @classmethod
    def wrap(cls, exc: FmvizError, replace: dict[str, str] | None = None) -> WorkerError:
        message, cli_message = str(exc), exc.for_cli()
        for old, new in (replace or {}).items():
            message, cli_message = message.replace(old, new), cli_message.replace(old, new)
        return cls(message, cli_message, exc.exit_code)


@dataclass
class Piece:
    """A partition's partial with what only the workers saw (notices, providers)."""

    partial: Any
    inputs: int  # inputs this piece covers (scanned or skipped)
    notices: tuple[str, ...] = ()
    providers: tuple[str, ...] = ()

    def merged(self, other: Piece) -> Piece:
        """A new piece covering both (neither input is changed: Dask may reuse them)."""
        partial = copy.deepcopy(self.partial)
        partial.merge(other.partial)
        return Piece(partial, self.inputs + other.inputs,
                     tuple(dict.fromkeys(self.notices + other.notices)),
                     self.providers or other.providers)


def merge_pieces(pieces: Sequence[Piece]) -> Piece:
    pieces = [p for p in pieces if p is not None]
    if len(pieces) == 1:
        return pieces[0]
    merged = pieces[0].merged(pieces[1])
    for piece in pieces[2:]:
        merged.partial.merge(piece.partial)  # merged is ours: no copy needed
        merged.inputs += piece.inputs
        merged.notices = tuple(dict.fromkeys(merged.notices + piece.notices))
    return merged


def scan_items(scanner: ScannerProtocol, items: Sequence[Item], strict: bool = False) -> Any:
    """The partial over ``items`` (consecutive ``(index, path)`` pairs; paths may be URLs).

    Local paths go to ``scanner.scan`` as they are. URLs are read through fsspec into a
    temporary folder under their own names; one that cannot be fetched is skipped and listed
    (an error with ``strict``), and the skipped list names the URL, not the temporary file. A
    scanner with a ``names`` attribute (its partial keeps input paths: exemplars) gets the
    ``{temporary file: URL}`` map there while it scans, and keeps the URLs.
    """
    if not any(is_url(path) for _, path in items):
        return scanner.scan([Path(path) for _, path in items], first_index=items[0][0])
    partial = scanner.empty()
    fetched = fetch([path for _, path in items if is_url(path)])
    folder = Path(tempfile.mkdtemp(prefix="fmviz-fetch-"))
    try:
        local: list[tuple[int, Path | None, str]] = []
        for index, path in items:
            if not is_url(path):
                local.append((index, Path(path), path))
                continue
            data = fetched[path]
            if isinstance(data, str):
                if strict:
                    raise InputError(f"{path}: {data} (--strict stops at the first bad input)")
                partial.skipped.append({"index": index, "path": path, "error": data})
                local.append((index, None, path))
                continue
            target = folder / str(index) / url_name(path)
            target.parent.mkdir()
            target.write_bytes(data)
            local.append((index, target, path))
        names = {str(where): original for _, where, original in local if where is not None}
        run: list[tuple[int, Path]] = []
        renames = hasattr(scanner, "names")  # a scanner whose partial keeps input paths
        if renames:
            scanner.names = names  # type: ignore[attr-defined]
        try:
            for index, where, _ in [*local, (-1, None, "")]:
                if where is not None and (not run or run[-1][0] + 1 == index):
                    run.append((index, where))
                    continue
                if run:
                    part = scanner.scan([p for _, p in run], first_index=run[0][0])
                    for entry in part.skipped:
                        entry["path"] = names.get(entry["path"], entry["path"])
                    partial.merge(part)
                run = [(index, where)] if where is not None else []
        except FmvizError as exc:
            raise WorkerError.wrap(exc, names) from None
        finally:
            if renames:
                scanner.names = {}  # type: ignore[attr-defined]
        return partial
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# ----------------------------------------------------------------------------- on a worker


@dataclass(frozen=True)
class Job:
    """What every task of one scan needs (small: the model's bytes travel separately)."""

    model_path: str
    model_sha256: str
    providers: tuple[str, ...]
    threads: int
    expose_if: bool
    settings: Any  # fmviz.session.ProviderSettings: TF32, cuDNN search, caches
    factory: ScannerFactory
    options: Any
    strict: bool

    @property
    def key(self) -> str:
        factory = (f"{getattr(self.factory, '__module__', '')}."
                   f"{getattr(self.factory, '__qualname__', self.factory)}")
        return "|".join([self.model_sha256, repr(self.providers), str(self.threads),
                         str(self.expose_if), repr(self.settings), factory, repr(self.options)])


_idle: dict[str, list[ScannerProtocol]] = {}  # per worker process: scanners not in use
_models: dict[tuple, Any] = {}
_lock = threading.Lock()


def _model_file(job: Job, data: bytes | None) -> str:
    """The model as a local file: its own path where that holds the same bytes (a shared
    filesystem; external data next to it keeps working), else a copy of the shipped bytes."""
    here = Path(job.model_path)
    try:
        if here.is_file() and hashlib.sha256(here.read_bytes()).hexdigest() == job.model_sha256:
            return str(here)
    except OSError:
        pass
    if data is None:
        raise InputError(f"{job.model_path}: not on this worker, and its bytes were not sent")
    folder = Path(tempfile.gettempdir()) / "fmviz-models" / job.model_sha256
    target = folder / (here.name or "model.onnx")
    if not target.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        partial.write_bytes(data)
        os.replace(partial, target)
    return str(target)


@contextmanager
def _scanner(job: Job, data: bytes | None) -> Iterator[ScannerProtocol]:
    """A scanner for ``job`` on this worker: reused across tasks, one per concurrent task."""
    from .model import open_model

    key = job.key
    with _lock:
        idle = _idle.setdefault(key, [])
        scanner = idle.pop() if idle else None
    if scanner is None:
        model_key = (job.model_sha256, job.providers, job.threads, job.expose_if,
                     repr(job.settings))
        with _lock:
            model = _models.get(model_key)
        if model is None:
            model = open_model(_model_file(job, data), providers=job.providers,
                               threads=job.threads, expose_if=job.expose_if,
                               settings=job.settings)
            with _lock:
                model = _models.setdefault(model_key, model)
        scanner = job.factory(model, job.options, None)
    try:
        yield scanner
    finally:
        with _lock:
            _idle[key].append(scanner)


def _scan_partition(part: list, job: Job, data: bytes | None) -> list[Piece]:
    """The bag's per-partition task: ``[(pid, items)]`` -> ``[Piece]``."""
    ((_, items),) = part
    try:
        with _scanner(job, data) as scanner:
            partial = scan_items(scanner, items, job.strict)
            providers = tuple(getattr(scanner, "providers", ()) or ())
            return [Piece(partial, len(items), tuple(scanner.notices), providers)]
    except WorkerError:
        raise
    except FmvizError as exc:
        raise WorkerError.wrap(exc) from None


def _merge_partition(part: Sequence[Piece]) -> Piece:
    return merge_pieces(list(part))


def _merge_partitions(parts: Sequence[Sequence[Piece]]) -> Piece:
    return merge_pieces([piece for part in parts for piece in part])


# ----------------------------------------------------------------------------- checkpoints


DASK_CHECKPOINT_SCHEMA = "fmviz/dead-filters-checkpoint-partitions/1"


class PartialCheckpoint:
    """A checkpoint of a partitioned scan: a :class:`~fmviz.scan.ScanPartial` merged over the
    partitions it lists. An ``.npz`` (never unpickled) with a JSON header, as the local
    engine's, but it names partitions of a fixed size instead of a count of first inputs.
    """

    def __init__(self, path: Path, header: dict, layers: int):
        self.path = Path(path)
        self.header = dict(header, schema=DASK_CHECKPOINT_SCHEMA)
        self.layers = layers

    def _bad(self, reason: str) -> FmvizError:
        return InputError(f"{self.path}: {reason}; delete it to start over, or use another "
                          "--checkpoint file")

    def load(self, scan_key: dict) -> tuple[set[int], Any] | None:
        """The partitions done and their partial, or None when there is no checkpoint yet."""
        from .checkpoint import _short, read_partial

        if not self.path.exists():
            return None
        header, partial = read_partial(self.path, self.header["schema"], self.layers, self._bad,
                                       "partitions_done")
        expected = {**self.header, **scan_key}
        for key, label in (("model_sha256", "model"), ("stage", "--stage"),
                           ("tensors", "--layers"), ("eps", "--eps"),
                           ("options", "input options"), ("partition_size", "--partition-size"),
                           ("inputs_sha256", "inputs")):
            if header.get(key) != expected.get(key):
                raise self._bad(f"made with other {label} ({_short(header.get(key))} vs "
                                f"{_short(expected.get(key))})")
        return set(header["partitions_done"]), partial

    def save(self, scan_key: dict, done: set[int], partial: Any) -> None:
        from .checkpoint import write_partial
        from .io import ensure_dir

        ensure_dir(self.path.parent if str(self.path.parent) else Path("."))
        write_partial(self.path, {**self.header, **scan_key, "partitions_done": sorted(done)},
                      partial)


def _inputs_digest(items: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for item in items:
        text = item if is_url(item) else os.path.normpath(item)
        digest.update(text.encode("utf-8", "surrogateescape") + b"\n")
    return digest.hexdigest()


# ----------------------------------------------------------------------------- the client


def balanced_partition_size(inputs: int, threads: int) -> int:
    """The default partition size: DEFAULT_PARTITION_SIZE for long scans; for short ones,
    about four partitions per worker thread (so the last tasks do not leave threads idle),
    but never under one batch of 16 inputs."""
    return max(16, min(DEFAULT_PARTITION_SIZE, -(-inputs // (4 * max(1, threads)))))


def _partitions(paths: Sequence[str], size: int) -> list[tuple[int, list[Item]]]:
    return [(start // size, [(i, paths[i]) for i in range(start, min(start + size, len(paths)))])
            for start in range(0, len(paths), size)]


def _import_dask():
    try:
        import dask
        import dask.bag
        import distributed
    except ImportError:
        raise OptionError("engine", f"dask needs the dask extra: {INSTALL_HINT}") from None
    return dask, distributed


@contextmanager
def _client(engine: EngineOptions, gpu: bool, client=None):
    """A client on ``engine.address``, or on a LocalCluster started here and closed after."""
    import logging

    dask, distributed = _import_dask()
    if client is not None:
        yield client
        return
    address = engine.address
    if address:
        try:
            connected = distributed.Client(address, timeout="20s", set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise OptionError("scheduler", f"{address}: cannot connect ({exc})") from None
        try:
            yield connected
        finally:
            connected.close()
        return
    workers = engine.workers or (1 if gpu else max(1, os.cpu_count() or 1))
    cluster = distributed.LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
        silence_logs=logging.ERROR, resources={"GPU": 1} if gpu else None,
    )
    try:
        local = distributed.Client(cluster, set_as_default=False)
        try:
            yield local
        finally:
            local.close()
    finally:
        cluster.close()


def scan_dask(
    model,
    paths: Sequence[str | Path],
    options,
    engine: EngineOptions,
    factory: ScannerFactory | None = None,
    *,
    progress: Progress | None = None,
    notify: Callable[[str], None] | None = None,
    checkpoint: CheckpointStore | None = None,
    checkpoint_every: int = 256,
    expose_if: bool = False,
    client=None,
):
    """Scan ``paths`` (local paths on a filesystem the workers share, or URLs) on a Dask
    cluster and return ``scanner.result(...)``, the result the local engine would give.

    ``factory(model, options, notify)`` opens the scanner (default :class:`fmviz.scan.Scanner`);
    ``options`` must have ``strict`` and ``limit`` (None for none). ``client`` is an existing
    ``distributed.Client`` to use instead of ``engine``'s scheduler. Raises
    :class:`OptionError` without the dask extra, :class:`FmvizError` as the local engine does.
    """
    from dataclasses import fields, is_dataclass, replace

    from .scan import Scanner

    engine.validate()
    _import_dask()
    factory = factory or Scanner
    notify = notify or (lambda message: None)
    progress = progress or (lambda done, total: None)
    scanner = factory(model, options, notify)  # on the client: empty() and result() only
    todo = [str(p) for p in paths]
    limit = getattr(options, "limit", None)
    if limit is not None:
        todo = todo[:limit]
    if not todo:
        raise InputError("no input files to scan")
    size = engine.partition_size or DEFAULT_PARTITION_SIZE
    partitions = _partitions(todo, size)
    strict = bool(getattr(options, "strict", False))
    # the workers' scanners: no checkpoint of their own, one decoding thread beside inference
    wanted = {"checkpoint": None, "limit": None,
              "workers": getattr(options, "workers", None) or 1}
    present = {f.name for f in fields(options)} if is_dataclass(options) else set()
    worker_options = (replace(options, **{k: v for k, v in wanted.items() if k in present})
                      if present else options)
    runner = model.runner
    providers = tuple(runner.requested_providers)
    gpu = any(name in GPU_PROVIDERS for name in model.providers)

    scan_key = {"partition_size": size, "inputs_sha256": _inputs_digest(todo)}
    done: set[int] = set()
    merged = scanner.empty()
    if checkpoint is not None:
        loaded = checkpoint.load(scan_key)
        if loaded is not None:
            done, merged = loaded
            covered = sum(len(items) for pid, items in partitions if pid in done)
            notify(f"resuming from {checkpoint.path}: {len(done)} of {len(partitions)} "
                   f"partitions ({covered} of {len(todo)} inputs) done")
    remaining = [p for p in partitions if p[0] not in done]
    resumed_from = len(todo) - sum(len(items) for _, items in remaining)

    job = Job(model_path=str(model.path), model_sha256=model.graph.sha256, providers=providers,
              threads=runner.threads or 1, expose_if=expose_if, settings=runner.settings,
              factory=factory,
              options=worker_options, strict=strict)
    counted = resumed_from
    progress(counted, len(todo))
    if remaining:
        with _client(engine, gpu, client) as active, active.as_current():
            if engine.partition_size is None and checkpoint is None:
                # a small scan: enough partitions to keep every worker thread busy to the end
                threads = sum(active.nthreads().values()) or 1
                remaining = _partitions(todo, balanced_partition_size(len(todo), threads))
            piece = _run_on_cluster(active, job, model, remaining, len(todo), counted,
                                    progress, checkpoint, scan_key, done, merged,
                                    checkpoint_every, notify)
        if checkpoint is None:
            merged.merge(piece.partial)
        for message in piece.notices:
            if hasattr(scanner, "notice"):
                scanner.notice(message)
            else:
                notify(message)
        if piece.providers and hasattr(scanner, "_providers"):
            scanner._providers = list(piece.providers)
    return scanner.result(merged, len(todo), resumed_from=resumed_from)


def _run_on_cluster(client, job, model, remaining, total, counted, progress, checkpoint,
                    scan_key, done, merged, checkpoint_every, notify) -> Piece:
    import dask
    import dask.bag as db
    from distributed import as_completed, futures_of

    data = Path(model.path).read_bytes() if Path(model.path).is_file() else None
    # a literal in the graph, not scattered data: if the worker holding it dies, the scheduler
    # can hand it out again (scattered data has no recipe and would fail every waiting task)
    shipped = (dask.delayed(data, name=f"fmviz-model-{job.model_sha256}", traverse=False)
               if data is not None else None)
    bag = db.from_sequence(remaining, npartitions=len(remaining))
    resources = {"GPU": 1} if any(n in GPU_PROVIDERS for n in model.providers) else None
    with dask.annotate(resources=resources) if resources else _nothing():
        scanned = bag.map_partitions(_scan_partition, job, shipped)
    scanned = client.persist(scanned, optimize_graph=False)
    futures = futures_of(scanned)
    size_of = {(scanned.name, i): len(items) for i, (_, items) in enumerate(remaining)}
    pid_of = {(scanned.name, i): pid for i, (pid, _) in enumerate(remaining)}
    final = None
    if checkpoint is None:
        final = client.compute(
            scanned.reduction(_merge_partition, _merge_partition, split_every=8),
            optimize_graph=False,
        )
    unsaved: list = []
    unsaved_inputs = 0

    def save() -> None:
        nonlocal unsaved, unsaved_inputs
        if not unsaved:
            return
        group = client.submit(_merge_partitions, unsaved, pure=False).result()
        merged.merge(group.partial)
        done.update(pid_of[f.key] for f in unsaved)
        checkpoint.save(scan_key, done, merged)
        notices.extend(group.notices)
        unsaved, unsaved_inputs = [], 0

    notices: list[str] = []
    try:
        seen: set = set()
        for future in as_completed(futures):
            if future.status == "error":
                future.result()  # raises the task's error (strict, a broken model, ...)
            if future.key in seen:  # a task rerun after its worker died: counted once
                continue
            seen.add(future.key)
            counted += size_of[future.key]
            progress(counted, total)
            if checkpoint is not None:
                unsaved.append(future)
                unsaved_inputs += size_of[future.key]
                if unsaved_inputs >= checkpoint_every:
                    save()
        if checkpoint is not None:
            save()
            return Piece(None, total, tuple(dict.fromkeys(notices)))
        assert final is not None  # the reduction runs whenever there is no checkpoint
        return final.result()
    except KeyboardInterrupt:
        client.cancel([f for f in futures if f.status == "pending"] + ([final] if final else []))
        if checkpoint is not None:
            try:
                unsaved = [f for f in unsaved if f.status == "finished"]
                save()
            except Exception:  # the interrupt matters more than a last save
                pass
            notify(f"interrupted: {checkpoint.path} holds {len(done)} partitions; run the "
                   "same command again to resume")
        raise
    except BaseException:
        client.cancel(futures + ([final] if final else []))
        raise


@contextmanager
def _nothing():
    yield


# ----------------------------------------------------------------------------- no cluster


def scan_sequential(model, paths: Sequence[str | Path], options,
                    factory: ScannerFactory | None = None, *,
                    partition_size: int | None = None, progress: Progress | None = None,
                    notify: Callable[[str], None] | None = None):
    """The pieces run one partition after another in this process: the local engine for
    inputs that are URLs (local paths keep :func:`fmviz.scan.scan`, with its checkpoints)."""
    from .scan import Scanner

    factory = factory or Scanner
    progress = progress or (lambda done, total: None)
    scanner = factory(model, options, notify)
    todo = [str(p) for p in paths]
    limit = getattr(options, "limit", None)
    todo = todo[:limit] if limit is not None else todo
    if not todo:
        raise InputError("no input files to scan")
    merged = scanner.empty()
    done = 0
    progress(done, len(todo))
    for _, items in _partitions(todo, partition_size or DEFAULT_PARTITION_SIZE):
        merged.merge(scan_items(scanner, items, bool(getattr(options, "strict", False))))
        done += len(items)
        progress(done, len(todo))
    return scanner.result(merged, len(todo))


# ----------------------------------------------------------------------------- the commands


def collect_any(items: Sequence[str], collect_local: Callable[[Sequence[str]], list[Path]]
                ) -> list[Path | str]:
    """Files, folders, ``-`` and URLs as one ordered, de-duplicated list: local items as
    ``collect_local`` (``collect_inputs``) gives them, URLs (strings) listed through fsspec."""
    from .inputs.remote import collect_urls

    found: list[Path | str] = []
    local: list[str] = []
    for item in items:
        if is_url(item):
            if local:
                found.extend(collect_local(local))
                local = []
            found.extend(collect_urls(item))
        else:
            local.append(item)
    if local:
        found.extend(collect_local(local))
    if not any(isinstance(p, str) for p in found):
        return found
    unique: dict[str, Path | str] = {}
    for path in found:
        unique.setdefault(path if isinstance(path, str) else os.path.normpath(str(path)), path)
    return list(unique.values())


def scan_on(engine: EngineOptions, model, paths: Sequence[str | Path], options,
            factory: ScannerFactory | None = None, *, progress: Progress | None = None,
            notify: Callable[[str], None] | None = None, checkpoint=None,
            expose_if: bool = False):
    """Run a scan on ``engine``: the Dask cluster, or this process for URL inputs.

    For :class:`fmviz.scan.Scanner` (``dead-filters``) ``options.checkpoint`` becomes a
    :class:`PartialCheckpoint`; other scanners pass their own ``checkpoint`` store.
    """
    from .scan import Scanner

    factory = factory or Scanner
    engine.validate()
    if engine.engine != "dask":
        if getattr(options, "checkpoint", None) is not None:
            raise OptionError("checkpoint", "is not available for URL inputs with the local "
                              "engine (use --engine dask)")
        return scan_sequential(model, paths, options, factory,
                               partition_size=engine.partition_size, progress=progress,
                               notify=notify)
    _import_dask()
    if checkpoint is None and factory is Scanner and options.checkpoint is not None:
        from .checkpoint import checkpoint_header

        probes = model.probes(options.patterns, options.stage, options.inputs)
        checkpoint = PartialCheckpoint(
            options.checkpoint, checkpoint_header(model, options, [p.tensor for p in probes]),
            len(probes))
    return scan_dask(model, paths, options, engine, factory, progress=progress, notify=notify,
                     checkpoint=checkpoint,
                     checkpoint_every=getattr(options, "checkpoint_every", 64),
                     expose_if=expose_if)
