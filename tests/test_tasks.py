"""The task registry: built-in tasks, a plugin's task, lookups by name and from old model files."""
import pytest

from fashioncli import hookimpl, plugins
from fashioncli.errors import RecipeError, UnknownNameError
from fashioncli.recipe import load_recipe
from fashioncli.tasks import get_task, task_names, task_of
from fashioncli.tasks.base import Task


def test_builtin_tasks_are_registered_through_the_hook():
    assert {"classification", "prototype", "multitask", "segmentation"} <= set(task_names())
    entries = {e.name: e.plugin for e in plugins.get("tasks")}
    assert entries["prototype"] == "fashioncli.tasks"
    assert get_task("multitask").dataset_kind == "multitask"


def test_unknown_task_lists_the_known_ones():
    with pytest.raises(UnknownNameError, match="known: classification"):
        get_task("clasification")


class Counting(Task):
    name = "counting"
    dataset_kind = "classification"


class CountingPlugin:
    @hookimpl
    def register_tasks(self, register):
        register("counting", Counting)


def test_a_plugin_task_is_a_recipe_task():
    with plugins.plugin_registered(CountingPlugin(), name="counting-plugin"):
        assert get_task("counting") is Counting
        recipe = load_recipe("quickstart", overrides=["task=counting"])
        assert recipe["task"] == "counting"
    with pytest.raises(RecipeError, match="task: 'counting' is not one of classification"):
        load_recipe("quickstart", overrides=["task=counting"])


def test_files_from_before_prototype_was_a_task_are_prototype():
    assert task_of({"task": "classification", "rejection": {"threshold": 1.0}}).name == "prototype"
    assert task_of({"task": "classification", "model": {"name": "unet_prototype"}}).name == "prototype"
    assert task_of({"task": "classification", "model": {"name": "timm"}}).name == "classification"
    assert task_of({}).name == "classification"
