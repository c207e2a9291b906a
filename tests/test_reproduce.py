"""`fashion reproduce`: a manifest's rows prepared once, trained, evaluated and tabulated; a
killed reproduction reruns only what did not finish."""
import json

import pytest
import yaml
from click.testing import CliRunner
from helpers import fashion, finish, kill_when, make_image_folder

from fashioncli.cli import cli
from fashioncli.errors import RecipeError
from fashioncli.reproduce import bundled_reports, load_manifest, plan
from fashioncli.reproduce.manifest import parse


def tiny_recipe(path, src, root, epochs):
    path.write_text(yaml.safe_dump({
        "data": {"root": str(root), "image_size": 32, "batch_size": 8, "num_workers": 0,
                 "prepare": {"source": str(src), "image_size": 32}},
        "model": {"name": "timm", "args": {"backbone": "test_resnet"}},
        "optimizer": {"name": "adam", "lr": 3e-3},
        "train": {"epochs": epochs, "channels_last": False, "deterministic": True},
    }))


@pytest.fixture
def manifest(tmp_path):
    src = make_image_folder(tmp_path / "src", per_class=30, size=32, splits=["train", "val", "test"])
    tiny_recipe(tmp_path / "short.yaml", src, tmp_path / "prepared", 1)
    tiny_recipe(tmp_path / "long.yaml", src, tmp_path / "prepared", 4)
    path = tmp_path / "manifest.yaml"
    path.write_text(yaml.safe_dump({
        "report": "tiny", "title": "two rows", "columns": {"accuracy": "test accuracy"},
        "rows": [{"name": "short", "recipes": "short.yaml", "reference": {"accuracy": 0.5}},
                 {"name": "long", "recipes": "long.yaml", "minutes": {"cpu": 0.5}}],
    }))
    return path


def summary_of(stdout):
    return json.loads(stdout[stdout.index("{"):])


def last_epoch(run):
    path = run / "checkpoints" / "last.json"
    return json.loads(path.read_text())["epoch"] if path.exists() else 0


def test_killed_reproduction_skips_finished_rows_and_resumes_the_interrupted_one(manifest, tmp_path):
    base = tmp_path / "out" / "tiny"
    command = ("reproduce", manifest, "--out", tmp_path / "out", "-q")
    assert kill_when(fashion(*command, cwd=tmp_path), lambda: last_epoch(base / "runs" / "long") >= 1)
    assert (base / "rows" / "short.json").is_file() and not (base / "rows" / "long.json").exists()
    assert (tmp_path / "prepared" / "dataset.json").is_file()  # prepared by the first row, once

    summary = summary_of(finish(fashion(*command, cwd=tmp_path)))
    assert summary["measured"] == 2
    state = json.loads((base / "rows" / "long.json").read_text())
    assert state["resumed"] is True and last_epoch(base / "runs" / "long") == 4
    table = json.loads((base / "table.json").read_text())
    short, long = table["rows"]
    cell = short["cells"]["accuracy"]
    assert cell["report"] == 0.5 and 0 <= cell["measured"] <= 1
    assert cell["difference"] == pytest.approx(cell["measured"] - 0.5, abs=1e-4)
    assert long["cells"]["accuracy"]["report"] is None and long["resumed"] is True
    assert long["hardware"].startswith(("cpu:", "cuda:"))
    md = (base / "table.md").read_text()
    assert "| short |" in md and "(resumed)" in md and f"{cell['measured']:.4f}" in md
    assert (base / "table.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # A third run trains nothing: both rows finished with these recipes.
    again = summary_of(finish(fashion(*command, cwd=tmp_path)))
    assert again["measured"] == 2
    assert json.loads((base / "rows" / "long.json").read_text())["finished"] == state["finished"]


def test_dry_run_plans_without_running(manifest, tmp_path):
    result = CliRunner().invoke(cli, ["reproduce", str(manifest), "--dry-run", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "out").exists() and not (tmp_path / "prepared").exists()
    assert "~0.5 min (recorded in the manifest)" in result.output
    assert "~0.5 min (as 'long'" not in result.output  # the short row trains another number of epochs
    statuses = [row["status"] for row in summary_of(result.stdout)["rows"]]
    assert statuses == ["new", "new"]


def test_report_001_plans_its_twelve_cpu_rows():
    steps = plan(load_manifest("001"), "cpu")
    assert len(steps) == 12
    assert {s.spec for s in steps} == {f"report001_{m}_{loss}_cpu" for m in ("unet", "deeplabv3plus")
                                       for loss in ("ce", "focal2", "focal5", "dice", "dice_ce", "miou")}
    # Every cell has the report's figure, from the recipes' eval.reference.
    from fashioncli.reproduce.runner import reference

    assert all(reference(s, c) is not None for s in steps for c in ("fg_bg_miou", "miou_evaluated", "miou"))


@pytest.mark.parametrize("report", bundled_reports())
def test_bundled_manifests_name_recipes_that_load(report):
    for scale in ("cpu", "full"):
        for step in plan(load_manifest(report), scale):
            assert step.spec is None or step.recipe["output"]["dir"].endswith("runs")


@pytest.mark.parametrize("data, key", [
    ({"report": "x", "columns": {"a": "A"}, "rows": [{"name": "r", "recipes": {"gpu": "q"}}]}, "rows[0].recipes.gpu"),
    ({"report": "x", "columns": {"a": "A"}, "rows": [{"name": "r", "recipes": "q", "reference": {"b": 1}}]},
     "rows[0].reference.b"),
    ({"report": "x", "columns": {"a": "A"}, "rows": [{"name": "r", "recipes": "q", "minutes": {"cpu": "ten"}}]},
     "rows[0].minutes.cpu"),
    ({"report": "x", "columns": {"a": "A"}, "rows": [{"recipes": "q"}]}, "rows[0].name"),
    ({"report": "x", "rows": []}, "'columns' is required"),
])
def test_manifest_errors_name_the_key(data, key, tmp_path):
    with pytest.raises(RecipeError, match=key.replace("[", r"\[").replace("]", r"\]")):
        parse(data, tmp_path / "m.yaml")


def test_unknown_report_lists_the_bundled_ones():
    result = CliRunner().invoke(cli, ["reproduce", "01", "--dry-run"])
    assert result.exit_code != 0 and "bundled: 000, 001, 002, 003, 004" in result.output
