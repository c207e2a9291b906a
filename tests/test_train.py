"""Training: run directory, resume, early stopping, bad losses; and the five verbs end to end via the CLI."""
import csv
import json

import pytest
import torch
import yaml
from click.testing import CliRunner
from helpers import recipe_file, stop_then_resume

from fashioncli.checkpoint import load_checkpoint, load_model
from fashioncli.cli import cli
from fashioncli.errors import FashionError
from fashioncli.recipe import load_recipe
from fashioncli.train import train


def metrics(run):
    with open(run / "metrics.csv") as f:
        return list(csv.DictReader(f))


def test_run_directory_holds_everything(tiny_prepared, tmp_path):
    spec = recipe_file(tmp_path, tiny_prepared)
    summary = train(load_recipe(spec), spec=spec, progress=False)
    run = tmp_path / "runs" / "tiny"
    assert summary["run_dir"] == str(run)
    assert {"recipe.yaml", "metrics.csv", "curves.png", "checkpoints"} <= {p.name for p in run.iterdir()}
    rows = metrics(run)
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert float(rows[-1]["val_accuracy"]) >= 0.6  # three colours: learnable in two epochs
    model, meta = load_model(run)
    assert meta["classes"] == ["blue", "green", "red"] and meta["preprocessing"]["image_size"] == 32
    # The saved recipe reruns the run, into a new directory.
    again = train(load_recipe(run / "recipe.yaml"), spec=run / "recipe.yaml", progress=False)
    assert again["run_dir"] == str(tmp_path / "runs" / "tiny-2")


def test_checkpoint_refuses_pickled_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "meta_json": "{}", "x": Evil()}, path)
    with pytest.raises(FashionError, match="unsafe objects"):
        load_checkpoint(path)


def test_resume_after_a_stop_matches_an_uninterrupted_run(tiny_prepared, tmp_path, monkeypatch):

    straight = recipe_file(tmp_path, tiny_prepared, train__deterministic=True, output__name="straight")
    train(load_recipe(straight), spec=straight, progress=False)

    spec = recipe_file(tmp_path, tiny_prepared, train__deterministic=True)
    run = tmp_path / "runs" / "tiny"
    resumed = stop_then_resume(spec, run, monkeypatch)
    assert resumed["run_dir"] == str(run) and [r["epoch"] for r in metrics(run)] == ["1", "2"]

    a, _ = load_checkpoint(run / "checkpoints" / "last.pt")
    b, _ = load_checkpoint(tmp_path / "runs" / "straight" / "checkpoints" / "last.pt")
    for key in a["model"]:
        assert torch.allclose(a["model"][key].float(), b["model"][key].float(), atol=1e-6), key


def test_resume_can_extend_the_epochs(tiny_prepared, tmp_path):
    spec = recipe_file(tmp_path, tiny_prepared, train__epochs=1)
    train(load_recipe(spec), spec=spec, progress=False)
    run = tmp_path / "runs" / "tiny"
    resumed = train(load_recipe(run / "recipe.yaml", ["train.epochs=2"]), spec=run / "recipe.yaml", resume=True,
                    progress=False)
    assert resumed["epochs"] == 2 and [r["epoch"] for r in metrics(run)] == ["1", "2"]


def test_resume_without_a_run_is_an_error(tiny_prepared, tmp_path):
    spec = recipe_file(tmp_path, tiny_prepared)
    with pytest.raises(FashionError, match="no run to resume"):
        train(load_recipe(spec), spec=spec, resume=True, progress=False)


def test_early_stopping(tiny_prepared, tmp_path):
    # lr 0: nothing improves after the first epoch, so patience 1 stops at epoch 2 of 6.
    spec = recipe_file(tmp_path, tiny_prepared, optimizer__lr=1e-12, train__epochs=6,
                       train__early_stopping={"patience": 1, "monitor": "val_loss", "mode": "min"})
    summary = train(load_recipe(spec), spec=spec, progress=False)
    assert summary["epochs"] < 6


def test_non_finite_loss_stops_with_a_clear_message(tiny_prepared, tmp_path):
    spec = recipe_file(tmp_path, tiny_prepared, optimizer__lr=1e30, optimizer__name="sgd", train__epochs=3)
    with pytest.raises(FashionError, match="loss became (nan|inf)"):
        train(load_recipe(spec), spec=spec, progress=False)


@pytest.mark.parametrize("schedule", ["cosine", "step", "exponential", "onecycle", "none"])
def test_schedules_with_warmup(schedule):
    from fashioncli.optim import build_scheduler
    from fashioncli.recipe import DEFAULTS

    model = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    cfg = {**DEFAULTS["scheduler"], "name": schedule, "warmup_epochs": 1, "step_size": 1, "gamma": 0.5}
    sched = build_scheduler(opt, cfg, epochs=3, steps_per_epoch=4, base_lr=0.1)
    lrs = []
    for _ in range(12):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    if schedule != "onecycle":
        assert lrs[0] == pytest.approx(0.1 / 4) and lrs[3] == pytest.approx(0.1)  # linear warm-up
    if schedule in ("cosine", "step", "exponential", "onecycle"):
        assert lrs[-1] < 0.1 * 0.6
    if schedule == "step":
        assert lrs[4] == pytest.approx(0.05) and lrs[8] == pytest.approx(0.025)


def test_five_verbs_end_to_end_from_the_shell(tmp_path, monkeypatch):
    from helpers import make_image_folder

    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    make_image_folder(tmp_path / "photos", per_class=10, size=32)

    def ok(*args):
        result = runner.invoke(cli, list(args), catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    ok("prepare", "photos", "data/photos", "--image-size", "32")
    recipe = recipe_file(tmp_path, tmp_path / "data" / "photos", train__epochs=1)
    ok("train", str(recipe), "-q")
    run = tmp_path / "runs" / "tiny"
    summary = json.loads(ok("eval", str(run)))
    assert 0 <= summary["metrics"]["accuracy"] <= 1 and (run / "eval-test" / "confusion_matrix.png").is_file()
    ok("export", str(run), "--format", "onnx")
    onnx_file = run / "export" / "model.onnx"
    ok("predict", str(run), "photos", "-o", "a.csv")
    ok("predict", str(onnx_file), "photos", "-o", "b.csv")
    a = list(csv.DictReader(open(tmp_path / "a.csv")))
    b = list(csv.DictReader(open(tmp_path / "b.csv")))
    assert len(a) == len(b) == 30
    assert [r["label"] for r in a] == [r["label"] for r in b]


def test_run_directory_resolves_to_the_checkpoint_the_recipe_names(tmp_path):
    from fashioncli.checkpoint import resolve_path

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    for name in ("best", "last"):
        (run / "checkpoints" / f"{name}.pt").write_bytes(b"")
    assert resolve_path(run).name == "best.pt"
    (run / "recipe.yaml").write_text(yaml.safe_dump({"eval": {"checkpoint": "last"}}))
    assert resolve_path(run).name == "last.pt"
