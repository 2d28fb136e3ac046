"""Recreate the sample inputs in ../samples/ from data that ships inside Python packages.

    pip install aeon scikit-learn scikit-image pillow numpy   (onnxruntime to check)
    python models/make_samples.py

Writes (overwrites) into samples/:
  digit-0.png, digit-3.png, digit-7.png   scikit-learn load_digits(), test split of
                                          train_digits_cnn.py, 8x8 uint8 round(v*255/16)
  coffee.jpg, astronaut.jpg, chelsea.jpg  skimage.data, JPEG quality 90, native size
  basicmotions-walking.csv,               aeon load_basic_motions(split="test"), first
  basicmotions-running.csv                case of the class, 100 rows x 6 columns
  pluck.wav                               CPython's Lib/test/audiodata/pluck-pcm16.wav

and prints where each came from. If the ONNX models exist next to this file and
onnxruntime is installed, it also checks that the models classify the digit and
BasicMotions samples correctly when they are read back the way fmviz reads them.
"""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
SAMPLES = os.path.join(os.path.dirname(HERE), "samples")
SEED = 0  # same split as train_digits_cnn.py
CSV_HEADER = "acc_x,acc_y,acc_z,gyr_x,gyr_y,gyr_z"


def digits() -> list[tuple[str, int]]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    idx = np.arange(len(d.target))
    _, te_idx = train_test_split(idx, test_size=0.25, random_state=SEED, stratify=d.target)
    out = []
    for digit in (0, 3, 7):
        i = int(min(j for j in te_idx if d.target[j] == digit))  # lowest test index
        u8 = np.round(d.images[i] * 255.0 / 16.0).astype(np.uint8)
        name = f"digit-{digit}.png"
        Image.fromarray(u8, mode="L").save(os.path.join(SAMPLES, name), optimize=True)
        print(f"{name}: load_digits() index {i} (test split), label {digit}")
        out.append((name, digit))
    return out


def photos() -> None:
    import skimage.data

    for name in ("coffee", "astronaut", "chelsea"):
        arr = getattr(skimage.data, name)()
        path = os.path.join(SAMPLES, f"{name}.jpg")
        Image.fromarray(arr).save(path, quality=90)
        print(f"{name}.jpg: skimage.data.{name}() {arr.shape[1]}x{arr.shape[0]} "
              f"({os.path.getsize(path)} bytes)")


def basic_motions() -> list[tuple[str, str]]:
    from aeon.datasets import load_basic_motions

    X, y = load_basic_motions(split="test")
    out = []
    for label in ("walking", "running"):
        i = int(np.flatnonzero(y == label)[0])
        name = f"basicmotions-{label}.csv"
        with open(os.path.join(SAMPLES, name), "w", newline="\n") as fh:
            fh.write(CSV_HEADER + "\n")
            for row in X[i].T:  # [6, 100] -> 100 rows of 6 channels
                fh.write(",".join(repr(float(v)) for v in row) + "\n")
        print(f"{name}: load_basic_motions(split='test') case {i}, label {label}")
        out.append((name, label))
    return out


def pluck() -> None:
    import wave

    src = os.path.join(sysconfig.get_paths()["stdlib"], "test", "audiodata", "pluck-pcm16.wav")
    if not os.path.exists(src):
        print(f"pluck.wav: {src} not found (this Python has no test package); kept as is")
        return
    dst = os.path.join(SAMPLES, "pluck.wav")
    shutil.copyfile(src, dst)
    with wave.open(dst) as w:
        print(f"pluck.wav: copy of {src}: {w.getnchannels()} channel(s), "
              f"{w.getframerate()} Hz, {8 * w.getsampwidth()}-bit, {w.getnframes()} frames "
              f"({w.getnframes() / w.getframerate():.3f} s)")


def check(digit_files: list[tuple[str, int]], csv_files: list[tuple[str, str]]) -> int:
    try:
        import onnxruntime as ort
    except ImportError:
        print("onnxruntime not installed: models not checked")
        return 0
    bad = 0
    path = os.path.join(HERE, "digits_cnn.onnx")
    if os.path.exists(path):
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        for name, digit in digit_files:
            img = Image.open(os.path.join(SAMPLES, name)).convert("L")
            x = np.asarray(img.resize((32, 32), Image.BILINEAR), np.float32)[None, None] / 255
            pred = int(sess.run(["logits"], {"input": x})[0].argmax())
            print(f"  digits_cnn({name}) -> {pred}")
            bad += pred != digit
    path = os.path.join(HERE, "basicmotions_cnn1d.onnx")
    if os.path.exists(path):
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        names = sess.get_modelmeta().custom_metadata_map["labels"].split(",")
        for name, label in csv_files:
            data = np.loadtxt(os.path.join(SAMPLES, name), delimiter=",", skiprows=1)
            x = data.T[None].astype(np.float32)
            pred = names[int(sess.run(["logits"], {"input": x})[0].argmax())]
            print(f"  basicmotions_cnn1d({name}) -> {pred}")
            bad += pred != label
    return bad


def main() -> int:
    os.makedirs(SAMPLES, exist_ok=True)
    digit_files = digits()
    photos()
    csv_files = basic_motions()
    pluck()
    bad = check(digit_files, csv_files)
    if bad:
        print(f"ERROR: {bad} sample(s) misclassified", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
