import pytest

from fashioncli.api import IMAGENET
from fashioncli.errors import PluginError, RecipeError, UnknownNameError
from fashioncli.registry import Registry


def factory(depth, num_classes, width=8):
    """A test factory."""
    return (depth, num_classes, width)


def test_create_and_describe():
    reg = Registry("models")
    reg.add("tiny", factory, "plugin-a", preprocessing=IMAGENET)
    assert reg.create("tiny", depth=2, num_classes=3) == (2, 3, 8)
    assert reg.get("tiny").description == "A test factory."
    assert reg.names() == ["tiny"]


def test_duplicate_names_both_plugins():
    reg = Registry("models")
    reg.add("tiny", factory, "plugin-a", preprocessing=IMAGENET)
    with pytest.raises(PluginError, match="plugin-a.*plugin-b"):
        reg.add("tiny", factory, "plugin-b", preprocessing=IMAGENET)


def test_unknown_name_lists_known():
    reg = Registry("losses")
    reg.add("focal", factory, "p")
    reg.add("dice", factory, "p")
    with pytest.raises(UnknownNameError, match=r"did you mean 'focal'.*known: dice, focal"):
        reg.get("focl")


def test_check_args_against_signature():
    reg = Registry("models")
    reg.add("tiny", factory, "p", preprocessing=IMAGENET)
    entry = reg.get("tiny")
    entry.check_args({"depth": 1, "width": 2}, injected=("num_classes",), where="model")
    with pytest.raises(RecipeError, match=r"model.args.widht: unknown argument \(did you mean 'width'\?\)"):
        entry.check_args({"depth": 1, "widht": 2}, injected=("num_classes",), where="model")
    with pytest.raises(RecipeError, match="model.args: 'tiny' needs depth"):
        entry.check_args({}, injected=("num_classes",), where="model")
    with pytest.raises(RecipeError, match="model.args.num_classes: set by fashion itself"):
        entry.check_args({"depth": 1, "num_classes": 3}, injected=("num_classes",), where="model")
