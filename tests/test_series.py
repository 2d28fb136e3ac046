"""Time series: CSV/TSV/WAV loading, fitting to 1-D models, series.png, multi-input audio models.

Models are built here with onnx.helper (opset 17, IR 8); maps are checked against
onnx.reference.ReferenceEvaluator, WAV decoding against the numbers the test wrote, pictures by
decoding them.
"""

from __future__ import annotations

import json
import struct
import wave
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from PIL import Image

import models as tm
from fmviz.cli import main
from fmviz.errors import InputError, OptionError
from fmviz.graph import ModelInput
from fmviz.inputs import InputOptions, load_input
from fmviz.inputs.series import read_wav
from fmviz.model import open_model
from fmviz.render import series as series_view
from fmviz.visualize import RenderOptions, RunOptions, run

REPO = Path(__file__).resolve().parent.parent
F32 = np.dtype(np.float32)


# ----------------------------------------------------------------------------- helpers


def target(shape, name="input", dtype=F32) -> ModelInput:
    return ModelInput(name, tuple(shape), dtype)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def ncl_model(channels=2, length: int | str = 32, cout=4, seed=1) -> onnx.ModelProto:
    """[N, channels, length] -> ``conv`` (k3, same) -> Relu (``relu_out``)."""
    rng = np.random.default_rng(seed)
    c, inits = tm.conv(rng, "conv", "input", "conv_out", channels, cout, kernel=(3,))
    return tm.make_model(
        [c, tm.relu("relu", "conv_out", "relu_out")],
        [tm.tensor_input("input", ["N", channels, length])],
        [tm.tensor_input("relu_out", ["N", cout, length])],
        inits,
    )


def nl_model(length: int | str = 64, extra_inputs=()) -> onnx.ModelProto:
    """Raw audio [N, length] -> Unsqueeze -> ``conv`` (k5 s2 p2, 4 ch) -> Relu (``relu_out``)."""
    rng = np.random.default_rng(2)
    c, inits = tm.conv(rng, "conv", "x3", "conv_out", 1, 4, kernel=(5,), stride=(2,), pads=(2, 2))
    nodes = [
        helper.make_node("Unsqueeze", ["audio", "axis1"], ["x3"], name="unsqueeze"),
        c,
        tm.relu("relu", "conv_out", "relu_out"),
    ]
    return tm.make_model(
        nodes,
        [tm.tensor_input("audio", ["N", length]), *extra_inputs],
        [tm.tensor_input("relu_out", ["N", 4, None])],
        inits + [tm.const("axis1", [1], np.int64)],
    )


def write_pcm_wav(path: Path, frames: np.ndarray, width: int, rate: int = 8000) -> Path:
    """Integer samples [frames, channels] written with the stdlib wave module."""
    frames = np.asarray(frames)
    if width == 1:
        raw = frames.astype(np.uint8).tobytes()
    elif width == 3:
        ints = frames.astype(np.int64).reshape(-1) & 0xFFFFFF
        raw = np.stack([ints & 0xFF, (ints >> 8) & 0xFF, (ints >> 16) & 0xFF], 1).astype(
            np.uint8
        ).tobytes()
    else:
        raw = frames.astype("<i2" if width == 2 else "<i4").tobytes()
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(frames.shape[1])
        handle.setsampwidth(width)
        handle.setframerate(rate)
        handle.writeframes(raw)
    return path


def write_riff(path: Path, fmt: bytes, data: bytes, before_data: bytes = b"") -> Path:
    chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt + before_data
    chunks += b"data" + struct.pack("<I", len(data)) + data
    path.write_bytes(b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks)
    return path


def float_fmt(channels: int, bits: int, rate: int = 16000, extensible: bool = False) -> bytes:
    align = channels * bits // 8
    if not extensible:
        return struct.pack("<HHIIHH", 3, channels, rate, rate * align, align, bits)
    guid = struct.pack("<H", 3) + b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
    return struct.pack("<HHIIHHHHI", 0xFFFE, channels, rate, rate * align, align, bits, 22,
                       bits, 0) + guid


# ----------------------------------------------------------------------------- CSV / TSV


def test_csv_with_header_names_channels(tmp_path):
    path = write(tmp_path / "s.csv", "acc,gyro\n1,10\n2,20\n3,30\n4,40\n")
    prepared = load_input(path, target([1, 2, 4]), InputOptions())
    assert prepared.kind == "series"
    np.testing.assert_array_equal(prepared.array, [[[1, 2, 3, 4], [10, 20, 30, 40]]])
    np.testing.assert_array_equal(prepared.signal, prepared.array[0])
    record = prepared.preprocess
    assert record["header"] == ["acc", "gyro"]
    assert record["channel_names"] == ["acc", "gyro"]
    assert record["format"] == "csv" and record["length_rule"] == "model"
    assert record["original_length"] == 4 and prepared.notices == []


def test_csv_without_header_keeps_first_row(tmp_path):
    path = write(tmp_path / "s.csv", "1.5,-2\n2.5,1e3\n")
    prepared = load_input(path, target(["N", 2, "L"]), InputOptions())
    np.testing.assert_array_equal(prepared.array[0], [[1.5, 2.5], [-2, 1000]])
    assert prepared.preprocess["header"] is None
    assert prepared.preprocess["length_rule"] == "none"


def test_tsv_uses_tabs(tmp_path):
    path = write(tmp_path / "s.tsv", "a\tb\tc\n1\t2\t3\n4\t5\t6\n")
    prepared = load_input(path, target([1, 3, 2]), InputOptions())
    np.testing.assert_array_equal(prepared.array[0], [[1, 4], [2, 5], [3, 6]])
    assert prepared.preprocess["format"] == "tsv"


def test_one_column_bom_blank_lines_and_trailing_delimiter(tmp_path):
    path = tmp_path / "s.csv"
    path.write_bytes("\ufeffvalue,\n1,\n\n2,\n3,\n".encode())
    prepared = load_input(path, target([1, 1, 3]), InputOptions())
    np.testing.assert_array_equal(prepared.array, [[[1, 2, 3]]])
    assert prepared.preprocess["header"] == ["value"]


def test_non_numeric_cell_names_row_and_column(tmp_path):
    path = write(tmp_path / "s.csv", "a,b\n1,2\n3,4\n5,6\n7,abc\n")
    with pytest.raises(InputError) as info:
        load_input(path, target([1, 2, 4]), InputOptions())
    assert info.value.for_cli() == f"{path}: row 5, column 2: 'abc' is not a number"


def test_row_numbers_count_blank_lines_like_a_spreadsheet(tmp_path):
    path = write(tmp_path / "s.csv", "1,2\n\n3,x\n")
    with pytest.raises(InputError, match=r"row 3, column 2: 'x' is not a number"):
        load_input(path, target([1, 2, 2]), InputOptions())


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty file, no rows of numbers"),
        ("\n\n  \n", "empty file, no rows of numbers"),
        ("a,b\n", "has a header row but no rows of numbers"),
        ("1,2\n3,4,5\n", "row 2 has 3 columns; the first row has 2"),
        ("a,b\n1,2\n3\n", "row 3 has 1 column; the header has 2"),
        ("1,2\n,4\n", "row 2, column 1: empty cell"),
        ("1,2\n3,nan\n", "row 2, column 2: 'nan' is not a finite number"),
    ],
)
def test_bad_tables(tmp_path, text, message):
    path = write(tmp_path / "s.csv", text)
    with pytest.raises(InputError) as info:
        load_input(path, target(["N", 2, "L"]), InputOptions())
    assert info.value.for_cli() == f"{path}: {message}"


def test_binary_file_is_not_a_table(tmp_path):
    path = tmp_path / "s.csv"
    path.write_bytes(b"\xff\xfe\x00\x01garbage")
    with pytest.raises(InputError, match="not UTF-8 text"):
        load_input(path, target(["N", 2, "L"]), InputOptions())


def test_channel_count_mismatch_names_both_counts(tmp_path):
    path = write(tmp_path / "s.csv", "1,2,3\n4,5,6\n")
    with pytest.raises(InputError) as info:
        load_input(path, target(["N", 2, 2]), InputOptions())
    assert str(info.value) == f"{path}: has 3 channels; input 'input' takes 2 (shape [N, 2, 2])"


def test_crop_and_pad_with_notices(tmp_path):
    rows = "\n".join(str(i) for i in range(150))
    path = write(tmp_path / "long.csv", rows + "\n")
    prepared = load_input(path, target([1, 1, 100]), InputOptions())
    np.testing.assert_array_equal(prepared.array[0, 0], np.arange(100))
    assert prepared.notices == [f"{path}: 150 samples cropped to the model's length 100"]
    assert prepared.preprocess["cropped"] == {"from": 150, "to": 100, "kept": [0, 100]}
    assert prepared.preprocess["original_length"] == 150

    prepared = load_input(path, target([1, 1, 200]), InputOptions())
    np.testing.assert_array_equal(prepared.array[0, 0, :150], np.arange(150))
    np.testing.assert_array_equal(prepared.array[0, 0, 150:], 0)
    assert prepared.notices == [f"{path}: 150 samples zero-padded to the model's length 200"]
    assert prepared.preprocess["padded"]["zeros_at_end"] == 50


def test_length_option_for_dynamic_length_only(tmp_path):
    path = write(tmp_path / "s.csv", "\n".join(str(i) for i in range(10)) + "\n")
    prepared = load_input(path, target(["N", 1, "L"]), InputOptions(length=6))
    assert prepared.array.shape == (1, 1, 6)
    assert prepared.preprocess["length_rule"] == "--length"
    assert prepared.notices == [f"{path}: 10 samples cropped to --length 6"]
    kept = load_input(path, target(["N", 1, "L"]), InputOptions())
    assert kept.array.shape == (1, 1, 10) and kept.notices == []
    static = load_input(path, target(["N", 1, 10]), InputOptions(length=6))
    assert static.array.shape == (1, 1, 10)
    assert static.notices == [
        f"{path}: --length 6 ignored; input 'input' has the static length 10"
    ]


def test_channel_option(tmp_path):
    path = write(tmp_path / "s.csv", "a,b,c\n1,10,100\n2,20,200\n")
    picked = load_input(path, target(["N", "L"]), InputOptions(channel=2))
    np.testing.assert_array_equal(picked.array, [[100, 200]])
    assert picked.preprocess["channels_used"] == [2]
    assert picked.preprocess["channel_names"] == ["c"]

    first = load_input(path, target(["N", "L"]), InputOptions())
    np.testing.assert_array_equal(first.array, [[1, 2]])
    assert first.notices == [
        f"{path}: 3 channels; the model takes one, using channel 0 (choose another with "
        "--channel K)"
    ]
    mono = load_input(path, target([1, 1, 2]), InputOptions(channel=1))
    np.testing.assert_array_equal(mono.array, [[[10, 20]]])

    with pytest.raises(OptionError, match=r"channel 3: .* has 3 channels \(0\.\.2\)"):
        load_input(path, target(["N", "L"]), InputOptions(channel=3))
    with pytest.raises(OptionError, match="takes 3 channels; --channel picks"):
        load_input(path, target([1, 3, 2]), InputOptions(channel=0))


def test_channels_last_model_and_static_batch(tmp_path):
    path = write(tmp_path / "s.csv", "1,10,100\n2,20,200\n")
    prepared = load_input(path, target(["N", "T", 3]), InputOptions())
    np.testing.assert_array_equal(prepared.array, [[[1, 10, 100], [2, 20, 200]]])
    assert prepared.preprocess["layout"] == "NLC"
    np.testing.assert_array_equal(prepared.signal, [[1, 2], [10, 20], [100, 200]])
    batch = load_input(path, target([2, 3, 2]), InputOptions())
    assert batch.array.shape == (2, 3, 2) and batch.preprocess["batch_copies"] == 2


def test_series_needs_a_series_model(tmp_path):
    path = write(tmp_path / "s.csv", "1,2\n")
    with pytest.raises(InputError, match=r"needs a model input \[N, C, L\] or \[N, L\]"):
        load_input(path, target([1, 3, 8, 8]), InputOptions())
    with pytest.raises(InputError, match="series are fed as floating-point"):
        load_input(path, target([1, 2, 1], dtype=np.dtype(np.int64)), InputOptions())


# ----------------------------------------------------------------------------- WAV


@pytest.mark.parametrize("width", [1, 2, 3, 4])
def test_pcm_wav_every_width_stereo(tmp_path, width):
    bits = 8 * width
    rng = np.random.default_rng(width)
    if width == 1:
        ints = rng.integers(0, 256, (50, 2))
        expected = (ints - 128) / 128
    else:
        low, high = -(1 << (bits - 1)), (1 << (bits - 1))
        ints = rng.integers(low, high, (50, 2))
        ints[0] = [low, high - 1]  # the extremes decode to -1 and just under 1
        expected = ints / float(1 << (bits - 1))
    path = write_pcm_wav(tmp_path / f"pcm{bits}.wav", ints, width, rate=22050)
    data, record = read_wav(path)
    np.testing.assert_array_equal(data, expected.T)
    assert record["sample_rate"] == 22050 and record["sample_bits"] == bits
    assert record["sample_format"] == "pcm" and record["file_channels"] == 2
    assert record["frames"] == 50
    assert data.min() >= -1 and data.max() < 1

    prepared = load_input(path, target([1, 2, 50]), InputOptions())
    np.testing.assert_allclose(prepared.array[0], expected.T.astype(np.float32))
    assert prepared.preprocess["format"] == "wav"


@pytest.mark.parametrize("bits", [32, 64])
@pytest.mark.parametrize("extensible", [False, True])
def test_float_wav(tmp_path, bits, extensible):
    values = np.array([[0.0, 0.5], [-0.25, 1.0], [0.75, -1.0]])
    dtype = "<f4" if bits == 32 else "<f8"
    # an odd-sized chunk before the samples checks the RIFF pad byte is skipped
    junk = b"LIST" + struct.pack("<I", 3) + b"abc\x00"
    path = write_riff(
        tmp_path / "f.wav", float_fmt(2, bits, extensible=extensible),
        values.astype(dtype).tobytes(), before_data=junk,
    )
    data, record = read_wav(path)
    np.testing.assert_array_equal(data, values.T.astype(dtype).astype(np.float64))
    assert record["sample_format"] == "float" and record["sample_bits"] == bits
    assert record["sample_rate"] == 16000
    assert record["format_tag"] == "0x0003"


def test_extensible_24_bit_pcm(tmp_path):
    ints = np.array([0, 1, -1, 8388607, -8388608, 4096])
    raw = ints.astype(np.int64) & 0xFFFFFF
    data_bytes = np.stack([raw & 0xFF, (raw >> 8) & 0xFF, raw >> 16], 1).astype(np.uint8).tobytes()
    guid = struct.pack("<H", 1) + b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
    fmt = struct.pack("<HHIIHHHHI", 0xFFFE, 1, 48000, 48000 * 3, 3, 24, 22, 24, 4) + guid
    data, record = read_wav(write_riff(tmp_path / "x.wav", fmt, data_bytes))
    np.testing.assert_array_equal(data[0], ints / 2**23)
    assert record["sample_bits"] == 24 and record["sample_rate"] == 48000


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"RIFF\x00\x00", "too short to be a WAV file (6 bytes)"),
        (b"OggS" + b"\x00" * 40, "not a WAV file (no RIFF/WAVE header)"),
        (b"RIFF\x04\x00\x00\x00WAVE",
         "no 'fmt ' chunk before the samples; not a valid WAV file"),
    ],
)
def test_bad_wav_files(tmp_path, content, message):
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(InputError) as info:
        read_wav(path)
    assert info.value.for_cli() == f"{path}: {message}"


def test_wav_errors_name_what_is_wrong(tmp_path):
    alaw = struct.pack("<HHIIHH", 6, 1, 8000, 8000, 1, 8)
    with pytest.raises(InputError, match="A-law WAV is not supported"):
        read_wav(write_riff(tmp_path / "a.wav", alaw, b"\x00" * 8))
    twelve = struct.pack("<HHIIHH", 1, 1, 8000, 16000, 2, 12)
    with pytest.raises(InputError, match="12-bit PCM WAV is not supported"):
        read_wav(write_riff(tmp_path / "b.wav", twelve, b"\x00" * 8))
    no_data = tmp_path / "c.wav"
    fmt = struct.pack("<HHIIHH", 1, 1, 8000, 16000, 2, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt
    no_data.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    with pytest.raises(InputError, match="no 'data' chunk"):
        read_wav(no_data)
    zero = struct.pack("<HHIIHH", 1, 0, 8000, 0, 0, 16)
    with pytest.raises(InputError, match="0 channels"):
        read_wav(write_riff(tmp_path / "d.wav", zero, b""))
    with pytest.raises(InputError, match="holds no samples"):
        read_wav(write_riff(tmp_path / "e.wav", fmt, b""))
    nan = write_riff(tmp_path / "f.wav", float_fmt(1, 32), np.array([np.nan], "<f4").tobytes())
    with pytest.raises(InputError, match="NaN or infinite"):
        read_wav(nan)


def test_truncated_wav_keeps_whole_frames(tmp_path):
    path = write_pcm_wav(tmp_path / "t.wav", np.arange(10).reshape(10, 1) * 100, 2)
    path.write_bytes(path.read_bytes()[:-3])  # cut one and a half frames
    data, record = read_wav(path)
    assert record["truncated"] is True and record["frames"] == 8
    np.testing.assert_array_equal(data[0], np.arange(8) * 100 / 32768)


def test_wav_into_raw_audio_model_reads_only_what_it_needs(tmp_path):
    ints = np.stack([np.arange(1000), -np.arange(1000)], 1)
    path = write_pcm_wav(tmp_path / "long.wav", ints, 2, rate=16000)
    prepared = load_input(path, target([1, 256]), InputOptions(channel=1))
    np.testing.assert_array_equal(prepared.array, [-np.arange(256) / 32768])
    assert prepared.notices == [f"{path}: 1000 samples cropped to the model's length 256"]
    record = prepared.preprocess
    assert record["sample_rate"] == 16000 and record["channels_used"] == [1]
    assert record["original_length"] == 1000 and record["layout"] == "NL"


# ----------------------------------------------------------------------------- maps


def test_maps_equal_reference_for_csv_input(tmp_path):
    model = ncl_model(channels=2, length=32)
    model_path = tm.save(model, tmp_path / "m.onnx")
    rng = np.random.default_rng(5)
    values = rng.standard_normal((40, 2))
    csv_path = write(tmp_path / "in.csv", "x,y\n" + "\n".join(f"{a},{b}" for a, b in values))
    capture = open_model(model_path).capture(csv_path, ["conv"], "post")
    feed = values[:32].T[np.newaxis].astype(np.float32)
    np.testing.assert_array_equal(capture.input.array, feed)
    (expected,) = tm.reference_outputs(model, {"input": feed}, ["relu_out"])
    np.testing.assert_allclose(capture["conv"], expected, rtol=1e-5, atol=1e-5)


def test_raw_audio_model_maps_equal_reference(tmp_path):
    model = nl_model(length=64)
    model_path = tm.save(model, tmp_path / "audio.onnx")
    ints = (np.sin(np.arange(80) / 4) * 20000).astype(int).reshape(-1, 1)
    wav = write_pcm_wav(tmp_path / "a.wav", ints, 2)
    capture = open_model(model_path).capture(wav, stage="pre")
    feed = (ints[:64, 0] / 32768).astype(np.float32)[np.newaxis]
    np.testing.assert_array_equal(capture.input.array, feed)
    (expected,) = tm.reference_outputs(model, {"audio": feed}, ["conv_out"])
    np.testing.assert_allclose(capture["conv"], expected, rtol=1e-5, atol=1e-5)
    assert capture["conv"].shape == (1, 4, 32)


# ----------------------------------------------------------------------------- series.png


def strip_rows(image: np.ndarray, layout: dict, n_rows: int) -> np.ndarray:
    """The strip's rows [n, width] of palette indices, one pixel line per shown channel."""
    pitch = layout["row_height"] + layout["row_gap"]
    x0, width = layout["plot_x"], layout["plot_width"]
    ys = layout["strip_top"] + np.arange(n_rows) * pitch + layout["row_height"] // 2
    return image[ys, x0 : x0 + width]


def shifted_model() -> onnx.ModelProto:
    """[1, 1, 64] -> ``pick`` (k9, no pad, centre tap: a[j] = x[j + 4]) -> ``stride4`` (k3 s4,
    pads [8, 0], centre tap: b[j] = a[4j - 7] = x[4j - 3]): output j sits at input 4j - 3,
    not where the length ratio would put it (4j + 1.5)."""
    pick = np.zeros((1, 1, 9), np.float32)
    pick[0, 0, 4] = 1
    centre = np.zeros((2, 1, 3), np.float32)
    centre[:, 0, 1] = [1, 0.5]
    nodes = [
        helper.make_node("Conv", ["input", "w1"], ["a"], name="pick", kernel_shape=[9],
                         pads=[0, 0]),
        helper.make_node("Conv", ["a", "w2"], ["b"], name="stride4", kernel_shape=[3],
                         strides=[4], pads=[8, 0]),
    ]
    return tm.make_model(
        nodes,
        [tm.tensor_input("input", [1, 1, 64])],
        [tm.tensor_input("b", [1, 2, 16])],
        [tm.init("w1", pick), tm.init("w2", centre)],
    )


def test_strided_shifted_conv_is_aligned_with_the_input(tmp_path):
    model = shifted_model()
    model_path = tm.save(model, tmp_path / "shift.onnx")
    signal = np.zeros(64)
    signal[41] = 1.0  # a spike at t = 41
    csv_path = write(tmp_path / "spike.csv", "\n".join(str(v) for v in signal) + "\n")
    out = tmp_path / "out"
    assert main(["run", str(model_path), str(csv_path), "-o", str(out), "-q"]) == 0
    manifest = json.loads((out / "spike" / "manifest.json").read_text())
    entry = next(e for e in manifest["layers"] if e["name"] == "stride4")
    assert entry["time_axis"] == {"stride": 4, "offset": -3, "method": "graph",
                                  "input_length": 64, "output_length": 16}
    feed = signal.astype(np.float32).reshape(1, 1, 64)
    (b,) = tm.reference_outputs(model, {"input": feed}, ["b"])
    assert int(np.argmax(b[0, 0])) == 11  # independent: output 11 holds the spike (4*11-3 = 41)

    layout = entry["series_layout"]
    image = np.asarray(Image.open(out / "spike" / entry["files"]["series"]))
    assert image.shape == (layout["height"], layout["width"])
    row = strip_rows(image, layout, 2)[0].astype(int)
    levels = np.where(row < 250, row, -1)  # 250+: background, not covered by the layer
    hot = np.flatnonzero(levels == levels.max())
    samples_per_px = 64 / layout["plot_width"]
    hot_samples = (hot + 0.5) * samples_per_px - 0.5
    # output 11 covers input 39..43 around its centre 41; the length ratio would give 45.5
    assert abs(hot_samples.mean() - 41) <= 0.5
    assert hot_samples.min() >= 38.5 and hot_samples.max() <= 43.5
    # the input lane shows the spike in the same column
    lane = image[layout["lanes_top"] : layout["lanes_top"] + layout["lane_height"],
                 layout["plot_x"] : layout["plot_x"] + layout["plot_width"]]
    top_line = np.flatnonzero((lane == series_view.LINE)[:6].any(axis=0))
    assert abs(((top_line + 0.5) * samples_per_px - 0.5).mean() - 41) <= 0.5


def test_time_axis_fallback_without_graph_uses_length_ratio():
    axis = series_view.ratio_time_axis(100, 92)  # two valid k5 convs
    assert (axis.stride, axis.offset, axis.method) == (1.0, 4.0, "length-ratio")
    axis = series_view.ratio_time_axis(32, 16)
    assert (axis.stride, axis.offset) == (2.0, 0.5)
    up = series_view.ratio_time_axis(16, 32)
    assert up.stride == 0.5


def test_time_axes_walks_layout_ops():
    """Transpose/Unsqueeze/Pad/Slice/ConvTranspose/pools and auto_pad move the time axis."""
    nodes = [
        helper.make_node("Transpose", ["input"], ["ncl"], perm=[0, 2, 1]),  # [N, L, C] input
        helper.make_node("Pad", ["ncl", "pads"], ["padded"]),  # 3 zeros in front of time
        helper.make_node("MaxPool", ["padded"], ["pooled"], kernel_shape=[2], strides=[2]),
        helper.make_node("Slice", ["pooled", "starts", "ends", "axes"], ["sliced"]),
        helper.make_node("Conv", ["sliced", "w"], ["same"], auto_pad="SAME_UPPER",
                         kernel_shape=[4]),
        helper.make_node("ConvTranspose", ["same", "wt"], ["up"], kernel_shape=[4], strides=[2],
                         pads=[1, 1]),
        helper.make_node("Reshape", ["up", "shape"], ["flat"]),
        helper.make_node("GlobalAveragePool", ["up"], ["gap"]),
    ]
    inits = [
        tm.const("pads", [0, 0, 3, 0, 0, 0], np.int64),
        tm.const("starts", [1], np.int64),
        tm.const("ends", [1000], np.int64),
        tm.const("axes", [2], np.int64),
        tm.const("w", np.ones((2, 2, 4))),
        tm.const("wt", np.ones((2, 2, 4))),
        tm.const("shape", [0, 0, -1], np.int64),
    ]
    model = tm.make_model(nodes, [tm.tensor_input("input", [1, 40, 2])],
                          [tm.tensor_input("gap", [1, 2, 1])], inits)
    from fmviz.graph.receptive import receptive_fields

    fields = receptive_fields(model, "input", (-2,))

    def axis(name):  # (stride, centre of step 0, where the time axis is now)
        field = fields[name]
        return (field.axes[0].stride, field.axes[0].centre(0), field.tensor_axes[0])

    assert axis("ncl") == (1.0, 0.0, -1)
    assert axis("padded") == (1.0, -3.0, -1)
    assert axis("pooled") == (2.0, -2.5, -1)  # centre of a 2-window: +0.5 step
    assert axis("sliced") == (2.0, -0.5, -1)
    # SAME_UPPER k4 s1: pads 1 in front, 2 behind; centre (k - 1) / 2 = 1.5 -> +0.5 step
    assert axis("same") == (2.0, 0.5, -1)
    # ConvTranspose k4 s2 p1: stride halves, its windows are centred 0.25 step later
    assert axis("up")[0] == 1.0 and axis("up")[2] == -1
    assert axis("flat")[0] == 1.0 and axis("flat")[2] == -1
    assert fields["gap"].axes[0].size is None  # global pooling: the whole input


def test_series_png_rows_labels_and_ranges(tmp_path):
    model_path = tm.save(ncl_model(channels=3, length=50, cout=8), tmp_path / "m.onnx")
    rng = np.random.default_rng(3)
    values = rng.standard_normal((50, 3))
    csv_path = write(tmp_path / "s.csv", "\n".join(",".join(map(str, r)) for r in values))
    model = open_model(model_path)
    options = RunOptions(out=tmp_path / "out", stage="pre",
                         render=RenderOptions(max_channels=5, normalize="layer"))
    (folder, manifest), = list(run(model, [csv_path], options))
    entry = manifest["layers"][0]
    assert entry["files"] == {"series": "000-conv.series.png"}
    assert entry["view"] == "series" and entry["cmap"] == "RdBu_r"  # pre-activation: negatives
    assert len(entry["shown_channels"]) == 5
    capture = model.capture(csv_path, stage="pre")
    energy = np.abs(capture["conv"][0]).mean(axis=1)
    assert entry["shown_channels"] == sorted(np.argsort(-energy)[:5].tolist())
    # layer normalisation, centred: one symmetric range for every row, from full-res values
    shown = capture["conv"][0][entry["shown_channels"]]
    peak = float(np.abs(shown).max())
    assert entry["ranges"] == [[-peak, peak]] * 5
    assert entry["input_channels_shown"] == [0, 1, 2]

    layout = entry["series_layout"]
    image = np.asarray(Image.open(folder / entry["files"]["series"]))
    assert image.shape == (layout["height"], layout["width"])
    rows = strip_rows(image, layout, 5)
    assert all(len(np.unique(r)) > 5 for r in rows)  # every row has structure, none blank
    # exactly 5 bands: the line just below the last row is background
    below = layout["strip_top"] + 5 * (layout["row_height"] + layout["row_gap"])
    band = image[layout["strip_top"] : below, layout["plot_x"]]
    assert len(np.unique(band[band != 251])) > 1  # 251: panel background between rows
    assert (image[below + 1, layout["plot_x"] : layout["plot_x"] + 20] != rows[-1][:20]).any()


def test_long_series_are_downsampled_for_display_only(tmp_path):
    model_path = tm.save(ncl_model(channels=1, length="L", cout=2), tmp_path / "m.onnx")
    signal = np.zeros(20000)
    signal[12345] = 5.0  # one sample in 20000 must still show
    csv_path = write(tmp_path / "s.csv", "\n".join(str(v) for v in signal) + "\n")
    options = RunOptions(out=tmp_path / "out", stage="pre")
    (folder, manifest), = list(run(open_model(model_path), [csv_path], options))
    entry = manifest["layers"][0]
    layout = entry["series_layout"]
    assert layout["plot_width"] == series_view.MAX_PLOT
    assert entry["shape"] == [1, 2, 20000]
    image = np.asarray(Image.open(folder / entry["files"]["series"]))
    lane = image[layout["lanes_top"] : layout["lanes_top"] + layout["lane_height"],
                 layout["plot_x"] : layout["plot_x"] + layout["plot_width"]]
    spike_px = int(12345 / 20000 * layout["plot_width"])
    top = np.flatnonzero((lane == series_view.LINE)[:6].any(axis=0))
    assert top.tolist() and abs(int(top.mean()) - spike_px) <= 1
    # the strip keeps the spike's column hot although 20 outputs share each pixel column
    rows = strip_rows(image, layout, 2)
    for row in rows.astype(int):
        extreme = np.abs(row - row[0])  # background level is the first column's
        assert abs(int(np.argmax(extreme)) - spike_px) <= 1
    # ranges (centred: +-max|a|) and statistics are over the full arrays
    stats = entry["stats"]
    peak = max(abs(stats["min"]), stats["max"])
    assert max(hi for _, hi in entry["ranges"]) == pytest.approx(peak)


def test_render_under_50_ms_for_64_channels_by_1000_steps(tmp_path):
    from types import SimpleNamespace

    from fmviz.inputs import PreparedInput

    rng = np.random.default_rng(0)
    signal = rng.standard_normal((6, 1000)).astype(np.float32)
    prepared = PreparedInput(Path("x.csv"), "series", signal[np.newaxis], {}, signal=signal)
    probe = SimpleNamespace(index=0, name="conv", time_axis=None)
    maps = np.abs(rng.standard_normal((64, 1000))).astype(np.float32)
    series_view.render_series(maps, probe, prepared, tmp_path, "warm", RenderOptions())
    best = min(
        _timed(lambda: series_view.render_series(maps, probe, prepared, tmp_path, "t",
                                                 RenderOptions()))
        for _ in range(3)
    )
    assert best < 0.05 * 3  # 50 ms target with room for a loaded CI machine; see benchmarks
    image = Image.open(tmp_path / "t.series.png")
    assert image.mode == "P"


def _timed(function) -> float:
    import time

    started = time.perf_counter()
    function()
    return time.perf_counter() - started


# ----------------------------------------------------------------------------- multi-input


def lstm_audio_model() -> onnx.ModelProto:
    """Raw audio [1, 'L'] + states ``h``/``c`` [1, 1, 8] + int64 ``sr`` [] (scaled into the
    features): Unsqueeze -> ``conv`` (k5 s2) -> Relu -> Transpose -> LSTM(h, c) -> ``y``."""
    rng = np.random.default_rng(7)
    conv, inits = tm.conv(rng, "conv", "x3", "conv_out", 1, 4, kernel=(5,), stride=(2,),
                          pads=(2, 2))
    hidden = 8
    inits += [
        tm.const("axis1", [1], np.int64),
        tm.const("per_16k", 1 / 16000),
        tm.init("W", (rng.standard_normal((1, 4 * hidden, 4)) * 0.3).astype(np.float32)),
        tm.init("R", (rng.standard_normal((1, 4 * hidden, hidden)) * 0.3).astype(np.float32)),
    ]
    nodes = [
        helper.make_node("Unsqueeze", ["audio", "axis1"], ["x3"]),
        conv,
        tm.relu("relu", "conv_out", "relu_out"),
        helper.make_node("Cast", ["sr"], ["sr_f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["sr_f", "per_16k"], ["sr_rel"]),
        helper.make_node("Mul", ["relu_out", "sr_rel"], ["scaled"]),
        helper.make_node("Transpose", ["scaled"], ["seq"], perm=[2, 0, 1]),
        helper.make_node("LSTM", ["seq", "W", "R", "", "", "h", "c"], ["y", "y_h", "y_c"],
                         hidden_size=hidden),
    ]
    return tm.make_model(
        nodes,
        [
            tm.tensor_input("audio", [1, "L"]),
            tm.tensor_input("h", [1, 1, hidden]),
            tm.tensor_input("c", [1, 1, hidden]),
            tm.tensor_input("sr", [], TensorProto.INT64),
        ],
        [tm.tensor_input("y_h", [1, 1, hidden])],
        inits,
    )


def test_audio_model_with_states_and_sample_rate_runs_without_flags(tmp_path, capsys):
    model = lstm_audio_model()
    model_path = tm.save(model, tmp_path / "lstm.onnx")
    ints = (np.sin(np.arange(300) / 7) * 9000).astype(int).reshape(-1, 1)
    wav = write_pcm_wav(tmp_path / "voice.wav", ints, 2, rate=16000)
    out = tmp_path / "out"
    assert main(["run", str(model_path), str(wav), "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert "note: input 'h' [1, 1, 8] float32 gets zeros" in err
    assert "note: input 'sr' [] int64 gets zeros (set it with --feed sr=FILE.npy|NUMBER)" in err
    manifest = json.loads((out / "voice" / "manifest.json").read_text())
    assert manifest["input"]["feeds"]["sr"] == {"source": "zeros", "shape": [], "dtype": "int64"}
    assert manifest["input"]["preprocess"]["sample_rate"] == 16000
    assert (out / "voice" / manifest["layers"][0]["files"]["series"]).is_file()

    state = tmp_path / "h.npy"
    np.save(state, np.full((1, 1, 8), 0.5, np.float32))
    assert main(["run", str(model_path), str(wav), "-o", str(out), "-q",
                 "--feed", "sr=16000", "--feed", f"h={state}"]) == 0
    manifest = json.loads((out / "voice" / "manifest.json").read_text())
    feeds = manifest["input"]["feeds"]
    assert feeds["sr"] == {"source": "number", "value": 16000.0, "shape": [], "dtype": "int64"}
    assert feeds["h"] == {"source": str(state), "shape": [1, 1, 8], "dtype": "float32"}
    assert feeds["c"]["source"] == "zeros"
    # the captured map equals the reference with the same feeds
    capture = open_model(model_path).capture(
        wav, options=InputOptions(feeds=(("sr", "16000"), ("h", str(state))))
    )
    feed = {"audio": capture.input.array, "h": np.full((1, 1, 8), 0.5, np.float32),
            "c": np.zeros((1, 1, 8), np.float32), "sr": np.array(16000, np.int64)}
    (expected,) = tm.reference_outputs(model, feed, ["relu_out"])
    np.testing.assert_allclose(capture["conv"], expected, rtol=1e-5, atol=1e-3)


def test_feed_errors(tmp_path):
    model_path = tm.save(lstm_audio_model(), tmp_path / "lstm.onnx")
    wav = write_pcm_wav(tmp_path / "a.wav", np.zeros((40, 1), int), 2)
    assert main(["run", str(model_path), str(wav), "-o", str(tmp_path / "o"),
                 "--feed", "sr=16000.5"]) == 2
    assert main(["run", str(model_path), str(wav), "-o", str(tmp_path / "o"),
                 "--feed", "nope=1"]) == 2


# ----------------------------------------------------------------------------- CLI, bundled


def test_cli_run_writes_what_spec_lists(tmp_path):
    model_path = tm.save(tm.conv1d(), tmp_path / "c1d.onnx")
    csv_path = write(tmp_path / "walk.csv", "a,b\n" + "\n".join(f"{i},{-i}" for i in range(32)))
    out = tmp_path / "out"
    assert main(["run", str(model_path), str(csv_path), "-o", str(out), "-q",
                 "--save-arrays"]) == 0
    folder = out / "walk"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["input"]["kind"] == "series"
    assert manifest["input"]["tensor_shape"] == [1, 2, 32]
    assert [e["files"] for e in manifest["layers"]] == [
        {"series": "000-conv1.series.png"},
        {"series": "001-conv2.series.png"},
    ]
    for entry in manifest["layers"]:
        image = Image.open(folder / entry["files"]["series"])
        assert image.size == (entry["series_layout"]["width"], entry["series_layout"]["height"])
    assert manifest["layers"][1]["time_axis"]["stride"] == 2
    arrays = np.load(folder / "arrays.npz")
    assert sorted(arrays.files) == ["output", "relu1_out"]
    assert not list(folder.glob("*.grid.png")) and not list(folder.glob("*.overlay.png"))


def test_cli_series_errors_are_one_line(tmp_path, capsys):
    model_path = tm.save(tm.conv1d(), tmp_path / "c1d.onnx")
    bad = write(tmp_path / "bad.csv", "1,2\n3,x\n")
    assert main(["run", str(model_path), str(bad), "-o", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err == f"Error: {bad}: row 2, column 2: 'x' is not a number\n"


BUNDLED_MODEL = REPO / "models" / "basicmotions_cnn1d.onnx"
BUNDLED_CSV = REPO / "samples" / "basicmotions-walking.csv"


@pytest.mark.skipif(
    not (BUNDLED_MODEL.is_file() and BUNDLED_CSV.is_file()), reason="bundled 1-D model missing"
)
def test_bundled_model_on_bundled_csv(tmp_path):
    out = tmp_path / "out"
    assert main(["run", str(BUNDLED_MODEL), str(BUNDLED_CSV), "-o", str(out), "-q"]) == 0
    folder = out / BUNDLED_CSV.stem
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["input"]["preprocess"]["header"] is not None
    assert manifest["layers"]
    for entry in manifest["layers"]:
        assert entry["view"] == "series" and entry["time_axis"]["method"] == "graph"
        picture = np.asarray(Image.open(folder / entry["files"]["series"]))
        layout = entry["series_layout"]
        rows = strip_rows(picture, layout, len(entry["shown_channels"]))
        assert len(np.unique(rows)) > 10


def test_semicolon_file_gets_a_hint(tmp_path):
    path = write(tmp_path / "s.csv", "1;2\n3;4\n")
    with pytest.raises(InputError) as info:
        load_input(path, target(["N", 1, "L"]), InputOptions())
    assert info.value.for_cli() == (
        f"{path}: row 2, column 1: '3;4' is not a number (values seem separated by ';'; "
        "fmviz reads .csv as comma- and .tsv as tab-separated)"
    )


def channels_last_model() -> onnx.ModelProto:
    """[N, 'T', 3] (Keras style) -> Transpose -> ``conv`` (k3 s2 p1, 4 ch) -> ``conv_out``."""
    rng = np.random.default_rng(9)
    c, inits = tm.conv(rng, "conv", "ncl", "conv_out", 3, 4, kernel=(3,), stride=(2,),
                       pads=(1, 1))
    nodes = [helper.make_node("Transpose", ["input"], ["ncl"], perm=[0, 2, 1]), c]
    return tm.make_model(nodes, [tm.tensor_input("input", ["N", "T", 3])],
                         [tm.tensor_input("conv_out", ["N", 4, None])], inits)


@pytest.mark.parametrize("kind", ["csv", "npy"])
def test_channels_last_model_series_view(tmp_path, kind):
    model = channels_last_model()
    model_path = tm.save(model, tmp_path / "nlc.onnx")
    values = np.random.default_rng(4).standard_normal((30, 3)).astype(np.float32)
    if kind == "csv":
        source = write(tmp_path / "s.csv", "\n".join(",".join(map(str, r)) for r in values))
    else:
        source = tmp_path / "s.npy"
        np.save(source, values[np.newaxis])
    out = tmp_path / "out"
    assert main(["run", str(model_path), str(source), "-o", str(out), "-q"]) == 0
    manifest = json.loads((out / "s" / "manifest.json").read_text())
    (entry,) = manifest["layers"]
    assert entry["input_channels_shown"] == [0, 1, 2]  # three lanes of 30 samples, not 30 of 3
    assert entry["time_axis"] == {"stride": 2, "offset": 0, "method": "graph",
                                  "input_length": 30, "output_length": 15}
    (expected,) = tm.reference_outputs(model, {"input": values[np.newaxis]}, ["conv_out"])
    assert entry["stats"]["max"] == pytest.approx(float(expected.max()), rel=1e-5)
