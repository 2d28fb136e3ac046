"""The command line: help, ``fmviz layers``, and exact ``Error:`` lines with exit codes."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from fmviz import __version__
from fmviz.cli import cli as cli_group
from fmviz.cli import main
from fmviz.errors import ModelError
from tests import models

REPO = Path(__file__).resolve().parents[1]


def cli(args, capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_error(result, line: str) -> None:
    code, stdout, stderr = result
    assert code == 2
    assert stderr == f"Error: {line}\n"
    assert "Traceback" not in stderr
    assert stdout == ""


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli")
    picture = root / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(
        picture
    )
    noise = root / "noise.onnx"
    noise.write_bytes(bytes(np.random.default_rng(1).integers(0, 256, 400, dtype=np.uint8)))
    return {
        "root": root,
        "model": models.save(models.conv_bn_relu(), root / "cbr.onnx"),
        "if": models.save(models.conv_in_if(), root / "if.onnx"),
        "only_if": models.save(models.only_if(), root / "only_if.onnx"),
        "no_conv": models.save(models.no_conv(), root / "no_conv.onnx"),
        "noise": noise,
        "picture": picture,
    }


# ----------------------------------------------------------------------------- help


def test_every_command_has_help_with_an_example(capsys):
    assert cli_group.commands, "no commands registered"
    for name, command in cli_group.commands.items():
        code, stdout, stderr = cli([name, "--help"], capsys)
        assert code == 0, name
        assert stdout.startswith(f"Usage: fmviz {name} "), name
        assert "Example:" in stdout, f"{name} --help has no Example block"
        assert f"fmviz {name} " in stdout.split("Example:", 1)[1], name
        assert command.help and command.help.strip(), name
        assert stderr == ""


def test_top_level_help_and_version(capsys):
    code, stdout, _ = cli(["--help"], capsys)
    assert code == 0
    assert "Example:" in stdout
    for name in cli_group.commands:
        assert name in stdout
    code, stdout, _ = cli(["--version"], capsys)
    assert code == 0
    assert __version__ in stdout


def test_short_help_flag(capsys):
    code, stdout, _ = cli(["run", "-h"], capsys)
    assert code == 0 and stdout.startswith("Usage: fmviz run ")


# ----------------------------------------------------------------------------- layers


def test_layers_table(files, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    code, stdout, stderr = cli(["layers", files["model"]], capsys)
    assert code == 0 and stderr == ""
    rows = [line.split() for line in stdout.splitlines()]
    conv1 = next(row for row in rows if "conv1" in row)
    conv2 = next(row for row in rows if "conv2" in row)
    assert conv1[:8] == ["0", "conv1", "Conv", "3x3", "1x1", "1", "8", "Relu"]
    assert "relu1_out" in conv1 and "16]" in conv1
    assert conv2[:8] == ["1", "conv2", "Conv", "3x3", "2x2", "1", "4", "Relu"]
    assert "opset 17" in stdout
    assert "2 layers" in stdout
    code, stdout, _ = cli(["layers", files["model"], "--stage", "pre"], capsys)
    assert "conv1_out" in stdout and "relu1_out" not in stdout


def test_layers_json(files, capsys):
    code, stdout, _ = cli(["layers", files["model"], "--json"], capsys)
    assert code == 0
    assert len(stdout.splitlines()) == 1
    document = json.loads(stdout)
    assert document["model"]["path"] == str(files["model"])
    assert document["model"]["opset"] == 17
    assert document["unreachable"] == []
    layers = document["layers"]
    assert [
        {k: layer[k] for k in ("index", "name", "op", "tensor", "activation", "channels")}
        for layer in layers
    ] == [
        {
            "index": 0,
            "name": "conv1",
            "op": "Conv",
            "tensor": "relu1_out",
            "activation": "Relu",
            "channels": 8,
        },
        {
            "index": 1,
            "name": "conv2",
            "op": "Conv",
            "tensor": "relu2_out",
            "activation": "Relu",
            "channels": 4,
        },
    ]
    assert layers[1]["kernel"] == [3, 3] and layers[1]["stride"] == [2, 2]
    assert layers[1]["shape"] == ["N", 4, 8, 8]
    _, stdout, _ = cli(["layers", files["model"], "--json", "--stage", "pre"], capsys)
    assert [layer["tensor"] for layer in json.loads(stdout)["layers"]] == ["conv1_out", "conv2_out"]


def test_layers_lists_unreachable_convolutions(files, capsys, monkeypatch):
    _, stdout, _ = cli(["layers", files["if"], "--json"], capsys)
    document = json.loads(stdout)
    assert [layer["name"] for layer in document["layers"]] == ["conv_main"]
    assert sorted(document["unreachable"], key=lambda u: u["name"]) == [
        {
            "name": "else_conv",
            "op": "Conv",
            "parent": "branch",
            "parent_op": "If",
            "subgraph": "else_branch",
        },
        {
            "name": "then_conv",
            "op": "Conv",
            "parent": "branch",
            "parent_op": "If",
            "subgraph": "then_branch",
        },
    ]
    monkeypatch.setenv("COLUMNS", "200")
    code, stdout, _ = cli(["layers", files["if"]], capsys)
    assert code == 0
    assert "2 convolution(s) inside control flow cannot be exposed" in stdout
    assert "then_conv (Conv) in If 'branch' then_branch" in stdout
    assert "else_conv (Conv) in If 'branch' else_branch" in stdout


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize("command", ["layers", "run"])
def test_missing_model(files, capsys, command):
    missing = files["root"] / "absent.onnx"
    extra = [files["picture"]] if command == "run" else []
    assert_error(cli([command, missing, *extra], capsys), f"{missing}: no such file")


@pytest.mark.parametrize("command", ["layers", "run"])
def test_random_bytes_model(files, capsys, command):
    extra = [files["picture"]] if command == "run" else []
    assert_error(
        cli([command, files["noise"], *extra], capsys),
        f"{files['noise']}: not an ONNX model (cannot parse it as protobuf)",
    )


def test_empty_and_folder_models(files, capsys, tmp_path):
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    assert_error(cli(["layers", empty], capsys), f"{empty}: empty file, not an ONNX model")
    assert_error(
        cli(["layers", tmp_path], capsys), f"{tmp_path}: is a folder, not an ONNX model file"
    )


def test_model_without_convolution(files, capsys):
    assert_error(
        cli(["run", files["no_conv"], files["picture"], "-o", files["root"] / "o"], capsys),
        f"{files['no_conv']}: no convolution layer (Conv, ConvTranspose, QLinearConv, ConvInteger)",
    )


def test_model_with_convolutions_only_inside_if(files, capsys):
    assert_error(
        cli(["run", files["only_if"], files["picture"], "-o", files["root"] / "o"], capsys),
        f"{files['only_if']}: no convolution in the main graph; 2 sit inside control flow "
        "(If 'branch') where onnxruntime cannot expose them "
        "(--expose-if threads those inside If branches out)",
    )


def test_missing_input(files, capsys, tmp_path):
    missing = tmp_path / "absent.png"
    assert_error(
        cli(["run", files["model"], missing, "-o", tmp_path / "o"], capsys),
        f"{missing}: no such file or folder",
    )
    assert not (tmp_path / "o").exists()  # checked before anything is written
    assert_error(
        cli(["run", files["model"], files["picture"], missing, "-o", tmp_path / "o"], capsys),
        f"{missing}: no such file or folder",
    )
    assert not (tmp_path / "o").exists()  # not even for the inputs that exist


def test_unsupported_input_extension(files, capsys, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    assert_error(
        cli(["run", files["model"], notes, "-o", tmp_path / "o"], capsys),
        f"{notes}: unsupported input type '.txt' (images: .png .jpg .jpeg .bmp .gif .tif .tiff "
        ".webp; series: .csv .tsv .wav; tensors: .npy .npz)",
    )


@pytest.mark.parametrize(
    "value, message",
    [
        ("abc", "'abc' is not a size (N or WxH, e.g. 224 or 640x480)"),
        ("0x10", "'0x10': width and height must be between 1 and 65535"),
        ("10x", "'10x' is not a size (N or WxH, e.g. 224 or 640x480)"),
    ],
)
def test_bad_size(files, capsys, tmp_path, value, message):
    assert_error(
        cli(["run", files["model"], files["picture"], "-o", tmp_path, "--size", value], capsys),
        f"Invalid value for '--size': {message}",
    )


def test_bad_mean(files, capsys, tmp_path):
    base = ["run", files["model"], files["picture"], "-o", tmp_path]
    assert_error(
        cli([*base, "--mean", "0.5,x"], capsys),
        "Invalid value for '--mean': '0.5,x' is not a comma-separated list of numbers",
    )
    assert_error(
        cli([*base, "--mean", "0.1,0.2"], capsys),
        "--mean has 2 values; the model takes 3 channels (give one value or one per channel)",
    )
    assert_error(
        cli([*base, "--std", "nan"], capsys),
        "Invalid value for '--std': 'nan': values must be finite numbers",
    )


def test_unknown_provider_lists_the_available_ones(files, capsys, tmp_path):
    short = {"CPUExecutionProvider": "cpu", "CUDAExecutionProvider": "cuda"}
    available = ", ".join(short.get(p, p) for p in ort.get_available_providers())
    assert_error(
        cli(
            ["run", files["model"], files["picture"], "-o", tmp_path, "--provider", "bogus"], capsys
        ),
        f"--provider 'bogus' is not available in this onnxruntime build; available: {available}",
    )


def test_layers_pattern_matching_nothing(files, capsys, tmp_path):
    assert_error(
        cli(["run", files["model"], files["picture"], "-o", tmp_path, "--layers", "zzz*"], capsys),
        "--layers 'zzz*' matches no layer; layers are 'conv1', 'conv2' "
        "('fmviz layers MODEL' lists them all)",
    )


@pytest.mark.parametrize(
    ("pattern", "chosen"),
    [("re:^conv2$", ["conv2"]), ("relu1_*", ["conv1"])],  # a regex on names, a glob on tensors
)
def test_layers_pattern_selects(files, capsys, tmp_path, pattern, chosen):
    code, stdout, _ = cli(
        ["run", files["model"], files["picture"], "-o", tmp_path, "--json", "--layers", pattern],
        capsys,
    )
    assert code == 0
    assert [layer["name"] for layer in json.loads(stdout)["layers"]] == chosen


def test_usage_errors_exit_2(files, capsys):
    code, _, stderr = cli(["run", files["model"]], capsys)
    assert code == 2 and stderr == "Error: Missing argument 'INPUT...'.\n"
    code, _, stderr = cli(["frobnicate"], capsys)
    assert code == 2 and stderr == "Error: No such command 'frobnicate'.\n"


def test_inputs_from_stdin(files, capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{files['picture']}\n\n{files['picture']}\n"))
    code, stdout, _ = cli(["run", files["model"], "-", "-o", tmp_path, "--json"], capsys)
    assert code == 0
    assert len(stdout.splitlines()) == 2
    assert sorted(os.listdir(tmp_path)) == ["photo", "photo-2"]


def test_keyboard_interrupt_exits_130_quietly(files, capsys, monkeypatch):
    import fmviz.graph

    def interrupted(path, **options):
        raise KeyboardInterrupt

    monkeypatch.setattr(fmviz.graph, "load_model", interrupted)
    code, stdout, stderr = cli(["layers", files["model"]], capsys)
    assert (code, stdout, stderr.strip()) == (130, "", "")  # at most click's newline after ^C


def test_internal_errors_show_no_traceback_without_debug(files, capsys, monkeypatch):
    import fmviz.graph

    def broken(path, **options):
        raise RuntimeError("boom")

    monkeypatch.setattr(fmviz.graph, "load_model", broken)
    code, stdout, stderr = cli(["layers", files["model"]], capsys)
    assert code != 0
    assert stderr.startswith("Error: internal error RuntimeError: boom")
    assert "Traceback" not in stderr
    with pytest.raises(RuntimeError):
        main(["--debug", "layers", str(files["model"])])


def test_debug_reraises_user_errors(files):
    with pytest.raises(ModelError):
        main(["layers", str(files["root"] / "absent.onnx"), "--debug"])


def test_debug_shows_a_traceback_in_a_real_process(files, tmp_path):
    # (without --debug the same error is one line, see test_missing_model)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    missing = tmp_path / "absent.onnx"
    debug = subprocess.run(
        [sys.executable, "-m", "fmviz", "--debug", "layers", str(missing)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
    )
    assert debug.returncode != 0
    assert "Traceback (most recent call last)" in debug.stderr
    assert "ModelError" in debug.stderr


def test_expose_if_makes_convolutions_in_if_branches_layers(files, capsys):
    code, stdout, _ = cli(["layers", files["only_if"], "--json"], capsys)
    plain = json.loads(stdout)
    assert code == 0 and plain["layers"] == [] and len(plain["unreachable"]) == 2

    code, stdout, _ = cli(["layers", files["only_if"], "--json", "--expose-if"], capsys)
    threaded = json.loads(stdout)
    assert code == 0 and threaded["unreachable"] == []
    assert [layer["name"] for layer in threaded["layers"]] == ["then_conv", "else_conv"]

    out = files["root"] / "expose-if"
    args = ["run", files["only_if"], files["picture"], "-o", out, "--expose-if", "--feed",
            "flag=1", "--json"]
    code, stdout, stderr = cli(args, capsys)
    assert code == 0, stderr
    manifest = json.loads(stdout)
    entries = {entry["name"]: entry for entry in manifest["layers"]}
    # flag=1 ran the then branch: its maps are drawn; the else branch computed nothing
    assert set(entries["then_conv"]["files"]) == {"grid", "heatmap", "overlay"}
    assert entries["else_conv"]["view"] == "empty" and entries["else_conv"]["files"] == {}
    assert manifest["input"]["feeds"]["flag"]["value"] == 1.0


def test_cluster_options_are_refused_where_they_would_change_nothing(capsys):
    """--scheduler is for the dask engine and --partition-size for dask or URL inputs: with
    the local engine on local files they would be accepted and ignored, so they are refused."""
    model, sample = str(REPO / "models/digits_cnn.onnx"), str(REPO / "samples/digit-3.png")
    assert main(["dead-filters", model, sample, "--scheduler", "tcp://head:8786", "-q"]) == 2
    assert "--scheduler is for --engine dask" in capsys.readouterr().err
    assert main(["exemplars", model, sample, "--partition-size", "4", "-q", "-o",
                 "/nonexistent-never-written"]) == 2
    assert "--partition-size is for --engine dask or URL inputs" in capsys.readouterr().err
