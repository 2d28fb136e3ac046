"""The benchmark command starts, runs every section on tiny sizes and writes its table.

No timing is asserted: the figures of a --quick run mean nothing (see benchmarks/README.md).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quick_benchmark_writes_the_table(tmp_path):
    out = tmp_path / "RESULTS.md"
    work = tmp_path / "work"
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--out", str(out),
         "--work", str(work)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    text = out.read_text()
    assert text.startswith("# fmviz benchmarks")
    assert "--quick: tiny models" in text
    table = text.split("## Targets", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line]
    figures = [row.split("|")[1].strip() for row in rows[1:]]
    assert any(f.startswith("Capture overhead") for f in figures)
    assert any(f.startswith("`fmviz run` / floor") for f in figures)
    assert any(f.startswith("Tutorial") for f in figures)
    assert any("dead-filters" in f for f in figures)
    assert any(f.startswith("Peak RSS of a scan") for f in figures)
    assert any(f.startswith("`fmviz --help`") for f in figures)
    assert any(f.startswith("Peak RSS, `fmviz run` ResNet-50-like") for f in figures)
    for row in rows[1:]:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert len(cells) == 4 and cells[1] and cells[2], row
    for section in ("## Capture overhead", "## `fmviz run` end to end", "## Start-up",
                    "## Memory"):
        assert section in text
    results = json.loads((work / "results.json").read_text())
    assert results["quick"] is True
    run = results["run"]
    assert run["pixels_compared"] > 0 and run["overlay_compared"] > 0
    memory = results["memory"]["rows"]
    assert memory[0]["passes"] == 1 and memory[-1]["passes"] > 1
    # the floor script draws exactly fmviz's files (with fmviz's drawing functions), or its
    # timing would compare other work
    assert run["pixels_differ"] == 0 and run["overlay_differ"] == 0, run
    assert set(run["render_ms"]) >= {"1", "2"}


def test_gpu_benchmark_dry_run_on_the_cpu(tmp_path):
    """benchmarks/gpu.py with the CPU as the provider under test: its sections run, the maps
    of the CPU agree with themselves exactly, and the table and details are written."""
    out = tmp_path / "RESULTS-gpu.md"
    details = tmp_path / "details"
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--provider", "cpu", "--quick",
         "--only", "env,agreement,first-run", "--out", str(out), "--details", str(details),
         "--work", str(tmp_path / "work")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "SUMMARY: provider CPUExecutionProvider" in done.stdout
    text = out.read_text()
    assert text.startswith("# GPU results (benchmarks/gpu.py)")
    rows = [line for line in text.splitlines() if line.startswith("| digits_cnn ")]
    assert rows and "0.00e+00" in rows[0]
    results = json.loads((details / "results.json").read_text())
    first = results["sections"]["first-run"]
    assert {"heuristic", "exhaustive", "default"} <= set(first)
    assert all(first[k]["session_s"] > 0 for k in ("heuristic", "exhaustive", "default"))
    assert (details / "gpu-details.tar.gz").stat().st_size > 0
