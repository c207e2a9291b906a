"""Issue 13: class weights against imbalance, balanced accuracy, recipes that remove what they
inherit, a reference that belongs to its dataset, train without a validation split, mIoU's classes."""
import json

import numpy as np
import pytest
import torch
import yaml

from fashioncli.errors import DataError, RecipeError
from fashioncli.recipe import load_recipe
from fashioncli.tasks.class_weights import sigmoid_weights, softmax_weights


def test_balanced_and_sqrt_weights_are_inverse_frequency_capped():
    # 90 / 9 / 1 images: n / (K n_c) = 100/270, 100/27, 100/3 -> the last capped at 10
    assert softmax_weights([90, 9, 1], "balanced", 10) == pytest.approx([100 / 270, 100 / 27, 10], abs=1e-5)
    assert softmax_weights([90, 9, 1], "sqrt", 10) == pytest.approx([(100 / 270) ** 0.5, (100 / 27) ** 0.5, (100 / 3) ** 0.5], abs=1e-5)
    assert softmax_weights([5, 0], "balanced", 4) == [0.5, 4]  # no images: the cap
    # pos_weight: negatives / positives among the 100 labelled images
    assert sigmoid_weights([50, 10, 0], 100, "balanced", 20) == pytest.approx([1, 9, 20])
    assert sigmoid_weights([20], 100, "sqrt", 20) == pytest.approx([2])


def test_balanced_accuracy_and_majority_baseline():
    from fashioncli.tasks.classification.metrics import balanced_accuracy

    # 8 a (6 right), 2 b (1 right): accuracy 0.7, balanced (0.75 + 0.5) / 2, majority 0.8
    m = balanced_accuracy([[6, 2], [1, 1]])
    assert m == pytest.approx({"balanced_accuracy": 0.625, "majority_baseline": 0.8})


def test_a_classification_loss_takes_class_weight(tmp_path):
    from helpers import make_image_folder

    from fashioncli.data.dataset import PreparedDataset
    from fashioncli.prepare import prepare
    from fashioncli.tasks import make_task

    src = make_image_folder(tmp_path / "src", per_class=4, size=8)
    (src / "red" / "red_0.png").rename(src / "blue" / "extra.png")  # 3 red, 4 green, 5 blue
    prepare(str(src), str(tmp_path / "data"), image_size=8, val_fraction=0, test_fraction=0, progress=False, workers=1)
    recipe = load_recipe(_write(tmp_path, {"data": {"root": str(tmp_path / "data")}, "model": "timm",
                                           "class_weight": "balanced"}), validate_components=False)
    task = make_task(recipe, PreparedDataset.open(tmp_path / "data"))
    loss = task.criterion()
    assert loss.weight.tolist() == pytest.approx([12 / 15, 12 / 12, 12 / 9])  # blue, green, red
    assert task.class_weights["loss"]["argument"] == "weight"
    recipe["loss"] = {"name": "cross_entropy", "args": {"weight": [1, 1, 1]}}
    with pytest.raises(RecipeError, match="recipe.class_weight: the loss's 'weight' is set too"):
        make_task(recipe, PreparedDataset.open(tmp_path / "data")).criterion()


def test_a_prototype_loss_takes_class_weight(tmp_path):
    from helpers import make_image_folder

    from fashioncli.data.dataset import PreparedDataset
    from fashioncli.prepare import prepare
    from fashioncli.tasks import make_task

    src = make_image_folder(tmp_path / "src", per_class=4, size=8)
    (src / "red" / "red_0.png").rename(src / "blue" / "extra.png")  # 3 red, 4 green, 5 blue
    prepare(str(src), str(tmp_path / "data"), image_size=8, val_fraction=0, test_fraction=0, progress=False, workers=1)
    recipe = load_recipe(_write(tmp_path, {"base": "_base/prototype.yaml", "data": {"root": str(tmp_path / "data")},
                                           "class_weight": "balanced"}), validate_components=False)
    loss = make_task(recipe, PreparedDataset.open(tmp_path / "data")).criterion()
    assert type(loss).__name__ == "DCEPrototypeLoss"
    assert loss.weight.tolist() == pytest.approx([12 / 15, 12 / 12, 12 / 9])  # blue, green, red


def _write(tmp_path, data, name="r.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def test_a_recipe_deletes_an_inherited_head_mapping_or_figure(tmp_path):
    base = _write(tmp_path, {
        "task": "multitask", "data": {"root": "d", "prepare": {"source": "s.csv"}},
        "heads": {"garments": {"weight": 2}, "colour": {}}, "model": "multihead",
        "eval": {"reference": {"miou": 0.3, "map": 0.4}},
    }, "base.yaml")
    child = _write(tmp_path, {"base": base, "heads": {"garments": None}, "data": {"prepare": None},
                              "eval": {"reference": {"map": None}}})
    recipe = load_recipe(child, validate_components=False)
    assert recipe["heads"] == {"colour": {}} and "prepare" not in recipe["data"]
    assert recipe["eval"]["reference"] == {"miou": 0.3}
    # _delete_: true replaces the inherited mapping; --set key=null deletes too
    replaced = _write(tmp_path, {"base": base, "heads": {"_delete_": True, "tags": {}}}, "c2.yaml")
    assert load_recipe(replaced, validate_components=False)["heads"] == {"tags": {}}
    assert load_recipe(base, ["heads.colour=null"], validate_components=False)["heads"] == {"garments": {"weight": 2}}
    # null for a section with defaults restores the defaults, never "expected a mapping, got None"
    assert load_recipe(child, ["train.early_stopping=null"], validate_components=False)["train"]["early_stopping"]["mode"] == "max"
    # a list or a number given as null is removed too: the inherited stages are gone, lr falls back
    staged = _write(tmp_path, {"base": base, "train": {"stages": [{"epochs": 1, "backbone": "none", "lr": 0.1}]},
                               "optimizer": {"lr": 0.5}}, "c3.yaml")
    plain = load_recipe(staged, ["train.stages=null", "optimizer.lr=null"], validate_components=False)
    assert "stages" not in plain["train"] and plain["optimizer"]["lr"] == load_recipe(base, validate_components=False)["optimizer"]["lr"]
    # null where null is a value (an optional number) stays a value
    assert load_recipe(base, ["train.grad_clip=null"], validate_components=False)["train"]["grad_clip"] is None


def test_the_reference_is_left_out_on_another_dataset(tmp_path):
    from fashioncli.evaluate import reference_figures

    base = _write(tmp_path, {"data": {"root": str(tmp_path / "a")}, "model": "m",
                             "eval": {"reference": {"miou": 0.3}}}, "base.yaml")
    same = load_recipe(base, validate_components=False)
    assert same["eval"]["reference_data"]["root"] == str(tmp_path / "a")
    assert reference_figures(same, tmp_path / "a", {"miou": 0.25}) == {"reference": {"miou": {"measured": 0.25, "report": 0.3}}}
    moved = load_recipe(_write(tmp_path, {"base": base, "data": {"root": str(tmp_path / "b")}}), validate_components=False)
    assert "was measured on" in reference_figures(moved, tmp_path / "b", {})["reference_left_out"]
    # figures given with the new root belong to it
    own = load_recipe(base, [f"data.root={tmp_path / 'b'}", "eval.reference.miou=0.5"], validate_components=False)
    assert reference_figures(own, tmp_path / "b", {})["reference"]["miou"]["report"] == 0.5


def test_train_refuses_a_dataset_without_validation_unless_told(tmp_path):
    from helpers import make_image_folder

    from fashioncli.prepare import prepare
    from fashioncli.train import train

    src = make_image_folder(tmp_path / "src", per_class=3, size=8)
    prepare(str(src), str(tmp_path / "data"), image_size=8, val_fraction=0, test_fraction=0, progress=False, workers=1)
    spec = _write(tmp_path, {"data": {"root": str(tmp_path / "data"), "image_size": 32, "batch_size": 4, "num_workers": 0},
                             "model": {"name": "timm", "args": {"backbone": "test_resnet"}},
                             "train": {"epochs": 1, "channels_last": False},
                             "output": {"dir": str(tmp_path / "runs"), "name": "r"}})
    with pytest.raises(DataError, match="has no 'val' split to validate on.*train.validate: false"):
        train(load_recipe(spec), spec=spec, progress=False)
    summary = train(load_recipe(spec, ["train.validate=false"]), spec=spec, progress=False)
    assert summary["epochs"] == 1


def test_every_miou_says_what_it_averages():
    from fashioncli.tasks.segmentation.metrics import segmentation_report

    # background and shirt in truth and prediction; pants only predicted; hat nowhere
    conf = torch.tensor([[50, 0, 2, 0], [0, 10, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]])
    report = segmentation_report(conf, ["bg", "shirt", "pants", "hat"], {"clothes": ["shirt", "pants"]})
    assert report["miou_averages"]["miou"] == {"classes": 3, "of": 4, "no_truth_pixels": ["pants", "hat"],
                                              "no_predicted_pixels": ["hat"]}
    assert report["miou"] == pytest.approx(np.mean([50 / 52, 1.0, 0.0]))
    assert report["miou_averages"]["miou_clothes"]["of"] == 3
    json.dumps(report)
