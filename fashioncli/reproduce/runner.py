"""Plan and run a reproduction: each row's data prepared once, trained (or resumed, or skipped),
evaluated, and its cells recorded, so a killed reproduction reruns only what did not finish.

Everything is written under ``reproductions/REPORT/``: ``recipes/`` (each row's resolved recipe,
what its run trains from), ``runs/`` (the run folders), ``rows/`` (one JSON per finished row:
the recipe it finished with, its metrics and its times) and the table (table.py).
"""
import copy
import fnmatch
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import FashionError
from ..io import make_dir, write_json, write_text
from ..runs import is_run
from .manifest import Row


@dataclass
class Step:
    row: Row
    spec: str | None  # the row's recipe at this scale; None: the row has none
    recipe: dict | None = None  # resolved, with output.dir/name pointing into the reproduction
    recipe_file: Path | None = None
    run_dir: Path | None = None
    status: str = "skip"  # done | resume | new | changed | skip (no recipe at this scale)
    estimate: float | None = None  # minutes
    estimate_from: str = ""
    sha256: str = ""  # of the resolved recipe, as planned (training fills in defaults in its copy)


def folder(manifest, root="reproductions"):
    return Path(root) / manifest.report


def digest(recipe):
    from ..recipe import dump

    return hashlib.sha256(dump(recipe).encode()).hexdigest()


def _state_path(base, step):
    return base / "rows" / f"{step.run_dir.name}.json"


def read_state(base, step):
    path = _state_path(base, step)
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def plan(manifest, scale, only=None, root="reproductions"):
    """-> one Step per row (all rows; those --only leaves out are not returned)."""
    from ..recipe import dump, load_recipe

    base = folder(manifest, root)
    steps = []
    for row in manifest.rows:
        if only and not any(fnmatch.fnmatch(row.name, p) or fnmatch.fnmatch(row.recipes.get(scale, ""), p)
                            for p in only.split(",")):
            continue
        spec = row.recipes.get(scale)
        step = Step(row, spec)
        steps.append(step)
        if spec is None:
            continue
        name = Path(spec).stem
        step.recipe = load_recipe(spec, [*row.overrides, f"output.dir={base / 'runs'}", f"output.name={name}"])
        step.recipe_file, step.run_dir = base / "recipes" / f"{name}.yaml", base / "runs" / name
        step.sha256 = digest(step.recipe)
        state = read_state(base, step)
        if state and state.get("recipe_sha256") == step.sha256 and is_run(step.run_dir):
            step.status = "done"
        elif is_run(step.run_dir):
            saved = (step.run_dir / "recipe.yaml").read_text() if (step.run_dir / "recipe.yaml").is_file() else ""
            step.status = "resume" if saved == dump(step.recipe) else "changed"
        else:
            step.status = "new"
        if state and state.get("train_seconds"):
            step.estimate, step.estimate_from = state["train_seconds"] / 60, "last run here"
        elif scale in row.minutes:
            step.estimate, step.estimate_from = float(row.minutes[scale]), "recorded in the manifest"
    _borrow_estimates(steps)
    return steps


def _cost(recipe):
    """What a run's time depends on: rows that differ only in their loss or eval take as long."""
    data, train = recipe["data"], recipe["train"]
    return (repr(recipe["model"]), data["root"], data["image_size"], data["batch_size"], train["epochs"],
            repr(train.get("stages")))


def _borrow_estimates(steps):
    timed = {}
    for step in steps:
        if step.recipe is not None and step.estimate is not None:
            timed.setdefault(_cost(step.recipe), step)
    for step in steps:
        like = timed.get(_cost(step.recipe)) if step.recipe is not None and step.estimate is None else None
        if like is not None:
            step.estimate, step.estimate_from = like.estimate, f"as '{like.row.name}': same model, data and epochs"


def reference(step, column):
    """The report's figure for a cell: the row's, else its recipe's eval.reference."""
    if column in step.row.reference:
        return float(step.row.reference[column])
    value = ((step.recipe or {}).get("eval") or {}).get("reference", {}).get(column)
    return None if value is None else float(value)


def metric(summary, path):
    """A number in eval's summary by dotted path: under "metrics" first, else from the top
    ("open_set.auroc", "rejection.accuracy_with_rejection"); None when absent."""
    for node in (summary.get("metrics") or {}, summary):
        for part in path.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, (int, float)) and not isinstance(node, bool):
            return node
    return None


def run_step(step, base, devices=1, replace=False, progress=True, log=print, hardware=None):
    """Prepare (once per data root), train or resume, evaluate -> the row's state (also saved)."""
    from ..evaluate import evaluate
    from ..prepare import prepare, recipe_prepare_args
    from ..recipe import dump

    if step.status == "changed" and not replace:
        raise FashionError(f"row '{step.row.name}': '{step.run_dir}' was trained from another recipe; "
                           "pass --replace to train it again")
    root = Path(step.recipe["data"]["root"])
    if not (root / "dataset.json").is_file():
        log(f"[{step.row.name}] preparing {root}")
        prepare(**recipe_prepare_args(step.recipe), progress=progress)
    make_dir(step.recipe_file.parent)
    write_text(step.recipe_file, dump(step.recipe))
    resume = step.status == "resume"
    log(f"[{step.row.name}] {'resuming' if resume else 'training'} {step.run_dir}")
    started = time.perf_counter()
    _train(step, resume, replace and step.status == "changed", devices, progress)
    trained = time.perf_counter() - started
    log(f"[{step.row.name}] evaluating")
    started = time.perf_counter()
    summary = evaluate(str(step.run_dir), split=step.recipe["eval"]["split"])
    state = {"row": step.row.name, "recipe": step.spec, "recipe_sha256": step.sha256,
             "run_dir": str(step.run_dir), "resumed": resume, "train_seconds": round(trained, 1),
             "eval_seconds": round(time.perf_counter() - started, 1), "split": summary.get("split"),
             "eval_dir": summary.get("out"), "summary": summary, "hardware": hardware,
             "finished": time.time()}
    make_dir(base / "rows")
    write_json(_state_path(base, step), state)
    return state


def _train(step, resume, replace, devices, progress):
    if devices > 1:
        from ..distributed import launch

        argv = ["train", str(step.recipe_file), *(["--resume"] if resume else []), *(["--replace"] if replace else []),
                *([] if progress else ["--quiet"])]
        if launch(argv, devices) != 0:
            raise FashionError(f"row '{step.row.name}': training on {devices} processes failed (see above)")
        return
    from ..train import train

    train(copy.deepcopy(step.recipe), spec=str(step.recipe_file), resume=resume, progress=progress, replace=replace)
