"""`table`: a table (CSV/parquet) of image paths and labels, or of several label columns as heads."""
import os
import posixpath
import re
from pathlib import Path
from typing import Annotated

from fashioncli.api import (
    TABLE_SUFFIXES, DataError, ImageError, Imported, check_box, derive_columns, head_labels, hookimpl,
    iter_image_files, normalize_heads, pick_column, read_table,
)


@hookimpl
def register_datasets(register):
    register("table", table, detect=_detect_table)


_WINDOWS_ABS = re.compile(r"^[A-Za-z]:/|^//")
# Column names tried, in order, when image_col / label_col / split_col are not given.
IMAGE_COLUMNS = ("image", "image_path", "path", "file", "filename", "file_name", "image_url", "img")
LABEL_COLUMNS = ("label", "class", "category", "target", "class_name")
SPLIT_COLUMNS = ("split", "subset")


def table(
    source,
    image_col: Annotated[str, "the column of image paths (default: the first of "
                         + ", ".join(IMAGE_COLUMNS) + ")"] = None,
    label_col: Annotated[str, "the column of class labels (default: the first of "
                         + ", ".join(LABEL_COLUMNS) + ")"] = None,
    root: Annotated[str, "the folder relative image paths start from (default: the table's folder)"] = None,
    split_col: Annotated[str, "the column naming each row's split, train/val/test (default: a 'split' or "
                         "'subset' column; none: prepare draws the splits)"] = None,
    heads: Annotated[object, "label columns as the heads of a multi-task model: [a, b] or {head: {column, "
                     "type: categorical|binary|multilabel, sep, columns, missing, parent, classes}}"] = None,
    derive: Annotated[dict, "composite columns to split first, e.g. {description: {sep: ' - ', "
                      "into: [master, sub]}}"] = None,
    box_cols: Annotated[object, "four columns x1,y1,x2,y2 with each row's bounding box in source pixels: "
                        "the image is cropped to it (default: whole images)"] = None,
    group_col: Annotated[str, "a column whose rows of one value (a product id, a sender, one photo) are "
                         "drawn into one split (default: none)"] = None,
):
    """A CSV/TSV/parquet table of image paths and labels (optional split column), or of several
    label columns for a multi-task model (``heads``).

    Windows separators are accepted, and a path whose leading folders do not exist under root (a
    table written elsewhere, e.g. 'data/images\\1.jpg' next to 'images/') is found by dropping
    them. A row may list the same image again with another box (two garments in one photo); a row
    with all four box cells empty uses the whole image. Image files under root that no row names
    are counted in prepare's report.
    """
    path = Path(source)
    if not path.is_file():
        raise DataError(f"table '{path}' not found")
    return table_columns(read_table(path), path, image_col, label_col, root, split_col, heads, derive, box_cols,
                         group_col)


def table_columns(columns, path, image_col=None, label_col=None, root=None, split_col=None, heads=None, derive=None,
                  box_cols=None, group_col=None):
    """``table`` on columns already read ({name: [text]}), for importers of tables with a known layout."""
    derive_columns(columns, derive, path)
    names = list(columns)
    image_col = pick_column(names, image_col, IMAGE_COLUMNS, "image", path)
    boxes = _box_cells(columns, box_cols, path)
    if heads is not None:
        declared, labels = head_labels(columns, normalize_heads(heads), path)
    else:
        label_col = pick_column(names, label_col, LABEL_COLUMNS, "label", path)
        declared, labels = None, columns[label_col]
    if split_col is None:
        split_col = next((c for c in names if c.lower() in SPLIT_COLUMNS), None)
    else:
        pick_column(names, split_col, (), "split", path)
    groups_of = columns[pick_column(names, group_col, (), "group", path)] if group_col else None
    folder = Path(root) if root else path.parent
    resolve = _resolver(folder)

    samples, problems, classes, kept_boxes, groups = [], [], set(), [], {}
    splits = columns[split_col] if split_col else [None] * len(columns[image_col])
    for line, (image, label, split, box) in enumerate(zip(columns[image_col], labels, splits, boxes), start=2):
        group = groups_of[line - 2] if groups_of else None
        if group and group.strip() and image and image.strip():
            groups.setdefault(resolve(image), group.strip())
        where = f"{path.name} row {line}"
        if not image or not image.strip():
            problems.append({"path": where, "reason": f"empty '{image_col}'"})
            continue
        if declared is None:
            if label is None or not label.strip():
                problems.append({"path": resolve(image), "reason": f"{where}: empty '{label_col}'", "kind": "no label"})
                continue
            label = label.strip()
            classes.add(label)
        try:
            box = check_box(box)
        except ImageError as exc:
            problems.append({"path": resolve(image), "reason": f"{where}: {exc}"})
            continue
        samples.append((resolve(image), label, split.strip() if split else None))  # prepare checks it
        kept_boxes.append(box)
    if not samples:
        raise DataError(f"table '{path}' lists no usable images")
    named = {os.path.normpath(p) for p, *_ in samples}
    unlisted = [str(p) for p in iter_image_files(folder) if os.path.normpath(os.path.abspath(p)) not in named]
    return Imported(sorted(classes), samples, problems, heads=declared, boxes=kept_boxes if box_cols else None,
                    groups=groups or None, unlisted=unlisted)


def _box_cells(columns, box_cols, path):
    """Per row: None (no box_cols, or all four cells empty) or the four cells (x1, y1, x2, y2) as text."""
    n = len(next(iter(columns.values()), []))
    if box_cols is None:
        return [None] * n
    if isinstance(box_cols, str):
        box_cols = [c.strip() for c in box_cols.split(",")]
    if not isinstance(box_cols, (list, tuple)) or len(box_cols) != 4:
        raise DataError(f"box_cols: expected four columns x1,y1,x2,y2, got {box_cols!r}")
    cols = [columns[pick_column(list(columns), str(c), (), "box", path)] for c in box_cols]
    out = []
    for cells in zip(*cols):
        cells = [(c or "").strip() for c in cells]
        out.append(None if not any(cells) else tuple(cells))
    return out


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
