"""The task seam: a plugin adds a task that fashion has never heard of (tests/regression_plugin.py:
one number per image from a table column, scored by mean absolute error) and takes it through
prepare, train, eval, predict and export without any change to core files."""
import csv
import json

import pytest
from click.testing import CliRunner
from helpers import make_image_folder, recipe_file

from fashioncli import plugins
from fashioncli.cli import cli

import regression_plugin as regression

VALUES = {"red": 1.0, "green": 2.0, "blue": 3.0}


def fashion(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout[result.stdout.index("{"):])


@pytest.fixture
def regression_plugin():
    with plugins.plugin_registered(regression, name="regression"):
        yield


def test_a_plugin_task_goes_through_every_verb(regression_plugin, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    images = make_image_folder(tmp_path / "photos", per_class=16, size=32)
    with open(tmp_path / "photos" / "prices.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "value"])
        for colour, value in VALUES.items():
            writer.writerows([(f"{colour}/{colour}_{i}.png", value) for i in range(16)])

    prepared = fashion("prepare", tmp_path / "photos" / "prices.csv", tmp_path / "data",
                       "--importer", "value-table", "--image-size", 32)
    assert prepared["task"] == "regression" and sum(prepared["splits"].values()) == 48
    assert json.loads((tmp_path / "data" / "dataset.json").read_text())["task"] == "regression"

    recipe = recipe_file(tmp_path, tmp_path / "data", task="regression", train__epochs=12)
    trained = fashion("train", recipe, "-q")
    run = tmp_path / "runs" / "tiny"
    assert list(trained["best"]) == ["val_neg_mae"] and "val_mae" in trained["last"]  # the task picks its monitor

    summary = fashion("eval", run)
    # A model that learnt nothing predicts the mean (2.0): MAE 2/3 over three equal colour groups.
    assert summary["metrics"]["mae"] < 0.5, summary
    assert (run / "eval-test" / "predictions.csv").is_file()

    out = tmp_path / "prices.csv"
    predicted = fashion("predict", run, images / "red", images / "blue", "-o", out)
    assert predicted["rows"] == 32 and predicted["errors"] == 0
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["path", "price", "error"]
    means = {c: sum(float(r["price"]) for r in rows if f"/{c}/" in r["path"]) / 16 for c in ("red", "blue")}
    assert means["red"] < means["blue"] - 1, means

    exported = fashion("export", run, "--format", "onnx")
    assert exported["parity"]["max_abs_diff"] < 1e-3 and exported["target"] == "price"  # export fails unless parity holds
    onnx_rows = tmp_path / "onnx.csv"
    fashion("predict", run / "export" / "model.onnx", images / "red", images / "blue", "-o", onnx_rows)
    with open(onnx_rows, newline="") as f:
        again = {r["path"]: float(r["price"]) for r in csv.DictReader(f)}
    assert all(abs(again[r["path"]] - float(r["price"])) < 1e-3 for r in rows)


def test_without_the_plugin_the_task_is_unknown(tmp_path):
    result = CliRunner().invoke(cli, ["train", str(recipe_file(tmp_path, tmp_path, task="regression"))])
    assert result.exit_code == 1 and "task: 'regression' is not one of classification" in result.output
