"""What a model file says about itself, checked before anything is built from it.

A checkpoint's ``meta_json`` and an export's ``fashion`` metadata (ONNX metadata_props, the
TorchScript extra file) decide how large a model is built, how images are resized and normalised,
and how outputs become labels. A damaged or edited file must fail here, in one line naming the file
and the inconsistency, not as a traceback or a terabyte allocation further on, nor as silently wrong
scores (``mean: [0]`` broadcasts). ``check_outputs`` then compares the metadata with what the model
really outputs. torch-free: an onnxruntime-only deployment runs it.
"""
import json
import math

from .errors import CheckpointError, UnknownNameError
from .tasks import task_names, task_of

MAX_CLASSES = 100_000  # per model (all heads together): far above any label set, far below a bad allocation
IMAGE_SIZES = (8, 4096)  # the smallest and largest side a model's input may have


def metadata_error(source, what):
    return CheckpointError(f"'{source}' has inconsistent fashion metadata: {what}")


def show(value, limit=60):
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _kind(value):
    """A JSON value's kind in words: 'a list of 4', 'a str', 'None'."""
    if isinstance(value, list):
        return f"a list of {len(value)}"
    return "None" if value is None else f"a {type(value).__name__}"


def is_finite_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_mapping(meta, key, source, required=True):
    value = meta.get(key)
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        raise metadata_error(source, f"'{key}' must be a mapping, got {_kind(value)}")
    return value


def check_class_names(value, key, source):
    if (not isinstance(value, list) or not value or len(value) > MAX_CLASSES
            or not all(isinstance(c, str) for c in value)):
        raise metadata_error(source, f"'{key}' must be a list of 1 to {MAX_CLASSES:,} class names, got {_kind(value)}")
    if len(set(value)) != len(value):
        raise metadata_error(source, f"'{key}' names a class twice")
    return value


def _preprocessing(meta, source):
    if meta.get("preprocessing") is None:
        raise metadata_error(source, "no 'preprocessing' (image size, mean, std)")
    pre = check_mapping(meta, "preprocessing", source)
    size = pre.get("image_size")
    low, high = IMAGE_SIZES
    if not isinstance(size, int) or isinstance(size, bool) or not low <= size <= high:
        raise metadata_error(source, f"'preprocessing.image_size' must be a whole number from {low} to {high}, "
                            f"got {show(size)}")
    for key in ("mean", "std"):
        value = pre.get(key)
        if not isinstance(value, list) or len(value) != 3 or not all(map(is_finite_number, value)):
            raise metadata_error(source, f"'preprocessing.{key}' must be 3 finite numbers (R, G, B), got {show(value)}")
    if min(pre["std"]) <= 0:
        raise metadata_error(source, f"'preprocessing.std' must be above 0, got {show(pre['std'])}")


def _model(meta, task, widths, source):
    """A checkpoint's model spec: a registered name, and the class counts fashion passed to it
    (``injected``) the same as the metadata's, so no absurd size reaches the factory."""
    from .plugins import get

    spec = check_mapping(meta, "model", source)
    name, registry = spec.get("name"), get("models")
    if not isinstance(name, str) or name not in registry:
        raise metadata_error(source, f"model {show(name)} is not a registered model "
                                     f"(registered: {', '.join(registry.names())})")
    for key in ("args", "injected"):
        check_mapping(spec, key, source, required=False)
    task.check_model_args(spec.get("injected") or {}, widths, source)


def check_metadata(meta, source, checkpoint=False):
    """-> ``meta`` when it describes a model fashion can run, else CheckpointError naming ``source``
    and what is wrong. ``checkpoint``: it is a training checkpoint's (its model is built from it)."""
    if not isinstance(meta, dict):
        raise metadata_error(source, f"it is {_kind(meta)}, not a mapping")
    try:
        task = task_of(meta)
    except UnknownNameError:
        raise metadata_error(source, f"task {show(meta.get('task'))} is not one of {', '.join(task_names())}") from None
    widths = task.check_labels(meta, source)
    _preprocessing(meta, source)
    if checkpoint:
        _model(meta, task, widths, source)
        recipe = check_mapping(meta, "recipe", source, required=False)
        for section in ("data", "train", "eval"):
            check_mapping(recipe, section, source, required=False)
    return meta


def parse_metadata(text, source, checkpoint=False):
    """JSON text -> ``check_metadata``'s checked mapping."""
    try:
        meta = json.loads(text)
    except (ValueError, TypeError, RecursionError) as exc:
        raise metadata_error(source, f"it is not JSON ({show(str(exc), 100)})") from None
    return check_metadata(meta, source, checkpoint)


def _dims(shape):
    """An output's shape with None for each dimension not known statically; None for an unknown rank."""
    return None if shape is None else tuple(d if isinstance(d, int) and not isinstance(d, bool) else None
                                            for d in shape)


def _shape_text(shape):
    return "an unknown shape" if shape is None else " x ".join("?" if d is None else str(d) for d in shape)


def check_outputs(meta, source, outputs, input_shape=None):
    """Compare the metadata with the model's ``outputs`` [(name, shape)] as an engine returns them (an
    export's graph outputs; a checkpoint's, ``Task.output_shapes``) and, when given, its N x 3 x S x S
    input, against what its task expects (``Task.expected_outputs``). Dimensions not known statically
    are not compared."""
    task = task_of(meta)
    expected = task.expected_outputs(meta)
    names, shapes = [name for name, _ in outputs], [_dims(shape) for _, shape in outputs]
    noun = task.output_noun
    if task.named_outputs and names != [name for name, _, _ in expected]:
        raise metadata_error(source, f"it claims a {task.name} model with {noun}s "
                                     f"{', '.join(n for n, _, _ in expected)}, but the model outputs "
                                     f"{', '.join(map(str, names))}")
    if len(shapes) != len(expected):
        raise metadata_error(source, f"it claims a {task.name} model with {len(expected)} output(s) "
                                     f"({', '.join(n for n, _, _ in expected)}), but the model has {len(shapes)}")
    for (name, rank, classes), shape in zip(expected, shapes):
        if shape is not None and len(shape) != rank:
            raise metadata_error(source, f"it claims a {task.name} model, whose output '{name}' has {rank} "
                                         f"dimensions, but the model outputs {_shape_text(shape)}")
        if shape is not None and classes is not None and shape[1] not in (None, classes):
            which = f" for {noun} '{name}'" if task.named_outputs else ""
            raise metadata_error(source, f"it lists {classes} classes{which}, but the model outputs {shape[1]} scores")
    size, given = meta["preprocessing"]["image_size"], _dims(input_shape)
    if given is not None and len(given) == 4 and any(d not in (None, size) for d in given[2:]):
        raise metadata_error(source, f"'preprocessing.image_size' is {size}, but the model takes "
                                     f"{_shape_text(given)} images")
