"""docs/plugins.md cannot rot: each of its plugin examples is loaded, registered and used."""
import json
import re
import types
from pathlib import Path

import pytest
from click.testing import CliRunner

from fashioncli import model_preprocessing
from fashioncli.api import Logger
from fashioncli.cli import cli
from fashioncli.plugins import get, list_plugins, plugin_commands, plugin_registered

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"


def sections():
    """{hook name: [python code of the section's plugin examples]}."""
    found = {}
    for heading, body in re.findall(r"^## `(\w+)\(.*?\)`\n(.*?)(?=^## |\Z)", GUIDE.read_text(), re.M | re.S):
        found[heading] = [code for code in re.findall(r"```python\n(.*?)```", body, re.S) if "@hookimpl" in code]
    return found


def load(code, name):
    module = types.ModuleType(name)
    exec(compile(code, f"{GUIDE}:{name}", "exec"), module.__dict__)
    return module


EXAMPLES = [(hook, i, code) for hook, codes in sections().items() for i, code in enumerate(codes)]


def test_every_hook_section_has_an_example():
    assert {hook for hook, _, _ in EXAMPLES} == set(sections()) and len(sections()) >= 7


@pytest.mark.parametrize("hook, i, code", EXAMPLES, ids=[f"{h}-{i}" for h, i, _ in EXAMPLES])
def test_guide_example_registers(hook, i, code):
    name = f"guide-{hook}-{i}"
    with plugin_registered(load(code, name), name=name):
        if hook == "register_commands":
            commands = [n for n, (_, plugin) in plugin_commands().items() if plugin == name]
            assert commands
            for command in commands:
                result = CliRunner().invoke(cli, [command, "--help"])
                assert result.exit_code == 0, result.output
            return
        kind = hook.removeprefix("register_")
        registered = {p["name"]: p for p in list_plugins()}[name]["registered"]
        assert list(registered) == [kind] and registered[kind]
        for entry_name in registered[kind]:
            entry = get(kind).get(entry_name)
            if kind == "models":  # the declared preprocessing resolves, and the model builds
                model_preprocessing(entry_name, num_classes=3)
                assert entry.factory(num_classes=3) is not None
            elif kind == "losses":
                assert entry.factory() is not None
            elif kind == "metrics":
                assert entry.factory(3) is not None
            elif kind == "exporters":
                assert entry.factory().suffix
            elif kind == "loggers":
                assert isinstance(entry.factory(), Logger)


def test_guide_command_example_runs():
    code = sections()["register_commands"][0]
    with plugin_registered(load(code, "guide-hello"), name="guide-hello"):
        result = CliRunner().invoke(cli, ["hello", "world"])
    assert result.exit_code == 0 and result.output == "Hello, world!\n"


def test_guide_dataset_example_imports_a_folder(tmp_path):
    import cv2
    import numpy as np

    for i in range(2):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.zeros((8, 8, 3), np.uint8))
    module = load(sections()["register_datasets"][0], "guide-flat")
    imported = module.flat_folder(str(tmp_path), label="coat")
    assert imported.classes == ["coat"] and len(imported.samples) == 2
    from fashioncli.registry import Entry

    assert Entry("flat-folder", module.flat_folder, "guide", "datasets").arguments(("source",)) == [
        {"name": "label", "default": "garment", "meaning": "the one class every image gets"}]


def test_guide_logger_example_logs_a_run(tiny_prepared, tmp_path):
    import csv

    from helpers import recipe_file

    from fashioncli.recipe import load_recipe
    from fashioncli.train import train

    with plugin_registered(load(sections()["register_loggers"][0], "guide-jsonl"), name="guide-jsonl"):
        spec = recipe_file(tmp_path, tiny_prepared, log={"jsonl": {"every": 1}})
        train(load_recipe(spec), spec=spec, progress=False)
    run = tmp_path / "runs" / "tiny"
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    with open(run / "metrics.csv", newline="") as f:
        epochs = list(csv.DictReader(f))
    assert [line["step"] for line in lines] == [1, 2]
    assert [line["val_accuracy"] for line in lines] == pytest.approx([float(r["val_accuracy"]) for r in epochs])
