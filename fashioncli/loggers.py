"""Experiment loggers (TensorBoard, MLflow, a plugin's): what `fashion train` and `fashion eval` report.

A recipe chooses loggers with ``log: [tensorboard, mlflow]`` (or ``log: {mlflow: {options}}``);
plugins register them with the ``register_loggers`` hook. The trainer and eval talk to all of them
through ``Loggers``, one list called at fixed points; a logger records in ``<run>/loggers.json``
what it needs to find its run again (a resumed run, a later `fashion eval`).

A logger that fails to start stops the command before training (a one-line error); one that fails
later is reported once on stderr and dropped, so a tracking server going away never costs a run.
"""
import json
import math
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .errors import FashionError
from .io import write_json

STATE_FILE = "loggers.json"  # {logger name: what it wrote into LoggedRun.state}
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg")
RUN_FILES = ("metrics.csv", "recipe.yaml")  # logged beside the pictures at the end of a run


@dataclass
class LoggedRun:
    """What a logger learns about the run it logs, in ``Logger.start``."""

    dir: Path  # the run folder (runs/NAME)
    name: str  # its folder name
    recipe: dict  # the resolved recipe
    params: dict  # the recipe flattened to dotted keys: numbers, booleans and text
    state: dict = field(default_factory=dict)  # this logger's record in loggers.json; fill it to find the run again
    resumed: bool = False  # a --resume, or an eval of a finished run: the run exists already
    command: str = "train"  # or "eval"


class Logger:
    """Base class of a logger; every method is optional. Train calls ``start``, then ``log_metrics``
    after each epoch, then ``log_artifacts`` with the run's pictures and ``finish``. Eval calls
    ``start`` (``resumed``), ``log_metrics`` with the eval summary, ``log_artifacts`` and ``finish(None)``."""

    def start(self, run):
        """Open (or reopen, when ``run.resumed``) the run; log ``run.params`` on a new run."""

    def log_metrics(self, metrics, step):
        """Log {name: number} at ``step`` (the epoch)."""

    def log_artifacts(self, paths, folder=None):
        """Log files (pictures, CSV, YAML), under ``folder`` when given."""

    def finish(self, status):
        """'finished', 'failed' or 'killed' at the end of training; None after an eval (status unchanged)."""


def flat_params(recipe, prefix=""):
    """The recipe as {dotted key: number, boolean or text}; lists, nulls and empty mappings
    (``log: {mlflow: {}}``, no args) as their JSON text."""
    out = {}
    for key, value in recipe.items():
        if isinstance(value, dict) and value:
            out.update(flat_params(value, f"{prefix}{key}."))
        elif isinstance(value, (bool, int, float, str)):
            out[f"{prefix}{key}"] = value
        else:
            out[f"{prefix}{key}"] = json.dumps(value, default=str)
    return out


def numbers(row, prefix=""):
    """{prefix + key: float} of the numeric values of a (nested) row; booleans and text left out."""
    from .resume import flatten

    return {f"{prefix}{k}": float(v) for k, v in flatten(row).items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


def eval_numbers(summary, prefix=""):
    """The numbers of an eval summary.json: its ``metrics`` (every task has them), flattened."""
    metrics = summary.get("metrics")
    return numbers(metrics if isinstance(metrics, dict) else summary, prefix)


def pictures(folder):
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in PICTURE_SUFFIXES)


class Loggers:
    """The loggers of one run, called together; an empty one does nothing."""

    def __init__(self, items=()):
        self.items = list(items)  # [(name, logger)]

    @classmethod
    def create(cls, recipe):
        """The loggers the recipe's ``log`` names, built now: a missing package fails before training."""
        from .plugins import get

        registry = get("loggers")
        return cls((name, registry.get(name).factory(**options)) for name, options in (recipe.get("log") or {}).items())

    def __bool__(self):
        return bool(self.items)

    def start(self, run_dir, recipe, resumed=False, command="train"):
        run_dir = Path(run_dir)
        state = read_state(run_dir)
        for name, logger in self.items:
            run = LoggedRun(run_dir, run_dir.name, recipe, flat_params(recipe), state.setdefault(name, {}), resumed,
                            command)
            try:
                logger.start(run)
            except FashionError:
                raise
            except Exception as exc:  # a wrong URI, an unreachable server: before any epoch is spent
                raise FashionError(f"log.{name}: could not start: {' '.join(str(exc).split())[:300]}") from None
        if self.items:
            write_json(run_dir / STATE_FILE, state)

    def _each(self, method, *args):
        for name, logger in list(self.items):
            try:
                getattr(logger, method)(*args)
            except Exception as exc:  # never a lost run for a lost tracking server: say so once, go on
                print(f"Warning: logger '{name}' failed and is turned off for this run: "
                      f"{' '.join(str(exc).split())[:300]}", file=sys.stderr)
                self.items.remove((name, logger))

    def epoch(self, row):
        """An epoch's row of metrics.csv, at step = its epoch."""
        if self.items:
            metrics = {k: v for k, v in numbers(row).items() if k != "epoch" and not math.isinf(v)}
            self._each("log_metrics", metrics, int(row["epoch"]))

    def artifacts(self, paths, folder=None):
        paths = [Path(p) for p in paths if Path(p).is_file()]
        if self.items and paths:
            self._each("log_artifacts", paths, folder)

    def finish(self, status):
        self._each("finish", status)

    @contextmanager
    def training(self, run_dir, recipe, resumed=False):
        """Start the loggers for a training block; at its end log the run's pictures, metrics.csv and
        recipe.yaml, and finish with the block's outcome."""
        if not self.items:
            yield self
            return
        self.start(run_dir, recipe, resumed)
        status = "failed"
        try:
            yield self
            status = "finished"
        except KeyboardInterrupt:
            status = "killed"
            raise
        finally:
            self.artifacts([*pictures(run_dir), *(Path(run_dir) / f for f in RUN_FILES)])
            self.finish(status)


def read_state(run_dir):
    try:
        state = json.loads((Path(run_dir) / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def log_eval(run_dir, recipe, summary, out, step):
    """Report an eval of a run's checkpoint to the loggers that logged its training: the summary's
    metrics under ``<out folder name>/`` at ``step`` (the checkpoint's epoch) and the pictures in
    ``out``. Nothing for a run trained without loggers, or a checkpoint outside its run folder."""
    run_dir, out = Path(run_dir), Path(out)
    if not (recipe or {}).get("log") or not (run_dir / STATE_FILE).is_file():
        return
    try:
        loggers = Loggers.create(recipe)
        loggers.start(run_dir, recipe, resumed=True, command="eval")
    except FashionError as exc:  # the eval's own files are written: say what was not logged
        print(f"Warning: the eval was not logged: {exc}", file=sys.stderr)
        return
    loggers._each("log_metrics", eval_numbers(summary, prefix=f"{out.name}/"), step)
    loggers.artifacts(pictures(out), folder=out.name)
    loggers.finish(None)
