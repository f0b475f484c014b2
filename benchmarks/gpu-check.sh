#!/usr/bin/env bash
# One command on a CUDA machine: duiit's GPU tests, the step benchmark at 128 and 256 px and
# a killed-and-resumed 300-step paper-preset run, then one summary table; at most 10 minutes
# on one GPU (benchmarks/gpu_check.py; benchmarks/README.md says what to look for).
# Fails with one line where no CUDA GPU is visible.   Usage: bash benchmarks/gpu-check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
if [ ! -x "$PY" ]; then
    echo "gpu-check: $PY not found; run make setup first (on a GPU machine it keeps or installs a CUDA build of torch)" >&2
    exit 2
fi
exec "$PY" benchmarks/gpu_check.py "$@"
