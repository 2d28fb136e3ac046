#!/usr/bin/env bash
# The GPU check of issue 15 in one call on a lent GPU machine (see /work/shared/gpu.md).
#
# 1. Here, once: the onnxruntime-gpu wheel in four parts under .gpu/p0..p3 (gpu.md), and pytest
#    for `pytest -m gpu` (the machine has none; optional, the check says so when it is missing):
#      python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
#        --implementation cp --platform manylinux_2_28_x86_64 -d .gpu/py \
#        pytest pluggy iniconfig packaging pygments
# 2. Four calls, back to back: carry [".gpu/pN"], command `mkdir -p /tmp/w && cp .gpu/pN/part.* /tmp/w/`
# 3. Then this one, with carry [".gpu/py"] and timeout_s 420 (the script stops itself at ~6 min):
#
#   cat /tmp/w/part.* > /tmp/onnxruntime_gpu-1.31.1-cp312-cp312-manylinux_2_28_x86_64.whl && python3 -m pip install -q --no-deps --no-index --target /tmp/site /tmp/onnxruntime_gpu-*.whl && export PYTHONPATH=/tmp/site:$PWD FMVIZ_COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo COMMIT) && bash benchmarks/gpu_check.sh cuda
#
#    (write the commit in place of $(git ...) if the machine's copy has no .git). What comes
#    back under $OUT: RESULTS-gpu.md (commit it as benchmarks/RESULTS-gpu.md), results.json,
#    agreement.json, pytest-gpu.txt, gpu-log.txt, gpu-details.tar.gz.
#
# Dry run on a machine without a GPU (same script, tiny sizes):
#   OUT=/tmp/gpu-dry bash benchmarks/gpu_check.sh cpu --quick
set -u
PROVIDER=${1:-cuda}
shift || true
PYTHON=${PYTHON:-python3}
OUT=${OUT:-$PWD/benchmarks/work/gpu}
mkdir -p "$OUT"
export PYTHONPATH=${PYTHONPATH:-$PWD}
if ! "$PYTHON" -c "import pytest" 2>/dev/null && ls .gpu/py/*.whl >/dev/null 2>&1; then
  "$PYTHON" -m pip install -q --no-deps --no-index --target /tmp/site .gpu/py/*.whl \
    && export PYTHONPATH=/tmp/site:$PYTHONPATH
fi
"$PYTHON" -c "import onnxruntime as o; print('onnxruntime', o.__version__, o.get_available_providers())"
# 350 s hard stop; gpu.py skips the sections that would not fit its own 330 s budget
timeout 350 "$PYTHON" benchmarks/gpu.py --provider "$PROVIDER" --details "$OUT" "$@" 2>&1 \
  | tee "$OUT/gpu-log.txt"
status=${PIPESTATUS[0]}
echo "gpu.py exit $status; files in $OUT:"
ls -la "$OUT"
exit "$status"
