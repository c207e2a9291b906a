"""`folder`: a folder per class, optionally under train/val(idation)/test split folders."""
import os
from pathlib import Path

from fashioncli.api import IMAGE_EXTENSIONS, DataError, Imported, hookimpl, iter_image_files, normalize_split


@hookimpl
def register_datasets(register):
    register("folder", folder, detect=_detect_folder)


def folder(source):
    """A folder per class, optionally under train/val(idation)/test split folders."""
    root = Path(os.path.abspath(source))
    if not root.is_dir():
        raise DataError(f"'{root}' is not a folder")
    subdirs = _subdirs(root)
    split_dirs = {d: normalize_split(d.name) for d in subdirs}
    # A split folder holds class folders; a class merely called 'test' holds images.
    split_dirs = {d: s for d, s in split_dirs.items() if s and _subdirs(d)}
    samples, problems, classes = [], [], set()
    if split_dirs:
        for d in subdirs:
            if d not in split_dirs:
                problems.append({"path": str(d), "reason": "folder ignored: not a train/val/test split folder"})
        for d, split in split_dirs.items():
            _scan_classes(d, split, samples, problems, classes)
    else:
        _scan_classes(root, None, samples, problems, classes)
    if not samples:
        raise DataError(
            f"no images found in '{root}'; expected one folder per class ({', '.join(sorted(IMAGE_EXTENSIONS))}), "
            "optionally under train/val/test folders"
        )
    return Imported(sorted(classes), samples, problems)


def _subdirs(path):
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name != "__MACOSX")


def _scan_classes(root, split, samples, problems, classes):
    for path in iter_image_files(root, recursive=False):
        problems.append({"path": str(path), "reason": "not inside a class folder"})
    for class_dir in _subdirs(root):
        files = list(iter_image_files(class_dir))
        if not files:
            problems.append({"path": str(class_dir), "reason": "class folder has no images"})
            continue
        classes.add(class_dir.name)
        samples.extend((str(p), class_dir.name, split) for p in files)


def _detect_folder(source):
    return 1 if Path(source).is_dir() else 0  # anything more specific should win
