"""CLI habits users bring from yolo and timm: listing, versions, bare overrides, progress, quick subsets,
completion and help (issue 14, item 5)."""
import io
import json
from collections import Counter

import click
import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from fashioncli import __version__
from fashioncli.cli import cli
from fashioncli.recipe import bundled_dir, bundled_names

from helpers import recipe_file, tiny_checkpoint


@pytest.fixture
def runner():
    return CliRunner()


def invoke(runner, *args, **kwargs):
    result = runner.invoke(cli, list(args), **kwargs)
    assert result.exit_code == 0, result.output
    return result


# ---------------------------------------------------------------- fashion recipes

def test_recipes_list_shows_each_description(runner):
    lines = invoke(runner, "recipes").stdout.splitlines()
    assert len(lines) == len(bundled_names())
    written = yaml.safe_load((bundled_dir() / "quickstart.yaml").read_text())["description"]
    assert any(line.split(None, 1) == ["quickstart", written] for line in lines)


@pytest.mark.parametrize("pattern,expected", [
    ("quick*", ["quickstart", "quickstart_segmentation"]),  # a glob
    ("UNET_DICE", ["report001_unet_dice", "report001_unet_dice_ce", "report001_unet_dice_ce_cpu",
                   "report001_unet_dice_cpu"]),  # a substring, any case
])
def test_recipes_filter_by_name_as_json(runner, pattern, expected):
    items = json.loads(invoke(runner, "recipes", pattern, "--json").stdout)
    assert [r["name"] for r in items] == expected
    segmentation = {r["name"]: r for r in items}.get("quickstart_segmentation")
    if segmentation:
        assert segmentation["task"] == "segmentation" and segmentation["model"] == "unet" and segmentation["description"]


def test_recipes_filter_without_match_is_one_line(runner):
    result = runner.invoke(cli, ["recipes", "zzz*"])
    assert result.exit_code == 1 and "no bundled recipe name fits 'zzz*'" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_recipes_show_takes_bare_overrides_and_json(runner):
    shown = json.loads(invoke(runner, "recipes", "quickstart", "train.epochs=7", "--set", "data.fraction=0.5",
                              "--json").stdout)
    assert shown["train"]["epochs"] == 7 and shown["data"]["fraction"] == 0.5


# ---------------------------------------------------------------- fashion models and version

def test_models_lists_registered_models_and_timm_backbones(runner):
    import timm

    found = json.loads(invoke(runner, "models", "efficientnet_lite*", "--json").stdout)
    assert found["timm"] == timm.list_models("efficientnet_lite*") and found["registered"] == []
    found = json.loads(invoke(runner, "models", "timm", "--json").stdout)
    assert [e["name"] for e in found["registered"]] == ["timm", "timm_prototype"]
    assert found["registered"][0]["plugin"] == "fashion_plugins.models.timm_models"
    pretrained = json.loads(invoke(runner, "models", "efficientnet_lite*", "--pretrained", "--json").stdout)["timm"]
    assert pretrained == timm.list_models("efficientnet_lite*", pretrained=True)
    text = invoke(runner, "models", "unet").stdout
    assert "Registered models" in text and "  unet " in text and "timm backbones fitting 'unet'" in text


def test_version_reports_torch_cuda_onnxruntime_and_plugins(runner):
    import onnxruntime
    import torch

    from fashioncli.plugins import list_plugins

    info = json.loads(invoke(runner, "version", "--json").stdout)
    assert info["fashion"] == __version__ and info["torch"] == torch.__version__
    assert info["cuda"]["available"] == torch.cuda.is_available() and info["cuda"]["version"] == torch.version.cuda
    assert info["onnxruntime"] == onnxruntime.__version__
    assert info["plugins"]["total"] == len(list_plugins(all_plugins=True))
    text = invoke(runner, "--version").stdout
    assert text.startswith(f"fashion {__version__}\n") and f"torch {torch.__version__}" in text
    assert f"onnxruntime {onnxruntime.__version__}" in text and f"plugins {info['plugins']['total']} " in text
    assert text == invoke(runner, "version").stdout


# ---------------------------------------------------------------- overrides

def test_bare_overrides_after_the_recipe_work_as_set(runner, monkeypatch):
    import fashioncli.train

    seen = []
    monkeypatch.setattr(fashioncli.train, "train", lambda recipe, **kw: seen.append(recipe) or {})
    invoke(runner, "train", "quickstart", "train.epochs=3", "data.batch_size=8")
    invoke(runner, "train", "quickstart", "--set", "train.epochs=3", "--set", "data.batch_size=8")
    invoke(runner, "train", "quickstart", "--fraction", "0.25")
    assert seen[0] == seen[1] and seen[0]["train"]["epochs"] == 3 and seen[0]["data"]["batch_size"] == 8
    assert seen[2]["data"]["fraction"] == 0.25


@pytest.mark.parametrize("args,message", [
    (["--set", "epochs=3"], "epochs: unknown key (did you mean 'train.epochs'?)"),
    (["epochs=3"], "epochs: unknown key (did you mean 'train.epochs'?)"),
    (["data.epoch=3"], "data.epoch: unknown key (did you mean 'train.epochs'?)"),
    (["lr=0.1"], "lr: unknown key (did you mean 'optimizer.lr'?)"),
    (["seed=1"], "(did you mean 'train.seed' or 'data.prepare.seed'?)"),
    (["train.epochz=3"], "train.epochz: unknown key (did you mean 'epochs'?)"),
    (["epochs"], "'epochs': expected KEY=VALUE"),
])
def test_misplaced_keys_suggest_their_dotted_path_in_one_line(runner, args, message):
    result = runner.invoke(cli, ["train", "quickstart", *args])
    assert result.exit_code == 1 and message in result.output
    assert len(result.output.strip().splitlines()) == 1


# ---------------------------------------------------------------- progress on stderr

class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_only_on_a_terminal_and_never_with_quiet(monkeypatch):
    import sys

    from fashioncli.progress import bar, status

    for stream, enabled, shown in [(Terminal(), True, True), (io.StringIO(), True, False), (Terminal(), False, False)]:
        monkeypatch.setattr(sys, "stderr", stream)
        assert list(bar(range(3), "eval", enabled=enabled)) == [0, 1, 2]
        assert ("eval" in stream.getvalue()) == shown
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    status("export: writing", enabled=False)
    status("export: checking")
    assert stream.getvalue() == "export: checking\n"


@pytest.fixture
def bars(monkeypatch):
    """The labels of the progress bars asked for, and whether each was enabled."""
    import fashioncli.progress

    asked, real = [], fashioncli.progress.bar
    monkeypatch.setattr(fashioncli.progress, "bar",
                        lambda it, desc, enabled=True, **kw: asked.append((desc, enabled)) or real(it, desc, enabled, **kw))
    return asked


def test_eval_shows_a_progress_bar_unless_quiet(runner, tmp_path, tiny_prepared, bars):
    ckpt = tiny_checkpoint(tmp_path, data_root=tiny_prepared)
    summary = json.loads(invoke(runner, "eval", str(ckpt), "-o", str(tmp_path / "e1")).stdout)
    assert summary["num_samples"] > 0 and bars == [("eval test", True)]
    bars.clear()
    invoke(runner, "eval", str(ckpt), "-o", str(tmp_path / "e2"), "-q")
    assert bars == [(None, False)]


def test_export_says_what_it_does_on_stderr_and_json_on_stdout(runner, tmp_path, tiny_prepared, monkeypatch):
    import fashioncli.export

    ckpt = tiny_checkpoint(tmp_path, data_root=tiny_prepared)
    result = invoke(runner, "export", str(ckpt), "--format", "torchscript")  # faster to write than ONNX
    assert json.loads(result.stdout)["format"] == "torchscript"
    lines = result.stderr.splitlines()
    assert lines[0].startswith("export: writing") and lines[1].startswith("export: checking it against PyTorch")
    asked = []
    monkeypatch.setattr(fashioncli.export, "export", lambda *a, **kw: asked.append(kw["progress"]) or {})
    invoke(runner, "export", str(ckpt), "-q")
    assert asked == [False]


# ---------------------------------------------------------------- data.fraction

def test_seeded_subset_keeps_each_class_share():
    from fashioncli.data.splits import seeded_subset

    labels = np.repeat([0, 1, 2], [40, 20, 1])
    rows = seeded_subset(range(len(labels)), labels, 0.25, seed=3)
    assert Counter(labels[rows].tolist()) == {0: 10, 1: 5, 2: 1}  # every class keeps one row
    assert rows.tolist() == seeded_subset(range(len(labels)), labels, 0.25, seed=3).tolist()
    assert rows.tolist() != seeded_subset(range(len(labels)), labels, 0.25, seed=4).tolist()
    unlabelled = seeded_subset(range(100), None, 0.3, seed=0)
    assert len(unlabelled) == 30 and len(set(unlabelled.tolist())) == 30


def test_fraction_trains_on_the_same_stratified_subset(runner, tmp_path, tiny_prepared, bars):
    from fashioncli.data.dataset import PreparedDataset
    from fashioncli.recipe import load_recipe
    from fashioncli.train import Trainer

    labels = PreparedDataset.open(tiny_prepared).labels("train")
    per_class = Counter(labels.tolist())
    want = {c: n - int(n * 0.75 + 0.5) for c, n in per_class.items()}
    path = recipe_file(tmp_path, tiny_prepared, data__fraction=0.25, train__epochs=1)
    chosen = [Trainer(load_recipe(str(path)), tmp_path / f"r{i}", progress=False).train_set.indices for i in (1, 2)]
    assert chosen[0].tolist() == chosen[1].tolist()
    assert Counter(labels[chosen[0]].tolist()) == want and sum(want.values()) < len(labels)

    stdout = invoke(runner, "train", str(path), "--fraction", "0.5").stdout
    summary = json.loads(stdout[stdout.index("{"):])  # after any epoch lines (item 1 sends those to stderr)
    assert summary["train_images"] == sum(n - int(n * 0.5 + 0.5) for n in per_class.values())
    run = yaml.safe_load((tmp_path / "runs" / "tiny" / "recipe.yaml").read_text())
    assert run["data"]["fraction"] == 0.5  # the run records the share it trained on
    assert ("validation", True) in bars  # validation shows a bar (off here: stderr is no terminal)


# ---------------------------------------------------------------- completion and help

def test_shell_completion_completes_recipe_names(runner):
    env = {"_FASHION_COMPLETE": "bash_complete", "COMP_WORDS": "fashion train quick", "COMP_CWORD": "2"}
    result = runner.invoke(cli, [], env=env, prog_name="fashion")
    assert result.stdout.split() == ["plain,quickstart", "plain,quickstart_segmentation"]
    env["COMP_WORDS"] = "fashion recipes report001_unet_dice_c"
    assert runner.invoke(cli, [], env=env, prog_name="fashion").stdout.split() == [
        "plain,report001_unet_dice_ce", "plain,report001_unet_dice_ce_cpu", "plain,report001_unet_dice_cpu"]
    env["COMP_WORDS"] = "fashion train runs/"  # no recipe name: the shell completes paths
    assert runner.invoke(cli, [], env=env, prog_name="fashion").stdout.split() == ["file,runs/"]


def walk(command, ctx):
    """(path, command) for ``command`` and every sub-command under it."""
    yield ctx.command_path, command
    if isinstance(command, click.Group):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            yield from walk(sub, click.Context(sub, info_name=name, parent=ctx))


def test_every_option_of_every_command_has_help():
    commands = list(walk(cli, click.Context(cli, info_name="fashion")))
    assert {"fashion train", "fashion models", "fashion version"} <= {path for path, _ in commands}
    missing = [f"{path} {param.opts[0]}" for path, command in commands for param in command.params
               if isinstance(param, click.Option) and not param.hidden and not param.help]
    assert not missing, f"options without help: {', '.join(missing)}"
