"""Train a small 1-D CNN on aeon's bundled UEA "BasicMotions" set and export it to ONNX.

    pip install torch==2.13.0 aeon onnx onnxruntime numpy
    python models/train_basicmotions_cnn1d.py

Writes ``basicmotions_cnn1d.onnx`` next to this file. Rerunnable; deterministic (fixed
seeds, single-threaded CPU training). The data ships inside the aeon package (no
download). Train/test split: the archive's own TRAIN (40 cases) and TEST (40 cases)
files, 10 cases per class in each.

The model takes the raw sensor values, shape [batch, 6, 100] (channels: 3 accelerometer
axes then 3 gyroscope axes, 100 time steps at 10 Hz), exactly as they are in
``samples/basicmotions-*.csv`` (rows = time, columns = channels). Standardisation is
inside the network: its first node is a fixed per-channel BatchNormalization
(``input_norm``) whose running mean/variance are the training split's per-channel mean
and variance and are never updated.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from _onnx_export import check_export, export_onnx, seed_everything
from aeon.datasets import load_basic_motions

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "basicmotions_cnn1d.onnx")
SEED = 0
CHANNELS, LENGTH = 6, 100
EPOCHS = 150
BATCH = 8


class ConvBNAct(nn.Module):
    """Conv1d -> BatchNorm1d -> ReLU; ONNX node names become /<block>/conv/Conv etc."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv1d(cin, cout, k, stride=stride, padding=k // 2, groups=groups,
                              bias=False)
        self.bn = nn.BatchNorm1d(cout)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class BasicMotionsCNN1d(nn.Module):
    def __init__(self, n_classes: int, mean: np.ndarray, var: np.ndarray) -> None:
        super().__init__()
        # Fixed per-channel standardisation (x - mean) / sqrt(var + eps): kept in eval mode
        # always (see train()) and its scale 1 / shift 0 are frozen, so it is a constant
        # affine map, exported as one BatchNormalization node with initializer inputs.
        self.input_norm = nn.BatchNorm1d(CHANNELS)
        self.input_norm.weight.requires_grad_(False)
        self.input_norm.bias.requires_grad_(False)
        self.input_norm.running_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.input_norm.running_var.copy_(torch.as_tensor(var, dtype=torch.float32))
        self.features = nn.Sequential()
        self.features.add_module("block1", ConvBNAct(CHANNELS, 32, 7))           # 32x100
        self.features.add_module("block2", ConvBNAct(32, 64, 5, stride=2))       # 64x50
        self.features.add_module("dw3", ConvBNAct(64, 64, 5, groups=64))         # depthwise 64x50
        self.features.add_module("pw3", ConvBNAct(64, 64, 1))                    # pointwise 64x50
        self.pool = nn.AdaptiveAvgPool1d(1)
        self.head = nn.Linear(64, n_classes)

    def train(self, mode: bool = True) -> BasicMotionsCNN1d:
        super().train(mode)
        self.input_norm.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.input_norm(x)
        x = self.features(x)
        x = self.pool(x)
        x = torch.flatten(x, 1)
        return self.head(x)


def augment(x: torch.Tensor) -> torch.Tensor:
    """Training-only: random circular time shift and small per-case amplitude scaling."""
    n = x.shape[0]
    shifts = torch.randint(0, LENGTH, (n,))
    x = torch.stack([torch.roll(x[i], int(shifts[i]), dims=-1) for i in range(n)])
    return x * (1.0 + 0.1 * torch.randn(n, 1, 1))


def main() -> int:
    seed_everything(SEED)
    Xtr_np, ytr_lab = load_basic_motions(split="train")
    Xte_np, yte_lab = load_basic_motions(split="test")
    classes = sorted(set(ytr_lab.tolist()))  # badminton, running, standing, walking
    ytr = np.array([classes.index(c) for c in ytr_lab], dtype=np.int64)
    yte = np.array([classes.index(c) for c in yte_lab], dtype=np.int64)
    Xtr = torch.from_numpy(Xtr_np.astype(np.float32))
    Xte = torch.from_numpy(Xte_np.astype(np.float32))
    assert Xtr.shape[1:] == (CHANNELS, LENGTH), Xtr.shape
    mean = Xtr_np.mean(axis=(0, 2))
    var = Xtr_np.var(axis=(0, 2))
    print(f"train {len(ytr)}  test {len(yte)}  classes {classes}")
    print("train per-channel mean", np.round(mean, 3), "std", np.round(np.sqrt(var), 3))

    model = BasicMotionsCNN1d(len(classes), mean, var)
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=3e-3, weight_decay=1e-3)
    steps = EPOCHS * ((len(ytr) + BATCH - 1) // BATCH)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    gen = torch.Generator().manual_seed(SEED)
    ytr_t, yte_t = torch.from_numpy(ytr), torch.from_numpy(yte)
    for epoch in range(EPOCHS):
        model.train()
        perm = torch.randperm(len(ytr), generator=gen)
        total = 0.0
        for s in range(0, len(perm), BATCH):
            b = perm[s:s + BATCH]
            loss = F.cross_entropy(model(augment(Xtr[b])), ytr_t[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(b)
        if (epoch + 1) % 10 == 0:
            model.eval()
            with torch.no_grad():
                acc = (model(Xte).argmax(1) == yte_t).float().mean().item()
            print(f"epoch {epoch + 1:3d}  loss {total / len(ytr):.4f}  test acc {acc:.4f}")

    model.eval()
    with torch.no_grad():
        ref = model(Xte).numpy()
    torch_acc = float((ref.argmax(1) == yte).mean())

    proto = export_onnx(
        model, torch.zeros(1, CHANNELS, LENGTH), OUT,
        producer="fmviz models/train_basicmotions_cnn1d.py",
        doc=("1-D CNN trained on aeon load_basic_motions() (UEA BasicMotions). Input: raw "
             "smartwatch signals [batch, 6, 100] (acc x,y,z then gyr x,y,z; 10 Hz); "
             "standardisation is the first node. Output: logits for " + ",".join(classes)),
        metadata={"labels": ",".join(classes), "test_accuracy": f"{torch_acc:.4f}"},
    )
    return check_export(OUT, proto, Xte.numpy(), ref, yte, torch_acc)


if __name__ == "__main__":
    sys.exit(main())
