"""`fashion runs` and `fashion runs compare` on run folders written by fashion's own writers."""
import json
import os

import pytest
from click.testing import CliRunner

from fashioncli import recipe as recipes
from fashioncli.cli import cli
from fashioncli.io import write_json, write_text
from fashioncli.locks import Lock
from fashioncli.runs import claim


def make_run(root, name, lr, epochs_done, epochs=3, patience=None, best_epoch=None, accuracy=0.5, test=None):
    """runs/NAME as `fashion train` leaves it: marker, recipe.yaml, checkpoints' JSON, an eval summary."""
    recipe = recipes.validate({
        "data": {"root": "/data/clothing-small"}, "model": {"name": "timm", "args": {"backbone": "test_resnet"}},
        "optimizer": {"lr": lr}, "train": {"epochs": epochs, "early_stopping": {"patience": patience}},
    }, check_components=False)
    run = root / name
    with claim(run, recipe=f"{name}.yaml"):
        write_text(run / "recipe.yaml", recipes.dump(recipe))
    stopping = {**recipe["train"]["early_stopping"], "monitor": "val_accuracy"}  # as fit() resolves 'auto'
    trained = {**recipe, "train": {**recipe["train"], "early_stopping": stopping}}
    best_epoch = best_epoch or epochs_done
    for which, epoch, value in (("best", best_epoch, accuracy), ("last", epochs_done, accuracy / 2)):
        write_json(run / "checkpoints" / f"{which}.json", {
            "task": "classification", "recipe": trained, "epoch": epoch,
            "metrics": {"epoch": epoch, "train_loss": 1.0 / epoch, "val_accuracy": value}})
    if test is not None:
        write_json(run / "eval-test" / "summary.json", {"split": "test", "metrics": {"accuracy": test}, "seconds": 3.0})
    return run


@pytest.fixture
def runs_dir(tmp_path):
    root = tmp_path / "runs"
    make_run(root, "a", lr=1e-3, epochs_done=3, accuracy=0.75, test=0.7)
    make_run(root, "b", lr=3e-3, epochs_done=4, epochs=10, patience=2, best_epoch=2, accuracy=0.8)
    make_run(root, "c", lr=1e-3, epochs_done=1)
    (root / "mlruns").mkdir()  # not a run: no marker
    return root


def invoke(*args):
    result = CliRunner().invoke(cli, list(args))
    return result


def test_runs_lists_every_run(runs_dir):
    result = invoke("runs", "--runs-dir", str(runs_dir), "--json")
    assert result.exit_code == 0, result.output
    listed = {r["name"]: r for r in json.loads(result.output)}
    assert set(listed) == {"a", "b", "c"}
    a = listed["a"]
    assert (a["recipe"], a["dataset"], a["task"]) == ("a.yaml", "clothing-small", "classification")
    assert a["best"] == {"metric": "val_accuracy", "value": 0.75, "epoch": 3}
    assert (a["epochs"], a["total_epochs"], a["status"]) == (3, 3, "finished")
    assert a["seconds"] is not None and a["seconds"] >= 0 and a["started"]
    assert listed["b"]["status"] == "stopped early" and listed["c"]["status"] == "stopped"

    text = invoke("runs", "--runs-dir", str(runs_dir)).output.splitlines()
    assert text[0].split() == ["run", "recipe", "dataset", "task", "best", "epochs", "started", "time", "status"]
    line_b = next(line for line in text if line.startswith("b "))
    assert "val_accuracy=0.8" in line_b and "4/10" in line_b and line_b.endswith("stopped early")


def test_a_run_being_trained_shows_as_running(runs_dir):
    with Lock(runs_dir / "c"):
        listed = {r["name"]: r for r in json.loads(invoke("runs", "--runs-dir", str(runs_dir), "--json").output)}
    assert listed["c"]["status"] == f"running (pid {os.getpid()})"
    listed = {r["name"]: r for r in json.loads(invoke("runs", "--runs-dir", str(runs_dir), "--json").output)}
    assert listed["c"]["status"] == "stopped"


def test_compare_shows_recipe_differences_and_metrics(runs_dir):
    result = invoke("runs", "compare", "a", str(runs_dir / "b"), "--runs-dir", str(runs_dir), "--json")
    assert result.exit_code == 0, result.output
    compared = json.loads(result.output)
    assert compared["runs"] == ["a", "b"]
    # only what differs: lr, epochs, patience; not the shared data.root or model
    assert compared["recipe"] == {"optimizer.lr": [0.001, 0.003], "train.epochs": [3, 10],
                                  "train.early_stopping.patience": [None, 2]}
    assert compared["metrics"]["val_accuracy"] == [0.75, 0.8]
    assert compared["metrics"]["eval-test/accuracy"] == [0.7, None]

    text = invoke("runs", "--runs-dir", str(runs_dir), "compare", "a", "b").output.splitlines()
    assert text[0].split() == ["a", "b"]
    assert next(line for line in text if line.startswith("optimizer.lr")).split() == ["optimizer.lr", "0.001", "0.003"]
    assert next(line for line in text if line.startswith("eval-test/accuracy")).split() == ["eval-test/accuracy", "0.7", "-"]


def test_compare_of_identical_recipes_says_so(runs_dir):
    out = invoke("runs", "compare", "a", "c", "--runs-dir", str(runs_dir)).output
    assert "(the recipes are the same)" in out


def test_unknown_run_is_one_line_listing_the_runs(runs_dir):
    result = invoke("runs", "compare", "a", "bb", "--runs-dir", str(runs_dir))
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"Error: no run 'bb' (neither a run folder nor a run in '{runs_dir}') (did you mean 'b'?); runs there: a, b, c"]
    missing = invoke("runs", "--runs-dir", str(runs_dir / "nope"))
    assert missing.exit_code == 1 and "is not a folder of runs" in missing.output


def test_runs_help():
    for args in (["runs", "--help"], ["runs", "compare", "--help"]):
        result = invoke(*args)
        assert result.exit_code == 0 and "Examples" in result.output
