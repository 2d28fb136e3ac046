"""Train a small 2-D CNN on scikit-learn's bundled digits and export it to ONNX.

    pip install torch==2.13.0 scikit-learn onnx onnxruntime pillow numpy
    python models/train_digits_cnn.py

Writes ``digits_cnn.onnx`` next to this file. Rerunnable; deterministic (fixed
seeds, single-threaded CPU training).

Preprocessing is exactly what ``fmviz run`` does to an 8x8 greyscale PNG such as
``samples/digit-3.png`` with the default ``--preset unit``:

    8x8 digit (values 0..16) -> uint8 round(v*255/16) -> PIL 'L' image
    -> Image.resize((32, 32), Image.BILINEAR) -> float32 x/255, shape [1, 32, 32]
"""

from __future__ import annotations

import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from _onnx_export import check_export, export_onnx, seed_everything
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "digits_cnn.onnx")
SEED = 0
SIZE = 32
EPOCHS = 30


def digit_to_uint8(img8x8: np.ndarray) -> np.ndarray:
    """load_digits values 0..16 -> uint8 0..255 (what samples/digit-*.png hold)."""
    return np.round(np.asarray(img8x8, dtype=np.float64) * 255.0 / 16.0).astype(np.uint8)


def preprocess(img8x8: np.ndarray) -> np.ndarray:
    """One digit -> float32 [1, 32, 32], identical to fmviz's PNG path."""
    pil = Image.fromarray(digit_to_uint8(img8x8), mode="L")
    pil = pil.resize((SIZE, SIZE), Image.BILINEAR)
    return (np.asarray(pil, dtype=np.float32) / 255.0)[None, :, :]


class ConvBNAct(nn.Module):
    """Conv -> BatchNorm -> activation; ONNX node names become /features/<block>/conv/Conv etc."""

    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1,
                 act: type[nn.Module] = nn.ReLU) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, groups=groups,
                              bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.act = act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class DigitsCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential()
        self.features.add_module("block1", ConvBNAct(1, 16))                    # 16x32x32
        self.features.add_module("block2", ConvBNAct(16, 32, stride=2))         # 32x16x16
        self.features.add_module("dw3", ConvBNAct(32, 32, groups=32))           # depthwise 32x16x16
        self.features.add_module("pw3", ConvBNAct(32, 64, k=1, act=nn.SiLU))    # pointwise 64x16x16
        self.features.add_module("block4", ConvBNAct(64, 64, stride=2))         # 64x8x8
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = self.pool(x)
        x = torch.flatten(x, 1)
        return self.head(x)


def augment(x: torch.Tensor) -> torch.Tensor:
    """Random shifts of up to 2 pixels (training only)."""
    pad = F.pad(x, (2, 2, 2, 2))
    n = x.shape[0]
    dx = torch.randint(0, 5, (n,))
    dy = torch.randint(0, 5, (n,))
    return torch.stack([pad[i, :, dy[i]:dy[i] + SIZE, dx[i]:dx[i] + SIZE] for i in range(n)])


def main() -> int:
    seed_everything(SEED)
    digits = load_digits()
    idx = np.arange(len(digits.target))
    tr_idx, te_idx = train_test_split(idx, test_size=0.25, random_state=SEED,
                                      stratify=digits.target)
    X = np.stack([preprocess(im) for im in digits.images])
    y = digits.target.astype(np.int64)
    Xtr, ytr = torch.from_numpy(X[tr_idx]), torch.from_numpy(y[tr_idx])
    Xte, yte = torch.from_numpy(X[te_idx]), torch.from_numpy(y[te_idx])
    print(f"train {len(tr_idx)}  test {len(te_idx)}")

    model = DigitsCNN()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=3e-3, total_steps=EPOCHS * ((len(tr_idx) + 63) // 64))
    gen = torch.Generator().manual_seed(SEED)
    for epoch in range(EPOCHS):
        model.train()
        perm = torch.randperm(len(tr_idx), generator=gen)
        total = 0.0
        for s in range(0, len(perm), 64):
            b = perm[s:s + 64]
            loss = F.cross_entropy(model(augment(Xtr[b])), ytr[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(b)
        model.eval()
        with torch.no_grad():
            acc = (model(Xte).argmax(1) == yte).float().mean().item()
        print(f"epoch {epoch + 1:2d}  loss {total / len(tr_idx):.4f}  test acc {acc:.4f}")

    model.eval()
    with torch.no_grad():
        ref = model(Xte).numpy()
    torch_acc = float((ref.argmax(1) == yte.numpy()).mean())

    proto = export_onnx(
        model, torch.zeros(1, 1, SIZE, SIZE), OUT,
        producer="fmviz models/train_digits_cnn.py",
        doc=("Digits CNN trained on scikit-learn load_digits(). Input: greyscale 32x32, x/255 "
             "(8x8 digit scaled by 255/16 to uint8, PIL bilinear resize). Output: logits "
             "for the digits 0..9."),
        metadata={"labels": ",".join(str(d) for d in range(10)),
                  "test_accuracy": f"{torch_acc:.4f}"},
    )
    return check_export(OUT, proto, Xte.numpy(), ref, yte.numpy(), torch_acc)


if __name__ == "__main__":
    sys.exit(main())
