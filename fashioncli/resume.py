"""`fashion train --resume` with a recipe that differs from the run's saved one.

A checkpoint's weights, optimizer and schedule state were built from the run's recipe.yaml: a new
model, classes, image size, optimizer, loss, seed, ... cannot apply to them (a size-mismatch
traceback, or a run that silently goes on as another one). What does not shape that state (when
to stop, where to run, how to load) may change; the change is recorded in the run.
"""
import json
import sys
import time

from tqdm import tqdm

from . import recipe as recipes
from .errors import RecipeError
from .io import dumps, write_json, write_text

# Dotted keys a resume may change ('x.' means every key under x): none of them is in the state a
# checkpoint carries, nor changes what the epochs already trained mean.
CHANGEABLE = ("train.epochs", "train.early_stopping.patience", "train.device", "data.num_workers",
              "data.eval_batch_size", "description", "eval.", "output.", "log.")
LOG = "resumes.json"  # beside recipe.yaml: each resume that changed the recipe, and what it changed
_UNSET = object()


def flatten(tree, prefix=""):
    """{'a': {'b': 1}} -> {'a.b': 1}; an empty mapping has no keys (args: {} is no args)."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def differences(old, new):
    """{dotted key: (old, new)} wherever two recipes differ; _UNSET where one lacks the key."""
    old, new = flatten(old), flatten(new)
    keys = dict.fromkeys([*old, *new])
    return {k: (old.get(k, _UNSET), new.get(k, _UNSET)) for k in keys if old.get(k, _UNSET) != new.get(k, _UNSET)}


def _changeable(key):
    return any(key == c or (c.endswith(".") and key.startswith(c)) for c in CHANGEABLE)


def _show(value):
    return "(unset)" if value is _UNSET else dumps(value)


def check(recipe, run_dir):
    """The changes a resume of ``run_dir`` with ``recipe`` applies: {dotted key: (old, new)}, or
    None when the run has no checkpoint yet (it starts over, so any recipe goes). Reads only:
    a refusal (RecipeError naming every key that cannot change) leaves the run as it was."""
    if not (run_dir / "checkpoints" / "last.pt").is_file():
        return None
    saved_path = run_dir / "recipe.yaml"
    if not saved_path.is_file():
        raise RecipeError(f"--resume: '{saved_path}' is missing, so what the checkpoint was trained with is unknown")
    saved = recipes.load_recipe(str(saved_path), validate_components=False)
    changes = differences(saved, recipe)
    if recipe["train"].get("stages"):  # the stages set the epochs (saved: their sum, see Trainer)
        changes.pop("train.epochs", None)
    refused = [k for k in changes if not _changeable(k)]
    if "train.epochs" in changes and recipe["scheduler"]["name"] == "onecycle":
        refused.append("train.epochs")  # OneCycleLR's length is in its saved state: it cannot grow
    if refused:
        listed = ", ".join(f"{k}: {_show(changes[k][0])} -> {_show(changes[k][1])}" for k in refused)
        raise RecipeError(
            f"--resume: the recipe differs from the run's '{saved_path}' where its checkpoint cannot follow "
            f"({listed}); resume with the run's recipe, changing only {', '.join(c + '*' * c.endswith('.') for c in CHANGEABLE)}, "
            "or train a new run"
        )
    return changes


def record(run_dir, recipe, changes, epoch):
    """After the checkpoint has loaded: the run's recipe becomes ``recipe``, and LOG says what changed."""
    if not changes:
        return
    write_text(run_dir / "recipe.yaml", recipes.dump(recipe))
    log = run_dir / LOG
    try:
        history = json.loads(log.read_text(encoding="utf-8")) if log.is_file() else []
    except (OSError, ValueError):
        history = None
    if not isinstance(history, list):  # damaged: start it again rather than stop the run
        history = []
    changed = {k: [None if v is _UNSET else v for v in pair] for k, pair in changes.items()}
    write_json(log, [*history, {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "epoch": epoch, "changed": changed}])
    shown = ", ".join(f"{k}: {_show(old)} -> {_show(new)}" for k, (old, new) in changes.items())
    tqdm.write(f"resuming after epoch {epoch} with {shown}", file=sys.stderr)
