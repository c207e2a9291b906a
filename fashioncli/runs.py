"""Run folders: where `fashion train` writes, the only folders it may ever replace, and what
`fashion runs` lists and compares.

A run folder carries a marker file from its first moment. Replacing a run needs ``--replace`` on
the command line (a recipe, which may come from a URL, can never ask for it); it removes only a
folder with that marker, moves it aside first, and deletes it only once the new run has started
writing, so a run that fails to start leaves the old one where it was.
"""
import json
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

from . import __version__
from .errors import FashionError, RecipeError, did_you_mean
from .io import make_dir, write_text

MARKER = ".fashion-run"  # JSON: the fashion version and time that made the folder


def check_run_name(name, where="output.name"):
    """A run name is one folder name: never '.', '..', empty, absolute or with a path separator."""
    text = str(name)
    if text in ("", ".", "..") or "/" in text or "\\" in text or os.sep in text or "\0" in text:
        raise RecipeError(f"{where}: '{text}' is not a run name; use a plain folder name such as 'my-run'")
    return text


def is_run(path):
    """A folder that `fashion train` made (its marker file), not a link to one."""
    path = Path(path)
    return path.is_dir() and not path.is_symlink() and (path / MARKER).is_file()


def run_directory(recipe, spec, resume=False, replace=False):
    """runs/<name>; a new run never overwrites an old one (name-2, ...) unless ``replace``.

    A recipe saved in a run directory (runs/X/recipe.yaml) names that run: --resume continues it,
    a plain rerun goes to runs/X-2. Nothing is created or removed here (see ``claim``).
    """
    spec_path = Path(str(spec))
    if spec_path.name == "recipe.yaml" and (spec_path.parent / "checkpoints").is_dir():
        root, name = spec_path.parent.parent, recipe["output"]["name"] or spec_path.parent.name
    else:
        root, name = Path(recipe["output"]["dir"]), recipe["output"]["name"] or spec_path.stem
    path = root / check_run_name(name)
    if resume:
        # A run killed before its first checkpoint has the folder but no last.pt: it restarts there.
        if not (path / "checkpoints").is_dir():
            raise FashionError(f"--resume: no run to resume at '{path}' (no checkpoints folder)")
        return path
    if replace and path.exists():
        if not is_run(path):
            raise FashionError(f"--replace: '{path}' is not a fashion run folder (no {MARKER} marker); "
                               "remove it yourself or choose another output.name")
        return path
    n = 2
    while path.exists() or path.is_symlink():
        path, n = root / f"{name}-{n}", n + 1
    return path


@contextmanager
def claim(path, replace=False, recipe=None):
    """Make ``path`` this run's folder (with its marker, naming the ``recipe`` it came from) for the
    block that starts writing it.

    With ``replace``, a run already there (only ever a marked one: ``run_directory`` checked) is
    moved aside first and deleted once the block has succeeded; if the block fails, the new
    folder is removed and the old run is put back as it was.
    """
    path = Path(path)
    aside = None
    if replace and path.exists():
        if not is_run(path):  # checked by run_directory too: never remove what train did not make
            raise FashionError(f"--replace: '{path}' is not a fashion run folder (no {MARKER} marker)")
        aside = path.with_name(f".{path.name}.replaced-{os.getpid()}")
        os.rename(path, aside)
    try:
        make_dir(path)
        if not (path / MARKER).exists():  # a resumed run keeps its own; older runs get one
            mark = {"fashion_version": __version__, "created": time.time(), "recipe": None if recipe is None else str(recipe)}
            write_text(path / MARKER, json.dumps(mark) + "\n")
        yield path
    except BaseException:
        if aside is not None:
            shutil.rmtree(path, ignore_errors=True)  # the folder this block made, not the user's
            os.rename(aside, path)
        raise
    if aside is not None:
        shutil.rmtree(aside)


# ------------------------------------------------------------------ `fashion runs`

def _json(path):
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _recipe(run):
    import yaml

    try:
        data = yaml.safe_load((Path(run) / "recipe.yaml").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def describe(run):
    """What `fashion runs` shows of one run folder, read from its marker, recipe.yaml and the
    checkpoints' JSON: recipe, dataset, task, best metric, epochs, time and status."""
    from .locks import holder

    run = Path(run)
    marker, recipe = _json(run / MARKER), _recipe(run)
    best, last = _json(run / "checkpoints" / "best.json"), _json(run / "checkpoints" / "last.json")
    # The checkpoints carry the recipe as trained: the monitored metric resolved, epochs raised by a resume.
    trained = last.get("recipe") or recipe
    train = trained.get("train") or {}
    monitor = ((best.get("recipe") or trained).get("train") or {}).get("early_stopping", {}).get("monitor")
    done, total = last.get("epoch", 0), train.get("epochs")
    patience = (train.get("early_stopping") or {}).get("patience")
    created = marker.get("created")
    try:
        seconds = round((run / "checkpoints" / "last.json").stat().st_mtime - created, 1) if created else None
    except OSError:
        seconds = None
    running = holder(run)
    if running:
        status = f"running (pid {running.get('pid')})"
    elif not last:
        status = "no epoch yet"
    elif total and done >= total:
        status = "finished"
    elif patience and best and done - best.get("epoch", done) >= patience:
        status = "stopped early"
    else:
        status = "stopped"  # killed or failed: --resume continues it
    metric = (best.get("metrics") or {}).get(monitor) if monitor else None
    return {
        "name": run.name, "path": str(run), "recipe": marker.get("recipe"),
        "dataset": Path(str((recipe.get("data") or {}).get("root") or "")).name or None,
        "task": best.get("task") or recipe.get("task"),
        "best": {"metric": monitor, "value": metric, "epoch": best.get("epoch")} if best else None,
        "epochs": done, "total_epochs": total,
        "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(created)) if created else None,
        "seconds": seconds, "status": status,
    }


def list_runs(root="runs"):
    """Every run folder in ``root`` (those `fashion train` made), oldest first."""
    root = Path(root)
    if not root.is_dir():
        raise FashionError(f"'{root}' is not a folder of runs; give --runs-dir")
    found = [describe(p) for p in root.iterdir() if is_run(p)]
    return sorted(found, key=lambda r: (r["started"] or "", r["name"]))


def find_run(name, root="runs"):
    """A run folder given as a path, or by its name in ``root``."""
    for path in (Path(name), Path(root) / name):
        if is_run(path):
            return path
    known = sorted(p.name for p in Path(root).iterdir() if is_run(p)) if Path(root).is_dir() else []
    raise FashionError(f"no run '{name}' (neither a run folder nor a run in '{root}'){did_you_mean(name, known)}; "
                       f"runs there: {', '.join(known) or 'none'}")


def run_metrics(run):
    """{metric: value} of a run: its best epoch's row (best.json), and each eval-*/summary.json's
    metrics under 'eval-<split>/'."""
    from .loggers import eval_numbers, numbers

    run = Path(run)
    out = numbers(_json(run / "checkpoints" / "best.json").get("metrics") or {})
    for summary in sorted(run.glob("eval-*/summary.json")):
        out.update(eval_numbers(_json(summary), prefix=f"{summary.parent.name}/"))
    return out


def compare(names, root="runs"):
    """Runs side by side: the keys where their resolved recipes differ, and their metrics.
    -> {"runs": [name], "recipe": {dotted key: [value per run]}, "metrics": {name: [value per run]}}."""
    from .resume import flatten

    runs = [find_run(name, root) for name in names]
    recipes = [flatten(_recipe(run)) for run in runs]
    keys = dict.fromkeys(k for r in recipes for k in r)
    differing = {k: [r.get(k) for r in recipes] for k in keys if len({repr(r.get(k)) for r in recipes}) > 1}
    metrics = [run_metrics(run) for run in runs]
    names = dict.fromkeys(k for m in metrics for k in m)
    return {"runs": [str(run) if [r.name for r in runs].count(run.name) > 1 else run.name for run in runs],
            "recipe": differing, "metrics": {k: [m.get(k) for m in metrics] for k in names}}


def _cell(value):
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def table(header, rows):
    """Rows as aligned text columns."""
    cells = [[_cell(v) for v in row] for row in [header, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells)


def runs_table(runs):
    rows = []
    for r in runs:
        best = r["best"] or {}
        shown = f"{best['metric']}={_cell(best['value'])}" if best.get("metric") else None
        epochs = f"{r['epochs']}/{r['total_epochs']}" if r["total_epochs"] else r["epochs"]
        took = None if r["seconds"] is None else time.strftime("%H:%M:%S", time.gmtime(r["seconds"]))
        rows.append([r["name"], r["recipe"], r["dataset"], r["task"], shown, epochs, r["started"], took, r["status"]])
    return table(["run", "recipe", "dataset", "task", "best", "epochs", "started", "time", "status"], rows)


def compare_table(result):
    header = ["", *result["runs"]]
    rows = [["recipe:"]] + [[k, *v] for k, v in result["recipe"].items()]
    if not result["recipe"]:
        rows.append(["(the recipes are the same)"])
    rows += [["metrics:"]] + [[k, *v] for k, v in result["metrics"].items()]
    return table(header, [row + [""] * (len(header) - len(row)) for row in rows])
