"""What each statistic of the dead-filter scan costs inside onnxruntime (issue 16, item 4).

    python benchmarks/bench_passes.py [--rounds 5] [--runs 10] [--batch 16]

Builds the MobileNetV2-like model (benchmarks/models.py), selects its layers as
``fmviz dead-filters`` does, and times variants of the reduction graph, each in a process of
its own (no other session's threads spinning), interleaved round by round with the plain
model; each process reports its fastest run; prints the median over rounds of
(variant / plain) and per-batch milliseconds.

Variants (per captured map; ``+`` adds to the shipped graph, ``-`` takes a pass away):
  fmviz          the shipped graph (reductions.reduction_model)
  min-shift      the sums shifted by each channel's minimum instead of its float32 mean
  unshifted      the graph before the shifted sums: ReduceSum(x), Mul(x, x) + ReduceSum
  sumsquare      ReduceSumSquare(d) in place of Mul(d, d) + ReduceSum
  matmul         MatMul(d as [N, C, 1, L], d as [N, C, L, 1]) in place of Mul + ReduceSum
  -min, -max, -active, -sums   the shipped graph without that statistic
  only-reshape   the Reshape alone, consumed by one ReduceMax (the reorder + one read)
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

VARIANTS = ["plain", "fmviz", "min-shift", "unshifted", "sumsquare", "matmul", "-min", "-max",
            "-active", "-sums", "only-reshape"]


def targets_of(model_path: Path):
    from fmviz.graph.reductions import Target
    from fmviz.model import open_model

    model = open_model(model_path)
    targets = [Target(p.tensor, non_negative=p.non_negative, quantized=p.quantized)
               for p in model.probes()]
    return model.graph, targets


def variant_model(name: str, model_path: Path) -> bytes:
    import onnx
    from onnx import helper

    from fmviz.graph import reductions
    from fmviz.graph.index import opset_version
    from fmviz.graph.reductions import reduction_model

    proto, targets = targets_of(model_path)
    if name == "plain":
        return onnx.load(model_path).SerializeToString()
    if name == "fmviz":
        return reduction_model(proto, targets, 1e-6)[0]
    if name == "min-shift":
        shipped, reductions.SHIFT = reductions.SHIFT, "min"
        try:
            return reduction_model(proto, targets, 1e-6)[0]
        finally:
            reductions.SHIFT = shipped
    data, outputs = reduction_model(proto, targets, 1e-6)
    model = onnx.load_from_string(data)
    graph = model.graph
    nodes = list(graph.node)
    drop: set[str] = set()  # outputs to remove (their nodes go when nothing reads them)
    extra: list = []
    opset = opset_version(model)
    for o in outputs:
        p = o.min.rsplit("/", 1)[0]
        flat = f"{p}/flat"
        if name == "-min":
            drop.add(o.min)
        elif name == "-max":
            drop.add(o.max)
        elif name == "-active":
            drop.add(o.active)
        elif name == "-sums":
            drop |= {o.sum, o.sumsq}
        elif name == "only-reshape":
            drop |= {o.min, o.sum, o.sumsq, o.active}
        elif name == "unshifted":
            drop |= {o.sum, o.sumsq}
            extra.append(reductions._reduce("ReduceSum", flat, f"{p}/usum", opset,
                                            f"{p.rsplit('/', 1)[0]}/axes", f"{p}/usum"))
            extra.append(helper.make_node("Mul", [flat, flat], [f"{p}/usq"], name=f"{p}/usq"))
            extra.append(reductions._reduce("ReduceSum", f"{p}/usq", f"{p}/usumsq", opset,
                                            f"{p.rsplit('/', 1)[0]}/axes", f"{p}/usumsq"))
        elif name == "sumsquare":
            drop.add(o.sumsq)
            extra.append(reductions._reduce("ReduceSumSquare", f"{p}/deviation", f"{p}/ssq",
                                            opset, f"{p.rsplit('/', 1)[0]}/axes", f"{p}/ssq"))
        elif name == "matmul":
            drop.add(o.sumsq)
            extra.append(helper.make_node("Unsqueeze", [f"{p}/deviation", "bench/axis2"],
                                          [f"{p}/row"], name=f"{p}/row"))
            extra.append(helper.make_node("Unsqueeze", [f"{p}/deviation", "bench/axis3"],
                                          [f"{p}/col"], name=f"{p}/col"))
            extra.append(helper.make_node("MatMul", [f"{p}/row", f"{p}/col"], [f"{p}/ssq"],
                                          name=f"{p}/ssq"))
    # graph outputs: drop, add the extra ones
    kept = [v for v in graph.output if v.name not in drop]
    for node in extra:
        kept.append(helper.make_tensor_value_info(node.output[0], onnx.TensorProto.FLOAT, None))
    del graph.output[:]
    graph.output.extend(kept)
    # insert extra nodes right after their Reshape, then prune dead nodes
    for node in extra:
        at = next(i for i, n in enumerate(nodes) if node.input[0] in n.output)
        nodes.insert(at + 1, node)
    needed = {v.name for v in graph.output}
    live = []
    for node in reversed(nodes):
        if any(out in needed for out in node.output):
            live.append(node)
            needed |= set(node.input)
    del graph.node[:]
    graph.node.extend(reversed(live))
    graph.initializer.extend([
        onnx.numpy_helper.from_array(np.array([2], np.int64), "bench/axis2"),
        onnx.numpy_helper.from_array(np.array([3], np.int64), "bench/axis3"),
    ])
    return model.SerializeToString()


def child(path: Path, batch: int, runs: int, threads: int) -> None:
    import onnxruntime as ort

    options = ort.SessionOptions()
    clock = time.perf_counter
    if threads:  # CPU time of one thread without spinning: the work, whatever else runs
        options.intra_op_num_threads = threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        clock = time.thread_time if threads == 1 else time.process_time
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((batch, 3, 224, 224), dtype=np.float32)
    feeds = {session.get_inputs()[0].name: x}
    for _ in range(3):
        session.run(None, feeds)
    times = []
    for _ in range(runs):
        start = clock()
        session.run(None, feeds)
        times.append(clock() - start)
    print(json.dumps(min(times)))  # the least disturbed run


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--threads", type=int, default=0,
                        help="0: onnxruntime's default pool, wall time; N: N threads without "
                             "spinning, CPU time")
    parser.add_argument("--child", type=Path)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.batch, args.runs, args.threads)
        return
    import models

    work = HERE / "work" / "passes"
    work.mkdir(parents=True, exist_ok=True)
    model_path = models.build("mobilenet_v2", HERE / "work" / "models")
    names = args.variants.split(",")
    files = {}
    for name in names:
        files[name] = work / f"{name}.onnx"
        files[name].write_bytes(variant_model(name, model_path))
    times: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(args.rounds):
        for name in names:
            out = subprocess.run([sys.executable, __file__, "--child", str(files[name]),
                                  "--batch", str(args.batch), "--runs", str(args.runs),
                                  "--threads", str(args.threads)],
                                 check=True, capture_output=True, text=True).stdout
            times[name].append(json.loads(out))
    print(f"| Variant (batch {args.batch}) | ms per batch | / plain |")
    print("|---|---|---|")
    for name in names:
        ratios = [t / p for t, p in zip(times[name], times["plain"], strict=True)]
        print(f"| {name} | {statistics.median(times[name]) * 1e3:.0f} | "
              f"{statistics.median(ratios):.2f}x |")


if __name__ == "__main__":
    main()
