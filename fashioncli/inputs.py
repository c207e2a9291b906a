"""What `fashion predict` (and export's check images) read: image files, folders, glob patterns and
.txt lists of paths, found lazily; and the checks that -o never lands on an input or the model."""
import glob
import os

from .data.images import is_image_file, iter_image_files
from .errors import DataError
from .io import ENCODING
from .protect import check_output, model_files


def _is_pattern(arg):
    return any(c in arg for c in "*?[")


def check_inputs(inputs):
    """-> the inputs as a list of strings; fails before any work when one is neither an existing
    path nor a glob pattern."""
    inputs = [str(inputs)] if isinstance(inputs, (str, os.PathLike)) else [str(a) for a in inputs]
    if not inputs:
        raise DataError("no inputs: pass image files, folders, glob patterns or a .txt list of paths")
    for arg in inputs:
        if not os.path.exists(arg) and not _is_pattern(arg):
            raise DataError(f"input '{arg}' does not exist (pass files, folders, glob patterns or a .txt list)")
    return inputs


def iter_inputs(inputs, skip=()):
    """Image paths from files, folders (recursive), glob patterns and .txt lists, lazily.

    Files named explicitly (or listed in a .txt, one path a line, relative to the current
    directory) are kept whatever their type, so an unreadable one gets an error row;
    folders and patterns yield image files only, outside the folders in ``skip``.
    """
    for arg in check_inputs(inputs):
        if os.path.isdir(arg):
            yield from map(str, iter_image_files(arg, skip=skip))
        elif arg.lower().endswith(".txt") and os.path.isfile(arg):
            with open(arg, **ENCODING) as f:
                yield from (line.strip() for line in f if line.strip())
        elif os.path.exists(arg):
            yield arg
        else:
            for match in glob.iglob(arg, recursive=True):
                if os.path.isdir(match):
                    yield from map(str, iter_image_files(match, skip=skip))
                elif is_image_file(match):
                    yield match


def check_out(out, inputs, model):
    """-o may not be the model, an input file, an entry of a .txt list, or an image in an input folder."""
    files, folders = model_files(model), []
    for arg in inputs:
        for match in glob.glob(arg, recursive=True) if _is_pattern(arg) and not os.path.exists(arg) else [arg]:
            (folders if os.path.isdir(match) else files).append(match)
            if match.lower().endswith(".txt") and os.path.isfile(match):
                with open(match, **ENCODING) as f:
                    files += [line.strip() for line in f if line.strip()]
    check_output(out, files=files, image_folders=folders, what="-o")


def path_key(path):
    """The key under which an input counts once (and a written row marks it done)."""
    return os.path.abspath(path)


def unique(paths, done, stats):
    """Drop repeated paths and, when resuming, paths whose rows are already written."""
    seen = set()
    for path in paths:
        key = path_key(path)
        if key in done:
            stats["skipped"] += 1
        elif key in seen:
            stats["duplicates"] += 1
        else:
            seen.add(key)
            yield path
