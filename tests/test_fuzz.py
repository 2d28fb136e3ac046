"""Fuzzing: whatever bytes a model, image, tensor or series file holds, ``fmviz`` exits 0 or 2.

Never 3 (internal error), never a traceback, never an exception out of ``fmviz.cli.main``.
Inputs are random bytes and, more usefully, valid corpus files with a few bytes flipped, cut
or inserted, so the parsers get past their first check.

The suite runs a fixed, small number of examples per test (derandomized, so CI is stable). To
hunt for new bugs, set ``FMVIZ_FUZZ_EXAMPLES=2000``: more examples, and a fresh random seed.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import warnings
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fmviz.cli import main

CORPUS = Path(__file__).resolve().parent / "corpus"
_HUNT = "FMVIZ_FUZZ_EXAMPLES" in os.environ
FUZZ = settings(
    max_examples=int(os.environ.get("FMVIZ_FUZZ_EXAMPLES", "100")),
    deadline=None,
    derandomize=not _HUNT,
    database=None if not _HUNT else settings.default.database,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("fuzz")
    for name in ("ok.onnx", "series.onnx", "dynamic.onnx"):
        shutil.copy(CORPUS / "models" / name, folder / name)
    shutil.copy(CORPUS / "images" / "ok.png", folder / "ok.png")
    return folder


def run_quietly(args: list[str]) -> tuple[int, str]:
    """Run the CLI; any Python warning counts as stderr noise (the real CLI would print it)."""
    err, out = io.StringIO(), io.StringIO()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for quiet in (ResourceWarning, DeprecationWarning, PendingDeprecationWarning):
            warnings.simplefilter("ignore", quiet)  # as the default filters of `fmviz` do
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            code = main(args)  # must not raise
    noise = "".join(f"{w.category.__name__}: {w.message}\n" for w in caught)
    return code, noise + err.getvalue()


def check(code: int, err: str) -> None:
    assert "Traceback" not in err, err
    assert "internal error" not in err, err
    assert code in (0, 2), (code, err)
    lines = err.strip().splitlines()
    if code == 2:
        assert len(lines) == 1 and err.startswith("Error: "), err
    else:
        assert all(line.startswith("note: ") for line in lines), err


def mutated(seed: bytes, max_edits: int = 8) -> st.SearchStrategy[bytes]:
    """``seed`` with a few bytes overwritten, removed or inserted, or cut short."""

    @st.composite
    def build(draw) -> bytes:
        data = bytearray(seed)
        for _ in range(draw(st.integers(1, max_edits))):
            if not data:
                break
            position = draw(st.integers(0, len(data) - 1))
            action = draw(st.sampled_from(["set", "set", "set", "delete", "insert", "cut"]))
            if action == "set":
                data[position] = draw(st.integers(0, 255))
            elif action == "delete":
                del data[position : position + draw(st.integers(1, 16))]
            elif action == "insert":
                data[position:position] = draw(st.binary(min_size=1, max_size=16))
            else:
                del data[position:]
        return bytes(data)

    return build()


def corpus_bytes(*names: str) -> list[bytes]:
    return [(CORPUS / name).read_bytes() for name in names]


def any_of_mutated(*names: str, raw_max: int = 512) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=raw_max), *[mutated(data) for data in corpus_bytes(*names)]
    )


def _fresh_out(work: Path) -> Path:
    out = work / "out"
    shutil.rmtree(out, ignore_errors=True)
    return out


# ----------------------------------------------------------------------------- models


@FUZZ
@given(data=any_of_mutated("models/ok.onnx", "models/extra.onnx", "models/only-if.onnx"))
def test_fuzz_model_bytes(work, data):
    model = work / "fuzzed.onnx"
    model.write_bytes(data)
    check(*run_quietly(["layers", str(model), "--json"]))
    check(*run_quietly(["run", str(model), str(work / "ok.png"), "-o", str(_fresh_out(work))]))


# ----------------------------------------------------------------------------- images


IMAGE_SEEDS = (
    "images/ok.png",
    "images/exif-rotated.jpg",
    "images/animated.gif",
    "images/tiny.bmp",
    "images/cmyk.tif",
    "images/animated.webp",
    "images/palette-transparent.png",
    "images/grey16.png",
)


@FUZZ
@given(
    data=any_of_mutated(*IMAGE_SEEDS),
    suffix=st.sampled_from([".png", ".jpg", ".gif", ".bmp", ".tif", ".webp"]),
)
def test_fuzz_image_bytes(work, data, suffix):
    picture = work / f"fuzzed{suffix}"
    picture.write_bytes(data)
    out = _fresh_out(work)
    check(*run_quietly(["run", str(work / "ok.onnx"), str(picture), "-o", str(out)]))
    # --size: a mutated header may claim 4096x4096, and the size is not what is fuzzed here
    dynamic = ["run", str(work / "dynamic.onnx"), str(picture), "-o", str(out), "--size", "32"]
    check(*run_quietly(dynamic))


# ----------------------------------------------------------------------------- tensors


@FUZZ
@given(data=any_of_mutated("tensors/ok.npy", "tensors/ok.npz", "tensors/object.npy"))
def test_fuzz_npy_bytes(work, data):
    tensor = work / ("fuzzed.npz" if data[:2] == b"PK" else "fuzzed.npy")
    tensor.write_bytes(data)
    check(*run_quietly(["run", str(work / "ok.onnx"), str(tensor), "-o", str(_fresh_out(work))]))


# ----------------------------------------------------------------------------- series

CSV_ALPHABET = st.sampled_from(
    list("0123456789,,,\n\n\n\r\t \"'-+.eE") + ["nan", "inf", "1e999", "a", "\x00", "é", ";"]
)


@FUZZ
@given(
    text=st.one_of(
        st.lists(CSV_ALPHABET, max_size=200).map("".join),
        st.text(max_size=200),
        mutated((CORPUS / "series" / "ok.csv").read_bytes()).map(
            lambda b: b.decode("utf-8", "replace")
        ),
    ),
    suffix=st.sampled_from([".csv", ".tsv"]),
    length=st.sampled_from([None, "1", "7", "64"]),
)
def test_fuzz_csv_text(work, text, suffix, length):
    table = work / f"fuzzed{suffix}"
    table.write_text(text, encoding="utf-8", errors="surrogatepass")
    args = ["run", str(work / "series.onnx"), str(table), "-o", str(_fresh_out(work)), "-q"]
    check(*run_quietly(args + (["--length", length] if length else [])))


@FUZZ
@given(data=any_of_mutated("series/stereo.wav", "series/nan.wav", raw_max=64))
def test_fuzz_wav_bytes(work, data):
    wav = work / "fuzzed.wav"
    wav.write_bytes(data)
    check(*run_quietly(["run", str(work / "series.onnx"), str(wav), "-o", str(_fresh_out(work))]))


# ----------------------------------------------------------------------------- option values

OPTION_TEXT = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["0", "-1", "1e9", "nan", "inf", "3x", "x3", "0x0", "1,2,3", ",", "re:(", "[",
                     "*", "re:.*", "=", "a=b", "input=1", "scale=", "1e400", "-0", "65536x1"]),
)


@FUZZ
@given(
    option=st.sampled_from(
        ["--size", "--mean", "--std", "--layers", "--cmap", "--clip", "--alpha", "--feed",
         "--max-channels", "--max-pixels", "--threads", "--input", "--layout", "--preset",
         "--provider", "--stage", "--normalize"]
    ),
    value=OPTION_TEXT,
)
def test_fuzz_option_values(work, option, value):
    args = ["run", str(work / "dynamic.onnx"), str(work / "ok.png"), "-o", str(_fresh_out(work))]
    check(*run_quietly(args + ["-q", f"{option}={value}"]))


# ----------------------------------------------------------------------------- issue 17


def _make_checkpoint(folder: Path) -> tuple[list[str], Path]:
    """A finished dead-filters scan with a checkpoint: (the command, the checkpoint)."""
    checkpoint = folder / "scan.npz"
    command = ["dead-filters", str(CORPUS / "models" / "ok.onnx"), str(CORPUS / "images/ok.png"),
               str(CORPUS / "tensors/ok.npy"), "--checkpoint", str(checkpoint), "--quiet"]
    if not checkpoint.exists():
        code, err = run_quietly(command)
        assert code == 0, err
    return command, checkpoint


def _with_header(checkpoint: Path, target: Path, change) -> None:
    import json

    import numpy as np

    with np.load(checkpoint, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    header = json.loads(bytes(arrays["header"]).decode("utf-8"))
    change(header)
    arrays["header"] = np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)
    with open(target, "wb") as handle:
        np.savez(handle, **arrays)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-10, 10**12) | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=3),
    max_leaves=6,
)
HEADER_FIELDS = ("done", "skipped", "inputs_scanned", "samples", "layers_present", "eps",
                 "inputs_sha256", "model_sha256", "stage", "tensors", "options", "schema")


@FUZZ
@given(field=st.sampled_from(HEADER_FIELDS), value=JSON_VALUES, drop=st.booleans())
def test_fuzz_checkpoint_header_fields(work, field, value, drop):
    """Any header field of any JSON type: exit 0 or one Error: line, and a refused checkpoint
    is never written over."""
    command, checkpoint = _make_checkpoint(work)
    fuzzed = work / "fuzzed-scan.npz"

    def change(header):
        if drop:
            header.pop(field, None)
        else:
            header[field] = value

    _with_header(checkpoint, fuzzed, change)
    before = fuzzed.read_bytes()
    code, err = run_quietly([*command[:-3], "--checkpoint", str(fuzzed), "--quiet"])
    check(code, err)
    if code == 2:
        assert err.startswith(f"Error: {fuzzed}: "), err
        assert fuzzed.read_bytes() == before


LOCATIONS = st.one_of(
    st.text(max_size=24),
    st.lists(st.sampled_from(["..", ".", "weights.bin", "sub", "", "/", "\\", "\x00", "w.bin",
                              "%2e%2e", "~", "C:"]), min_size=1, max_size=5).map("/".join),
)


@FUZZ
@given(location=LOCATIONS)
def test_fuzz_external_data_location(work, location):
    """Whatever an initializer's external-data location says: exit 0 only when it names the
    weights inside the model's folder (never the decoy beside the folder), else one Error:."""
    import onnx

    folder = work / "ext" / "model"
    folder.mkdir(parents=True, exist_ok=True)
    good = (CORPUS / "models/external-ok/weights.bin").read_bytes()
    (folder / "weights.bin").write_bytes(good)
    (work / "ext" / "weights.bin").write_bytes(b"\x00" * len(good))  # a decoy outside
    model = onnx.load(str(CORPUS / "models/external-ok/model.onnx"), load_external_data=False)
    tensor = next(t for t in model.graph.initializer if t.name == "conv1.w")
    next(e for e in tensor.external_data if e.key == "location").value = location
    try:
        (folder / "model.onnx").write_bytes(model.SerializeToString())
    except ValueError:  # protobuf refuses to serialise some strings (invalid UTF-8)
        return
    code, err = run_quietly(["layers", str(folder / "model.onnx"), "--json"])
    check(code, err)
    if code == 0:
        import os

        assert os.path.realpath(folder / location) == os.path.realpath(folder / "weights.bin")
