"""From a source to what its importer lists: archives unpacked, the importer chosen (by name, or
by the detect scores of the registered ones) and run, and its answer checked."""
import inspect
import os
import shutil
from pathlib import Path

from ..errors import DataError, PluginError, RecipeError
from .archives import extract
from .importing import Imported, normalize_split


def unpack(archive, dest):
    """Extract an archive source into ``dest`` -> the folder to import: single wrapper folders
    (GitHub's <repo>-<branch>/) are stepped into, split folders (train/...) are not."""
    shutil.rmtree(dest, ignore_errors=True)
    root = extract(archive, dest)
    while True:
        entries = [p for p in root.iterdir() if not p.name.startswith(".") and p.name != "__MACOSX"]
        if len(entries) != 1 or not entries[0].is_dir() or normalize_split(entries[0].name):
            return root
        root = entries[0]


def pick_importer(source, importer=None):
    """-> (name, registry entry) of the importer called ``importer``, or (None) of the registered
    importer whose ``detect`` scores ``source`` highest; DataError when none recognises it."""
    from ..plugins import get

    datasets = get("datasets")
    if importer is not None:
        return importer, datasets.get(importer)
    scores = []
    for entry in datasets:
        detect = entry.extra.get("detect")
        if detect is None:
            continue
        try:
            scores.append((detect(source) or 0, entry.name))
        except Exception as exc:  # a plugin's bug must name the plugin, not look like bad data
            raise PluginError(
                f"dataset importer '{entry.name}' (plugin '{entry.plugin}') failed to inspect '{source}': {exc}"
            ) from exc
    score, best = max(scores, default=(0, None))
    if score <= 0:
        if not Path(str(source)).exists():
            raise missing_source(source)
        raise DataError(f"cannot tell how to read '{source}'; pass an importer (known: {', '.join(datasets.names())})")
    return best, datasets.get(best)


def check_source(source, entry, args):
    """Refuse a source path that does not exist before its importer runs (it would blame the folder's
    contents), unless the importer makes the source itself: a name it recognises ('synthetic'), or
    a download (download=true)."""
    if Path(str(source)).exists() or args.get("download"):
        return
    detect = entry.extra.get("detect")
    if detect is None or not (detect(source) or 0) > 0:
        downloads = "download" in inspect.signature(entry.factory).parameters
        raise missing_source(source, f"; or let '{entry.name}' fetch it there: --arg download=true" if downloads else "")


def missing_source(source, more=""):
    """The DataError for a SOURCE that does not exist: where it was looked for, and how to give one."""
    where = "" if Path(str(source)).is_absolute() else f" (relative to '{os.getcwd()}')"
    return DataError(f"source '{source}' does not exist{where}; give the dataset's folder, table or archive as "
                     f"SOURCE: fashion prepare SOURCE OUT, or fashion prepare --recipe NAME SOURCE{more}")


def run_importer(entry, source, out, args):
    """The importer ``entry`` run on ``source`` with ``args`` -> its checked ``Imported``."""
    # Importers that write files (IDX -> PNG, drawn images) declare an `out` parameter.
    try:  # the importer's signature declares its arguments: `fashion plugins NAME` shows them
        entry.check_args(args, injected=("source", "out"), where="--arg")
    except RecipeError as exc:
        text = str(exc).replace("--arg.args.", "--arg ", 1).replace("--arg.args:", "--arg:", 1)
        raise RecipeError(f"{text}; see `fashion plugins {entry.name}`") from None
    if "out" in inspect.signature(entry.factory).parameters:
        args = {**args, "out": str(out)}
    imported = entry.factory(str(source), **args)
    if not isinstance(imported, Imported):
        raise PluginError(f"dataset importer '{entry.name}' returned {type(imported).__name__}, not Imported")
    if imported.boxes is not None and len(imported.boxes) != len(imported.samples):
        raise PluginError(f"dataset importer '{entry.name}' returned {len(imported.boxes)} boxes for "
                          f"{len(imported.samples)} samples; boxes must be aligned with samples")
    return imported
