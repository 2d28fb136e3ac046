"""Nothing half-written, nothing outside OUT.

* every file ``run`` writes reaches its final name by a rename of a temporary file beside it;
* Ctrl-C (SIGINT, in a real subprocess) exits 130 quietly and leaves only complete files;
* a full disk (ENOSPC, simulated inside ``fmviz.io``) gives one clear error and no partial file,
  and an older file under the same name survives intact;
* names taken from a model (``..``, ``/``, absolute paths, empty, colliding, 300 characters,
  unicode) never write outside OUT, and every file name fits in 255 bytes.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image

import fmviz.io
from fmviz.cli import main
from tests import models

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "corpus"
OK_MODEL = CORPUS / "models" / "ok.onnx"
OK_IMAGE = CORPUS / "images" / "ok.png"


def run_cli(args, capfd):
    code = main([str(a) for a in args])
    captured = capfd.readouterr()
    return code, captured.out, captured.err


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def assert_complete(path: Path) -> None:
    """The file decodes completely as what its name says."""
    if path.suffix == ".png":
        with Image.open(path) as picture:
            picture.load()
    elif path.suffix == ".json":
        json.loads(path.read_text())
    elif path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as arrays:
            for key in arrays.files:
                arrays[key]
    elif path.suffix == ".html":
        assert path.read_text().rstrip().endswith("</html>")
    else:
        raise AssertionError(f"unexpected file {path}")


class _OsProxy:
    """Stands in for ``os`` inside ``fmviz.io`` only; the rest of the process is untouched."""

    def __init__(self, **overrides):
        self._overrides = overrides

    def __getattr__(self, name):
        return self._overrides.get(name, getattr(os, name))


class _FullDisk:
    """A binary file that accepts ``room`` bytes, then fails with ENOSPC as a full disk does.

    It has no ``fileno``, so Pillow writes through ``write`` instead of the descriptor.
    """

    def __init__(self, handle, room: int):
        self._handle, self._room = handle, room

    def write(self, data) -> int:
        data = bytes(data)
        if len(data) > self._room:
            self._handle.write(data[: self._room])
            self._handle.flush()
            self._room = 0
            raise OSError(errno.ENOSPC, "No space left on device")
        self._room -= len(data)
        return self._handle.write(data)

    def flush(self) -> None:
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._handle.close()


# ----------------------------------------------------------------------------- renames


def test_every_output_is_renamed_into_place(tmp_path, monkeypatch, capfd):
    renames: list[tuple[Path, Path]] = []

    def recording_replace(src, dst):
        renames.append((Path(src), Path(dst)))
        os.replace(src, dst)

    monkeypatch.setattr(fmviz.io, "os", _OsProxy(replace=recording_replace))
    out = tmp_path / "out"
    code, _out, err = run_cli(
        ["run", OK_MODEL, OK_IMAGE, CORPUS / "tensors/ok.npy", "--save-arrays", "--html",
         "-o", out],
        capfd,
    )
    assert code == 0, err
    written = files_under(out)
    assert {dst for _src, dst in renames} == set(written)
    assert len(renames) == len(written)  # each final file renamed exactly once
    for src, dst in renames:
        assert src.parent == dst.parent  # same folder: the rename is atomic
        assert src.name.startswith(".") and src.name.endswith(".part")
        assert not src.exists()
    assert {p.name for p in written if p.parent.name == "ok"} >= {
        "manifest.json",
        "arrays.npz",
        "index.html",
        "000-conv1.grid.png",
        "001-conv2.overlay.png",
    }
    for path in written:
        assert_complete(path)


def test_outputs_get_ordinary_permissions(tmp_path, capfd):
    # mkstemp makes 0600 files; outputs are 0666 less the umask, like any other file.
    mask = os.umask(0o022)
    os.umask(mask)
    out = tmp_path / "out"
    assert run_cli(["run", OK_MODEL, OK_IMAGE, "-o", out], capfd)[0] == 0
    for path in files_under(out):
        assert path.stat().st_mode & 0o777 == 0o666 & ~mask, path


def test_rerun_overwrites_file_by_file_even_read_only_ones(tmp_path, capfd):
    out = tmp_path / "out"
    assert run_cli(["run", OK_MODEL, OK_IMAGE, "-o", out], capfd)[0] == 0
    manifest = out / "ok" / "manifest.json"
    manifest.chmod(0o444)
    stale = out / "ok" / "999-old-layer.grid.png"
    stale.write_bytes(b"left by an older run")
    before = manifest.stat().st_mtime_ns
    time.sleep(0.01)
    assert run_cli(["run", OK_MODEL, OK_IMAGE, "-o", out], capfd)[0] == 0
    assert manifest.stat().st_mtime_ns > before
    json.loads(manifest.read_text())
    assert stale.read_bytes() == b"left by an older run"  # other files are left alone


# ----------------------------------------------------------------------------- Ctrl-C


def test_ctrl_c_exits_130_quietly_and_leaves_only_complete_files(tmp_path):
    model = models.save(models.many_layers(60, size=256), tmp_path / "many.onnx")
    tensor = tmp_path / "big.npy"
    np.save(tensor, np.random.default_rng(0).standard_normal((1, 4, 256, 256)).astype(np.float32))
    out = tmp_path / "out"
    paths = [str(ROOT), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    process = subprocess.Popen(
        [sys.executable, "-m", "fmviz", "run", str(model), str(tensor), "-o", str(out),
         "--save-arrays", "-q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=tmp_path,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            if any(out.glob("big/*.png")):  # rendering has begun: interrupt it mid-way
                break
            time.sleep(0.005)
        if process.poll() is not None:
            pytest.skip("the run ended before it could be interrupted")
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, stderr.decode()
    assert stderr.strip() == b""  # click may print one empty line, nothing else
    assert stdout == b""
    written = files_under(out)
    assert not [p for p in written if p.name.endswith(".part")]
    assert "manifest.json" not in {p.name for p in written}  # interrupted before the end
    assert len([p for p in written if p.suffix == ".png"]) < 120  # ... and before the last layer
    for path in written:
        assert_complete(path)


# ----------------------------------------------------------------------------- full disk


def _fill_disk_after(monkeypatch, room: int, only: str | None = None) -> None:
    real_fdopen = os.fdopen

    def fdopen(fd, mode="r", *args, **kwargs):
        handle = real_fdopen(fd, mode, *args, **kwargs)
        if only is not None:
            name = os.readlink(f"/proc/self/fd/{fd}") if os.path.exists("/proc/self/fd") else ""
            if only not in name:
                return handle
        return _FullDisk(handle, room)

    monkeypatch.setattr(fmviz.io, "os", _OsProxy(fdopen=fdopen))


def test_full_disk_is_one_clear_error_and_leaves_no_partial_file(tmp_path, monkeypatch, capfd):
    _fill_disk_after(monkeypatch, room=100)
    out = tmp_path / "out"
    code, stdout, err = run_cli(["run", OK_MODEL, OK_IMAGE, "-o", out], capfd)
    assert code == 2
    assert err == f"Error: {out / 'ok' / '000-conv1.grid.png'}: no space left on device\n"
    assert stdout == ""
    assert files_under(out) == []  # not the picture, not its temporary file, no manifest


@pytest.mark.skipif(not os.path.exists("/proc/self/fd"), reason="needs /proc to name a descriptor")
def test_full_disk_on_the_manifest_keeps_the_old_manifest(tmp_path, monkeypatch, capfd):
    out = tmp_path / "out"
    assert run_cli(["run", OK_MODEL, OK_IMAGE, "-o", out], capfd)[0] == 0
    manifest = out / "ok" / "manifest.json"
    old = manifest.read_bytes()
    _fill_disk_after(monkeypatch, room=10, only="manifest.json")
    code, _stdout, err = run_cli(
        ["run", OK_MODEL, OK_IMAGE, "-o", out, "--cmap", "viridis"], capfd
    )
    assert code == 2
    assert err == f"Error: {manifest}: no space left on device\n"
    assert manifest.read_bytes() == old  # the earlier, complete manifest is still there
    written = files_under(out)
    assert not [p for p in written if p.name.endswith(".part")]
    for path in written:
        assert_complete(path)


def test_full_disk_at_rename_time(tmp_path, monkeypatch, capfd):
    def replace(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fmviz.io, "os", _OsProxy(replace=replace))
    out = tmp_path / "out"
    code, _stdout, err = run_cli(["run", OK_MODEL, OK_IMAGE, "-o", out], capfd)
    assert code == 2
    assert err == f"Error: {out / 'ok' / '000-conv1.grid.png'}: no space left on device\n"
    assert files_under(out) == []


def test_full_disk_while_writing_a_dead_filter_report(tmp_path, monkeypatch, capfd):
    _fill_disk_after(monkeypatch, room=50)
    report = tmp_path / "reports" / "scan.json"
    code, _stdout, err = run_cli(
        ["dead-filters", OK_MODEL, OK_IMAGE, "--report", report, "-q"], capfd
    )
    assert code == 2
    assert err == f"Error: {report}: no space left on device\n"
    assert files_under(tmp_path / "reports") == []


def test_interrupt_inside_a_write_removes_the_temporary_file(tmp_path):
    target = tmp_path / "picture.png"
    target.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt), fmviz.io.atomic_open(target) as handle:
        handle.write(b"half of a new pict")
        raise KeyboardInterrupt
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["picture.png"]


# ----------------------------------------------------------------------------- names from models

HOSTILE_NAMES = [
    "..",
    ".",
    "/",
    "/etc/passwd",
    "",  # the layer is then named after its output tensor (below)
    "../../escape",
    "a/../../../b",
    "C:\\Windows\\evil",
    "~root/.ssh/authorized_keys",
    ".hidden",
    "-rf",
    "conv/1",
    "conv:1",  # cleans to the same name as conv/1
    "CONV_1",  # ... and, ignoring case, as both
    "x" * 300,
    "x" * 299 + "y",  # collides with the previous one once cut short
    "卷积层/特征图",
    "emoji 🔥 layer",
    "nul\x00byte",
    "COM1",
]
# Output tensors of the convolutions (the layer named "" is called after its tensor).
HOSTILE_TENSORS = {4: "../../tensor/escape", 7: "/abs/tensor"}


def hostile_model() -> onnx.ModelProto:
    rng = np.random.default_rng(31)
    nodes, inits = [], []
    x = "input"
    for i, name in enumerate(HOSTILE_NAMES):
        pre = HOSTILE_TENSORS.get(i, f"t{i}_pre")
        conv, weights = models.conv(rng, f"w{i}", x, pre, 3, 3)
        conv.name = name
        nodes.append(conv)
        inits += weights
        if i in HOSTILE_TENSORS:  # no activation: the hostile tensor is the one captured
            x = pre
        else:
            x = f"t{i}_post"
            nodes.append(models.relu(f"relu{i}", pre, x))
    return models.make_model(
        nodes,
        [models.tensor_input("input", [1, 3, 8, 8])],
        [models.tensor_input(x, [1, 3, 8, 8])],
        inits,
    )


def test_names_from_the_model_never_leave_out(tmp_path, monkeypatch, capfd):
    work = tmp_path / "deep" / "er"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)  # relative escapes would land in tmp_path/deep or tmp_path
    model = models.save(hostile_model(), work / "hostile.onnx")
    image = work / "my photo (1) 照片.png"
    image.write_bytes(OK_IMAGE.read_bytes())
    tensor = work / "ok.npy"
    np.save(tensor, np.random.default_rng(1).standard_normal((3, 8, 8)).astype(np.float32))
    code, _out, err = run_cli(
        ["run", model, image, tensor, "-o", "out", "--save-arrays", "--html"], capfd
    )
    assert code == 0, err
    out = (work / "out").resolve()
    everything = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    allowed = {model.resolve(), image.resolve(), tensor.resolve()}
    for path in everything:
        resolved = path.resolve()
        assert resolved in allowed or out in resolved.parents, path
        assert len(path.name.encode("utf-8")) <= 255, path.name
        assert not path.is_symlink()
    manifests = sorted(out.rglob("manifest.json"))
    assert [m.parent.name for m in manifests] == ["my photo (1) 照片", "ok"]  # stems as they are
    for manifest_path in manifests:
        manifest = json.loads(manifest_path.read_text())
        assert [layer["name"] for layer in manifest["layers"]] == [
            name or HOSTILE_TENSORS[i] for i, name in enumerate(HOSTILE_NAMES)
        ]
        names = [file for layer in manifest["layers"] for file in layer["files"].values()]
        assert len(names) == len(set(names))  # no collisions, no file written twice
        assert len({name.lower() for name in names}) == len(names)  # not even ignoring case
        for name in names:
            assert "/" not in name and "\\" not in name and not name.startswith(".")
            assert (manifest_path.parent / name).is_file()
        with np.load(manifest_path.parent / "arrays.npz", allow_pickle=False) as arrays:
            assert set(arrays.files) == {layer["tensor"] for layer in manifest["layers"]}
        with zipfile.ZipFile(manifest_path.parent / "arrays.npz") as zf:
            assert {info.filename for info in zf.infolist()} >= {"../../tensor/escape.npy"}


def test_layer_names_are_cleaned_to_the_documented_characters(tmp_path, capfd):
    model = models.save(hostile_model(), tmp_path / "hostile.onnx")
    code, _out, err = run_cli(["run", model, OK_IMAGE, "-o", tmp_path / "out"], capfd)
    assert code == 0, err
    for path in files_under(tmp_path / "out" / "ok"):
        stem = path.name.split(".")[0]
        if stem[:3].isdigit():
            assert all(c.isascii() and (c.isalnum() or c in "._-") for c in path.name), path.name


def test_input_stems_are_kept_and_deduplicated(tmp_path, capfd):
    inputs = []
    for name in ["..png", "a b.png", "a_b.png", "A_B.png", "é.png", "-.png", "x" * 250 + ".png"]:
        path = tmp_path / "in" / name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(OK_IMAGE.read_bytes())
        inputs.append(path)
    out = tmp_path / "out"
    code, _out, err = run_cli(["run", OK_MODEL, *inputs, "-o", out, "-q"], capfd)
    assert code == 0, err
    folders = sorted(p.name for p in out.iterdir())
    assert len(folders) == len(inputs)
    assert len({f.lower() for f in folders}) == len(folders)
    for folder in folders:  # SPEC: OUT/<input-stem>/, stems as they are, "." becomes input
        assert folder not in (".", "..") and len(folder.encode()) <= 255
    assert {"input", "a b", "a_b", "A_B-2", "é", "-", "x" * 250} == set(folders)
