"""Generic importers: a folder per class, or a table (CSV/parquet) of image paths and labels."""
import os
import posixpath
import re
from pathlib import Path

from fashioncli import hookimpl
from fashioncli.errors import DataError
from fashioncli.images import IMAGE_EXTENSIONS, iter_image_files
from fashioncli.importing import (
    TABLE_SUFFIXES, Imported, derive_columns, head_labels, normalize_heads, normalize_split, pick_column, read_table,
)


@hookimpl
def register_datasets(register):
    register("folder", folder, detect=_detect_folder)
    register("table", table, detect=_detect_table)


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


_WINDOWS_ABS = re.compile(r"^[A-Za-z]:/|^//")
# Column names tried, in order, when image_col / label_col / split_col are not given.
IMAGE_COLUMNS = ("image", "image_path", "path", "file", "filename", "file_name", "image_url", "img")
LABEL_COLUMNS = ("label", "class", "category", "target", "class_name")
SPLIT_COLUMNS = ("split", "subset")


def table(source, image_col=None, label_col=None, root=None, split_col=None, heads=None, derive=None):
    """A CSV/TSV/parquet table of image paths and labels (optional split column), or of several
    label columns for a multi-task model (``heads``).

    Relative paths are resolved against ``root`` (default: the table's folder); Windows
    separators are accepted, and a path whose leading folders do not exist under root (a table
    written elsewhere, e.g. 'data/images\\1.jpg' next to 'images/') is found by dropping them.
    heads: label columns as heads (see ``fashioncli.importing.normalize_heads``);
    derive: composite columns to split first, e.g. {description: {sep: ' - ', into: [master, sub]}}.
    """
    path = Path(source)
    if not path.is_file():
        raise DataError(f"table '{path}' not found")
    return table_columns(read_table(path), path, image_col, label_col, root, split_col, heads, derive)


def table_columns(columns, path, image_col=None, label_col=None, root=None, split_col=None, heads=None, derive=None):
    """``table`` on columns already read ({name: [text]}), for importers of tables with a known layout."""
    derive_columns(columns, derive, path)
    names = list(columns)
    image_col = pick_column(names, image_col, IMAGE_COLUMNS, "image", path)
    if heads is not None:
        declared, labels = head_labels(columns, normalize_heads(heads), path)
    else:
        label_col = pick_column(names, label_col, LABEL_COLUMNS, "label", path)
        declared, labels = None, columns[label_col]
    if split_col is None:
        split_col = next((c for c in names if c.lower() in SPLIT_COLUMNS), None)
    else:
        pick_column(names, split_col, (), "split", path)
    resolve = _resolver(Path(root) if root else path.parent)

    samples, problems, classes = [], [], set()
    splits = columns[split_col] if split_col else [None] * len(columns[image_col])
    for line, (image, label, split) in enumerate(zip(columns[image_col], labels, splits), start=2):
        where = f"{path.name} row {line}"
        if not image or not image.strip():
            problems.append({"path": where, "reason": f"empty '{image_col}'"})
            continue
        if declared is None:
            if label is None or not label.strip():
                problems.append({"path": resolve(image), "reason": f"{where}: empty '{label_col}'"})
                continue
            label = label.strip()
            classes.add(label)
        samples.append((resolve(image), label, split.strip() if split else None))  # prepare checks it
    if not samples:
        raise DataError(f"table '{path}' lists no usable images")
    return Imported(sorted(classes), samples, problems, heads=declared)


def _resolver(root):
    """value -> absolute path string; folders are looked up once per distinct folder."""
    found = {}

    def resolve(value):
        value = value.strip().replace("\\", "/")
        if os.path.isabs(value) or _WINDOWS_ABS.match(value):
            return value  # absolute paths are kept as written
        head, name = posixpath.split(value)
        if head not in found:
            found[head] = _find_folder(root, head, name)
        return str(found[head] / name)

    return resolve


def _find_folder(root, head, name):
    parts = [p for p in head.split("/") if p not in ("", ".")]
    for start in range(len(parts) + 1):  # root/a/b, then root/b, then root
        candidate = root.joinpath(*parts[start:])
        if (candidate / name).exists():
            return Path(os.path.abspath(candidate))
    return Path(os.path.abspath(root.joinpath(*parts)))  # missing: reported when the image is read


def _detect_table(source):
    path = Path(source)
    return 10 if path.is_file() and path.suffix.lower() in TABLE_SUFFIXES else 0
