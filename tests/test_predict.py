import csv
import json
import subprocess
import sys

import pytest

from fashioncli.errors import DataError
from fashioncli.export import export
from fashioncli.predict import predict
from fashioncli.tasks.classification.predict import COLUMNS
from helpers import CLASSES, tiny_checkpoint, write_images

N_GOOD = 7


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A checkpoint, its ONNX export and a folder of N_GOOD images + one corrupt file + a non-image."""
    root = tmp_path_factory.mktemp("predict")
    ckpt = tiny_checkpoint(root)
    images = root / "images"
    write_images(images / "a", 4)
    write_images(images / "b" / "deep", N_GOOD - 4, seed=1)
    (images / "b" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (images / "notes.md").write_text("ignored: not an image")
    onnx = export(ckpt, "onnx", check_images=images)["path"]
    return ckpt, onnx, images


def read_rows(path):
    if str(path).endswith(".csv"):
        with open(path, newline="") as f:
            return list(csv.DictReader(f))
    return [json.loads(line) for line in open(path)]


def test_csv_rows_with_an_error_row(setup, tmp_path):
    ckpt, _, images = setup
    out = tmp_path / "pred.csv"
    summary = predict(ckpt, [images], out, topk=2, batch_size=3, num_workers=0)
    assert summary["rows"] == N_GOOD + 1 and summary["errors"] == 1 and summary["engine"] == "checkpoint"
    rows = read_rows(out)
    assert tuple(rows[0]) == COLUMNS and len(rows) == N_GOOD + 1
    (bad,) = [r for r in rows if r["error"]]
    assert bad["path"].endswith("broken.jpg") and bad["label"] == "" and json.loads(bad["top_labels"]) == []
    for row in (r for r in rows if not r["error"]):
        labels, scores = json.loads(row["top_labels"]), json.loads(row["top_scores"])
        assert row["label"] == labels[0] and labels[0] in CLASSES and len(labels) == 2
        assert float(row["score"]) == scores[0] >= scores[1]


def test_jsonl_from_mixed_inputs_deduplicated(setup, tmp_path):
    _, onnx, images = setup
    listed = sorted(images.rglob("*.png"))[:3]
    (tmp_path / "list.txt").write_text("\n".join(map(str, listed + listed[:1])) + "\n\n")
    out = tmp_path / "pred.jsonl"
    inputs = [str(tmp_path / "list.txt"), str(images / "a" / "*.png"), str(images), str(listed[0])]
    summary = predict(onnx, inputs, out, topk=5, batch_size=4)
    rows = read_rows(out)
    assert [r["path"] for r in rows][:3] == list(map(str, listed))  # in order of first appearance
    assert len(rows) == len({r["path"] for r in rows}) == N_GOOD + 1
    assert summary["duplicates"] > 0 and summary["topk"] == 3  # topk is capped at the class count
    good = [r for r in rows if r["error"] is None]
    assert len(good) == N_GOOD and all(len(r["top_scores"]) == 3 for r in good)


def test_onnx_agrees_with_checkpoint(setup, tmp_path):
    ckpt, onnx, images = setup
    by_engine = {}
    for name, model in (("ckpt", ckpt), ("onnx", onnx)):
        predict(model, [images], tmp_path / f"{name}.jsonl", batch_size=4, num_workers=1)
        by_engine[name] = {r["path"]: r for r in read_rows(tmp_path / f"{name}.jsonl")}
    assert by_engine["ckpt"].keys() == by_engine["onnx"].keys()
    for path, row in by_engine["ckpt"].items():
        other = by_engine["onnx"][path]
        assert row["label"] == other["label"] and bool(row["error"]) == bool(other["error"])
        if not row["error"]:
            assert row["top_scores"] == pytest.approx(other["top_scores"], abs=1e-4)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_resume_after_a_crash_mid_line(setup, tmp_path, suffix):
    _, onnx, images = setup
    out = tmp_path / f"pred{suffix}"
    predict(onnx, [images], out, batch_size=2)
    lines = out.read_bytes().splitlines(keepends=True)
    out.write_bytes(b"".join(lines[:4]) + lines[4][:7])  # three whole rows (after a CSV header), half a line
    summary = predict(onnx, [images], out, batch_size=2, resume=True)
    rows = read_rows(out)
    assert len(rows) == len({r["path"] for r in rows}) == N_GOOD + 1
    assert summary["skipped"] == (3 if suffix == ".csv" else 4) and summary["rows"] == N_GOOD + 1 - summary["skipped"]


def test_resume_refuses_a_foreign_csv(setup, tmp_path):
    _, onnx, images = setup
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="cannot resume"):
        predict(onnx, [images], tmp_path / "other.csv", resume=True)


def test_bad_arguments_fail_before_any_work(setup, tmp_path):
    _, onnx, images = setup
    with pytest.raises(DataError, match="does not exist"):
        predict(onnx, [images, tmp_path / "missing"], tmp_path / "p.csv")
    with pytest.raises(DataError, match="output format"):
        predict(onnx, [images], tmp_path / "p.parquet")
    assert not list(tmp_path.iterdir())


def test_onnx_path_does_not_import_torch(setup, tmp_path):
    _, onnx, images = setup
    code = (
        "import sys\n"
        "sys.modules['torch'] = None  # any 'import torch' now raises\n"
        "from fashioncli.predict import predict\n"
        f"s = predict({str(onnx)!r}, [{str(images)!r}], {str(tmp_path / 'p.csv')!r}, threads=1)\n"
        "assert s['rows'] == 8, s\n"
        "assert not [m for m in sys.modules if m.startswith(('torch.', 'timm', 'torchvision'))]\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
