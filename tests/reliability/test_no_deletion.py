"""No command deletes what it did not create: run names and remote output folders are checked
before anything happens, a saved recipe reruns into a new folder, and only --replace (never a
recipe key) replaces a run, and only a folder that `fashion train` made."""
import os

import pytest
import yaml
from click.testing import CliRunner
from helpers import file_server, recipe_file, snapshot

from fashioncli.cli import cli
from fashioncli.errors import FashionError, RecipeError
from fashioncli.recipe import load_recipe
from fashioncli.runs import MARKER
from fashioncli.train import train

BAD_NAMES = ["..", ".", "", "a/b", "../victim", "/tmp", "a\\b"]


def victim_folder(root):
    """A folder of the user's that no command may touch."""
    root.mkdir(parents=True)
    (root / "thesis.txt").write_text("four years of work")
    (root / "sub").mkdir()
    (root / "sub" / "data.bin").write_bytes(os.urandom(256))
    return root


@pytest.mark.parametrize("name", BAD_NAMES)
def test_run_names_that_leave_the_output_folder_are_refused(tiny_prepared, tmp_path, name, tally):
    spec = recipe_file(tmp_path, tiny_prepared)
    with pytest.raises(RecipeError, match="output.name"):
        load_recipe(spec, [f"output.name={name!r}" if name else "output.name=''"])
    tally.tried()
    tally.refused_deletion()


def test_the_quickstart_cannot_be_pointed_at_the_current_folder(tmp_path, monkeypatch, tally):
    """`fashion train quickstart --set output.name=..` deleted the folder it ran in."""
    here = victim_folder(tmp_path / "work")
    monkeypatch.chdir(here)
    before = snapshot(tmp_path)
    result = CliRunner().invoke(cli, ["train", "quickstart", "--set", "output.name=..", "--replace"])
    assert result.exit_code == 1 and "output.name" in result.output
    assert snapshot(tmp_path) == before
    tally.tried()
    tally.refused_deletion()


@pytest.mark.parametrize("output", [
    {"dir": "VICTIM", "name": ".", "exist_ok": True},
    {"dir": "VICTIM", "exist_ok": True},
    {"dir": "VICTIM/..", "name": "victim", "exist_ok": True},
])
def test_a_recipe_from_a_url_cannot_write_outside_the_working_folder(tiny_prepared, tmp_path, monkeypatch, output, tally):
    victim = victim_folder(tmp_path / "victim")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    output = {k: (v.replace("VICTIM", str(victim)) if isinstance(v, str) else v) for k, v in output.items()}
    recipe = yaml.safe_load(recipe_file(tmp_path, tiny_prepared).read_text())
    recipe["output"] = output
    before = snapshot(victim)
    with file_server({"/r.yaml": yaml.safe_dump(recipe).encode()}) as server:
        for replace in ([], ["--replace"]):
            result = CliRunner().invoke(cli, ["train", f"{server.url}/r.yaml", "-q", *replace])
            assert result.exit_code == 1, result.output
            assert ("output.dir" in result.output or "output.name" in result.output) and "Traceback" not in result.output
            tally.tried()
            tally.refused_deletion()
    assert snapshot(victim) == before
    assert tally.count_lost(len(before) - len(snapshot(victim))) == 0


def test_a_url_recipe_may_write_under_the_working_folder_and_the_command_line_decides(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = {"data": {"root": "d"}, "model": {"name": "timm", "args": {"backbone": "test_resnet"}},
            "output": {"dir": "runs/sub"}}
    with file_server({"/r.yaml": yaml.safe_dump(data).encode()}) as server:
        assert load_recipe(f"{server.url}/r.yaml")["output"]["dir"] == "runs/sub"
        outside = str(tmp_path.parent / "elsewhere")
        assert load_recipe(f"{server.url}/r.yaml", [f"output.dir={outside}"])["output"]["dir"] == outside


@pytest.fixture
def finished_run(tiny_prepared, tmp_path):
    spec = recipe_file(tmp_path, tiny_prepared, train__epochs=1)
    run = tmp_path / "runs" / "tiny"
    train(load_recipe(spec), spec=spec, progress=False)
    (run / "eval-test").mkdir()
    (run / "eval-test" / "metrics.json").write_text("{}")
    (run / "predictions.csv").write_text("path,label\n")
    return run


def test_rerunning_a_saved_recipe_leaves_the_run_byte_identical(finished_run, tally):
    """The saved recipe of an old run carried `exist_ok: true`: a rerun deleted best.pt, eval and predictions."""
    saved = finished_run / "recipe.yaml"
    recipe = yaml.safe_load(saved.read_text())
    recipe["output"]["exist_ok"] = True  # as saved by the version that honoured it
    saved.write_text(yaml.safe_dump(recipe))
    before = snapshot(finished_run)
    result = CliRunner().invoke(cli, ["train", str(saved), "-q"])
    assert result.exit_code == 0, result.output
    assert "--replace" in result.output  # the note: the key no longer replaces anything
    assert snapshot(finished_run) == before
    assert (finished_run.parent / "tiny-2" / "checkpoints" / "best.pt").is_file()
    assert tally.count_lost(len(before) - len(snapshot(finished_run))) == 0
    tally.refused_deletion()


def test_replace_takes_the_place_of_a_run_only_once_the_new_one_writes(finished_run, tmp_path, monkeypatch):
    spec = tmp_path / "tiny.yaml"
    from fashioncli import train as training

    seen = []
    real = training.Trainer.fit

    def fit(self):  # the new run is writing: the old one must be gone, and nothing left aside
        seen.append(sorted(p.name for p in finished_run.iterdir()))
        seen.append([p.name for p in finished_run.parent.iterdir() if ".replaced-" in p.name])
        return real(self)

    monkeypatch.setattr(training.Trainer, "fit", fit)
    train(load_recipe(spec), spec=spec, progress=False, replace=True)
    assert "eval-test" not in seen[0] and "recipe.yaml" in seen[0] and MARKER in seen[0]
    assert seen[1] == []  # the old run, moved aside, was deleted once the new run had started
    assert not (finished_run / "predictions.csv").exists()
    assert not (finished_run.parent / "tiny-2").exists()


def test_a_run_that_fails_to_start_leaves_the_replaced_run_in_place(finished_run, tmp_path, monkeypatch, tally):
    from fashioncli import train as training

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    spec = tmp_path / "tiny.yaml"
    before = snapshot(finished_run)
    monkeypatch.setattr(training, "write_text", broken)  # the new run's first write fails
    with pytest.raises(OSError):
        train(load_recipe(spec), spec=spec, progress=False, replace=True)
    assert snapshot(finished_run) == before
    assert [p.name for p in finished_run.parent.iterdir()] == ["tiny"]
    tally.injected()


def test_replace_refuses_a_folder_that_fashion_did_not_make(tiny_prepared, tmp_path, tally):
    victim = victim_folder(tmp_path / "runs" / "tiny")
    spec = recipe_file(tmp_path, tiny_prepared, train__epochs=1)
    before = snapshot(victim)
    with pytest.raises(FashionError, match="not a fashion run"):
        train(load_recipe(spec), spec=spec, progress=False, replace=True)
    # a link to a run is not a run either: replacing it would remove the link's target's neighbours
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / MARKER).write_text("{}")
    (tmp_path / "runs" / "linked").symlink_to(tmp_path / "real")
    with pytest.raises(FashionError, match="not a fashion run"):
        train(load_recipe(spec, ["output.name=linked"]), spec=spec, progress=False, replace=True)
    assert snapshot(victim) == before and (tmp_path / "real" / MARKER).is_file()
    tally.tried(2)
    tally.refused_deletion(2)


def test_resume_and_replace_together_are_refused(finished_run):
    result = CliRunner().invoke(cli, ["train", str(finished_run / "recipe.yaml"), "--resume", "--replace"])
    assert result.exit_code == 2 and "one of them" in result.output
