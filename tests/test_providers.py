"""Execution providers: the options fmviz sets, the fallback check, ``fmviz providers``.

The CPU tests fake a GPU build by patching the provider list onnxruntime reports: onnxruntime
then falls back to the CPU exactly as it does when CUDA's libraries are missing. Tests marked
``gpu`` need a provider that really starts a session (``pytest -m gpu`` on a GPU machine).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from fmviz import session as fsession
from fmviz.cli import main
from fmviz.errors import OptionError
from fmviz.session import ProviderSettings, open_session, tiny_model

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "models" / "digits_cnn.onnx"
PICTURE = ROOT / "samples" / "digit-3.png"
REAL_PROVIDERS = list(ort.get_available_providers())


def cli(args, capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(autouse=True)
def fresh_preload(monkeypatch):
    """preload_dlls runs once per process: each test starts before it ran."""
    monkeypatch.setattr(fsession, "_PRELOADED", [])


@pytest.fixture
def fake_cuda(monkeypatch):
    """An onnxruntime build that lists CUDA, on a machine where it cannot start."""
    if "CUDAExecutionProvider" in REAL_PROVIDERS:
        pytest.skip("this onnxruntime really has CUDA")
    monkeypatch.setattr(ort, "get_available_providers",
                        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(fsession, "diagnose",
                        lambda name: "libcudnn.so.9 is missing: pip install nvidia-cudnn-cu12")


# ----------------------------------------------------------------------------- options


def test_cuda_options_are_exact_by_default_and_tf32_on_request():
    default = ProviderSettings().options("CUDAExecutionProvider")
    assert default["use_tf32"] == "0"
    assert default["cudnn_conv_algo_search"] == "DEFAULT"  # run: cuDNN's own algorithm
    fast = ProviderSettings(tf32=True, conv_search="exhaustive").options("CUDAExecutionProvider")
    assert fast["use_tf32"] == "1" and fast["cudnn_conv_algo_search"] == "EXHAUSTIVE"
    assert ProviderSettings().options("CPUExecutionProvider") == {}
    assert ProviderSettings(conv_search="exhaustive").options(
        "ROCMExecutionProvider")["miopen_conv_exhaustive_search"] == "1"
    assert ProviderSettings().options("MIGraphXExecutionProvider") == {
        "migraphx_fp16_enable": "0", "migraphx_exhaustive_tune": "0"}


def test_tensorrt_caches_in_the_user_cache_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    settings = ProviderSettings()
    options = settings.options("TensorrtExecutionProvider")
    assert options["trt_engine_cache_path"] == str(tmp_path / "fmviz" / "tensorrt")
    assert options["trt_timing_cache_path"] == options["trt_engine_cache_path"]
    assert options["trt_engine_cache_enable"] == "1" and options["trt_fp16_enable"] == "0"
    settings.prepare("TensorrtExecutionProvider")
    assert (tmp_path / "fmviz" / "tensorrt").is_dir()


def test_unknown_conv_search_is_an_option_error():
    with pytest.raises(OptionError, match="conv_search 'fastest'"):
        ProviderSettings(conv_search="fastest").options("CUDAExecutionProvider")
    code = main(["dead-filters", str(MODEL), str(PICTURE), "--conv-search", "fastest"])
    assert code == 2


def test_required_providers():
    assert fsession.required_providers(["cuda"]) == ["CUDAExecutionProvider"]
    assert fsession.required_providers(["cuda", "cpu"]) == []  # the CPU is a chosen fallback
    assert fsession.required_providers(["auto"]) == []
    assert fsession.required_providers(["TensorrtExecutionProvider", "cuda"]) == [
        "TensorrtExecutionProvider", "CUDAExecutionProvider"]


def test_manifest_and_report_record_provider_options(tmp_path, capsys):
    code, out, _ = cli(["run", MODEL, PICTURE, "-o", tmp_path, "--json", "--provider", "cpu"],
                       capsys)
    assert code == 0
    manifest = json.loads(out.splitlines()[0])
    assert manifest["provider_options"] == {"CPUExecutionProvider": {}}
    on_disk = json.loads(next(tmp_path.glob("*/manifest.json")).read_text())
    assert on_disk["provider_options"] == manifest["provider_options"]
    code, out, _ = cli(["dead-filters", MODEL, PICTURE, "--json", "--provider", "cpu",
                        "--tf32"], capsys)
    assert code == 0
    assert json.loads(out)["provider_options"] == {"CPUExecutionProvider": {}}


# ----------------------------------------------------------------------------- fallback


def test_explicit_gpu_provider_that_cannot_start_is_exit_2(fake_cuda, tmp_path, capsys):
    code, out, err = cli(["run", MODEL, PICTURE, "-o", tmp_path, "--provider", "cuda"], capsys)
    assert code == 2 and out == ""
    assert err.strip() == ("Error: --provider 'cuda' cannot start a session: libcudnn.so.9 is "
                           "missing: pip install nvidia-cudnn-cu12")
    assert not list(tmp_path.glob("*/manifest.json"))
    code, _, err = cli(["dead-filters", MODEL, PICTURE, "--provider", "cuda"], capsys)
    assert code == 2 and "cannot start a session: libcudnn.so.9 is missing" in err


def test_auto_falls_back_to_the_cpu_with_one_notice(fake_cuda, tmp_path, capsys):
    code, out, err = cli(["run", MODEL, PICTURE, PICTURE, "-o", tmp_path, "--json"], capsys)
    assert code == 0
    notices = [line for line in err.splitlines() if "cannot start" in line]
    assert notices == ["note: cuda cannot start a session (libcudnn.so.9 is missing: pip "
                       "install nvidia-cudnn-cu12); running on cpu"]
    manifests = [json.loads(line) for line in out.splitlines()]
    assert [m["providers"] for m in manifests] == [["CPUExecutionProvider"]] * 2
    assert manifests[0]["provider_options"] == {"CPUExecutionProvider": {}}
    code, out, err = cli(["dead-filters", MODEL, PICTURE, "--json"], capsys)
    assert code == 0 and json.loads(out)["providers"] == ["CPUExecutionProvider"]
    assert "cuda cannot start a session" in err
    # the CPU named as a fallback: a notice, not an error
    code, _, err = cli(["run", MODEL, PICTURE, "-o", tmp_path / "b", "--provider", "cuda",
                        "--provider", "cpu"], capsys)
    assert code == 0 and "cuda cannot start a session" in err


def test_a_provider_that_raises_is_reported_without_corrupting_stdout(
        fake_cuda, monkeypatch, tmp_path, capsys):
    """onnxruntime *prints* "EP Error ... Falling back" on stdout when a provider raises while
    being created (no device, a driver too old): fmviz takes the reason from it, and --json
    output stays JSON."""
    real = ort.InferenceSession

    def falling_back(model, sess_options=None, providers=None, **kwargs):
        print("*************** EP Error ***************")
        print("EP Error [ONNXRuntimeError] : 1 : FAIL : provider_bridge_ort.cc:1234 CUDA "
              "failure 100: no CUDA-capable device is detected ; GPU=0 when using "
              "['CUDAExecutionProvider', 'CPUExecutionProvider']")
        print("Falling back to ['CPUExecutionProvider'] and retrying.")
        return real(model, sess_options=sess_options, providers=["CPUExecutionProvider"])

    monkeypatch.setattr(ort, "InferenceSession", falling_back)
    code, out, err = cli(["run", MODEL, PICTURE, "-o", tmp_path, "--provider", "cuda",
                          "--json"], capsys)
    assert code == 2 and out == ""
    assert err.strip() == ("Error: --provider 'cuda' cannot start a session: CUDA failure 100: "
                           "no CUDA-capable device is detected ; GPU=0")
    code, out, err = cli(["run", MODEL, PICTURE, "-o", tmp_path, "--json"], capsys)
    assert code == 0 and json.loads(out)["providers"] == ["CPUExecutionProvider"]
    assert "no CUDA-capable device is detected" in err
    code, out, _ = cli(["providers", "--json"], capsys)
    assert code == 1
    assert json.loads(out)["checks"][0]["reason"].startswith("CUDA failure 100")


def test_a_gpu_provider_that_did_not_start_is_tried_again_after_preloading(
        fake_cuda, monkeypatch):
    created = []
    real = ort.InferenceSession

    def counting(model, sess_options=None, providers=None, **kwargs):
        created.append([p if isinstance(p, str) else p[0] for p in providers])
        return real(model, sess_options=sess_options, providers=["CPUExecutionProvider"])

    monkeypatch.setattr(ort, "InferenceSession", counting)
    preloads = []
    monkeypatch.setattr(fsession, "preload_libraries", lambda: not preloads.append(1))
    session = open_session(tiny_model(), ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert created == [["CUDAExecutionProvider", "CPUExecutionProvider"]] * 2 and preloads
    assert session.providers == ["CPUExecutionProvider"] and session.notices
    created.clear()
    open_session(tiny_model(), ["CPUExecutionProvider"])  # nothing to retry on the CPU
    assert created == [["CPUExecutionProvider"]]


def test_what_preload_dlls_could_not_load_is_the_reason(monkeypatch):
    if "CUDAExecutionProvider" in REAL_PROVIDERS:
        pytest.skip("this onnxruntime really has CUDA")
    monkeypatch.setattr(ort, "get_available_providers",
                        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(fsession, "_PRELOADED", [
        "Failed to load /site/nvidia/cu13/lib/libcublasLt.so.13: libcublasLt.so.13: cannot "
        "open shared object file: No such file or directory\n"])
    assert fsession.diagnose("CUDAExecutionProvider") == (
        "libcublasLt.so.13 is missing: pip install nvidia-cublas-cu13")


def test_providers_command_reports_a_provider_that_does_not_start(fake_cuda, capsys):
    code, out, _ = cli(["providers", "--json"], capsys)
    report = json.loads(out)
    assert code == 1
    assert report["available"] == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert report["onnxruntime"] == ort.__version__
    [check] = report["checks"]
    assert check["name"] == "CUDAExecutionProvider" and check["starts"] is False
    assert check["reason"].startswith("libcudnn.so.9 is missing")
    assert check["options"]["use_tf32"] == "0"
    code, out, _ = cli(["providers"], capsys)
    assert code == 1
    assert "cuda: does not start: libcudnn.so.9 is missing: pip install nvidia-cudnn-cu12" in out


def test_providers_command_on_this_build(capsys):
    code, out, _ = cli(["providers", "--json"], capsys)
    report = json.loads(out)
    assert report["available"] == REAL_PROVIDERS
    assert report["auto"][-1] == "CPUExecutionProvider"
    assert code == (0 if all(c["starts"] for c in report["checks"]) else 1)


def _shared_library_needing(tmp_path: Path, missing: str) -> Path:
    """A real shared library linked against ``missing``, which is then deleted."""
    if not shutil.which("cc"):
        pytest.skip("no C compiler")
    stub = tmp_path / "stub.c"
    stub.write_text("int stub(void) { return 1; }\n")
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(tmp_path / missing),
                    f"-Wl,-soname,{missing}", str(stub)], check=True)
    provider = tmp_path / "libprovider.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(provider), str(stub),
                    "-Wl,--no-as-needed", str(tmp_path / missing)], check=True)
    (tmp_path / missing).unlink()
    return provider


def test_a_missing_library_is_named_with_its_wheel(tmp_path):
    provider = _shared_library_needing(tmp_path, "libcudnn.so.9")
    reason = fsession._dlopen_error(provider)
    cuda = fsession.cuda_versions().get("cuda_version", "12").split(".")[0]
    assert reason == f"libcudnn.so.9 is missing: pip install nvidia-cudnn-cu{cuda}"
    assert fsession.install_hint("libcublasLt.so.13") == "pip install nvidia-cublas-cu13"
    assert fsession.install_hint("libcuda.so.1").startswith("install the NVIDIA driver")
    text = ("Failed to load library libonnxruntime_providers_cuda.so with error: "
            "libcufft.so.12: cannot open shared object file: No such file or directory")
    assert fsession._missing_reason(text) == "libcufft.so.12 is missing: pip install " \
        "nvidia-cufft-cu12"


# ----------------------------------------------------------------------------- on a GPU


def _gpu_provider() -> str | None:
    for name in ("CUDAExecutionProvider", "ROCMExecutionProvider", "MIGraphXExecutionProvider"):
        if name in REAL_PROVIDERS and fsession.check_provider(name).starts:
            return name
    return None


needs_gpu = pytest.mark.skipif(
    not any(p in REAL_PROVIDERS for p in fsession.GPU_PROVIDERS),
    reason="no GPU execution provider in this onnxruntime build")


@pytest.mark.gpu
@needs_gpu
def test_gpu_provider_starts_and_is_reported(capsys):
    name = _gpu_provider()
    assert name, "a GPU provider is listed but none starts a session: " + json.dumps(
        [fsession.check_provider(p).to_json() for p in REAL_PROVIDERS
         if p in fsession.GPU_PROVIDERS])
    code, out, _ = cli(["providers", "--json"], capsys)
    checks = {c["name"]: c for c in json.loads(out)["checks"]}
    assert checks[name]["starts"] is True and checks[name]["reason"] is None


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("model_name, picture", [
    ("digits_cnn.onnx", "digit-3.png"),
    ("basicmotions_cnn1d.onnx", "basicmotions-walking.csv"),
])
def test_gpu_maps_agree_with_the_cpu(model_name, picture, tmp_path, capsys):
    name = _gpu_provider()
    assert name
    short = fsession._short_name(name)
    arrays = {}
    for provider in ("cpu", short):
        out = tmp_path / provider
        code, stdout, _ = cli(["run", ROOT / "models" / model_name, ROOT / "samples" / picture,
                               "-o", out, "--provider", provider, "--save-arrays", "--json"],
                              capsys)
        assert code == 0
        manifest = json.loads(stdout.splitlines()[0])
        assert manifest["providers"][0] == (name if provider == short else
                                            "CPUExecutionProvider")
        if provider == "cuda":
            assert manifest["provider_options"][name]["use_tf32"] == "0"
        with np.load(next(out.glob("*/arrays.npz"))) as data:
            arrays[provider] = {k: data[k] for k in data.files}
    assert arrays["cpu"].keys() == arrays[short].keys()
    for tensor, cpu in arrays["cpu"].items():
        scale = max(float(np.abs(cpu).max()), 1e-12)
        worst = float(np.abs(arrays[short][tensor] - cpu).max()) / scale
        assert worst <= 1e-4, f"{tensor}: worst |diff| / max = {worst:.3g}"


@pytest.mark.gpu
@needs_gpu
def test_tiny_model_runs_on_the_gpu():
    name = _gpu_provider()
    assert name
    session = open_session(tiny_model(), [name], required=[name])
    [value] = session.run({"x": np.ones((1, 1, 8, 8), np.float32)}).values()
    # 3x3 ones kernel over ones with zero padding: 4 at corners, 6 on edges, 9 inside
    assert value[0, 0, 0, 0] == 4 and value[0, 0, 0, 3] == 6 and value[0, 1, 4, 4] == 9
