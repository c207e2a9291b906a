"""Prototype models through the five verbs: a class held out by the recipe, the rejection threshold
calibrated in training, eval's open-set figures and embedding plot, `unknown` from predict, and
exported models that carry the threshold and the distance."""
import csv
import json

import numpy as np
import pytest
from helpers import recipe_file

from fashioncli.checkpoint import load_checkpoint
from fashioncli.errors import RecipeError
from fashioncli.evaluate import evaluate
from fashioncli.export import export
from fashioncli.plots import plot_embedding
from fashioncli.predict import predict
from fashioncli.recipe import bundled_names, load_recipe
from fashioncli.tasks.prototype import PrototypeTask
from fashioncli.tasks.prototype.predict import UNKNOWN
from fashioncli.train import train

PROTOTYPE = {"name": "unet_prototype", "args": {"levels": 2, "base_channels": 4, "embedding_dim": 2}}
KNOWN = ["red", "green"]  # blue is held out: eval's unseen class


def train_run(tmp_path, data_root, name, **overrides):
    spec = recipe_file(tmp_path, data_root, model=PROTOTYPE, loss={"name": "dce_pl"}, data__classes=KNOWN,
                       optimizer={"name": "adam", "lr": 1e-2}, output__name=name, **overrides)
    return train(load_recipe(spec), spec=spec, progress=False)["run_dir"]


@pytest.fixture(scope="module")
def run(tiny_prepared, tmp_path_factory):
    """Two classes of three, threshold calibrated on validation (5% false rejections)."""
    from pathlib import Path

    return Path(train_run(tmp_path_factory.mktemp("proto"), tiny_prepared, "proto"))


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_training_keeps_the_chosen_classes_and_calibrates_a_threshold(run):
    _, meta = load_checkpoint(run / "checkpoints" / "best.pt")
    assert meta["classes"] == KNOWN and meta["held_out"] == ["blue"]
    rejection = meta["rejection"]
    assert rejection["source"] == "validation" and rejection["false_rejection_rate"] == 0.05
    assert rejection["threshold"] > 0


def test_eval_reports_open_set_rejection_and_the_embedding(run):
    summary = evaluate(run, num_workers=0)
    out = run / "eval-test"
    assert summary["num_samples"] == 24 and summary["num_classes"] == 2  # 12 red + 12 green test images
    open_set = summary["open_set"]
    assert open_set["unseen_classes"] == ["blue"] and open_set["num_unseen"] == 12
    assert open_set["score"] == "min_distance" and 0.0 <= open_set["auroc"] <= 1.0
    r = summary["rejection"]
    assert r["accuracy_without_rejection"] == summary["metrics"]["accuracy"]
    assert r["accuracy_with_rejection"] <= r["accuracy_without_rejection"]
    for key in ("known_rejected", "unseen_rejected", "open_set_accuracy"):
        assert 0.0 <= r[key] <= 1.0
    assert r["unseen_rejected_per_class"] == {"blue": r["unseen_rejected"]}
    assert "embedding.png" in summary["files"] and (out / "embedding.png").read_bytes()[:4] == b"\x89PNG"
    assert [row["class"] for row in read_rows(out / "per_class.csv")] == KNOWN  # metrics: known classes only
    assert json.loads((out / "summary.json").read_text())["open_set"] == open_set


def test_predict_says_unknown_beyond_the_threshold(run, tiny_prepared, tmp_path):
    _, meta = load_checkpoint(run / "checkpoints" / "best.pt")
    threshold = meta["rejection"]["threshold"]
    summary = predict(run, [tiny_prepared.parent / "src" / "test"], tmp_path / "p.csv", num_workers=0)
    rows = read_rows(tmp_path / "p.csv")
    assert list(rows[0]) == ["path", "label", "score", "top_labels", "top_scores", "error", "distance"]
    assert summary["threshold"] == threshold and summary["unknown"] == sum(r["label"] == UNKNOWN for r in rows)
    for row in rows:
        far = float(row["distance"]) > threshold
        assert (row["label"] == UNKNOWN) == far
        assert row["label"] in (UNKNOWN, json.loads(row["top_labels"])[0])
        assert float(row["score"]) == json.loads(row["top_scores"])[0]


def test_a_threshold_set_by_hand_rejects_far_images(tiny_prepared, tmp_path):
    run = train_run(tmp_path, tiny_prepared, "by-hand", train__epochs=1, eval__reject={"threshold": 0.0})
    _, meta = load_checkpoint(f"{run}/checkpoints/best.pt")
    assert meta["rejection"] == {"threshold": 0.0, "source": "recipe"}
    predict(run, [tiny_prepared.parent / "src" / "test" / "red"], tmp_path / "p.jsonl", num_workers=0)
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert len(rows) == 12 and all(r["label"] == UNKNOWN and r["distance"] > 0 for r in rows)


def test_onnx_export_carries_the_threshold_and_agrees_on_unknown(run, tiny_prepared, tmp_path):
    from fashioncli.engines import OnnxEngine

    _, meta = load_checkpoint(run / "checkpoints" / "best.pt")
    test_images = tiny_prepared.parent / "src" / "test"
    summary = export(run, "onnx", out=tmp_path / "m.onnx", check_images=test_images)
    assert summary["parity"]["distance"]["unknown_agreement"] == 1.0
    assert summary["parity"]["distance"]["max_rel_diff"] <= 1e-3
    engine = OnnxEngine(tmp_path / "m.onnx")
    assert PrototypeTask.threshold(engine.meta) == meta["rejection"]["threshold"] and engine.meta["rejection"] == meta["rejection"]
    assert [o.name for o in engine.session.get_outputs()] == ["probabilities", "distance"]
    predict(run, [test_images], tmp_path / "torch.csv", num_workers=0)
    predict(tmp_path / "m.onnx", [test_images], tmp_path / "onnx.csv", num_workers=0)
    torch_rows, onnx_rows = read_rows(tmp_path / "torch.csv"), read_rows(tmp_path / "onnx.csv")
    assert [r["label"] for r in onnx_rows] == [r["label"] for r in torch_rows]
    assert np.allclose([float(r["distance"]) for r in onnx_rows], [float(r["distance"]) for r in torch_rows],
                       rtol=1e-3)


def test_a_plain_classifier_can_hold_classes_out_too(tiny_prepared, tmp_path):
    spec = recipe_file(tmp_path, tiny_prepared, data__classes=["blue", "red"], train__epochs=1)
    run = train(load_recipe(spec), spec=spec, progress=False)["run_dir"]
    _, meta = load_checkpoint(f"{run}/checkpoints/best.pt")
    assert meta["classes"] == ["blue", "red"] and meta["held_out"] == ["green"] and "rejection" not in meta
    summary = evaluate(run, num_workers=0)
    assert summary["open_set"]["score"] == "1-max_probability" and summary["open_set"]["unseen_classes"] == ["green"]
    assert "rejection" not in summary and "embedding.png" not in summary["files"]


def test_bad_class_choices_and_rates_are_recipe_errors(tiny_prepared, tmp_path):
    spec = recipe_file(tmp_path, tiny_prepared, data__classes=["red", "purple"])
    with pytest.raises(RecipeError, match="data.classes: 'purple' is not a class"):
        train(load_recipe(spec), spec=spec, progress=False)
    spec = recipe_file(tmp_path, tiny_prepared, data__classes=["red", "red"])
    with pytest.raises(RecipeError, match="distinct"):
        train(load_recipe(spec), spec=spec, progress=False)
    with pytest.raises(RecipeError, match="eval.reject.false_rejection_rate: must be between 0 and 1"):
        load_recipe(spec, ["eval.reject.false_rejection_rate=5"])


@pytest.mark.parametrize("name", [n for n in bundled_names() if n.startswith("prototype_")])
def test_bundled_prototype_recipes_are_valid(name):
    recipe = load_recipe(name)
    assert recipe["loss"]["name"] == "dce_pl" and len(recipe["data"]["classes"]) == 4
    assert recipe["model"]["name"] in ("unet_prototype", "timm_prototype")


@pytest.mark.parametrize("dim", [1, 2, 5])
def test_plot_embedding_any_dimension(tmp_path, dim):
    rng = np.random.default_rng(0)
    path = tmp_path / "e.png"
    plot_embedding(rng.normal(size=(30, dim)), np.arange(30) % 4, ["a", "b", "c", "unseen"], 3, path,
                   prototypes=rng.normal(size=(6, dim)))
    assert path.read_bytes()[:4] == b"\x89PNG"
