"""`fashion train --resume` with a changed recipe: what the checkpoint cannot follow (model, classes,
image size, optimizer) is refused with every differing key, leaving the run byte-identical; more
epochs apply and are recorded in the run."""
import json
import shutil

import pytest
import yaml
from click.testing import CliRunner
from helpers import make_image_folder, recipe_file

from fashioncli import resume
from fashioncli.checkpoint import load_checkpoint
from fashioncli.cli import cli
from fashioncli.errors import RecipeError
from fashioncli.prepare import prepare
from fashioncli.recipe import dump, load_recipe
from fashioncli.train import train

from .test_bad_configuration import one_line_error


@pytest.fixture(scope="module")
def trained(tiny_prepared, tmp_path_factory):
    """One epoch of the tiny recipe (adam, 32 px, three classes): the run every test resumes a copy of."""
    base = tmp_path_factory.mktemp("resume-changes")
    spec = recipe_file(base, tiny_prepared, train__epochs=1)
    train(load_recipe(spec), spec=spec, progress=False)
    return base / "runs" / "tiny"


@pytest.fixture
def run(trained, tmp_path):
    return shutil.copytree(trained, tmp_path / "runs" / "tiny")


def snapshot(run):
    return {p.relative_to(run): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


def resume_with(run, *overrides):
    sets = [arg for o in overrides for arg in ("--set", o)]
    return CliRunner().invoke(cli, ["train", str(run / "recipe.yaml"), "-q", "--resume", *sets])


@pytest.mark.parametrize("overrides, named", [
    (["model.args.backbone=test_efficientnet"], ['model.args.backbone: "test_resnet" -> "test_efficientnet"']),
    (["optimizer.name=sgd", "optimizer.lr=0.1"], ['optimizer.name: "adam" -> "sgd"', "optimizer.lr: 0.003 -> 0.1"]),
    (["data.image_size=48"], ["data.image_size: 32 -> 48"]),
    (["data.classes=[red, green]"], ['data.classes: null -> ["red", "green"]']),
    # what may change does not let the rest through, and is not listed as refused
    (["train.epochs=2", "data.image_size=48"], ["data.image_size: 32 -> 48"]),
], ids=["backbone", "optimizer", "image_size", "classes", "epochs_and_image_size"])
def test_a_change_the_checkpoint_cannot_follow_is_refused_and_the_run_kept(run, overrides, named, tally):
    tally.tried()
    before = snapshot(run)
    message = one_line_error(resume_with(run, *overrides))
    assert "--resume" in message and str(run / "recipe.yaml") in message
    assert all(key in message for key in named), message
    assert "train.epochs: 1" not in message
    after = snapshot(run)
    assert tally.count_lost(len(set(before) - set(after))) == 0
    assert after == before  # recipe.yaml, checkpoints, metrics: byte for byte


def test_more_epochs_continue_the_run_and_are_recorded(run, tally):
    tally.tried()
    first = load_checkpoint(run / "checkpoints" / "last.pt")[0]["model"]
    result = resume_with(run, "train.epochs=2")
    assert result.exit_code == 0, result.output
    assert "resuming after epoch 1 with train.epochs: 1 -> 2" in result.output
    epochs = [row.split(",")[0] for row in (run / "metrics.csv").read_text().splitlines()[1:]]
    assert tally.count_lost(2 - len(set(epochs))) == 0 and epochs == ["1", "2"]
    payload, meta = load_checkpoint(run / "checkpoints" / "last.pt")
    assert payload["epoch"] == 2 and meta["recipe"]["train"]["epochs"] == 2
    assert any((payload["model"][k] != first[k]).any() for k in first)  # it trained on from epoch 1
    assert yaml.safe_load((run / "recipe.yaml").read_text())["train"]["epochs"] == 2
    (entry,) = json.loads((run / resume.LOG).read_text())
    assert entry["epoch"] == 1 and entry["changed"] == {"train.epochs": [1, 2]}
    # Resumed again with the run's recipe, now the new one: nothing to change, nothing rewritten.
    saved = (run / "recipe.yaml").read_bytes()
    assert resume_with(run).exit_code == 0
    assert (run / "recipe.yaml").read_bytes() == saved
    assert len(json.loads((run / resume.LOG).read_text())) == 1


def test_a_dataset_with_other_classes_under_the_run_is_a_clean_error(run, tmp_path, tally):
    """Same recipe, but data.root now holds two classes: the weights no longer fit (was a traceback)."""
    tally.tried()
    prepare(str(make_image_folder(tmp_path / "src", classes=("red", "green"), per_class=6)), str(tmp_path / "two"),
            image_size=32, progress=False)
    saved = yaml.safe_load((run / "recipe.yaml").read_text())
    saved["data"]["root"] = str(tmp_path / "two")  # as if re-prepared in place
    (run / "recipe.yaml").write_text(dump(saved))
    before = snapshot(run)
    message = one_line_error(resume_with(run))
    assert "does not fit the model" in message and "last.pt" in message
    assert snapshot(run) == before


def fake_run(tmp_path, recipe):
    """A run folder as check() sees it: the saved recipe and a last.pt (check never opens it)."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.pt").write_bytes(b"")
    (run / "recipe.yaml").write_text(dump(recipe))
    return run


def test_check_knows_what_each_schedule_can_follow(tiny_prepared, tmp_path, tally):
    tally.tried(4)
    spec = recipe_file(tmp_path, tiny_prepared, train__epochs=1)
    onecycle = load_recipe(spec, ["scheduler.name=onecycle"])
    run = fake_run(tmp_path, onecycle)
    # OneCycleLR keeps its length in the state it saves: more epochs cannot apply to it.
    with pytest.raises(RecipeError, match=r"train\.epochs: 1 -> 3"):
        resume.check(load_recipe(spec, ["scheduler.name=onecycle", "train.epochs=3"]), run)
    # What only says when to stop, where to run or what eval does may change; a missing arg is '(unset)'.
    changes = resume.check(load_recipe(spec, ["scheduler.name=onecycle", "train.early_stopping.patience=2",
                                              "data.num_workers=1", "eval.topk=2"]), run)
    assert changes == {"data.num_workers": (0, 1), "train.early_stopping.patience": (None, 2), "eval.topk": (5, 2)}
    with pytest.raises(RecipeError, match=r"model\.args\.drop_rate: \(unset\) -> 0\.1"):
        resume.check(load_recipe(spec, ["scheduler.name=onecycle", "model.args.drop_rate=0.1"]), run)
    # Staged runs: the stages set the epochs (saved as their sum), so the recipe's own value is no change.
    stages = ["train.stages=[{epochs: 1, backbone: none, lr: 0.01}, {epochs: 2, backbone: all, lr: 0.001}]"]
    staged = load_recipe(spec, stages)
    shutil.rmtree(run)
    run = fake_run(tmp_path, {**staged, "train": {**staged["train"], "epochs": 3}})
    assert resume.check(staged, run) == {}
    # No last.pt yet (killed before the first epoch): the run starts over, any recipe goes.
    (run / "checkpoints" / "last.pt").unlink()
    assert resume.check(load_recipe(spec, ["data.image_size=48"]), run) is None
