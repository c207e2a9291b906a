"""benchmarks/gpu_check.sh on a machine without CUDA: one clear line, at once, and a failing exit code."""
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.sh"


def test_gpu_check_refuses_a_machine_without_cuda_at_once():
    if shutil.which("nvidia-smi") and torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU: the check would run for minutes")
    start = time.monotonic()
    result = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=60)
    assert time.monotonic() - start < 20  # no training, no data preparation before the refusal
    assert result.returncode == 2 and result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("gpu_check: ") and ("CUDA" in line or "GPU" in line)
