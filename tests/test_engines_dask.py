"""``--engine dask``: the same report as the local engine, on a real 2-process Dask cluster.

One ``LocalCluster(n_workers=2, threads_per_worker=1, processes=True)`` serves the module. The
planted dead-channel model (tests/test_dead_filters.py) is scanned by both engines; the Dask
engine's JSON report must name the same channels, with statistics equal to float32 precision,
for every partitioning, when a worker dies mid-scan, from ``memory://`` URLs, and when resumed
from a partition checkpoint. Skipped where the ``dask`` extra is not installed.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from fmviz.cli import main
from fmviz.scan import Scanner, ScanOptions
from tests.test_dead_filters import planted_inputs, planted_model, save

REASON = "needs the dask extra (pip install 'fmviz[dask]')"
COUNT = 30
BAD = 11  # an input that is not a tensor: skipped, and listed at its place


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def cluster():
    if os.environ.get("FMVIZ_REQUIRE_DASK"):  # CI installs the extra: these must run
        import distributed
    else:
        distributed = pytest.importorskip("distributed", reason=REASON)
    import logging

    local = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                     dashboard_address=None, silence_logs=logging.ERROR)
    yield local
    local.close()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("engines")
    model = save(planted_model(), root / "planted.onnx")
    inputs = planted_inputs(root / "inputs", COUNT, seed=3)
    bad = root / "inputs" / f"input-{BAD:03d}.npy"
    bad.write_bytes(b"not a tensor")
    return {"root": root, "model": model, "folder": root / "inputs", "inputs": inputs}


@pytest.fixture(scope="module")
def local_report(setup):
    code, out, err = _cli([setup["model"], setup["folder"], "--json", "--quiet"])
    assert code == 0, err
    return json.loads(out)


def _cli(args) -> tuple[int, str, str]:
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["dead-filters", *[str(a) for a in args]])
    return code, out.getvalue(), err.getvalue()


def _dask(setup, cluster, *extra) -> dict:
    code, out, err = _cli([setup["model"], setup["folder"], "--json", "--quiet",
                           "--engine", "dask", "--scheduler", cluster.scheduler_address, *extra])
    assert code == 0, err
    return json.loads(out)


def assert_same_report(local: dict, remote: dict) -> None:
    """Same channel sets, counts and skipped list; statistics equal as float32."""
    for key in ("inputs_scanned", "inputs_skipped", "samples", "skipped", "summary", "stage",
                "eps", "model"):
        assert remote[key] == local[key], key
    assert len(remote["layers"]) == len(local["layers"])
    for mine, theirs in zip(local["layers"], remote["layers"], strict=True):
        for key in ("name", "tensor", "channels", "dead", "rare", "constant", "positions",
                    "nonfinite", "active_fraction"):
            assert theirs[key] == mine[key], (mine["name"], key)
        for key in ("max_abs", "min", "max", "mean", "std"):
            a = np.asarray(mine[key], np.float64)
            b = np.asarray(theirs[key], np.float64)
            np.testing.assert_allclose(b, a, rtol=2 * np.finfo(np.float32).eps, atol=1e-30,
                                       err_msg=f"{mine['name']} {key}")


# ----------------------------------------------------------------------------- the same report


def test_local_report_has_the_planted_channels_and_the_bad_input(local_report, setup):
    conv1 = local_report["layers"][0]
    assert (conv1["dead"], conv1["constant"], conv1["rare"]) == ([1, 4], [2], [3])
    assert local_report["inputs_scanned"] == COUNT - 1
    assert [Path(s["path"]).name for s in local_report["skipped"]] == [f"input-{BAD:03d}.npy"]


@pytest.mark.parametrize("size", [1, 7, 64])
def test_dask_report_equals_local_for_any_partitioning(setup, cluster, local_report, size):
    remote = _dask(setup, cluster, "--partition-size", size)
    assert_same_report(local_report, remote)


def test_skipped_inputs_keep_the_local_order(setup, cluster, tmp_path):
    folder = tmp_path / "many-bad"
    planted_inputs(folder, 12, seed=5)
    for i in (2, 5, 9):
        (folder / f"input-{i:03d}.npy").write_bytes(b"junk")
    code, out, err = _cli([setup["model"], folder, "--json", "--quiet"])
    local = json.loads(out)
    code, out, err = _cli([setup["model"], folder, "--json", "--quiet", "--engine", "dask",
                           "--scheduler", cluster.scheduler_address, "--partition-size", 2])
    assert code == 0, err
    remote = json.loads(out)
    assert [Path(s["path"]).name for s in remote["skipped"]] == [
        f"input-{i:03d}.npy" for i in (2, 5, 9)]
    assert_same_report(local, remote)


def test_limit_holds(setup, cluster):
    remote = _dask(setup, cluster, "--partition-size", 7, "--limit", 10)
    assert remote["inputs_scanned"] == 10 and remote["inputs_skipped"] == 0


def test_strict_aborts_the_job_with_exit_2(setup, cluster):
    code, out, err = _cli([setup["model"], setup["folder"], "--quiet", "--strict", "--engine",
                           "dask", "--scheduler", cluster.scheduler_address,
                           "--partition-size", 4])
    assert code == 2 and out == ""
    assert err.startswith("Error: ") and f"input-{BAD:03d}.npy" in err
    assert "--strict stops at the first bad input" in err and err.count("\n") == 1


def test_environment_variable_names_the_scheduler(setup, cluster, local_report, monkeypatch):
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", cluster.scheduler_address)
    code, out, err = _cli([setup["model"], setup["folder"], "--json", "--quiet", "--engine",
                           "dask", "--partition-size", 16])
    assert code == 0, err
    assert_same_report(local_report, json.loads(out))


def test_progress_counts_every_input_from_task_completions(setup, cluster):
    from distributed import Client

    from fmviz.engines import EngineOptions, scan_dask
    from fmviz.model import open_model
    from fmviz.scan import collect_inputs

    calls: list[tuple[int, int]] = []
    paths = collect_inputs([str(setup["folder"])])
    with Client(cluster.scheduler_address, set_as_default=False) as client:
        result = scan_dask(open_model(setup["model"]), paths, ScanOptions(),
                           EngineOptions("dask", partition_size=4), progress=lambda d, t:
                           calls.append((d, t)), client=client)
    assert result.inputs_scanned == COUNT - 1
    assert calls[0] == (0, COUNT) and calls[-1] == (COUNT, COUNT)
    done = [d for d, _ in calls]
    assert done == sorted(done) and len(calls) == 1 + -(-COUNT // 4)


# ----------------------------------------------------------------------------- failures


class KillingScanner(Scanner):
    """Kills its worker process the first time it is given input 12 (a marker file says so)."""

    def scan(self, paths, first_index=0, *args, **kwargs):
        marker = Path(self.model.path).parent / "killed-once"
        if first_index <= 12 < first_index + len(paths) and not marker.exists():
            marker.write_text(str(os.getpid()))
            os._exit(1)
        return super().scan(paths, first_index, *args, **kwargs)


def test_a_worker_killed_mid_scan_gives_the_same_report(setup, cluster, local_report):
    from distributed import Client

    from fmviz.engines import EngineOptions, scan_dask
    from fmviz.model import open_model
    from fmviz.reports.deadfilters import build_report
    from fmviz.scan import collect_inputs

    marker = setup["model"].parent / "killed-once"
    marker.unlink(missing_ok=True)
    model = open_model(setup["model"])
    paths = collect_inputs([str(setup["folder"])])
    with Client(cluster.scheduler_address, set_as_default=False) as client:
        result = scan_dask(model, paths, ScanOptions(), EngineOptions("dask", partition_size=3),
                           KillingScanner, client=client)
        client.wait_for_workers(2, timeout=60)  # the nanny restarts it for the next tests
    assert marker.exists(), "no worker was killed"
    report = json.loads(json.dumps(build_report(model.graph.to_json(), result, 0.01)))
    assert_same_report(local_report, report)


def test_missing_extra_says_how_to_install(setup, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed fails
    code, out, err = _cli([setup["model"], setup["folder"], "--engine", "dask", "--quiet"])
    assert code == 2 and out == ""
    assert err == ("Error: --engine dask needs the dask extra: pip install 'fmviz[dask]'\n")


# ----------------------------------------------------------------------------- URLs, resume


def _put_in_memory(files: dict[str, bytes]) -> None:
    import fsspec

    fs = fsspec.filesystem("memory")
    for path, data in files.items():
        fs.pipe(path, data)


def test_memory_urls_read_on_the_workers(setup, cluster, local_report):
    pytest.importorskip("fsspec", reason=REASON)
    from distributed import Client

    files = {f"/planted/{p.name}": p.read_bytes() for p in sorted(setup["folder"].iterdir())}
    files["/planted/.hidden.npy"] = b"never listed"
    files["/planted/notes.txt"] = b"not an input kind"
    _put_in_memory(files)  # here, for listing; on each worker, as an object store would be
    with Client(cluster.scheduler_address, set_as_default=False) as client:
        client.run(_put_in_memory, files)
    code, out, err = _cli(["--debug", setup["model"], "memory://planted", "--json", "--quiet",
                           "--engine", "dask", "--scheduler", cluster.scheduler_address,
                           "--partition-size", 8])
    assert code == 0, err
    remote = json.loads(out)
    assert remote["skipped"][0]["path"] == f"memory://planted/input-{BAD:03d}.npy"
    remote["skipped"] = local_report["skipped"]  # the same input, named by its URL
    assert_same_report(local_report, remote)


def test_memory_urls_with_the_local_engine(setup, local_report):
    pytest.importorskip("fsspec", reason=REASON)
    files = {f"/planted-local/{p.name}": p.read_bytes() for p in setup["folder"].iterdir()}
    _put_in_memory(files)
    code, out, err = _cli([setup["model"], "memory://planted-local", "--json", "--quiet"])
    assert code == 0, err
    remote = json.loads(out)
    assert [s["path"] for s in remote["skipped"]] == [
        f"memory://planted-local/input-{BAD:03d}.npy"]
    remote["skipped"] = local_report["skipped"]
    assert_same_report(local_report, remote)


def test_missing_url_is_an_error_before_anything_runs(setup):
    pytest.importorskip("fsspec", reason=REASON)
    code, out, err = _cli([setup["model"], "memory://no/such/folder", "--quiet"])
    assert (code, out) == (2, "")
    assert err == "Error: memory://no/such/folder: no such file or folder\n"


def test_resume_skips_the_partitions_in_the_checkpoint(setup, cluster, local_report, tmp_path):
    from distributed import Client

    from fmviz.checkpoint import checkpoint_header
    from fmviz.engines import EngineOptions, PartialCheckpoint, _inputs_digest, scan_dask
    from fmviz.model import open_model
    from fmviz.reports.deadfilters import build_report
    from fmviz.scan import collect_inputs

    model = open_model(setup["model"])
    paths = collect_inputs([str(setup["folder"])])
    where = tmp_path / "scan.npz"
    options = ScanOptions(checkpoint=where)
    scanner = Scanner(model, options)
    size = 8
    # partitions 0 and 2 counted already (by this process, as an earlier run would have)
    partial = scanner.scan(paths[0:8], first_index=0)
    partial.merge(scanner.scan(paths[16:24], first_index=16))
    store = PartialCheckpoint(where, checkpoint_header(model, options,
                                                       [p.tensor for p in scanner.probes]), 2)
    key = {"partition_size": size, "inputs_sha256": _inputs_digest([str(p) for p in paths])}
    store.save(key, {0, 2}, partial)
    calls: list[tuple[int, int]] = []
    notes: list[str] = []
    with Client(cluster.scheduler_address, set_as_default=False) as client:
        result = scan_dask(model, paths, options, EngineOptions("dask", partition_size=size),
                           progress=lambda d, t: calls.append((d, t)), notify=notes.append,
                           checkpoint=store, checkpoint_every=1, client=client)
    assert calls[0] == (16, COUNT) and calls[-1] == (COUNT, COUNT)
    assert result.resumed_from == 16
    assert any("2 of 4 partitions (16 of 30 inputs) done" in n for n in notes), notes
    assert_same_report(local_report, json.loads(json.dumps(
        build_report(model.graph.to_json(), result, 0.01))))
    done, saved = store.load(key)
    assert done == {0, 1, 2, 3} and saved.inputs_scanned == COUNT - 1
    # another partitioning cannot reuse it
    with pytest.raises(Exception, match="--partition-size"):
        store.load({**key, "partition_size": 4})


def test_cli_checkpoint_then_rerun_resumes_everything(setup, cluster, local_report, tmp_path):
    where = tmp_path / "cli.npz"
    first = _dask(setup, cluster, "--partition-size", 7, "--checkpoint", where)
    assert where.exists()
    code, out, err = _cli([setup["model"], setup["folder"], "--json", "--engine", "dask",
                           "--scheduler", cluster.scheduler_address, "--partition-size", 7,
                           "--checkpoint", where])
    assert code == 0, err
    assert "resuming from" in err and "5 of 5 partitions" in err
    assert_same_report(local_report, first)
    assert_same_report(local_report, json.loads(out))


# ----------------------------------------------------------------------------- Ctrl-C


def test_ctrl_c_cancels_the_job_saves_the_checkpoint_and_exits_130(setup, cluster, tmp_path,
                                                                   monkeypatch):
    from distributed import Client

    from fmviz.reports.console import ScanProgress

    def interrupt(self, done, total):
        if done >= 8:  # the first finished partitions have been counted
            raise KeyboardInterrupt

    monkeypatch.setattr(ScanProgress, "__call__", interrupt)
    where = tmp_path / "interrupted.npz"
    code, out, err = _cli([setup["model"], setup["folder"], "--engine", "dask", "--scheduler",
                           cluster.scheduler_address, "--partition-size", 4,
                           "--checkpoint", where, "--checkpoint-every", 4])
    assert code == 130 and out == ""
    assert "interrupted: " in err and "run the same command again to resume" in err
    assert where.exists()
    with Client(cluster.scheduler_address, set_as_default=False) as client:
        # nothing of the job is left running or held on the cluster
        import time

        for _ in range(100):
            left = client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks))
            if not left:
                break
            time.sleep(0.1)
        assert left == 0
    monkeypatch.undo()
    code, out, err = _cli([setup["model"], setup["folder"], "--json", "--engine", "dask",
                           "--scheduler", cluster.scheduler_address, "--partition-size", 4,
                           "--checkpoint", where])
    assert code == 0, err
    assert "resuming from" in err
    local = json.loads(_cli([setup["model"], setup["folder"], "--json", "--quiet"])[1])
    assert_same_report(local, json.loads(out))


def test_default_partition_size_balances_short_scans():
    from fmviz.engines import DEFAULT_PARTITION_SIZE, balanced_partition_size

    assert balanced_partition_size(320, 2) == 40  # 8 tasks for 2 threads
    assert balanced_partition_size(10**6, 64) == DEFAULT_PARTITION_SIZE == 64
    assert balanced_partition_size(30, 2) == 16  # never under one batch
    assert balanced_partition_size(30, 0) == 16


def test_default_partitioning_gives_the_same_report(setup, cluster, local_report):
    assert_same_report(local_report, _dask(setup, cluster))


# ----------------------------------------------------------------------------- exemplars


EXEMPLAR_ARGS = ("--top", "4", "--preset", "raw", "--json", "--quiet")


def _exemplars_cli(args) -> tuple[int, str, str]:
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["exemplars", *[str(a) for a in args]])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def exemplar_setup(tmp_path_factory):
    """The planted exemplar model and pictures of tests/test_exemplars.py, and the local
    engine's exemplars.json over them."""
    from tests.test_exemplars import write_planted

    root = tmp_path_factory.mktemp("exemplars")
    model, files = write_planted(root)
    out = root / "local"
    code, text, err = _exemplars_cli([model, files[0].parent, "-o", out, *EXEMPLAR_ARGS])
    assert code == 0, err
    report = json.loads((out / "exemplars.json").read_text())
    assert json.loads(text) == report
    return {"root": root, "model": model, "files": files, "folder": files[0].parent,
            "out": out, "report": report}


def assert_same_exemplars(local: dict, remote: dict, name=lambda path: path) -> None:
    """Same top-K inputs (``name`` maps the remote path to the local one), positions and
    boxes; scores equal as float32."""
    for key in ("schema", "model", "stage", "top", "score", "inputs_scanned", "skipped"):
        assert remote[key] == local[key], key
    assert len(remote["layers"]) == len(local["layers"])
    for mine, theirs in zip(local["layers"], remote["layers"], strict=True):
        for key in ("name", "tensor", "channels", "receptive_field", "input_stride",
                    "shown_channels", "selectivity", "files"):
            assert theirs[key] == mine[key], (mine["name"], key)
        for c, (want, got) in enumerate(zip(mine["exemplars"], theirs["exemplars"],
                                            strict=True)):
            assert [name(e["path"]) for e in got] == [e["path"] for e in want], (mine["name"], c)
            assert [e["position"] for e in got] == [e["position"] for e in want]
            assert [e["box"] for e in got] == [e["box"] for e in want]
            assert all(e["box"] is not None for e in got)
            np.testing.assert_allclose([e["score"] for e in got], [e["score"] for e in want],
                                       rtol=np.finfo(np.float32).eps, atol=0)


def _same_pictures(a: Path, b: Path) -> None:
    from PIL import Image

    pictures = sorted(p.name for p in a.glob("*.exemplars.png"))
    assert pictures and pictures == sorted(p.name for p in b.glob("*.exemplars.png"))
    for name in pictures:
        np.testing.assert_array_equal(np.asarray(Image.open(a / name)),
                                      np.asarray(Image.open(b / name)), err_msg=name)


def test_local_exemplars_have_the_planted_winners(exemplar_setup):
    from tests.test_exemplars import _oracle

    expected = _oracle(exemplar_setup["files"], 4)
    for layer, want in zip(exemplar_setup["report"]["layers"], expected, strict=True):
        for c in range(2):
            got = layer["exemplars"][c]
            assert [e["path"] for e in got] == [w[0] for w in want[c]]
            assert [e["box"] for e in got] == [w[3] for w in want[c]]


@pytest.mark.parametrize("size", [1, 7])
def test_dask_exemplars_equal_local(exemplar_setup, cluster, tmp_path, size):
    out = tmp_path / "dask"
    code, text, err = _exemplars_cli([
        exemplar_setup["model"], exemplar_setup["folder"], "-o", out, *EXEMPLAR_ARGS,
        "--engine", "dask", "--scheduler", cluster.scheduler_address, "--partition-size", size])
    assert code == 0, err
    remote = json.loads((out / "exemplars.json").read_text())
    assert json.loads(text) == remote
    assert_same_exemplars(exemplar_setup["report"], remote)
    _same_pictures(exemplar_setup["out"], out)  # the crops cut on the client


@pytest.mark.parametrize("engine", ["dask", "local"])
def test_exemplars_from_a_memory_folder(exemplar_setup, cluster, tmp_path, engine):
    pytest.importorskip("fsspec", reason=REASON)
    from distributed import Client

    folder = f"/exemplars-{engine}"
    files = {f"{folder}/{p.name}": p.read_bytes() for p in exemplar_setup["files"]}
    _put_in_memory(files)  # here: for listing, and for the crops cut on the client
    if engine == "dask":
        with Client(cluster.scheduler_address, set_as_default=False) as client:
            client.run(_put_in_memory, files)
    out = tmp_path / "memory"
    extra = (["--scheduler", cluster.scheduler_address, "--partition-size", 4]
             if engine == "dask" else [])
    code, text, err = _exemplars_cli([
        exemplar_setup["model"], f"memory://{folder.lstrip('/')}", "-o", out, *EXEMPLAR_ARGS,
        "--engine", engine, *extra, "--html"])
    assert code == 0, err
    remote = json.loads((out / "exemplars.json").read_text())
    prefix = f"memory://{folder.lstrip('/')}/"
    assert all(e["path"].startswith(prefix) for layer in remote["layers"]
               for per_channel in layer["exemplars"] for e in per_channel)
    local_folder = str(exemplar_setup["folder"])
    assert_same_exemplars(exemplar_setup["report"], remote,
                          lambda path: str(Path(local_folder) / path[len(prefix):]))
    _same_pictures(exemplar_setup["out"], out)
    page = (out / "index.html").read_text()
    data = json.loads(page.split('id="fmviz-data">', 1)[1].split("</script>", 1)[0])
    shown = {e["path"] for layer in remote["layers"] for c in layer["shown_channels"]
             for e in layer["exemplars"][c]}
    assert len(data["inputs"]) == len(shown)  # a thumbnail per winning URL, found by its URL
    assert data["details"] and all(isinstance(d["input"], int) and d["path"] in shown
                                   and d.get("map") for d in data["details"])
