"""Run folders: where `fashion train` writes, and the only folders it may ever replace.

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
from .errors import FashionError, RecipeError
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
def claim(path, replace=False):
    """Make ``path`` this run's folder (with its marker) for the block that starts writing it.

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
            write_text(path / MARKER, json.dumps({"fashion_version": __version__, "created": time.time()}) + "\n")
        yield path
    except BaseException:
        if aside is not None:
            shutil.rmtree(path, ignore_errors=True)  # the folder this block made, not the user's
            os.rename(aside, path)
        raise
    if aside is not None:
        shutil.rmtree(aside)
