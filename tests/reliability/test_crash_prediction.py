"""SIGKILL a real `fashion predict` part-way, twice: --resume ends with exactly one row per image."""
import csv
import json

import cv2
import numpy as np
import pytest
from helpers import fashion, finish, kill_when, tiny_checkpoint

N_IMAGES = 3000


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("crash-predict")
    rng = np.random.default_rng(0)
    for i in range(N_IMAGES):
        folder = root / "images" / f"{i % 7}"  # nested folders, as a real photo dump has
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"{i}.png"), rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    (root / "images" / "0" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")  # an error row counts too
    return root


def rows_of(out):
    if out.suffix == ".csv":
        with open(out, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    return [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]


def lines(out):
    return out.read_bytes().count(b"\n") if out.exists() else 0


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_killed_prediction_resumes_without_losing_or_repeating_a_row(images, tmp_path, suffix, tally):
    model = tiny_checkpoint(tmp_path)
    out = tmp_path / f"predictions{suffix}"
    args = ("predict", model, images / "images", "-o", out, "--batch-size", "32", "--workers", "0")
    kills = [kill_when(fashion(*args), lambda: lines(out) > 500)]
    kills.append(kill_when(fashion(*args, "--resume"), lambda: lines(out) > 2000))
    summary = json.loads(finish(fashion(*args, "--resume")))
    tally.injected(len(kills))
    tally.sent_signal(len(kills))
    assert all(kills), "a kill came after prediction had finished: it tested nothing"
    assert summary["skipped"] > 2000  # the rows written before the kills were kept, not redone

    expected = {str(p) for p in (images / "images").rglob("*") if p.is_file()}
    paths = [r["path"] for r in rows_of(out)]
    lost, repeated = expected - set(paths), len(paths) - len(set(paths))
    assert tally.count_lost(len(lost) + repeated) == 0, (sorted(lost)[:5], repeated)
    assert set(paths) == expected and len(paths) == N_IMAGES + 1
    assert [r["path"].endswith("broken.jpg") for r in rows_of(out) if r["error"]] == [True]
