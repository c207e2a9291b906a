"""Data-parallel training: 2 CPU processes (gloo) must match 1 process with the same global batch."""
import json
import os
import subprocess
import sys

import pytest
import torch
from helpers import recipe_file

from fashioncli.checkpoint import load_checkpoint
from fashioncli.distributed import RankSampler

# gloo all-reduces in another order than one process sums: float32 rounding, nothing more.
TOLERANCE = 1e-4


def test_rank_slices_make_up_the_one_process_batches():
    g = torch.Generator()
    g.manual_seed(3)
    one = list(RankSampler(22, 8, g, 0, 1))
    parts = []
    for rank in (0, 1):
        g.manual_seed(3)
        parts.append(list(RankSampler(22, 4, g, rank, 2)))
    assert len(one) == 16 and all(len(p) == 8 for p in parts)  # the partial last global batch is dropped
    for b in range(2):
        assert one[b * 8:(b + 1) * 8] == parts[0][b * 4:(b + 1) * 4] + parts[1][b * 4:(b + 1) * 4]


def _train(spec, tmp_path, name, devices):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "fashioncli", "train", str(spec), "-q", f"--set=output.name={name}",
           f"--devices={devices}"]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout[result.stdout.index("{"):])


def test_two_gloo_processes_match_one_process(tiny_prepared, tmp_path):
    # No augmentation (each process would draw its own) and a model normalised per sample
    # (GroupNorm: SyncBatchNorm, which makes batch norm global, runs on GPUs only): the two runs
    # then compute the same updates.
    spec = recipe_file(tmp_path, tiny_prepared, data__augment={"hflip": False, "scale": None},
                       data__batch_size=8, train__epochs=2, optimizer__name="sgd", optimizer__lr=0.05,
                       model={"name": "timm", "args": {"backbone": "test_efficientnet_gn"}})
    one = _train(spec, tmp_path, "one", 1)
    two = _train(spec, tmp_path, "two", 2)
    a, _ = load_checkpoint(tmp_path / "runs" / "one" / "checkpoints" / "last.pt")
    b, _ = load_checkpoint(tmp_path / "runs" / "two" / "checkpoints" / "last.pt")
    diff = max((a["model"][k].float() - b["model"][k].float()).abs().max().item()
               for k in a["model"] if a["model"][k].is_floating_point())
    assert diff < TOLERANCE, diff
    assert one["last"]["train_loss"] == pytest.approx(two["last"]["train_loss"], abs=TOLERANCE)
    assert one["last"]["val_accuracy"] == two["last"]["val_accuracy"]  # validation gathered over both ranks
    assert not (tmp_path / "runs" / "two-2").exists()  # one run directory, written by rank 0 only
    # and the weights did move: equal runs of a model that never trained would prove nothing
    first, _ = load_checkpoint(tmp_path / "runs" / "one" / "checkpoints" / "best.pt")
    assert one["epochs"] == 2 and one["last"]["train_loss"] != pytest.approx(first["history"][0]["train_loss"])
