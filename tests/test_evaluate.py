"""`evaluate` end to end on a tiny hand-made prepared dataset and class folders; the PNG plots."""
import csv
import json

import cv2
import numpy as np
import pytest
from helpers import make_image_folder

from torchmetrics.classification import MulticlassAccuracy

from fashioncli import create_model, hookimpl
from fashioncli.checkpoint import save_checkpoint
from fashioncli.errors import DataError
from fashioncli.evaluate import evaluate
from fashioncli.plots import plot_confusion_matrix, plot_curves
from fashioncli.plugins import plugin_registered

CLASSES = ["red", "green", "blue"]
PER_CLASS = 4
REPORTS = ["summary.json", "per_class.csv", "confusion_matrix.csv", "confusion_matrix.png", "predictions.csv"]


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def assert_png(path):
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = cv2.imread(str(path))
    assert image is not None and image.shape[0] > 50 and image.shape[1] > 50


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A run directory whose untrained checkpoint points at a hand-written prepared dataset."""
    base = tmp_path_factory.mktemp("eval")
    src = make_image_folder(base / "src", classes=CLASSES, per_class=PER_CLASS, splits=["test"])
    prepared = base / "prepared"
    prepared.mkdir()
    rows = [(str(p), c) for c in CLASSES for p in sorted((src / "test" / c).glob("*.png"))]
    (prepared / "dataset.json").write_text(json.dumps({
        "format_version": 1, "task": "classification", "classes": CLASSES,
        "splits": {"test": len(rows)}, "image_size": 32,
    }))
    with open(prepared / "test.csv", "w", newline="") as f:
        csv.writer(f).writerows([("path", "label"), *rows])

    model = create_model("timm", backbone="mobilenetv3_small_050", num_classes=len(CLASSES))
    meta = {
        "task": "classification", "classes": CLASSES,
        "model": {"name": "timm", "args": {"backbone": "mobilenetv3_small_050", "pretrained": False}},
        "preprocessing": {"image_size": 32, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
                          "resize": "squash"},
        "recipe": {"data": {"root": str(prepared)}, "eval": {"topk": 2}}, "epoch": 1, "metrics": {},
    }
    run_dir = base / "run"
    save_checkpoint(run_dir / "checkpoints" / "best.pt", model, meta)
    return {"dir": run_dir, "src": src, "prepared": prepared, "rows": rows}


@pytest.fixture(scope="module")
def summary(run):
    return evaluate(run["dir"], batch_size=5, num_workers=0)


def test_reports_go_into_the_run_directory(run, summary):
    out = run["dir"] / "eval-test"
    assert summary["out"] == str(out)
    for name in REPORTS:
        assert (out / name).is_file(), name
    assert json.loads((out / "summary.json").read_text()) == summary
    assert summary["num_samples"] == len(run["rows"]) and summary["unreadable"] == []
    # k comes from the recipe's eval.topk, as in training's validation
    assert set(summary["metrics"]) == {
        "accuracy", "top2_accuracy", "precision_macro", "recall_macro", "f1_macro", "auroc_macro",
        "balanced_accuracy", "majority_baseline"}
    assert_png(out / "confusion_matrix.png")


def test_reports_agree_with_each_other(run, summary):
    out = run["dir"] / "eval-test"
    predictions = read_csv(out / "predictions.csv")
    assert predictions[0] == ["path", "true", "predicted", "score"]
    assert [(p, t) for p, t, _, _ in predictions[1:]] == run["rows"]
    assert all(0 < float(s) <= 1 for *_, s in predictions[1:])
    correct = sum(t == q for _, t, q, _ in predictions[1:])
    assert summary["metrics"]["accuracy"] == pytest.approx(correct / len(run["rows"]), abs=1e-6)

    matrix = read_csv(out / "confusion_matrix.csv")
    assert matrix[0] == ["true\\predicted", *CLASSES]
    assert [r[0] for r in matrix[1:]] == CLASSES
    counts = np.array([[int(v) for v in r[1:]] for r in matrix[1:]])
    for _, t, q, _ in predictions[1:]:
        counts[CLASSES.index(t), CLASSES.index(q)] -= 1
    assert not counts.any()

    per_class = read_csv(out / "per_class.csv")
    assert per_class[0] == ["class", "precision", "recall", "f1", "auroc", "support"]
    assert [(r[0], int(r[-1])) for r in per_class[1:]] == [(c, PER_CLASS) for c in CLASSES]


def test_class_folders_give_the_same_predictions(run, summary, tmp_path):
    # <src>/test/<class>/: the split folder is picked; images are decoded per file, not from the cache.
    folder = evaluate(run["dir"], data=run["src"], out=tmp_path, num_workers=0)
    assert folder["num_samples"] == summary["num_samples"]
    cached = read_csv(run["dir"] / "eval-test" / "predictions.csv")
    files = read_csv(tmp_path / "predictions.csv")
    assert sorted(r[:3] for r in files) == sorted(r[:3] for r in cached)  # folders come in name order
    assert folder["metrics"] == pytest.approx(summary["metrics"])


class BalancedAccuracyPlugin:
    @hookimpl
    def register_metrics(self, register):
        register("balanced_accuracy", lambda num_classes: MulticlassAccuracy(num_classes, average="macro"))


def test_plugin_metrics_are_reported(run, tmp_path):
    with plugin_registered(BalancedAccuracyPlugin(), name="test-balanced-accuracy"):
        result = evaluate(run["dir"], out=tmp_path, num_workers=0, topk=5)
    assert 0 <= result["metrics"]["balanced_accuracy"] <= 1
    assert result["metrics"]["top3_accuracy"] == 1.0  # k is capped at the 3 classes


def test_unreadable_images_are_left_out_and_listed(run, tmp_path):
    data = make_image_folder(tmp_path / "photos", classes=["red"], per_class=2)
    (data / "red" / "broken.png").write_bytes(b"not a png")
    result = evaluate(run["dir"], data=data, out=tmp_path / "out", num_workers=0)
    assert result["num_samples"] == 2
    assert [u["path"] for u in result["unreadable"]] == [str(data / "red" / "broken.png")]
    assert len(read_csv(tmp_path / "out" / "predictions.csv")) == 1 + 2


def test_unknown_class_folder_is_an_error_naming_it(run, tmp_path):
    data = make_image_folder(tmp_path / "photos", classes=["red", "purple"], per_class=1)
    with pytest.raises(DataError, match=r"purple.*red, green, blue"):
        evaluate(run["dir"], data=data, out=tmp_path / "out", num_workers=0)


def test_missing_split_is_an_error(run, tmp_path):
    with pytest.raises(DataError, match="val"):
        evaluate(run["dir"], split="val", out=tmp_path, num_workers=0)


def test_folder_without_class_folders_is_an_error(run, tmp_path):
    with pytest.raises(DataError, match="class folders"):
        evaluate(run["dir"], data=tmp_path, num_workers=0)


def test_plot_confusion_matrix(tmp_path):
    matrix = [[5, 1, 0], [0, 0, 0], [2, 0, 3]]  # an empty row must not divide by zero
    plot_confusion_matrix(matrix, CLASSES, tmp_path / "cm.png")
    plot_confusion_matrix(matrix, CLASSES, tmp_path / "counts.png", normalize=False)
    assert_png(tmp_path / "cm.png")
    assert_png(tmp_path / "counts.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cm.png", "counts.png"]  # no temporary files left


def test_plot_curves(tmp_path):
    rows = [
        "epoch,train_loss,val_loss,val_accuracy,lr,train_img_per_s,note",
        "1,1.2,1.1,0.4,0.001,350.5,warmup",
        "2,0.8,,0.6,0.0005,360.1,",  # a skipped validation leaves an empty cell
        "3,0.5,0.7,0.7,0.0001,355.0,",
    ]
    (tmp_path / "metrics.csv").write_text("\n".join(rows) + "\n")
    plot_curves(tmp_path / "metrics.csv", tmp_path / "curves.png")
    assert_png(tmp_path / "curves.png")
    (tmp_path / "empty.csv").write_text("epoch,train_loss\n")
    plot_curves(tmp_path / "empty.csv", tmp_path / "empty.png")
    assert_png(tmp_path / "empty.png")
