import json

import pytest
from click.testing import CliRunner

from fashioncli.cli import cli

COMMANDS = ["prepare", "train", "eval", "predict", "export", "plugins", "recipes", "models", "version"]


@pytest.fixture
def runner():
    return CliRunner()


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_help_has_an_example(runner, command):
    result = runner.invoke(cli, [command, "--help"])
    assert result.exit_code == 0
    assert "Example" in result.output and f"fashion {command}" in result.output


def test_version_and_module_entry(runner):
    import subprocess
    import sys

    assert runner.invoke(cli, ["--version"]).output.startswith("fashion 0.1.0\n")
    out = subprocess.run([sys.executable, "-m", "fashioncli", "recipes"], capture_output=True, text=True, check=True)
    assert "quickstart" in out.stdout.split()


def test_recipes_list_and_show(runner):
    listed = runner.invoke(cli, ["recipes"])
    assert "quickstart" in listed.output.split()
    shown = runner.invoke(cli, ["recipes", "quickstart", "--set", "train.epochs=1"])
    assert shown.exit_code == 0 and "epochs: 1" in shown.output and "base:" not in shown.output


@pytest.mark.parametrize("args,message", [
    (["train", "quickstrat"], "did you mean 'quickstart'"),
    (["train", "quickstart", "--set", "train.epochz=1"], "train.epochz: unknown key (did you mean 'epochs'?)"),
    (["train", "quickstart", "--set", "data.root=/nonexistent/x"], "fashion prepare"),
    (["recipes", "quickstart", "--set", "loss.name=focall"], "unknown loss 'focall'"),
])
def test_user_errors_are_one_line_without_traceback(runner, args, message):
    result = runner.invoke(cli, args)
    assert result.exit_code == 1, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_plugins_json(runner):
    result = runner.invoke(cli, ["plugins", "--all", "--json"])
    items = {p["name"]: p for p in json.loads(result.output)}
    assert "timm" in items["fashion_plugins.models.timm_models"]["registered"]["models"]
    assert "folder" in items["fashion_plugins.datasets.folder"]["registered"]["datasets"]


def test_unknown_backbone_fails_before_any_work(runner, tiny_prepared):
    result = runner.invoke(cli, ["train", "quickstart", "--set", f"data.root={tiny_prepared}",
                                 "--set", "model.args.backbone=resnet18x"])
    assert result.exit_code == 1
    assert "unknown timm backbone 'resnet18x' (did you mean 'resnet18'?)" in result.output
