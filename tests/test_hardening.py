"""Issue 17 (hardening, round two): cases a committed corpus file cannot express.

FIFOs, links to devices, planted links under OUT, files too large to commit: each is made at
test time. Cases that can be files are in ``tests/corpus/expected.json``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fmviz.cli import main

CORPUS = Path(__file__).resolve().parent / "corpus"
POSIX = sys.platform != "win32"
needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")


@contextlib.contextmanager
def deadline(seconds: int):
    """Fail (instead of hanging the suite) when the body takes longer than ``seconds``."""
    if not hasattr(signal, "SIGALRM"):
        yield
        return

    def expired(signum, frame):
        raise TimeoutError(f"still running after {seconds} s (a hang)")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def cli(args, capfd) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capfd.readouterr()
    return code, captured.out, captured.err


def one_error(result) -> str:
    code, out, err = result
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert out == ""
    return lines[0]


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


# ----------------------------------------------------------------------------- class 3


@needs_fifo
@pytest.mark.parametrize("name", ["x.npy", "x.npz", "x.csv", "x.tsv", "x.wav", "x.png"])
def test_fifo_input_is_refused_at_once(name, tmp_path, capfd):
    fifo = tmp_path / name
    os.mkfifo(fifo)
    with deadline(20):
        line = one_error(cli(["run", CORPUS / "models/ok.onnx", fifo, "-o", tmp_path / "out"],
                             capfd))
    assert line == (f"Error: {fifo}: is a named pipe (FIFO), not a regular file; only regular "
                    "files are inputs")
    assert files_under(tmp_path / "out") == []


@needs_fifo
def test_fifo_feed_is_refused_at_once(tmp_path, capfd):
    fifo = tmp_path / "scale.npy"
    os.mkfifo(fifo)
    with deadline(20):
        line = one_error(cli(["run", CORPUS / "models/extra.onnx", CORPUS / "images/ok.png",
                              "--feed", f"scale={fifo}", "-o", tmp_path / "out"], capfd))
    assert line == (f"Error: {fifo}: is a named pipe (FIFO), not a regular file; only regular "
                    "files are inputs")


@pytest.mark.skipif(not os.path.exists("/dev/zero") or not POSIX, reason="no /dev/zero")
@pytest.mark.parametrize("name", ["z.csv", "z.npy", "z.wav", "z.jpg"])
def test_link_to_a_device_is_refused(name, tmp_path, capfd):
    link = tmp_path / name
    link.symlink_to("/dev/zero")
    with deadline(20):
        line = one_error(cli(["run", CORPUS / "models/ok.onnx", link, "-o", tmp_path / "out"],
                             capfd))
    assert line == (f"Error: {link}: is a character device, not a regular file; only regular "
                    "files are inputs")


def test_open_regular_refuses_a_file_swapped_for_a_fifo(tmp_path):
    """The check is made on the opened descriptor, not only on the name beforehand."""
    from fmviz.errors import InputError
    from fmviz.inputs.safe import open_regular

    regular = tmp_path / "a.npy"
    regular.write_bytes(b"\x93NUMPY")
    with open_regular(regular) as handle:
        assert handle.read() == b"\x93NUMPY"
    if hasattr(os, "mkfifo"):
        fifo = tmp_path / "b.npy"
        os.mkfifo(fifo)
        with deadline(10), pytest.raises(InputError, match="named pipe"):
            open_regular(fifo)


@needs_fifo
def test_scan_lists_special_files_as_skips_and_ends(tmp_path, capfd):
    folder = tmp_path / "inputs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for index in range(3):
        np.save(folder / f"good{index}.npy", rng.standard_normal((3, 16, 16)).astype(np.float32))
    os.mkfifo(folder / "pipe.npy")
    os.mkfifo(folder / "pipe.wav")
    if os.path.exists("/dev/zero"):
        (folder / "zero.csv").symlink_to("/dev/zero")
    with deadline(60):
        code, out, err = cli(["dead-filters", CORPUS / "models/ok.onnx", folder, "--json",
                              "--quiet"], capfd)
    assert code == 0, err
    report = json.loads(out)
    assert report["inputs_scanned"] == 3
    skipped = {Path(s["path"]).name: s["error"] for s in report["skipped"]}
    assert skipped["pipe.npy"] == ("is a named pipe (FIFO), not a regular file; only regular "
                                   "files are inputs")
    assert skipped["pipe.wav"] == skipped["pipe.npy"]
    if os.path.exists("/dev/zero"):
        assert skipped["zero.csv"].startswith("is a character device")


# ----------------------------------------------------------------------------- class 4


def test_csv_with_one_enormous_line_is_refused_early(tmp_path, capfd):
    path = tmp_path / "long.csv"
    path.write_bytes(b"1,2\n" + b"1," * 1_500_000 + b"1\n")  # 3 MB, one row of 1.5 M cells
    line = one_error(cli(["run", CORPUS / "models/series.onnx", path, "-o", tmp_path / "out"],
                         capfd))
    assert line == (f"Error: {path}: line 2 is longer than 1048576 bytes; not a table of "
                    "samples")


def test_csv_larger_than_the_table_limit_is_refused_before_reading(tmp_path, capfd):
    from fmviz.inputs import series

    path = tmp_path / "big.csv"
    with open(path, "wb") as handle:  # sparse: no disk used, nothing must read it
        handle.truncate(series.MAX_TEXT_BYTES + 1)
    line = one_error(cli(["run", CORPUS / "models/series.onnx", path, "-o", tmp_path / "out"],
                         capfd))
    assert line == (f"Error: {path}: {series.MAX_TEXT_BYTES + 1} bytes is too large for a table "
                    f"(limit {series.MAX_TEXT_BYTES}); convert it to .npy")


def test_npz_member_is_checked_before_inflating(tmp_path, capfd, monkeypatch):
    """A deflated member whose header fits a dynamic model but whose size is over the budget:
    refused from its header, without inflating it (the budget is lowered to keep the file small).
    """
    import zipfile

    array = np.zeros((1, 3, 256, 256), np.float32)  # 768 KiB inflated, ~1 KiB deflated
    path = tmp_path / "zeros.npz"
    with (zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf,
          zf.open("x.npy", "w") as member):
        np.lib.format.write_array(member, array)
    assert path.stat().st_size < 10_000
    monkeypatch.setenv("FMVIZ_MAX_INPUT_BYTES", str(512 * 1024))
    line = one_error(cli(["run", CORPUS / "models/dynamic.onnx", path, "-o", tmp_path / "out"],
                         capfd))
    assert line == (f"Error: {path}: array 'x' [1, 3, 256, 256] float32 would take 768.0 KiB, "
                    "over the limit of 512.0 KiB for one input (FMVIZ_MAX_INPUT_BYTES raises it)")
    monkeypatch.setenv("FMVIZ_MAX_INPUT_BYTES", str(1024 * 1024))
    code, _out, err = cli(["run", CORPUS / "models/dynamic.onnx", path, "-o", tmp_path / "out"],
                          capfd)
    assert code == 0, err


def test_budget_check_is_before_allocation():
    from fmviz.errors import InputError
    from fmviz.inputs.safe import check_bytes, human_bytes

    check_bytes((1024, 1024), 4, "x", limit=4 << 20)  # exactly the limit: allowed
    with pytest.raises(InputError, match=r"^x would take 4\.0 MiB, over the limit of 4\.0 MiB"):
        check_bytes((1024, 1025), 4, "x", limit=4 << 20)
    assert human_bytes(1023) == "1023 bytes" and human_bytes(1536) == "1.5 KiB"


# ----------------------------------------------------------------------------- class 6


def _exif_orientation_block(kind: str) -> bytes:
    """An EXIF block whose only tag is Orientation stored as ``kind`` (Pillow only writes it as
    a SHORT, so the TIFF directory is built by hand, little-endian)."""
    import struct

    if kind == "rational":  # type 5, the value (6/1) after the directory
        entry = struct.pack("<HHII", 0x0112, 5, 1, 26)
        tail = struct.pack("<II", 6, 1)
    elif kind == "undefined":  # type 7, one byte inline
        entry = struct.pack("<HHI4s", 0x0112, 7, 1, b"\x06\x00\x00\x00")
        tail = b""
    else:  # a SHORT out of range
        entry = struct.pack("<HHIHH", 0x0112, 3, 1, 77, 0)
        tail = b""
    return b"Exif\x00\x00" + b"II*\x00" + struct.pack("<IH", 8, 1) + entry + b"\x00" * 4 + tail


@pytest.mark.parametrize("kind", ["rational", "undefined", "out-of-range"])
def test_exif_orientation_of_the_wrong_type_is_ignored(kind, tmp_path, capfd):
    picture = Image.fromarray(np.arange(16 * 16 * 3, dtype=np.uint8).reshape(16, 16, 3))
    path = tmp_path / f"{kind}.jpg"
    picture.save(path, "JPEG", exif=_exif_orientation_block(kind), quality=95)
    with Image.open(path) as check:  # the file really carries the odd tag
        assert 0x0112 in check.getexif()
    code, _out, err = cli(["run", CORPUS / "models/ok.onnx", path, "-o", tmp_path / "out"],
                          capfd)
    assert code == 0, err
    manifest = json.loads((tmp_path / "out" / kind / "manifest.json").read_text())
    assert "exif_orientation" not in manifest["input"]["preprocess"]


# ----------------------------------------------------------------------------- class 1


@pytest.mark.skipif(not POSIX, reason="symbolic links need privileges on Windows")
@pytest.mark.parametrize("where", ["outside", "inside"])
def test_planted_link_at_the_input_folder_is_refused(where, tmp_path, capfd):
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim" if where == "outside" else out / "elsewhere"
    victim.mkdir()
    (out / "ok").symlink_to(victim)
    line = one_error(cli(["run", CORPUS / "models/ok.onnx", CORPUS / "images/ok.png", "-o", out],
                         capfd))
    assert line == (f"Error: {out / 'ok'}: is a symbolic link (to {victim}); fmviz writes only "
                    f"into real folders inside {out}: remove the link or choose another -o")
    assert list(victim.iterdir()) == []  # nothing written through the link
    assert (out / "ok").is_symlink()  # and the link itself left alone


@pytest.mark.skipif(not POSIX, reason="symbolic links need privileges on Windows")
def test_planted_link_as_an_output_file_is_replaced_not_followed(tmp_path, capfd):
    out = tmp_path / "out"
    (out / "ok").mkdir(parents=True)
    target = tmp_path / "precious.json"
    target.write_text("keep me")
    (out / "ok" / "manifest.json").symlink_to(target)
    code, _out, err = cli(["run", CORPUS / "models/ok.onnx", CORPUS / "images/ok.png", "-o",
                           out], capfd)
    assert code == 0, err
    assert target.read_text() == "keep me"
    assert not (out / "ok" / "manifest.json").is_symlink()
    assert json.loads((out / "ok" / "manifest.json").read_text())["layers"]


def test_input_folder_refuses_a_file_and_reuses_a_folder(tmp_path):
    from fmviz.errors import OutputError
    from fmviz.io import input_folder

    (tmp_path / "a-file").write_text("x")
    with pytest.raises(OutputError, match="exists and is not a folder"):
        input_folder(tmp_path, "a-file")
    assert input_folder(tmp_path, "new") == tmp_path / "new"
    assert input_folder(tmp_path, "new") == tmp_path / "new"  # a second run reuses it


# ----------------------------------------------------------------------------- class 2


def test_sparse_initializer_values_come_from_the_models_folder():
    """The sparse bias is loaded from the model's own folder, and the loaded model computes what
    the dense one does (onnxruntime on fmviz's proto vs onnx's reference evaluator)."""
    import onnxruntime as ort
    from onnx import numpy_helper
    from onnx.reference import ReferenceEvaluator

    from fmviz.graph import load_model

    graph = load_model(CORPUS / "models/external-sparse-ok/model.onnx")
    sparse = graph.proto.graph.sparse_initializer[0]
    assert not sparse.values.external_data and sparse.values.data_location == 0
    values = numpy_helper.to_array(sparse.values)
    assert values.tobytes() == (CORPUS / "models/external-sparse-ok/bias.bin").read_bytes()
    dense = onnx_load(CORPUS / "models/ok.onnx")
    x = np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype(np.float32)
    expected = ReferenceEvaluator(dense).run(None, {"input": x})[0]
    session = ort.InferenceSession(graph.proto.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": x})[0]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def onnx_load(path):
    import onnx

    return onnx.load(str(path))


def _external_copy(tmp_path: Path, data: bytes | None = None, sparse_size: int | None = None):
    import shutil

    folder = tmp_path / "model"
    folder.mkdir()
    shutil.copy(CORPUS / "models/external-ok/model.onnx", folder / "model.onnx")
    weights = folder / "weights.bin"
    if sparse_size is not None:
        with open(weights, "wb") as handle:
            handle.truncate(sparse_size)
    else:
        weights.write_bytes(data if data is not None else
                            (CORPUS / "models/external-ok/weights.bin").read_bytes())
    return folder / "model.onnx"


def _declare_length(model_path: Path, dims: list[int]) -> None:
    import onnx

    model = onnx.load(str(model_path), load_external_data=False)
    tensor = next(t for t in model.graph.initializer if t.name == "conv1.w")
    del tensor.dims[:]
    tensor.dims.extend(dims)
    for entry in tensor.external_data:
        if entry.key == "length":
            entry.value = str(int(np.prod(dims)) * 4)
    model_path.write_bytes(model.SerializeToString())


@pytest.mark.skipif(not POSIX, reason="sparse files and st_blocks")
def test_external_data_with_holes_is_refused_quickly(tmp_path, capfd):
    import time

    model = _external_copy(tmp_path, sparse_size=64 << 20)  # 64 MiB of holes
    _declare_length(model, [16 << 20])
    if (model.parent / "weights.bin").stat().st_blocks * 512 > 1 << 20:
        pytest.skip("this file system does not make sparse files")
    start = time.perf_counter()
    line = one_error(cli(["layers", model], capfd))
    assert time.perf_counter() - start < 5
    assert line == (f"Error: {model}: external data file 'weights.bin' is sparse on disk "
                    "(64.0 MiB declared, 0 bytes stored); refusing holes as weights")


def test_external_data_over_the_budget_is_refused_before_reading(tmp_path, capfd, monkeypatch):
    model = _external_copy(tmp_path)
    monkeypatch.setenv("FMVIZ_MAX_EXTERNAL_BYTES", "800")
    line = one_error(cli(["layers", model], capfd))
    assert line == (f"Error: {model}: external data declares 864 bytes in all, over the limit "
                    "of 800 bytes (FMVIZ_MAX_EXTERNAL_BYTES raises it)")
    monkeypatch.setenv("FMVIZ_MAX_EXTERNAL_BYTES", "864")
    code, _out, err = cli(["layers", model], capfd)
    assert code == 0, err


@needs_fifo
def test_external_data_fifo_is_refused(tmp_path, capfd):
    model = _external_copy(tmp_path)
    (model.parent / "weights.bin").unlink()
    os.mkfifo(model.parent / "weights.bin")
    with deadline(20):
        line = one_error(cli(["layers", model], capfd))
    assert line == (f"Error: {model}: external data file 'weights.bin' of tensor 'conv1.w' is not "
                    "a regular file; refusing to read it")


# ----------------------------------------------------------------------------- class 6 (more)


@pytest.mark.parametrize(("field", "value", "shown"), [
    ("done", "abc", "abc"),
    ("skipped", [1, 2, 3], "[1, 2, 3]"),
    ("done", 1.5, "1.5"),
    ("layers_present", "yes", "yes"),
])
def test_checkpoint_header_of_wrong_types_is_refused_and_kept(field, value, shown, tmp_path,
                                                             capfd):
    from tests.test_fuzz import _make_checkpoint, _with_header

    command, checkpoint = _make_checkpoint(tmp_path)
    capfd.readouterr()
    _with_header(checkpoint, checkpoint, lambda header: header.__setitem__(field, value))
    before = checkpoint.read_bytes()
    line = one_error(cli(command, capfd))
    assert line == (f"Error: {checkpoint}: not a valid fmviz checkpoint (field {field!r} is "
                    f"{shown}); delete it to start over, or use another --checkpoint file")
    assert checkpoint.read_bytes() == before


@pytest.mark.skipif(not POSIX, reason="file names of any bytes")
def test_names_that_are_not_utf8_in_html_and_reports(tmp_path, capfd):
    folder = tmp_path / "in"
    folder.mkdir()
    name = os.fsdecode(b"bad\xff.png")
    (folder / name).write_bytes((CORPUS / "images/ok.png").read_bytes())
    (folder / os.fsdecode(b"broken\xfe.png")).write_bytes(b"not a png")
    code, _out, err = cli(["run", CORPUS / "models/ok.onnx", folder / name, "--html", "-o",
                           tmp_path / "out"], capfd)
    assert code == 0, err
    page = (tmp_path / "out" / os.fsdecode(b"bad\xff") / "index.html").read_bytes()
    assert b"bad\\xff" in page
    page.decode("utf-8")  # valid UTF-8 throughout
    reports = [tmp_path / "r.md", tmp_path / "r.html", tmp_path / "r.json"]
    code, _out, err = cli(["dead-filters", CORPUS / "models/ok.onnx", folder, "--quiet",
                           *[a for r in reports for a in ("--report", r)]], capfd)
    assert code == 0, err
    markdown = reports[0].read_text(encoding="utf-8")
    assert "broken\\\\xfe.png" in markdown  # the byte shown as \xfe, the backslash escaped
    assert "broken\\xfe.png" in reports[1].read_text(encoding="utf-8")


# ----------------------------------------------------------------------------- class 7


def _named_layers_model(path: Path, name: str) -> Path:
    from tests import models

    model = models.conv_bn_relu()
    model.graph.node[0].name = name
    models.save(model, path)
    return path


def test_control_characters_in_names_are_escaped_on_the_terminal(tmp_path, capfd):
    model = _named_layers_model(tmp_path / "m.onnx", "evil\x1b[2J\r\nfake\x07")
    code, out, err = cli(["layers", model], capfd)
    assert code == 0, err
    assert "\x1b" not in out and "\r" not in out and "\x07" not in out
    assert "evil\\x1b[2J\\r\\nfake\\x07" in out


def test_error_line_with_a_newline_in_a_file_name_stays_one_line(tmp_path, capfd):
    path = tmp_path / "two\nlines\x1b[31m.png"
    path.write_bytes(b"not a png")
    line = one_error(cli(["run", CORPUS / "models/ok.onnx", path, "-o", tmp_path / "out"], capfd))
    assert line == (f"Error: {tmp_path}/two\\nlines\\x1b[31m.png: not an image Pillow can read")


def test_markdown_report_escapes_links_images_and_controls():
    from fmviz.reports.deadfilters import to_markdown

    evil = "![p](https://x.example/p.png) [c](javascript:alert(1)) <b>x</b> a|b\nc"
    report = {
        "summary": {"dead": 0, "rare": 0, "constant": 0, "channels": 4, "layers": 1,
                    "dead_fraction": 0.0, "inactive": 0},
        "model": {"path": "m.onnx"}, "stage": "post", "eps": 1e-6, "rare": 0.01,
        "providers": ["CPUExecutionProvider"], "fmviz": "0", "inputs_scanned": 1,
        "layers": [{"index": 0, "name": evil, "activation": None, "channels": 4, "dead": [],
                    "rare": [], "constant": [], "inactive": []}],
        "skipped": [{"path": "x\r\n| fake | row |", "error": "e"}],
    }
    text = to_markdown(report)
    row = next(line for line in text.splitlines() if "javascript" in line)
    assert "](" not in row and "![" not in row and "<b>" not in row
    assert r"\!\[p\]\(https://x.example/p.png\)" in row and r"a\|b\\nc" in row  # renders as a|b\nc
    assert not any(line.startswith("| fake") for line in text.splitlines())


# ----------------------------------------------------------------------------- class 8


def test_a_run_into_a_folder_being_written_is_refused(tmp_path, capfd):
    from fmviz.io import folder_lock

    out = tmp_path / "out"
    code, _out, err = cli(["run", CORPUS / "models/ok.onnx", CORPUS / "images/ok.png", "-o", out],
                          capfd)
    assert code == 0, err
    before = {p: p.read_bytes() for p in files_under(out)}
    with folder_lock(out / "ok"):  # another run is writing there
        line = one_error(cli(["run", CORPUS / "models/dynamic.onnx", CORPUS / "images/ok.png",
                              "-o", out], capfd))
    assert line == (f"Error: {out / 'ok'}: another fmviz run is writing into this folder now; "
                    "wait for it to finish or choose another -o")
    assert {p: p.read_bytes() for p in files_under(out)} == before  # nothing mixed in
    code, _out, err = cli(["run", CORPUS / "models/dynamic.onnx", CORPUS / "images/ok.png",
                           "-o", out], capfd)
    assert code == 0, err  # free again once the other run is done
    assert not (out / "ok" / ".fmviz.lock").exists()


def test_folder_lock_is_exclusive_and_survives_a_removed_lock_file(tmp_path):
    from fmviz.errors import OutputError
    from fmviz.io import folder_lock

    with folder_lock(tmp_path):
        with pytest.raises(OutputError, match="another fmviz run"), folder_lock(tmp_path):
            pass
        assert (tmp_path / ".fmviz.lock").exists()
    assert not (tmp_path / ".fmviz.lock").exists()
    with folder_lock(tmp_path):  # and it can be taken again
        pass


@pytest.mark.skipif(not POSIX, reason="symbolic links")
def test_planted_lock_link_is_not_followed(tmp_path):
    from fmviz.errors import OutputError
    from fmviz.io import folder_lock

    victim = tmp_path / "victim.txt"
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / ".fmviz.lock").symlink_to(victim)
    with pytest.raises(OutputError, match="is a symbolic link"), folder_lock(tmp_path / "f"):
        pass
    assert not victim.exists()


# ----------------------------------------------------------------------------- class 9


@pytest.mark.skipif(not POSIX, reason="SIGSEGV")
def test_a_native_crash_in_a_scan_is_not_silent(tmp_path):
    """onnxruntime crashing (a SIGSEGV, simulated by reading address 0 in the runner) prints
    the stack, a line pointing at --debug and the batch that was running."""
    import subprocess
    import textwrap

    script = textwrap.dedent(f"""
        import ctypes, sys
        sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
        import fmviz.scan as scan
        scan.Scanner._reduce = lambda self, rows, source: ctypes.string_at(0)
        from fmviz.cli import main
        sys.exit(main(["dead-filters", {str(CORPUS / "models/ok.onnx")!r},
                       {str(CORPUS / "images/ok.png")!r}, {str(CORPUS / "tensors/ok.npy")!r},
                       "--quiet", "--batch-size", "2"]))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120, env={**os.environ, "PYTHONFAULTHANDLER": ""})
    assert result.returncode == -signal.SIGSEGV, result.stderr
    assert "Fatal Python error: Segmentation fault" in result.stderr
    assert "fmviz crashed in native code (onnxruntime?); run again with --debug" in result.stderr
    assert (f"scan batch of inputs 1-2 of 2 (first: {CORPUS / 'images/ok.png'})"
            in result.stderr)


def test_named_call_returns_and_raises_like_the_function():
    from fmviz.crash import named_call

    assert named_call("any\\nlabel", lambda a, b=0: a + b, 1, b=2) == 3
    with pytest.raises(ZeroDivisionError):
        named_call("label", lambda: 1 / 0)


# ----------------------------------------------------------------------------- Ctrl-C


@needs_fifo
@pytest.mark.skipif(not POSIX, reason="SIGINT to a child process")
def test_ctrl_c_ends_a_scan_with_a_fifo_within_a_second(tmp_path):
    """A folder holding a FIFO among its inputs: the scan goes on (the FIFO is skipped) and
    Ctrl-C ends it, exit 130, within a second (a worker blocked on the FIFO once made the
    interpreter wait for it forever)."""
    import subprocess
    import textwrap
    import time

    folder = tmp_path / "inputs"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for index in range(40):
        np.save(folder / f"a{index:02d}.npy", rng.standard_normal((3, 16, 16)).astype(np.float32))
    os.mkfifo(folder / "a00-pipe.npy")  # sorted first: the scan waits for it before any batch
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
        import fmviz.scan as scan
        original = scan.Scanner._reduce
        def slow(self, rows, source):  # a slow model: the scan is still running at Ctrl-C
            print("batch", file=sys.stderr, flush=True)
            time.sleep(0.5)
            return original(self, rows, source)
        scan.Scanner._reduce = slow
        from fmviz.cli import main
        sys.exit(main(["dead-filters", {str(CORPUS / "models/ok.onnx")!r}, {str(folder)!r},
                       "--quiet", "--batch-size", "1"]))
    """)
    child = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True)
    try:
        import select

        ready, _, _ = select.select([child.stderr], [], [], 60)
        assert ready, "no batch ran within 60 s: the scan hangs on the FIFO"
        assert child.stderr.readline().strip() == "batch"
        time.sleep(0.3)
        sent = time.perf_counter()
        child.send_signal(signal.SIGINT)
        code = child.wait(timeout=30)
        elapsed = time.perf_counter() - sent
    finally:
        if child.poll() is None:
            child.kill()
    assert code == 130
    assert elapsed < 1.0, elapsed


def test_a_fifo_as_the_model_or_the_checkpoint_is_refused_at_once(tmp_path, capsys):
    """A FIFO named model.onnx or scan.npz: a clear error, never a wait for a writer."""
    model, checkpoint = tmp_path / "m.onnx", tmp_path / "c.npz"
    os.mkfifo(model)
    os.mkfifo(checkpoint)
    assert main(["layers", str(model)]) == 2
    err = capsys.readouterr().err
    assert err == (f"Error: {model}: is a named pipe (FIFO), not a regular file; a model must "
                   "be one\n")
    ok = str(CORPUS / "models/ok.onnx")
    assert main(["dead-filters", ok, str(CORPUS / "images/ok.png"), "--checkpoint",
                 str(checkpoint), "-q"]) == 2
    assert "is a named pipe (FIFO), not a regular file" in capsys.readouterr().err


def test_a_dask_checkpoint_with_fields_of_the_wrong_type_is_a_clear_error(tmp_path):
    """The partitioned scan's checkpoint goes through the same header checks as the local one
    (a count given as text was a traceback there)."""
    from fmviz.checkpoint import write_partial
    from fmviz.engines import DASK_CHECKPOINT_SCHEMA, PartialCheckpoint
    from fmviz.errors import InputError
    from fmviz.scan import ScanPartial

    path = tmp_path / "scan.npz"
    header = {"schema": DASK_CHECKPOINT_SCHEMA, "model_sha256": "0" * 64, "eps": 1e-6,
              "inputs_sha256": "1" * 64, "partitions_done": ["abc"]}
    write_partial(path, header, ScanPartial(stats=[None]))
    before = path.read_bytes()
    with pytest.raises(InputError, match="not a valid fmviz checkpoint .*partitions_done"):
        PartialCheckpoint(path, header, 1).load({})
    assert path.read_bytes() == before
