"""What a model declares, at registration, about the images it takes: mean, std, input size.

A model plugin registers ``register(name, factory, preprocessing=...)`` with a ``Preprocessing``,
or with a callable of the model's arguments that returns one when the values depend on them (a
timm backbone's own statistics, an offline weight file's scaling). Training records the resolved
values in the checkpoint; predict, eval and export read them from there.
"""
import inspect
import math
from dataclasses import dataclass

from .data.preprocess import IMAGENET_MEAN, IMAGENET_STD
from .errors import PluginError, RecipeError


@dataclass(frozen=True)
class Preprocessing:
    """Per-channel (R, G, B) ``mean`` and ``std`` of pixels scaled to [0, 1]; ``input_size``: the
    only image size (pixels, square) the model accepts, or None when it takes any."""

    mean: tuple
    std: tuple
    input_size: int = None

    def __post_init__(self):
        for key in ("mean", "std"):
            value = getattr(self, key)
            try:
                numbers = tuple(float(v) for v in value)
            except (TypeError, ValueError):
                numbers = ()
            if len(numbers) != 3 or not all(math.isfinite(v) for v in numbers):
                raise ValueError(f"Preprocessing.{key} must be 3 finite numbers (R, G, B), got {value!r}")
            object.__setattr__(self, key, numbers)
        if min(self.std) <= 0:
            raise ValueError(f"Preprocessing.std must be above 0, got {self.std!r}")
        size = self.input_size
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
            raise ValueError(f"Preprocessing.input_size must be a positive whole number or None, got {size!r}")


# The statistics of ImageNet, which most pretrained weights were trained with; a model states it
# uses them, nothing assumes it.
IMAGENET = Preprocessing(IMAGENET_MEAN, IMAGENET_STD)


def check_declared(value, plugin, name):
    """At registration: a model must say how its inputs are normalised."""
    if value is None:
        raise PluginError(
            f"plugin '{plugin}' registered model '{name}' without preprocessing: pass "
            "register(name, factory, preprocessing=Preprocessing(mean=..., std=...)) (fashioncli.api), "
            "or a function of the model's arguments that returns one"
        )
    if not (isinstance(value, Preprocessing) or callable(value)):
        raise PluginError(f"plugin '{plugin}' registered model '{name}' with preprocessing={value!r}; "
                          "expected a fashioncli.api.Preprocessing or a function returning one")


def model_preprocessing(entry, args):
    """The preprocessing registry ``entry`` (a model) declares for the model built from ``args``.

    A callable receives the arguments it names, with the factory's defaults filled in, so that it
    sees the same values the factory did.
    """
    declared = entry.extra["preprocessing"]
    if callable(declared):
        bound = inspect.signature(entry.factory).bind_partial(**args)
        bound.apply_defaults()
        given = {**bound.arguments, **args}
        params = inspect.signature(declared).parameters
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            given = {k: v for k, v in given.items() if k in params}
        declared = declared(**given)
    if not isinstance(declared, Preprocessing):
        raise PluginError(f"plugin '{entry.plugin}': the preprocessing of model '{entry.name}' returned "
                          f"{declared!r}, not a fashioncli.api.Preprocessing")
    return declared


def check_image_size(preprocessing, image_size, model):
    if preprocessing.input_size is not None and image_size != preprocessing.input_size:
        raise RecipeError(f"data.image_size: model '{model}' takes {preprocessing.input_size} px images only, "
                          f"not {image_size}; set data.image_size: {preprocessing.input_size}")
