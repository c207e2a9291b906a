#!/usr/bin/env bash
# GPU check: `fashion train` and `fashion predict` on one CUDA GPU against hand-tuned loops, loader
# throughput, GPU utilisation (nvidia-smi) and a one-process DDP launch under torchrun, in one run of
# under 8 minutes (benchmarks/gpu_check.py says what each figure is).
#
# Set up on a fresh GPU machine (the working tree and ../shared/datasets are enough; no venv needed):
#   pip install torch==2.14.1 torchvision==0.29.1 && pip install -e .
# then:  benchmarks/gpu_check.sh [--data FOLDER|synthetic] [--batch-size N] [--workdir DIR]
# Data: ../shared/datasets/clothing-small when present, else the embedded synthetic set.
# PYTHON picks the interpreter (default: python3). Without CUDA it stops at once, in one line.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
fail() { echo "gpu_check: $*" >&2; exit 2; }

command -v nvidia-smi >/dev/null 2>&1 || fail "no CUDA GPU here (nvidia-smi not found); run it on a machine with one"
nvidia-smi -L >/dev/null 2>&1 || fail "nvidia-smi finds no usable GPU; run it on a machine with one"
"$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null \
  || fail "$PY has no CUDA build of torch; set up with: pip install torch==2.14.1 torchvision==0.29.1 && pip install -e ."
"$PY" -c 'import fashioncli' 2>/dev/null || fail "fashioncli is not installed; run: pip install -e ."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec timeout 480 "$PY" benchmarks/gpu_check.py "$@"
