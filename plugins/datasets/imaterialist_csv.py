"""The iMaterialist (Fashion) Kaggle CSV: one row per instance, run-length encoded (EncodedPixels).

See _annotation_masks.py for how overlapping instances are painted.
"""
import csv as csvlib
import functools
import json as jsonlib
from pathlib import Path
from typing import Annotated

import numpy as np

from fashioncli.api import IMAGE_EXTENSIONS, DataError, Imported, MaskError, hookimpl

from ._annotation_masks import BACKGROUND, DETECT_SCORE, first_dir, image_listing, mask_dtype, paint


@hookimpl
def register_datasets(register):
    register("imaterialist-csv", imaterialist_csv, detect=_detect_kaggle)


def starts_lengths_to_mask(text, height, width, where):
    """Kaggle's EncodedPixels ('start length ...', 1-based starts, column-major) -> (H, W) bool mask."""
    try:
        pairs = np.array(text.split(), dtype=np.int64)
    except ValueError:
        raise MaskError(f"{where}: EncodedPixels holds something other than whole numbers") from None
    if len(pairs) % 2:
        raise MaskError(f"{where}: EncodedPixels has {len(pairs)} numbers; expected start,length pairs")
    starts, lengths = pairs[0::2] - 1, pairs[1::2]
    total = height * width
    if len(starts) and (starts.min() < 0 or lengths.min() < 0 or (starts + lengths).max() > total):
        raise MaskError(f"{where}: EncodedPixels has a run outside the {height}x{width} image (starts are 1-based, "
                        f"at most {total})")
    # +1/-1 at each run's ends, then a running sum (overlapping runs stay painted)
    flat = np.bincount(starts, minlength=total + 1) - np.bincount(starts + lengths, minlength=total + 1)
    return (np.cumsum(flat[:total]) > 0).reshape(width, height).T



KAGGLE_COLUMNS = ("ImageId", "EncodedPixels", "Height", "Width", "ClassId")
KAGGLE_LABELS = "label_descriptions.json"


def imaterialist_csv(
    source,
    csv: Annotated[str, "the CSV, relative to the folder (default: train.csv, else the one CSV with its "
                   "columns)"] = None,
    images: Annotated[str, "the image folder (default: the folder named like the CSV beside it, else "
                      "images/)"] = None,
    labels: Annotated[str, "the label descriptions JSON (default: label_descriptions.json beside the CSV, "
                      "else classes are class_<id>)"] = None,
):
    """The iMaterialist-Fashion Kaggle CSV (2019 and 2020 competitions) -> class-index masks.

    Layout: ``train.csv`` with columns ImageId, EncodedPixels, Height, Width, ClassId (one row per
    garment region; EncodedPixels = 'start length ...', 1-based starts, pixels numbered down each
    column; ClassId '6' or with attributes '6_28_77'), images in ``train/<ImageId>`` or
    ``train/<ImageId>.jpg``, optional ``label_descriptions.json`` ({"categories": [{id, name}]}).

    source: the folder, or the CSV's path.
    csv: the CSV (relative to the folder); default: train.csv, else the one CSV with those columns.
    images: the image folder; default: the folder named like the CSV (train/) beside it, else images/.
    labels: the label descriptions JSON; default: label_descriptions.json beside the CSV if present,
        else classes are named class_<id>.

    Classes: background = 0, category id k -> index k + 1. Splits are left to ``prepare`` (the
    CSV is the labelled training set). An image file that is missing, rows of one image that
    disagree on its size, or a ClassId that is not a number make problem rows; a bad EncodedPixels
    is a MaskError when the mask is read.
    """
    src = Path(source)
    if src.is_file():
        table = src
    elif src.is_dir():
        table = (Path(csv) if Path(csv).is_absolute() else src / csv) if csv else _kaggle_csv(src)
    else:
        raise DataError(f"source '{source}' not found (a folder or the Kaggle CSV)")
    if not table.is_file():
        raise DataError(f"CSV '{table}' not found")
    base = table.parent
    if images is not None:
        folder = Path(images) if Path(images).is_absolute() else base / images
        if not folder.is_dir():
            raise DataError(f"images: '{folder}' is not a folder")
    else:
        folder = first_dir(base, (table.stem, "train", "images"))
        if folder is None:
            raise DataError(f"no image folder beside '{table.name}' (looked for {table.stem}/, train/, images/); "
                            "pass images=FOLDER")
    names = _kaggle_names(base, labels)

    problems = []
    rows, column = _kaggle_rows(table, problems)
    listing = image_listing(folder)
    seen_ids = set()
    samples, masks = [], []
    for image_id, entries in rows.items():
        where = f"{table.name} ImageId '{image_id}'"
        name = image_id if Path(image_id).suffix.lower() in IMAGE_EXTENSIONS else None
        name = name if name in listing else next((image_id + s for s in (".jpg", ".jpeg", ".png", ".JPG")
                                                  if image_id + s in listing), None)
        if name is None:
            problems.append({"path": str(folder / image_id),
                             "reason": f"image file not found (listed in {table.name})"})
            continue
        sizes = {(h, w) for _, h, w, _ in entries}
        if len(sizes) > 1:
            shown = ", ".join(f"{h}x{w}" for h, w in sorted(sizes))
            problems.append({"path": str(listing[name]), "reason": f"{where}: rows give different sizes ({shown})"})
            continue
        bad = next((c for _, _, _, c in entries if not isinstance(c, int)), None)
        if bad is not None:
            problems.append({"path": str(listing[name]), "reason": f"{where}: ClassId '{bad}' does not start with a "
                                                                   "category number"})
            continue
        if names is not None:
            unknown = next((c for _, _, _, c in entries if c not in names), None)
            if unknown is not None:
                problems.append({"path": str(listing[name]), "reason": f"{where}: ClassId {unknown} is not in "
                                                                       f"{KAGGLE_LABELS}"})
                continue
        seen_ids.update(c for _, _, _, c in entries)
        (h, w), = sizes
        samples.append((str(listing[name]), None, None))
        masks.append([table, column, [(off, c + 1) for off, _, _, c in entries], h, w, where])
    if not samples:
        raise DataError(f"no usable image in '{table}' ({len(problems)} problems)")

    top = max(names) if names else max(seen_ids)
    classes = [BACKGROUND] + [names.get(k, f"class_{k}") if names else f"class_{k}" for k in range(top + 1)]
    dtype, ignore = mask_dtype(len(classes))
    masks = [functools.partial(_kaggle_mask, *m, dtype) for m in masks]
    return Imported(classes, samples, problems, masks=masks, ignore_index=ignore)


def _kaggle_header(path):
    """{column name: position}, or None when the file cannot be read as a CSV."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            return {n.strip(): i for i, n in enumerate(next(csvlib.reader(f), []))}
    except (OSError, UnicodeDecodeError, csvlib.Error):
        return None


def _kaggle_csv(root):
    if (root / "train.csv").is_file():
        return root / "train.csv"
    found = [p for p in sorted(root.glob("*.csv")) if {"ImageId", "EncodedPixels"} <= set(_kaggle_header(p) or ())]
    if len(found) != 1:
        which = "no CSV" if not found else f"{len(found)} CSVs ({', '.join(p.name for p in found)})"
        raise DataError(f"'{root}' has {which} with ImageId and EncodedPixels columns; pass csv=FILE")
    return found[0]


def _kaggle_names(base, labels):
    """{category id: name} from the label descriptions, or None without them."""
    path = (Path(labels) if Path(labels).is_absolute() else base / labels) if labels else base / KAGGLE_LABELS
    if not path.is_file():
        if labels:
            raise DataError(f"labels: '{path}' not found")
        return None
    try:
        data = jsonlib.loads(path.read_text(encoding="utf-8-sig"))
        return {int(c["id"]): str(c["name"]) for c in data["categories"]}
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read '{path}': {str(exc).splitlines()[0]}") from None
    except (KeyError, TypeError):
        raise DataError(f"'{path}' needs a list 'categories' of {{id, name}} (Kaggle's {KAGGLE_LABELS})") from None


def _kaggle_rows(path, problems):
    """({ImageId: [(byte offset of the row, height, width, class id or the unparsable text)]},
    position of the EncodedPixels column).

    The EncodedPixels are not kept: the reader seeks back to its rows (the 2019 CSV is over 1 GB).
    """
    header = _kaggle_header(path)
    if header is None:
        raise DataError(f"cannot read '{path}' as a CSV")
    lowered = {k.lower(): v for k, v in header.items()}
    missing = [c for c in KAGGLE_COLUMNS if c.lower() not in lowered]
    if missing:
        raise DataError(f"'{path.name}' has no column {', '.join(missing)} (columns: {', '.join(header)}); "
                        f"the iMaterialist CSV has {', '.join(KAGGLE_COLUMNS)}")
    at = [lowered[c.lower()] for c in KAGGLE_COLUMNS]
    need = max(at) + 1
    rows = {}
    with open(path, "rb") as f:
        offset = len(f.readline())
        for number, raw in enumerate(f, start=2):
            here, offset = offset, offset + len(raw)
            if not raw.strip():
                continue
            row = next(csvlib.reader([raw.decode("utf-8", "replace")]), [])
            if len(row) < need:
                problems.append({"path": str(path),
                                 "reason": f"line {number}: {len(row)} fields, expected {len(header)}"})
                continue
            image_id, _, h, w, cls = (row[i].strip() for i in at)
            try:
                h, w = int(h), int(w)
            except ValueError:
                problems.append({"path": str(path), "reason": f"line {number}: Height/Width '{h}'/'{w}' are not "
                                                              "whole numbers"})
                continue
            head = cls.split("_")[0]
            rows.setdefault(image_id, []).append((here, h, w, int(head) if head.isdigit() else cls))
    return rows, at[1]


def _kaggle_mask(table, column, entries, height, width, where, dtype):
    layers = []
    try:
        with open(table, "rb") as f:
            for offset, value in entries:
                f.seek(offset)
                row = next(csvlib.reader([f.readline().decode("utf-8", "replace")]))
                layers.append((value, starts_lengths_to_mask(row[column], height, width, where)))
    except OSError as exc:
        raise MaskError(f"cannot read '{table}': {exc.strerror or exc}") from None
    return paint((height, width), layers, dtype)


def _detect_kaggle(source):
    src = Path(str(source))
    if src.is_file():
        tables = [src] if src.suffix.lower() == ".csv" else []
    elif src.is_dir():
        tables = sorted(src.glob("*.csv"))
    else:
        return 0
    for t in tables:
        if {"imageid", "encodedpixels"} <= {k.lower() for k in (_kaggle_header(t) or ())}:
            return DETECT_SCORE
    return 0
