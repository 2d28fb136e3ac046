"""Helpers shared by the training scripts in this folder: deterministic seeding, ONNX export
and the check of the exported model against torch.

Uses torch's TorchScript-based exporter (``dynamo=False``) with
``training=TrainingMode.PRESERVE`` on a model in eval mode: BatchNormalization stays a
separate node (running statistics, ``training_mode=0``) instead of being folded into the
preceding convolution, so fmviz can show the feature map after each Conv, each BN and
each activation.
"""

from __future__ import annotations

import io
import os
import random
import sys
import warnings

import numpy as np
import onnx
import torch

OPSET = 17
MAX_IR_VERSION = 8  # onnx>=1.23 may write ir_version 14, which onnxruntime 1.31 refuses


def seed_everything(seed: int) -> None:
    """Seed every generator training uses, single-threaded and deterministic: reruns give
    byte-identical models."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)


def strip_identities(model: onnx.ModelProto) -> None:
    """Remove Identity nodes that only alias an initializer (TorchScript exporter quirk:
    it deduplicates equal initializers and links the copies with Identity)."""
    g = model.graph
    inits = {i.name for i in g.initializer}
    outputs = {o.name for o in g.output}
    for node in list(g.node):
        if node.op_type == "Identity" and node.input[0] in inits and node.output[0] not in outputs:
            src, dst = node.input[0], node.output[0]
            for other in g.node:
                for j, name in enumerate(other.input):
                    if name == dst:
                        other.input[j] = src
            g.node.remove(node)


def export_onnx(model: torch.nn.Module, example: torch.Tensor, path: str, *,
                producer: str, doc: str, metadata: dict[str, str]) -> onnx.ModelProto:
    """Export ``model`` (one input ``input``, one output ``logits``, dynamic batch
    ``batch``) to ``path`` with weights embedded; return the saved proto."""
    model.eval()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        # The legacy exporter is used on purpose (see module docstring); its
        # constant-folding warning is about models in training mode, and ours is in eval.
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        warnings.filterwarnings("ignore", message=".*constant folding be turned off.*")
        torch.onnx.export(
            model, (example,), buf,
            dynamo=False,
            training=torch.onnx.TrainingMode.PRESERVE,
            do_constant_folding=True,
            input_names=["input"], output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=OPSET,
        )
    proto = onnx.load_from_string(buf.getvalue())
    strip_identities(proto)
    if proto.ir_version > MAX_IR_VERSION:
        proto.ir_version = MAX_IR_VERSION
    proto.producer_name = producer
    proto.doc_string = doc
    del proto.metadata_props[:]
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto, full_check=True)
    onnx.save_model(proto, path, save_as_external_data=False)
    return proto


def describe(proto: onnx.ModelProto) -> str:
    return ", ".join(f"{n.op_type}:{n.name}" for n in proto.graph.node)


def check_export(path: str, proto: onnx.ModelProto, x_test: np.ndarray, torch_logits: np.ndarray,
                 y_test: np.ndarray, torch_acc: float) -> int:
    """Run the exported file in onnxruntime on the test split and compare with torch.

    Prints both accuracies, the largest logit difference and what was written; returns the
    script's exit status (1 when onnxruntime and torch disagree by 1e-4 or more).
    """
    import onnxruntime as ort

    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    got = session.run(["logits"], {"input": x_test})[0]
    diff = float(np.abs(got - torch_logits).max())
    ort_acc = float((got.argmax(1) == y_test).mean())
    print(f"torch test acc {torch_acc:.4f}  onnxruntime test acc {ort_acc:.4f}  "
          f"max|ort-torch| {diff:.2e}")
    print(f"wrote {path} ({os.path.getsize(path)} bytes), opset {OPSET}, "
          f"ir_version {proto.ir_version}")
    print("nodes:", describe(proto))
    if diff >= 1e-4:
        print("ERROR: onnxruntime and torch disagree", file=sys.stderr)
        return 1
    return 0
