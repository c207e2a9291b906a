"""Sharded `fashion predict` on torch.distributed: blocks, shard files, merge, kill and resume."""
import csv
import json
import os
import socket
import subprocess
import sys

import pytest
from helpers import tiny_checkpoint

from fashioncli.cli import cli
from fashioncli.predict import predict
from fashioncli.shards import block, shard_dir, shard_file

N_IMAGES = 300
KILL_AFTER = 48  # rows rank 1 writes before it is killed (3 batches of 16)

# Imported at start-up by every Python process whose path holds it: SIGKILLs rank 1 of a job once
# its shard has KILL_AFTER rows, as a crash or an out-of-memory kill would.
KILL_HOOK = f"""
import os, signal
if os.environ.get("RANK") == "1":
    from fashioncli import rows
    write = rows.RowWriter.write
    def dying_write(self, batch):
        write(self, batch)
        self.killed_after = getattr(self, "killed_after", 0) + len(batch)
        if self.killed_after >= {KILL_AFTER}:
            os.kill(os.getpid(), signal.SIGKILL)
    rows.RowWriter.write = dying_write
"""


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """A tiny model (TorchScript: a process opens it without loading the model plugins, seconds
    sooner), N_IMAGES 32 px images in two folders, and the one-process predictions."""
    from fashioncli.export import export

    import cv2
    import numpy as np

    root = tmp_path_factory.mktemp("shards")
    ckpt = tiny_checkpoint(root)
    rng = np.random.default_rng(0)
    for i in range(N_IMAGES):
        folder = root / "images" / ("a" if i % 3 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"{i:04d}.png"), rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    model = export(ckpt, "torchscript", out=root / "model.ts", check_images=root / "images" / "b" / "0000.png")["path"]
    reference = root / "one.csv"
    predict(model, [root / "images"], reference, batch_size=16, trust_torchscript=True)
    return model, root / "images", reference


def read_rows(path):
    if str(path).endswith(".csv"):
        with open(path, newline="") as f:
            return list(csv.DictReader(f))
    return [json.loads(line) for line in open(path)]


def same_rows(got, want):
    """Row for row: paths, labels and errors equal; scores up to the last digit (other thread counts)."""
    assert [r["path"] for r in got] == [r["path"] for r in want]
    for g, w in zip(got, want):
        assert (g["label"], g["top_labels"], g["error"]) == (w["label"], w["top_labels"], w["error"])
        assert json.loads(g["top_scores"]) == pytest.approx(json.loads(w["top_scores"]), abs=2e-6)


def test_blocks_cover_the_inputs_in_order():
    for n, world in [(10, 3), (2, 4), (0, 2), (300, 2)]:
        parts = [list(range(n))[block(n, r, world)] for r in range(world)]
        assert sum(parts, []) == list(range(n))
        assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_devices_relaunches_the_same_command_under_torchrun(monkeypatch, tmp_path):
    from click.testing import CliRunner

    from fashioncli import distributed

    seen = {}
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr(distributed, "launch", lambda argv, devices: seen.update(argv=argv, devices=devices) or 0)
    model, image = tmp_path / "m.pt", tmp_path / "-odd.png"
    model.write_bytes(b""), image.write_bytes(b"")
    result = CliRunner().invoke(cli, ["predict", str(model), str(image), "-o", "p.jsonl", "--devices", "3",
                                      "--resume", "--no-hierarchy", "--topk", "2", "--tta", "hflip"])
    assert result.exit_code == 0, result.output
    assert seen["devices"] == 3
    assert seen["argv"] == ["predict", "--out=p.jsonl", "--topk=2", "--resume", "--tta=hflip", "--no-hierarchy",
                            "--", str(model), str(image)]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_one_process_job_writes_a_shard_and_merges_it(job, tmp_path, monkeypatch):
    """A torchrun job of one process (env as torchrun sets it), in this process: JSONL merged, shards gone."""
    model, images, reference = job
    for key, value in {"WORLD_SIZE": "1", "RANK": "0", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1",
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port())}.items():
        monkeypatch.setenv(key, value)
    out = tmp_path / "preds.jsonl"
    summary = predict(model, [images], out, batch_size=64, device="cpu", trust_torchscript=True)
    assert summary["processes"] == 1 and summary["rows"] == N_IMAGES
    got, want = read_rows(out), read_rows(reference)
    assert [r["path"] for r in got] == [r["path"] for r in want]
    assert [r["label"] for r in got] == [r["label"] for r in want]
    assert not shard_dir(out).exists()


def _env(hook=None, **extra):
    path = [str(hook)] if hook else []
    path += [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path), "HF_HUB_OFFLINE": "1", **extra}
    return env


def test_two_processes_killed_and_resumed_match_one_process(job, tmp_path):
    model, images, reference = job
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(KILL_HOOK)
    out = tmp_path / "preds.csv"
    args = [sys.executable, "-m", "fashioncli", "predict", model, images, "-o", out, "--batch-size", "16",
            "--device", "cpu", "--trust-torchscript"]

    # Started by hand, as torchrun would (its variables): rank 1 is killed mid-run, then rank 0.
    rendezvous = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()), "WORLD_SIZE": "2",
                  "LOCAL_WORLD_SIZE": "2"}
    ranks = [subprocess.Popen(list(map(str, args)), cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True, env=_env(hook, RANK=str(r), LOCAL_RANK=str(r), **rendezvous))
             for r in (0, 1)]
    _, err = ranks[1].communicate(timeout=300)
    assert ranks[1].returncode == -9, err[-3000:]
    ranks[0].kill()
    ranks[0].communicate()
    assert not out.exists()  # no merge of an unfinished job
    kept = read_rows(shard_file(out, "csv", 1, 2))
    assert KILL_AFTER <= len(kept) < N_IMAGES // 2  # rank 1 died mid-run, its rows so far kept

    env = _env()
    env.pop("WORLD_SIZE", None)
    resumed = subprocess.run(list(map(str, [*args, "--devices", "2", "--resume"])), capture_output=True, text=True,
                             env=env, cwd=tmp_path, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    summary = json.loads(resumed.stdout[resumed.stdout.index("{"):])
    assert summary["processes"] == 2
    assert summary["skipped"] >= len(kept) and summary["skipped"] + summary["rows"] == N_IMAGES
    same_rows(read_rows(out), read_rows(reference))
    assert not shard_dir(out).exists()
