"""Plugins: a throw-away plugin registers a model and trains from a recipe; load-time errors name the plugin."""
import inspect
import json
import sys
import textwrap
import types
from pathlib import Path

import click
import pytest
import torch.nn as nn
import yaml

from fashioncli import hookimpl, hookspecs, plugins
from fashioncli.api import Preprocessing
from fashioncli.errors import PluginError
from fashioncli.registry import KINDS


class TinyNetPlugin:
    __name__ = "tiny-net-plugin"

    @staticmethod
    @hookimpl
    def register_models(register):
        def tinynet(num_classes, width=8):
            """A very small CNN from a test plugin."""
            return nn.Sequential(
                nn.Conv2d(3, width, 3, stride=2, padding=1), nn.ReLU(),
                nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes),
            )

        register("tinynet", tinynet, preprocessing=Preprocessing(mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3)))


@pytest.fixture
def tiny_plugin():
    with plugins.plugin_registered(TinyNetPlugin(), name="tiny-net-plugin") as plugin:
        yield plugin


def test_plugin_model_is_listed(tiny_plugin):
    listed = {p["name"]: p for p in plugins.list_plugins()}
    assert listed["tiny-net-plugin"]["registered"] == {"models": ["tinynet"]}
    assert "tinynet" in plugins.get("models")


def test_plugin_model_trains_from_a_recipe(tiny_plugin, tiny_prepared, tmp_path):
    from fashioncli.recipe import load_recipe
    from fashioncli.train import train

    spec = tmp_path / "tiny.yaml"
    spec.write_text(yaml.safe_dump({
        "data": {"root": str(tiny_prepared), "image_size": 32, "batch_size": 8, "num_workers": 0},
        "model": {"name": "tinynet", "args": {"width": 4}},
        "train": {"epochs": 1, "channels_last": False},
        "output": {"dir": str(tmp_path / "runs")},
    }))
    summary = train(load_recipe(spec), spec=spec, progress=False)
    run = tmp_path / "runs" / "tiny"
    assert summary["run_dir"] == str(run)
    meta = json.loads((run / "checkpoints" / "best.json").read_text())
    # what fashion passed besides the recipe's args is recorded, so the model can be rebuilt
    assert meta["model"] == {"name": "tinynet", "args": {"width": 4}, "injected": {"num_classes": 3}}


def test_duplicate_name_names_both_plugins():
    class Clash:
        @staticmethod
        @hookimpl
        def register_models(register):
            register("timm", lambda num_classes: None, preprocessing=Preprocessing((0, 0, 0), (1, 1, 1)))

    with pytest.raises(PluginError, match=r"'timm' is registered twice: by plugin 'fashion_plugins.models.timm_models' and by plugin 'clash'"):
        plugins.register_plugin(Clash(), name="clash")
    assert "clash" not in [p["name"] for p in plugins.list_plugins()]


def test_misspelled_hook_is_caught():
    class Typo:
        @staticmethod
        @hookimpl
        def register_model(register):  # missing the final s
            pass

    plugin = Typo()
    with pytest.raises(PluginError, match="plugin 'typo'.*register_model"):
        plugins.register_plugin(plugin, name="typo")
    plugins.unregister_plugin(plugin)


def _recording_plugin(calls):
    """A throw-away plugin implementing every hookspec, with its arguments; each call is recorded in ``calls``."""
    plugin = types.SimpleNamespace()
    for name in HOOKS:
        params = ", ".join(inspect.signature(getattr(hookspecs, name)).parameters)
        code = {}
        exec(f"def {name}({params}):\n    calls.append({name!r})", {"calls": calls}, code)
        setattr(plugin, name, hookimpl(code[name]))
    return plugin


HOOKS = sorted(n for n in dir(hookspecs) if n.startswith("register_"))


def test_every_hook_is_called():
    """Each hookspec is called when fashion collects what plugins add (registries, commands)."""
    calls = []
    with plugins.plugin_registered(_recording_plugin(calls), name="recorder"):
        plugins.registries()
        plugins.plugin_commands()
    assert sorted(set(calls)) == HOOKS


def test_hookspecs_have_one_line_docstrings_and_a_guide_section():
    guide = (Path(__file__).resolve().parents[1] / "docs" / "plugins.md").read_text()
    assert {f"register_{k}" for k in (*KINDS, "commands")} == set(HOOKS)
    for name in HOOKS:
        doc = getattr(hookspecs, name).__doc__
        assert doc and "\n" not in doc.strip(), name
        assert f"## `{name}(" in guide, f"docs/plugins.md has no section for {name}"


def test_entry_point_plugin_is_loaded(tmp_path):
    """A real installed-style plugin: a dist-info with a `fashion` entry point on sys.path."""
    import subprocess

    pkg = tmp_path / "site"
    (pkg / "fashion_extra.py").parent.mkdir(parents=True)
    (pkg / "fashion_extra.py").write_text(textwrap.dedent('''
        import torch.nn as nn
        from fashioncli import hookimpl

        @hookimpl
        def register_losses(register):
            register("extra_l1", lambda: nn.L1Loss())
    '''))
    dist = pkg / "fashion_extra-1.2.3.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fashion-extra\nVersion: 1.2.3\n")
    (dist / "entry_points.txt").write_text("[fashion]\nextra = fashion_extra\n")
    code = "from fashioncli.plugins import list_plugins; import json; print(json.dumps(list_plugins()))"
    env = {"PYTHONPATH": str(pkg), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    listed = {p["name"]: p for p in json.loads(out)}
    assert listed["extra"]["version"] == "1.2.3"
    assert listed["extra"]["registered"] == {"losses": ["extra_l1"]}
    env["FASHION_LOAD_PLUGINS"] = ""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert "extra" not in {p["name"] for p in json.loads(out)}


class GreetPlugin:
    @staticmethod
    @hookimpl
    def register_commands(cli):
        @cli.command()
        @click.option("--times", type=int, default=1)
        def greet(times):
            """Greet (a test plugin's command)."""
            click.echo("hi " * times)


def test_plugin_adds_a_command():
    from click.testing import CliRunner

    from fashioncli.cli import cli

    runner = CliRunner()
    with plugins.plugin_registered(GreetPlugin(), name="greet-plugin"):
        result = runner.invoke(cli, ["greet", "--times", "2"])
        assert result.exit_code == 0 and result.output == "hi hi \n"
        assert "greet" in runner.invoke(cli, ["--help"]).output
    result = runner.invoke(cli, ["greet"])  # gone with its plugin
    assert result.exit_code == 2 and "No such command 'greet'" in result.output


def test_plugin_command_cannot_replace_a_builtin():
    from click.testing import CliRunner

    from fashioncli.cli import cli

    class Hijack:
        @staticmethod
        @hookimpl
        def register_commands(cli):
            @cli.command("train")
            def train():
                click.echo("not fashion's train")

    with plugins.plugin_registered(Hijack(), name="hijack"):
        result = CliRunner().invoke(cli, ["greet"])
    assert result.exit_code == 1
    assert "plugin 'hijack' adds the command 'train', which fashion has built in" in result.output


def test_plugins_json_lists_the_builtin_tasks():
    from click.testing import CliRunner

    from fashioncli.cli import cli

    result = CliRunner().invoke(cli, ["plugins", "--json"])  # built-ins are listed by default
    assert result.exit_code == 0, result.output
    tasks = {p["name"]: p["registered"].get("tasks") for p in json.loads(result.output)}
    assert tasks["fashioncli.tasks"] == ["classification", "prototype", "multitask", "segmentation"]
    assert [t for name, t in tasks.items() if t and name != "fashioncli.tasks"] == []
    third_party = CliRunner().invoke(cli, ["plugins", "--third-party", "--json"])
    assert json.loads(third_party.output) == []  # the suite loads no installed plugin


def test_installed_plugins_do_not_load_in_the_test_suite(tmp_path):
    """tests/conftest.py keeps plugins installed on the machine out of the suite: a test session
    with an installed `fashion` entry point does not load it (test_entry_point_plugin_is_loaded
    asks for one explicitly)."""
    import os
    import subprocess

    site = tmp_path / "site"
    site.mkdir()
    (site / "fashion_stray.py").write_text("raise RuntimeError('an installed plugin was loaded')\n")
    dist = site / "fashion_stray-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fashion-stray\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[fashion]\nstray = fashion_stray\n")
    (tmp_path / "test_probe.py").write_text(textwrap.dedent('''
        from fashioncli.plugins import list_plugins

        def test_probe():
            assert "stray" not in [p["name"] for p in list_plugins()]
    '''))
    tests = Path(__file__).resolve().parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(tests), os.environ.get("PYTHONPATH", "")])}
    env.pop("FASHION_LOAD_PLUGINS", None)  # as on a developer's machine
    probe = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path / "test_probe.py")]
    with_conftest = subprocess.run([*probe, "-p", "conftest"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert with_conftest.returncode == 0, with_conftest.stdout[-2000:]
    # the probe can fail: without the suite's conftest the stray plugin loads
    without = subprocess.run(probe, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert without.returncode != 0 and "an installed plugin was loaded" in without.stdout
