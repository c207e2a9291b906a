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
from .tasks import task_of
from .tasks.multitask.heads import HEAD_TYPES

MAX_CLASSES = 100_000  # per model (all heads together): far above any label set, far below a bad allocation
IMAGE_SIZES = (8, 4096)  # the smallest and largest side a model's input may have


def _fail(source, what):
    return CheckpointError(f"'{source}' has inconsistent fashion metadata: {what}")


def _show(value, limit=60):
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _kind(value):
    """A JSON value's kind in words: 'a list of 4', 'a str', 'None'."""
    if isinstance(value, list):
        return f"a list of {len(value)}"
    return "None" if value is None else f"a {type(value).__name__}"


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _mapping(meta, key, source, required=True):
    value = meta.get(key)
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        raise _fail(source, f"'{key}' must be a mapping, got {_kind(value)}")
    return value


def _class_names(value, key, source):
    if (not isinstance(value, list) or not value or len(value) > MAX_CLASSES
            or not all(isinstance(c, str) for c in value)):
        raise _fail(source, f"'{key}' must be a list of 1 to {MAX_CLASSES:,} class names, got {_kind(value)}")
    if len(set(value)) != len(value):
        raise _fail(source, f"'{key}' names a class twice")
    return value


def _labels(meta, task, source):
    """-> {output name: number of classes}: one entry per head for a multi-task model, else one."""
    if task != "multitask":
        if meta.get("heads"):  # an engine with heads would read the outputs as a multi-task model's
            raise _fail(source, f"it has 'heads' but claims a {task} model")
        return {"classes": len(_class_names(meta.get("classes"), "classes", source))}
    heads = _mapping(meta, "heads", source)
    if not heads:
        raise _fail(source, "'heads' is empty")
    widths = {}
    for name, head in heads.items():
        if not isinstance(head, dict) or head.get("type") not in HEAD_TYPES:
            raise _fail(source, f"head '{name}' must be a mapping with a type among {', '.join(HEAD_TYPES)}")
        widths[name] = len(_class_names(head.get("classes"), f"heads.{name}.classes", source))
        if head["type"] == "binary" and widths[name] != 1:
            raise _fail(source, f"binary head '{name}' has {widths[name]} classes, not 1")
        if not isinstance(head.get("parent_of") or {}, dict):
            raise _fail(source, f"'heads.{name}.parent_of' must be a mapping")
    if sum(widths.values()) > MAX_CLASSES:
        raise _fail(source, f"the heads have {sum(widths.values()):,} classes together, more than {MAX_CLASSES:,}")
    _mapping(meta, "thresholds", source, required=False)
    return widths


def _preprocessing(meta, source):
    if meta.get("preprocessing") is None:
        raise _fail(source, "no 'preprocessing' (image size, mean, std)")
    pre = _mapping(meta, "preprocessing", source)
    size = pre.get("image_size")
    low, high = IMAGE_SIZES
    if not isinstance(size, int) or isinstance(size, bool) or not low <= size <= high:
        raise _fail(source, f"'preprocessing.image_size' must be a whole number from {low} to {high}, "
                            f"got {_show(size)}")
    for key in ("mean", "std"):
        value = pre.get(key)
        if not isinstance(value, list) or len(value) != 3 or not all(map(_is_number, value)):
            raise _fail(source, f"'preprocessing.{key}' must be 3 finite numbers (R, G, B), got {_show(value)}")
    if min(pre["std"]) <= 0:
        raise _fail(source, f"'preprocessing.std' must be above 0, got {_show(pre['std'])}")


def _model(meta, task, widths, source):
    """A checkpoint's model spec: a registered name, and the class counts fashion passed to it
    (``injected``) the same as the metadata's, so no absurd size reaches the factory."""
    from .plugins import get

    spec = _mapping(meta, "model", source)
    name, registry = spec.get("name"), get("models")
    if not isinstance(name, str) or name not in registry:
        raise _fail(source, f"model {_show(name)} is not a registered model "
                            f"(registered: {', '.join(registry.names())})")
    for key in ("args", "injected"):
        _mapping(spec, key, source, required=False)
    injected = spec.get("injected") or {}
    if task == "multitask":
        heads = injected.get("heads")
        got = ({n: h.get("outputs") for n, h in heads.items() if isinstance(h, dict)}
               if isinstance(heads, dict) else None)
        if got != widths:
            raise _fail(source, f"the model is built with head outputs {_show(got)}, but 'heads' has {_show(widths)}")
    elif "num_classes" in injected and injected["num_classes"] != widths["classes"]:
        raise _fail(source, f"the model is built with num_classes {_show(injected['num_classes'])}, "
                            f"but 'classes' lists {widths['classes']}")


def check_metadata(meta, source, checkpoint=False):
    """-> ``meta`` when it describes a model fashion can run, else CheckpointError naming ``source``
    and what is wrong. ``checkpoint``: it is a training checkpoint's (its model is built from it)."""
    if not isinstance(meta, dict):
        raise _fail(source, f"it is {_kind(meta)}, not a mapping")
    task = meta.get("task", "classification")
    try:
        task_of(meta)
    except UnknownNameError as exc:
        raise _fail(source, f"task {_show(task)}: {exc}") from None
    widths = _labels(meta, task, source)
    _preprocessing(meta, source)
    rejection = _mapping(meta, "rejection", source, required=False)
    if rejection.get("threshold") is not None and not _is_number(rejection["threshold"]):
        raise _fail(source, f"'rejection.threshold' must be a finite number, got {_show(rejection['threshold'])}")
    if checkpoint:
        _model(meta, task, widths, source)
        recipe = _mapping(meta, "recipe", source, required=False)
        for section in ("data", "train", "eval"):
            _mapping(recipe, section, source, required=False)
    return meta


def parse_metadata(text, source, checkpoint=False):
    """JSON text -> ``check_metadata``'s checked mapping."""
    try:
        meta = json.loads(text)
    except (ValueError, TypeError, RecursionError) as exc:
        raise _fail(source, f"it is not JSON ({_show(str(exc), 100)})") from None
    return check_metadata(meta, source, checkpoint)


def _dims(shape):
    """An output's shape with None for each dimension not known statically; None for an unknown rank."""
    return None if shape is None else tuple(d if isinstance(d, int) and not isinstance(d, bool) else None
                                            for d in shape)


def _shape_text(shape):
    return "an unknown shape" if shape is None else " x ".join("?" if d is None else str(d) for d in shape)


def _expected_outputs(meta):
    """-> ([(name, rank, classes)] the metadata promises, how many of the last may be missing)."""
    task = meta.get("task", "classification")
    if task == "multitask":
        return [(name, 2, len(head["classes"])) for name, head in meta["heads"].items()], 0
    if task == "segmentation":
        return [("probabilities", 4, len(meta["classes"]))], 0
    # A prototype model also gives each image's distance to its nearest prototype: `unknown` needs it.
    prototype = (meta.get("rejection") or {}).get("threshold") is not None
    return [("probabilities", 2, len(meta["classes"])), ("distance", 1, None)], 0 if prototype else 1


def check_outputs(meta, source, outputs, input_shape=None):
    """Compare the metadata with the model's ``outputs`` [(name, shape)] as an engine returns them (an
    export's graph outputs; a checkpoint's probabilities) and, when given, its N x 3 x S x S input:
    a multi-task model's heads in order, N x C each; a segmentation model's N x C x H x W; a
    classifier's N x C, and a prototype model's N distances when it has a rejection threshold.
    Dimensions not known statically are not compared."""
    task = meta.get("task", "classification")
    expected, optional = _expected_outputs(meta)
    names, shapes = [name for name, _ in outputs], [_dims(shape) for _, shape in outputs]
    if task == "multitask" and names != [name for name, _, _ in expected]:
        raise _fail(source, f"it claims a multi-task model with heads {', '.join(n for n, _, _ in expected)}, "
                            f"but the model outputs {', '.join(map(str, names))}")
    if not len(expected) - optional <= len(shapes) <= len(expected):
        wanted = expected[:len(expected) - optional]
        raise _fail(source, f"it claims a {task} model with {len(wanted)} output(s) "
                            f"({', '.join(n for n, _, _ in wanted)}), but the model has {len(shapes)}")
    for (name, rank, classes), shape in zip(expected, shapes):
        if shape is not None and len(shape) != rank:
            raise _fail(source, f"it claims a {task} model, whose output '{name}' has {rank} dimensions, "
                                f"but the model outputs {_shape_text(shape)}")
        if shape is not None and classes is not None and shape[1] not in (None, classes):
            head = f" for head '{name}'" if task == "multitask" else ""
            raise _fail(source, f"it lists {classes} classes{head}, but the model outputs {shape[1]} scores")
    size, given = meta["preprocessing"]["image_size"], _dims(input_shape)
    if given is not None and len(given) == 4 and any(d not in (None, size) for d in given[2:]):
        raise _fail(source, f"'preprocessing.image_size' is {size}, but the model takes {_shape_text(given)} images")
