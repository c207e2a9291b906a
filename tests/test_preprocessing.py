"""Model preprocessing is declared with the model's registration, typed, and never assumed."""
import pytest

from fashioncli import hookimpl, model_preprocessing, plugins
from fashioncli.api import IMAGENET, Preprocessing
from fashioncli.errors import PluginError, RecipeError
from fashioncli.preprocessing import check_image_size


def test_preprocessing_is_checked_and_typed():
    pre = Preprocessing(mean=[0, 0.5, 1], std=(1, 2, 3), input_size=64)
    assert pre.mean == (0.0, 0.5, 1.0) and pre.std == (1.0, 2.0, 3.0)
    for bad in ({"mean": (0, 0), "std": (1, 1, 1)}, {"mean": (0, 0, 0), "std": (1, 0, 1)},
                {"mean": (0, 0, float("nan")), "std": (1, 1, 1)}, {"mean": (0, 0, 0), "std": (1, 1, 1), "input_size": 0}):
        with pytest.raises(ValueError, match="Preprocessing"):
            Preprocessing(**bad)


def test_a_model_without_preprocessing_is_an_error_naming_the_plugin():
    class Undeclared:
        @staticmethod
        @hookimpl
        def register_models(register):
            register("undeclared", lambda num_classes: None)

    with pytest.raises(PluginError, match="plugin 'undeclared-plugin' registered model 'undeclared' without preprocessing"):
        plugins.register_plugin(Undeclared(), name="undeclared-plugin")
    assert "undeclared" not in plugins.get("models")


def test_preprocessing_from_the_model_args_with_the_factory_defaults():
    seen = []

    def factory(num_classes, backbone="small", width=8):
        return None

    def preprocessing(backbone, width):
        seen.append((backbone, width))
        return IMAGENET if backbone == "small" else Preprocessing((0.5,) * 3, (0.5,) * 3, input_size=32)

    class Declared:
        @staticmethod
        @hookimpl
        def register_models(register):
            register("declared", factory, preprocessing=preprocessing)
            register("wrong", factory, preprocessing=lambda: {"mean": (0, 0, 0)})

    with plugins.plugin_registered(Declared(), name="declared-plugin"):
        assert model_preprocessing("declared", num_classes=3) == IMAGENET
        large = model_preprocessing("declared", num_classes=3, backbone="large", width=4)
        assert seen == [("small", 8), ("large", 4)] and large.input_size == 32
        with pytest.raises(PluginError, match="plugin 'declared-plugin': the preprocessing of model 'wrong' returned"):
            model_preprocessing("wrong", num_classes=3)
    check_image_size(large, 32, "declared")
    with pytest.raises(RecipeError, match="data.image_size: model 'declared' takes 32 px images only, not 64"):
        check_image_size(large, 64, "declared")
