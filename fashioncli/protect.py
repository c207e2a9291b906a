"""Outputs never land on inputs: every verb checks where it will write before it opens anything.

Paths are compared after symlinks are resolved, so a link (or `a/../b`) to an input is the input.
"""
import os
from pathlib import Path

from .errors import OutputError
from .data.images import is_image_file


def real(path):
    return Path(os.path.realpath(path))


def inside(path, folder):
    """``path`` is ``folder`` or lies under it (both resolved)."""
    path, folder = real(path), real(folder)
    return path == folder or folder in path.parents


def check_output(out, *, files=(), folders=(), image_folders=(), what="output"):
    """Refuse ``out`` (one line, before anything is written) when it would overwrite an input.

    ``files``: paths it may not be (inputs, the model, its metadata); ``folders``: folders it may not
    be or lie in (a dataset, a checkpoints folder); ``image_folders``: folders whose images are
    inputs: an output may sit there (preds.csv beside the photos) but not under an image's name.
    """
    target = real(out)
    for path in files:
        if path is not None and real(path) == target:
            raise OutputError(f"{what} '{out}' is the input '{path}': writing it would destroy it; choose another path")
    for folder in folders:
        if folder is not None and inside(target, folder):
            raise OutputError(f"{what} '{out}' is inside '{folder}', which this command reads; choose a path outside it")
    for folder in image_folders:
        if is_image_file(target) and inside(target, folder):
            raise OutputError(f"{what} '{out}' has an image's name inside the input folder '{folder}': it would be "
                              "read as an input; choose another name")


def model_files(model):
    """The files a model argument stands for: the file and its .json metadata, and for a run (or a
    checkpoint in its checkpoints/ folder) every checkpoint and the recipe."""
    path = Path(model)
    run = path if path.is_dir() else path.parent.parent if path.parent.name == "checkpoints" else None
    files = [path, path.with_suffix(".json")] if not path.is_dir() else []
    if run is not None:
        files += [run / "recipe.yaml", *sorted((run / "checkpoints").glob("*"))]
    return files
