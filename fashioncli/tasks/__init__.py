"""Tasks: what differs between classification, prototype, multi-task and segmentation in every verb.

Each task is a folder here with a ``Task`` subclass (``base.py`` lists its parts). The built-in
tasks register through the ``register_tasks`` hook like a plugin's; the verbs look a task up by
the name a recipe, a prepared dataset or a model file records, and call it.
"""
import importlib

from ..hookspecs import hookimpl

# name -> module holding its Task class (``task.py`` of the folder)
BUILTIN_TASKS = {
    "classification": "fashioncli.tasks.classification",
    "prototype": "fashioncli.tasks.prototype",
    "multitask": "fashioncli.tasks.multitask",
    "segmentation": "fashioncli.tasks.segmentation",
}


def _builtin(name):
    module = importlib.import_module(BUILTIN_TASKS[name])
    return next(getattr(module, n) for n in module.__all__)


@hookimpl
def register_tasks(register):
    for name in BUILTIN_TASKS:
        register(name, _builtin(name))


def get_task(name):
    """The registered task class called ``name``; an unknown name lists the known ones.

    A built-in task is imported directly, without loading the plugins: those import torch, and
    an onnxruntime-only deployment runs predict on an ONNX file without it.
    """
    from ..plugins import get

    if isinstance(name, str) and name in BUILTIN_TASKS:
        return _builtin(name)
    return get("tasks").get(name).factory


def task_names():
    from ..plugins import get

    return get("tasks").names()


def task_of(meta):
    """The task of a checkpoint's or an export's metadata. Files written before prototype was a
    task of its own say "classification"; a rejection threshold or a prototype model marks them."""
    name = meta.get("task", "classification")
    spec = meta.get("model")  # checked later (model_meta); a damaged one must not fail here
    model = str(spec.get("name") or "") if isinstance(spec, dict) else ""
    if name == "classification" and (meta.get("rejection") or model.endswith("prototype")):
        name = "prototype"
    return get_task(name)


def make_task(recipe, data):
    """The recipe's task for training on the prepared dataset ``data``."""
    from ..errors import RecipeError
    from ..plugins import get

    task = get_task(recipe["task"])
    data.require(task.dataset_kind, task.name)
    if recipe["data"].get("classes") and not task.holds_classes_out:
        raise RecipeError(f"data.classes: a {task.name} recipe cannot hold classes out; a multi-task "
                          "recipe chooses its heads, a segmentation one its classes at prepare (--classes)")
    model = recipe["model"]["name"]
    supported = get("models").get(model).extra.get("tasks")
    if supported and task.name not in supported and get_task(supported[0]).dataset_kind == task.dataset_kind:
        task = get_task(supported[0])  # a recipe from before prototype was a task: classification + prototype model
    if supported and task.name not in supported:
        raise RecipeError(f"model.name: '{model}' is a model for {', '.join(supported)}, not {task.name}; "
                          f"set task: {supported[0]} or choose another model")
    return task(recipe, data)
