"""Multi-task datasets and models: a table's label columns as heads, through all five verbs."""
import csv
import json

import numpy as np
import pytest
import torch
import yaml

from fashioncli.errors import DataError, RecipeError
from fashioncli.tasks.multitask.heads import MISSING, Head, decode
from fashioncli.prepare import prepare
from fashioncli.recipe import load_recipe
from fashioncli.tasks.multitask.loss import MultiTaskLoss
from fashioncli.train import train

COLOURS = {"red": (0, 0, 220), "green": (0, 200, 0), "blue": (220, 0, 0)}


def _table(root, n_per=8):
    """Images whose colour is the 'colour' head, whose brightness is 'tone' (a parent of nothing),
    with a composite 'description' column, a multilabel 'tags' list and some missing labels."""
    import cv2

    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    rows = []
    for colour, bgr in COLOURS.items():
        for i in range(n_per):
            img = np.clip(np.array(bgr) + rng.normal(0, 20, (24, 24, 3)), 0, 255).astype(np.uint8)
            name = f"{colour}_{i}.png"
            cv2.imwrite(str(root / "images" / name), img)
            family = "warm" if colour == "red" else "cool"
            tags = "|".join(t for t in (colour, "solid" if i % 2 else "") if t)
            missing_colour = i == 7  # the image still counts for the other heads
            rows.append({
                "image": f"images\\{name}",  # Windows separators, as real tables have
                "description": f"{family} - {'' if missing_colour else colour}",
                "tags": tags,
                "split": "train" if i < 4 else "val" if i < 6 else "test",
            })
    with open(root / "items.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "description", "tags", "split"])
        for row in rows:
            writer.writerow([row["image"], row["description"], row["tags"], row["split"]])
    return root / "items.csv"


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    base = tmp_path_factory.mktemp("mt")
    table = _table(base / "src")
    out = base / "prepared"
    summary = prepare(
        str(table), str(out), image_size=32,
        heads={"family": None, "colour": {"parent": "family"}, "tags": {"type": "multilabel"}},
        derive={"description": {"sep": " - ", "into": ["family", "colour"]}},
    )
    return out, summary


def test_prepare_writes_heads_classes_hierarchy_and_missing(prepared):
    out, summary = prepared
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["task"] == "multitask"
    assert meta["heads"]["colour"] == {
        "type": "categorical", "classes": ["blue", "green", "red"], "parent": "family",
        "parent_of": {"blue": "cool", "green": "cool", "red": "warm"},
    }
    assert meta["heads"]["tags"]["classes"] == ["blue", "green", "red", "solid"]
    with open(out / "test.csv") as f:
        rows = list(csv.DictReader(f))
    assert set(rows[0]) == {"path", "family", "colour", "tags"}
    assert sum(1 for r in rows if r["colour"] == "") == 3  # missing stays missing, the image stays
    report = json.loads((out / "report.json").read_text())
    assert report["counts"]["colour"]["test"]["(missing)"] == 3
    assert "## Head `colour` (categorical, 3 classes, belongs to `family`)" in (out / "report.md").read_text()


def test_encoding_and_loss_leave_missing_labels_out():
    head = Head("tags", "multilabel", ["a", "b"])
    t = head.encode(["a|b", "", "|"])
    assert t.tolist() == [[1, 1], [MISSING, MISSING], [0, 0]]
    cat = Head("c", "categorical", ["x", "y"])
    heads = {"c": cat, "tags": head}
    loss = MultiTaskLoss(heads, {"c": torch.nn.CrossEntropyLoss(), "tags": torch.nn.BCEWithLogitsLoss()},
                         {"c": 1.0, "tags": 0.5})
    targets = {"c": torch.tensor([0, MISSING, 1]), "tags": torch.from_numpy(t)}
    outputs = {"c": torch.randn(3, 2), "tags": torch.randn(3, 2)}
    expected = (torch.nn.functional.cross_entropy(outputs["c"][[0, 2]], targets["c"][[0, 2]])
                + 0.5 * torch.nn.functional.binary_cross_entropy_with_logits(outputs["tags"][[0, 2]], targets["tags"][[0, 2]]))
    assert torch.allclose(loss(outputs, targets), expected)
    outputs["c"][1] = 1e6  # a missing row's output changes nothing
    assert torch.allclose(loss(outputs, targets), expected)


def test_decode_enforces_the_hierarchy():
    parent = Head("family", "categorical", ["cool", "warm"])
    child = Head("colour", "categorical", ["blue", "red"], parent="family", parent_of={"blue": "cool", "red": "warm"})
    heads = {"colour": child, "family": parent}  # parent listed after its child: decode orders them
    probs = {"family": np.array([[0.9, 0.1]]), "colour": np.array([[0.3, 0.7]])}
    assert decode(heads, probs)["colour"]["index"].tolist() == [0]  # red is not a cool colour
    assert decode(heads, probs, hierarchy=False)["colour"]["index"].tolist() == [1]


def _recipe(tmp_path, root, **extra):
    data = {
        "task": "multitask",
        "data": {"root": str(root), "image_size": 32, "batch_size": 8, "num_workers": 0},
        "heads": {"family": {}, "colour": {"weight": 2.0, "class_weight": "balanced"},
                  "tags": {"hidden": [16], "batch_norm": True, "class_weight": {"mode": "sqrt", "cap": 1.5}}},
        "model": {"name": "multihead", "args": {"backbone": "test_resnet"}},
        "optimizer": {"name": "adam", "lr": 3e-3},
        "train": {"epochs": 3, "channels_last": False},
        "output": {"dir": str(tmp_path / "runs"), "name": "mt"},
        **extra,
    }
    path = tmp_path / "mt.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def run(prepared, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mtrun")
    spec = _recipe(tmp, prepared[0], eval={"tta": {"hflip": True, "shift": 2}})
    summary = train(load_recipe(spec), spec=spec, progress=False)
    return tmp / "runs" / "mt", summary


def test_train_logs_every_head_and_tunes_thresholds(run):
    path, summary = run
    assert summary["best"]["val_mean_accuracy"] is not None
    with open(path / "metrics.csv") as f:
        columns = next(csv.reader(f))
    for key in ("val_family_accuracy", "val_colour_accuracy", "val_tags_map", "val_mean_accuracy", "val_mean_ap"):
        assert key in columns
    meta = json.loads((path / "checkpoints" / "best.json").read_text())
    assert list(meta["heads"]) == ["family", "colour", "tags"]
    assert len(meta["thresholds"]["tags"]) == 4  # one per tag, tuned on validation


def test_class_weights_come_from_the_train_split_and_are_written_to_the_run(run, prepared):
    path, _ = run
    weights = json.loads((path / "class_weights.json").read_text())
    assert set(weights) == {"colour", "tags"}  # family has no class_weight
    with open(prepared[0] / "train.csv") as f:
        train_rows = list(csv.DictReader(f))
    colours = [r["colour"] for r in train_rows if r["colour"]]
    for c in ("blue", "green", "red"):  # balanced: n / (K n_c)
        assert weights["colour"]["weights"][c] == pytest.approx(len(colours) / (3 * colours.count(c)), abs=1e-5)
    assert weights["colour"]["argument"] == "weight" and weights["tags"]["argument"] == "pos_weight"
    solid = sum("solid" in r["tags"].split("|") for r in train_rows)
    expected = min(((len(train_rows) - solid) / solid) ** 0.5, 1.5)  # sqrt of n_neg / n_pos, capped
    assert weights["tags"]["weights"]["solid"] == pytest.approx(expected, abs=1e-5)
    assert weights["tags"]["weights"]["red"] == pytest.approx(min(2 ** 0.5, 1.5), abs=1e-5)  # 8 negatives, 4 positives


def test_eval_reports_per_head(run):
    from fashioncli.evaluate import evaluate

    path, _ = run
    summary = evaluate(path)
    heads = summary["metrics"]["heads"]
    assert heads["colour"]["support"] == 3  # 6 test images, 3 without a colour: left out of that head only
    assert heads["family"]["support"] == 6
    assert 0 <= heads["tags"]["map"] <= 1
    assert summary["metrics"]["mean_accuracy"] == pytest.approx(
        (heads["family"]["accuracy"] + heads["colour"]["accuracy"]) / 2, abs=1e-6)
    # balanced accuracy (mean per-class recall) per head and over heads, beside a majority baseline
    assert summary["metrics"]["mean_balanced_accuracy"] == pytest.approx(
        np.mean([heads[h]["balanced_accuracy"] for h in ("family", "colour", "tags")]), abs=1e-6)
    assert heads["family"]["majority_baseline"] == pytest.approx(4 / 6)  # 4 cool of 6 test images
    with open(path / "eval-test" / "heads.csv") as f:
        rows = {r["head"]: r for r in csv.DictReader(f)}
    assert float(rows["colour"]["balanced_accuracy"]) == pytest.approx(heads["colour"]["balanced_accuracy"])
    assert rows["tags"]["majority_baseline"] != ""
    assert summary["tta"] == {"hflip": True, "shift": 2}  # the recipe's eval.tta
    out = path / "eval-test"
    assert (out / "colour" / "confusion_matrix.png").is_file()
    assert (out / "tags" / "per_class.csv").is_file()
    with open(out / "predictions.csv") as f:
        assert next(csv.reader(f))[:4] == ["path", "family_true", "family_pred", "family_score"]
    # TTA is an average over views: without it the figures are those of one view.
    plain = evaluate(path, tta={"hflip": False, "shift": 0}, out=path / "eval-plain")
    assert plain["tta"] == {"hflip": False, "shift": 0}


def test_predict_and_onnx_export_carry_every_head(run, prepared, tmp_path):
    from fashioncli.export import export
    from fashioncli.predict import predict

    path, _ = run
    images = prepared[0].parent / "src" / "images"
    predict(path, [str(images)], tmp_path / "p.jsonl")
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert len(rows) == 24
    assert set(rows[0]) == {"path", "family", "family_score", "colour", "colour_score", "tags", "tags_score", "error"}
    assert isinstance(rows[0]["tags"], list) and len(rows[0]["tags"]) == len(rows[0]["tags_score"])
    summary = export(path, format="onnx")
    assert set(summary["parity"]["heads"]) == {"family", "colour", "tags"}
    assert summary["parity"]["top1_agreement"] == 1.0
    onnx_out = tmp_path / "onnx.jsonl"
    predict(summary["path"], [str(images)], onnx_out, tta={"hflip": False, "shift": 0})
    torch_out = tmp_path / "torch.jsonl"
    predict(path, [str(images)], torch_out, tta={"hflip": False, "shift": 0})
    labels = lambda p: [{k: v for k, v in json.loads(line).items() if not k.endswith("_score")}  # noqa: E731
                        for line in p.read_text().splitlines()]
    assert labels(onnx_out) == labels(torch_out)


def test_eval_of_an_onnx_export_reports_every_head_as_the_checkpoint(run, prepared, tmp_path):
    """Each head's logits come back from the export's probabilities (log of softmax, logit of sigmoid)."""
    from fashioncli.evaluate import evaluate
    from fashioncli.export import export

    path, _ = run
    onnx = tmp_path / "mt.onnx"
    export(path, format="onnx", out=onnx)
    plain = {"hflip": False, "shift": 0}
    want = evaluate(path, out=tmp_path / "ckpt", tta=plain)
    got = evaluate(onnx, data=prepared[0], out=tmp_path / "onnx", tta=plain)
    assert got["engine"] == "onnx" and got["thresholds"] == want["thresholds"]
    for name, figures in want["metrics"]["heads"].items():
        assert got["metrics"]["heads"][name] == pytest.approx(figures, abs=1e-5), name
    assert got["metrics"]["mean_accuracy"] == pytest.approx(want["metrics"]["mean_accuracy"], abs=1e-6)
    labels = lambda p: [{k: v for k, v in row.items() if not k.endswith("_score")}  # noqa: E731
                        for row in csv.DictReader(p.read_text().splitlines())]
    assert labels(tmp_path / "onnx" / "predictions.csv") == labels(tmp_path / "ckpt" / "predictions.csv")


def test_staged_fine_tuning_freezes_then_unfreezes(prepared, tmp_path):
    from fashioncli.train import Trainer

    spec = _recipe(tmp_path, prepared[0], train={
        "channels_last": False, "stages": [{"epochs": 1, "backbone": "none", "lr": 1e-3},
                                           {"epochs": 1, "backbone": "all", "lr": 1e-4}]})
    recipe = load_recipe(spec)
    trainer = Trainer(recipe, tmp_path / "runs" / "staged", progress=False)
    (tmp_path / "runs" / "staged" / "checkpoints").mkdir(parents=True)
    stem = next(trainer.model.backbone.parameters())
    before = stem.detach().clone()
    seen = []
    report = trainer.report
    trainer.report = lambda row, best: (seen.append(stem.detach().clone()), report(row, best))
    trainer.fit()
    assert torch.equal(seen[0], before)  # frozen through stage 1
    assert trainer.epoch == 2 and recipe["train"]["epochs"] == 2
    assert trainer.stage == 1 and stem.requires_grad
    with open(tmp_path / "runs" / "staged" / "metrics.csv") as f:
        lrs = [float(r["lr"]) for r in csv.DictReader(f)]
    assert lrs[0] == pytest.approx(1e-3) and lrs[1] == pytest.approx(1e-4)
    assert not torch.equal(before, stem.detach())  # trained in stage 2, after being frozen in stage 1


def test_recipe_and_data_mistakes_name_the_key(prepared, tmp_path):
    with pytest.raises(RecipeError, match=r"heads\.colour\.hiden: unknown key"):
        load_recipe(_recipe(tmp_path, prepared[0], heads={"colour": {"hiden": [3]}}))
    spec = _recipe(tmp_path, prepared[0], heads={"size": {}})
    with pytest.raises(RecipeError, match="heads.size: the dataset .* has no such head; its heads: family, colour, tags"):
        train(load_recipe(spec), spec=spec, progress=False)
    spec = _recipe(tmp_path, prepared[0], task="classification")
    with pytest.raises(DataError, match="is a multitask dataset but the recipe's task is classification"):
        train(load_recipe(spec), spec=spec, progress=False)


def test_fashion_product_small_splits_its_description_into_heads(tmp_path):
    from conftest import shared_dataset

    source = shared_dataset("fashion-product-small")
    summary = prepare(str(source), str(tmp_path / "fp"), image_size=16)  # detected: fashion-product
    assert summary["importer"] == "fashion-product" and summary["problems"] == 0
    assert summary["heads"] == {"master": 7, "sub": 45, "article": 141, "colour": 46, "usage": 8}
    assert sum(summary["splits"].values()) == 44072
    meta = json.loads((tmp_path / "fp" / "dataset.json").read_text())
    assert meta["heads"]["sub"]["parent"] == "master" and meta["heads"]["article"]["parent"] == "sub"
    assert meta["heads"]["sub"]["parent_of"]["Topwear"] == "Apparel"
