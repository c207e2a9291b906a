"""Plugins: a throw-away plugin registers a model and trains from a recipe; load-time errors name the plugin."""
import json
import sys
import textwrap

import pytest
import torch.nn as nn
import yaml

from fashioncli import hookimpl, plugins
from fashioncli.errors import PluginError


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

        register("tinynet", tinynet)


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
            register("timm", lambda num_classes: None)

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


def test_hookspecs_have_one_line_docstrings_and_tests():
    import fashioncli.hookspecs as specs
    from pathlib import Path

    names = [n for n in dir(specs) if n.startswith("register_")]
    assert set(names) == {f"register_{k}" for k in ("tasks", "models", "losses", "datasets", "metrics", "exporters")}
    tests = "".join(p.read_text() for p in Path(__file__).parent.glob("test_*.py"))
    for name in names:
        doc = getattr(specs, name).__doc__
        assert doc and "\n" not in doc.strip(), name
        assert name in tests, f"no test exercises {name}"


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
