"""The bad-input corpus: every broken file or option gives exit 2 and one exact ``Error:`` line.

The cases live in ``tests/corpus/expected.json`` (one line each: the arguments, the exit code and
the exact error line); the files in ``tests/corpus/`` come from ``tests/corpus/make_corpus.py``.
Every case runs in-process through ``fmviz.cli.main`` with the corpus folder as the working
directory, so the error lines carry short relative paths. ``capfd`` captures file descriptors 1
and 2, so anything onnxruntime or a C library prints there counts too.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fmviz.cli import main

CORPUS = Path(__file__).resolve().parent / "corpus"
TABLE = json.loads((CORPUS / "expected.json").read_text(encoding="utf-8"))
CASES = TABLE["cases"]
BAD = [case for case in CASES if case["exit"] == 2]
GOOD = [case for case in CASES if case["exit"] == 0]
NOT_GENERATED = {"make_corpus.py", "expected.json"}


def run_cli(args: list[str], capfd) -> tuple[int, str, str]:
    code = main(args)
    captured = capfd.readouterr()
    return code, captured.out, captured.err


def case_args(case: dict, out: Path) -> list[str]:
    return [arg.replace("{out}", str(out)) for arg in shlex.split(case["args"])]


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


@pytest.fixture
def in_corpus(monkeypatch):
    monkeypatch.chdir(CORPUS)
    return CORPUS


# ----------------------------------------------------------------------------- the table


@pytest.mark.parametrize("case", BAD, ids=[case["id"] for case in BAD])
def test_bad_input_gives_one_exact_error_line(case, in_corpus, tmp_path, capfd):
    out = tmp_path / "out"
    code, stdout, stderr = run_cli(case_args(case, out), capfd)
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 2, stderr
    assert "Traceback" not in stderr
    assert len(lines) == 1, stderr
    if "stderr" in case:
        assert lines[0] == case["stderr"]
    else:
        assert lines[0].startswith(case["stderr_prefix"]), lines[0]
        assert len(lines[0]) > len(case["stderr_prefix"])  # the library's reason follows
    assert stdout == ""
    assert files_under(out) == []  # nothing written, not even a manifest


@pytest.mark.parametrize("case", GOOD, ids=[case["id"] for case in GOOD])
def test_odd_but_valid_input_works(case, in_corpus, tmp_path, capfd):
    out = tmp_path / "out"
    code, _stdout, stderr = run_cli(case_args(case, out), capfd)
    assert code == 0, stderr
    assert "Error" not in stderr and "Traceback" not in stderr
    folders = [p for p in out.iterdir() if p.is_dir()]
    assert len(folders) == 1
    manifest = json.loads((folders[0] / "manifest.json").read_text())
    preprocess = manifest["input"]["preprocess"]
    for key, value in case["preprocess"].items():
        assert preprocess.get(key) == value, (key, preprocess)
    assert manifest["layers"]
    for layer in manifest["layers"]:
        assert layer["files"]
        for name in layer["files"].values():
            with Image.open(folders[0] / name) as picture:
                picture.load()  # decodes: a complete PNG
                assert picture.format == "PNG" and min(picture.size) > 0
    assert not [p for p in files_under(out) if p.name.endswith(".part")]


# ----------------------------------------------------------------------------- the corpus


def test_corpus_has_at_least_40_distinct_bad_files():
    files = set()
    for case in BAD:
        for arg in shlex.split(case["args"]):
            for part in arg.split("="):
                if (CORPUS / part).is_file() and not part.endswith(("ok.png", "ok.onnx")):
                    files.add(part)
    assert len(files) >= 40, sorted(files)
    assert len(BAD) >= 40


def test_case_ids_are_unique():
    ids = [case["id"] for case in CASES]
    assert len(ids) == len(set(ids))


def test_corpus_is_small_and_matches_its_generator(tmp_path):
    committed = sorted(
        str(p.relative_to(CORPUS))
        for p in CORPUS.rglob("*")
        if p.is_file() and p.name not in NOT_GENERATED and "__pycache__" not in p.parts
    )
    assert sum((CORPUS / name).stat().st_size for name in committed) < 200_000
    sys.path.insert(0, str(CORPUS))
    try:
        import make_corpus
    finally:
        sys.path.remove(str(CORPUS))
    generated = [str(p.relative_to(tmp_path)) for p in make_corpus.build(tmp_path)]
    # Names, not bytes: Pillow and zlib versions may encode the same pictures differently.
    assert committed == generated, "run: python tests/corpus/make_corpus.py"


# ----------------------------------------------------------------------------- never unpickle


@pytest.mark.parametrize("name", ["object.npy", "object.npz", "pickle.npy"])
def test_object_arrays_are_never_unpickled(name, tmp_path, monkeypatch, capfd):
    sys.path.insert(0, str(CORPUS))
    try:
        from make_corpus import PICKLE_MARKER
    finally:
        sys.path.remove(str(CORPUS))
    # The payload is real: loading it the unsafe way creates the marker file.
    control = tmp_path / "control"
    control.mkdir()
    monkeypatch.chdir(control)
    if name == "pickle.npy":
        import pickle

        pickle.loads((CORPUS / "tensors" / name).read_bytes())  # noqa: S301 - the point
    else:
        loaded = np.load(CORPUS / "tensors" / name, allow_pickle=True)
        if name.endswith(".npz"):
            loaded["x"]
    assert (control / PICKLE_MARKER).exists()
    # fmviz refuses it and the marker never appears.
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(CORPUS / "tensors" / name, work / name)
    shutil.copy(CORPUS / "models" / "ok.onnx", work / "ok.onnx")
    monkeypatch.chdir(work)
    code, _out, err = run_cli(["run", "ok.onnx", name, "-o", "out"], capfd)
    assert code == 2
    assert "never unpickles" in err
    assert not (work / PICKLE_MARKER).exists()
    assert not list(tmp_path.rglob(f"work/**/{PICKLE_MARKER}"))


# ----------------------------------------------------------------------------- made at run time


def test_external_data_through_a_symlink_out_of_the_folder_is_refused(tmp_path, capfd):
    folder = tmp_path / "model"
    folder.mkdir()
    shutil.copy(CORPUS / "models" / "external-ok" / "model.onnx", folder / "model.onnx")
    outside = tmp_path / "outside.bin"
    shutil.copy(CORPUS / "models" / "external-ok" / "weights.bin", outside)
    try:
        (folder / "weights.bin").symlink_to(outside)
    except (OSError, NotImplementedError) as exc:
        pytest.skip(f"cannot make a symlink here: {exc}")
    code, _out, err = run_cli(["layers", str(folder / "model.onnx")], capfd)
    assert code == 2
    assert err == (
        f"Error: {folder / 'model.onnx'}: external data 'weights.bin' of tensor 'conv1.w' "
        "points outside the model's folder; refusing to read it\n"
    )


def test_external_data_symlink_inside_the_folder_is_one_clear_error(tmp_path, capfd):
    # onnx itself refuses to read external data through any symbolic link.
    folder = tmp_path / "model"
    (folder / "data").mkdir(parents=True)
    shutil.copy(CORPUS / "models" / "external-ok" / "model.onnx", folder / "model.onnx")
    shutil.copy(CORPUS / "models" / "external-ok" / "weights.bin", folder / "data" / "w.bin")
    try:
        (folder / "weights.bin").symlink_to(folder / "data" / "w.bin")
    except (OSError, NotImplementedError) as exc:
        pytest.skip(f"cannot make a symlink here: {exc}")
    code, out, err = run_cli(["layers", str(folder / "model.onnx")], capfd)
    assert code == 2
    assert out == ""
    assert err == (f"Error: {folder / 'model.onnx'}: external data file 'weights.bin' of tensor "
                   "'conv1.w' is a symbolic link; refusing to read it\n")


def _writes_are_refused(folder: Path) -> bool:
    probe = folder / "probe"
    try:
        probe.write_text("x")
    except OSError:
        return True
    probe.unlink()
    return False


def test_unwritable_output_folder(tmp_path, capfd):
    out = tmp_path / "locked"
    out.mkdir()
    out.chmod(0o500)
    try:
        if not _writes_are_refused(out):
            pytest.skip("chmod 0o500 does not stop writes here (running as root?)")
        code, _out, err = run_cli(
            ["run", str(CORPUS / "models/ok.onnx"), str(CORPUS / "images/ok.png"), "-o", str(out)],
            capfd,
        )
    finally:
        out.chmod(0o700)
    assert code == 2
    assert err == f"Error: {out}: folder is not writable\n"
    assert files_under(out) == []


def test_unwritable_input_subfolder(tmp_path, capfd):
    """OUT is writable but the input's own sub-folder (left by an earlier run) is not."""
    out = tmp_path / "out"
    (out / "ok").mkdir(parents=True)
    (out / "ok").chmod(0o500)
    try:
        if not _writes_are_refused(out / "ok"):
            pytest.skip("chmod 0o500 does not stop writes here (running as root?)")
        code, _out, err = run_cli(
            ["run", str(CORPUS / "models/ok.onnx"), str(CORPUS / "images/ok.png"), "-o", str(out)],
            capfd,
        )
    finally:
        (out / "ok").chmod(0o700)
    assert code == 2
    assert err == f"Error: {out / 'ok'}: folder is not writable\n"


def test_output_below_a_file_is_refused_even_as_root(tmp_path, capfd):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    out = blocker / "out"
    code, _out, err = run_cli(
        ["run", str(CORPUS / "models/ok.onnx"), str(CORPUS / "images/ok.png"), "-o", str(out)],
        capfd,
    )
    assert code == 2
    assert err == f"Error: {out}: cannot write (part of the path is a file, not a folder)\n"
    assert blocker.read_text() == "not a folder"


def test_paths_from_stdin_are_checked_too(tmp_path, monkeypatch, capfd):
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO("images/ok.png\nimages/missing.png\n"))
    monkeypatch.chdir(CORPUS)
    code, _out, err = run_cli(["run", "models/ok.onnx", "-", "-o", str(tmp_path / "o")], capfd)
    assert code == 2
    assert err == "Error: images/missing.png: no such file\n"
    assert files_under(tmp_path / "o") == []


def test_debug_shows_the_traceback_instead(in_corpus, tmp_path):
    from fmviz.errors import ModelError

    with pytest.raises(ModelError, match="empty file, not an ONNX model"):
        main(["run", "models/empty.onnx", "images/ok.png", "-o", str(tmp_path), "--debug"])


def test_no_output_is_written_outside_out_for_bad_inputs(in_corpus, tmp_path, capfd):
    before = sorted(os.listdir(CORPUS))
    for case in BAD[:20]:
        run_cli(case_args(case, tmp_path / case["id"]), capfd)
    assert sorted(os.listdir(CORPUS)) == before


def test_dead_filters_skips_each_bad_file_with_the_same_reason_run_gives(in_corpus, capfd):
    """A folder scan never aborts on a bad file: it lists it with the reason ``run`` prints."""
    code, stdout, stderr = run_cli(
        ["dead-filters", "models/ok.onnx", "images", "tensors", "--json", "-q"], capfd
    )
    assert code == 0, stderr
    report = json.loads(stdout)
    skipped = {entry["path"]: entry["error"] for entry in report["skipped"]}
    checked = 0
    for case in BAD:
        words = shlex.split(case["args"])
        if words[:2] != ["run", "models/ok.onnx"] or words[3:] != ["-o", "{out}"]:
            continue  # only plain `run models/ok.onnx FILE -o {out}` cases
        path = words[2]
        if not path.startswith(("images/", "tensors/")) or not (CORPUS / path).is_file():
            continue
        expected = case.get("stderr", case.get("stderr_prefix"))
        assert path in skipped, path
        assert f"Error: {path}: {skipped[path]}".startswith(expected), (path, skipped[path])
        checked += 1
    assert checked >= 30
    works = [c for c in GOOD if shlex.split(c["args"])[:2] == ["run", "models/ok.onnx"]]
    assert report["inputs_scanned"] >= len(works)
    assert "Traceback" not in stderr
