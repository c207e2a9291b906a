"""A prepared dataset: the directory `fashion prepare` writes and train/eval read.

    <dir>/dataset.json          {"format_version": 1, "task": "classification", "classes": [...],
                                 "splits": {"train": n, ...}, "importer", "source", "image_size"}
                                "task" is the dataset's kind (a task's ``dataset_kind``); the
                                kind's ``Preparation`` writes the entries on labels, e.g. a
                                multi-task dataset's "heads": {name: {"type", "classes", "parent"?,
                                "parent_of"?}} (see tasks/multitask/heads.py), a segmentation
                                dataset's "classes", "ignore_index", "palette"? and "class_sets";
                                "boxes": true when the samples have bounding boxes
    <dir>/<split>.csv           header path,label (absolute path, class name), or
                                path,<head>,... (one text cell per head, '' = missing);
                                or path,mask (segmentation: a prepared index PNG under masks/);
                                a last column box ("x1 y1 x2 y2" source pixels, '' = whole image)
                                when dataset.json says "boxes": the cache holds that crop, and
                                the same path may then appear once per box
    <dir>/report.json|.md       counts, image sizes, duplicates, dropped files
    <dir>/masks/<split>/*.png   segmentation: the checked class-index masks, in the prepared classes
    <dir>/cache/<size>/<split>.u8|.json   decoded images (see cache.py); <split>.mask.u8: masks
"""
import json
from pathlib import Path

import numpy as np

from .cache import cached
from ..errors import DataError
from .images import ImageError, parse_box
from ..io import ENCODING, CsvReader

FORMAT_VERSION = 1


def dataset_kinds():
    """The kinds of prepared dataset the registered tasks train on."""
    from ..plugins import get

    return sorted({entry.factory.dataset_kind for entry in get("tasks")})


def required_keys(kind):
    """The dataset.json entries a dataset of ``kind`` cannot be read without, as the task that
    prepares it declares them (``Preparation.required``)."""
    from ..plugins import get

    return sorted({key for entry in get("tasks") if entry.factory.dataset_kind == kind
                   for key in getattr(entry.factory.preparation(), "required", ())})


class PreparedDataset:
    def __init__(self, root, meta):
        self.root = Path(root)
        self.meta = meta
        self.kind = meta["task"]
        self.classes = list(meta.get("classes") or [])
        self.class_index = {name: i for i, name in enumerate(self.classes)}
        self.splits = list(meta["splits"])
        self.image_size = meta.get("image_size")
        self._rows = {}
        self._boxes = {}

    @classmethod
    def open(cls, path):
        root = Path(path)
        meta_path = root / "dataset.json"
        if not meta_path.is_file():
            raise DataError(
                f"'{root}' is not a prepared dataset (no dataset.json); "
                f"make one with: fashion prepare SOURCE {root}"
            )
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            version, kind = meta["format_version"], meta["task"]
            meta["splits"]
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError(f"'{meta_path}' is damaged ({exc}); run fashion prepare again") from None
        if version != FORMAT_VERSION:
            raise DataError(
                f"'{root}' was prepared in format {version}, this fashion reads {FORMAT_VERSION}; "
                "run fashion prepare again"
            )
        kinds = dataset_kinds()
        if kind not in kinds:
            raise DataError(f"'{root}' holds a {kind} dataset; this fashion reads {', '.join(kinds)} datasets")
        missing = [key for key in required_keys(kind) if key not in meta]
        if missing:
            raise DataError(f"'{meta_path}' is damaged (no '{missing[0]}'); run fashion prepare again")
        return cls(root, meta)

    def require(self, kind, task=None):
        """DataError unless the dataset is of ``kind`` (what the recipe's ``task`` trains on)."""
        if self.kind != kind:
            raise DataError(f"'{self.root}' is a {self.kind} dataset but the recipe's task is {task or kind}")
        return self

    def _check_split(self, split):
        if split not in self.splits:
            raise DataError(f"'{self.root}' has no '{split}' split (it has: {', '.join(self.splits) or 'none'})")

    def rows(self, split):
        """``<split>.csv`` as a list of dicts (its header's columns), in the order of its cache."""
        self._check_split(split)
        if split not in self._rows:
            path = self.root / f"{split}.csv"
            try:
                with open(path, newline="", **ENCODING) as f:
                    self._rows[split] = list(CsvReader(f))
            except OSError as exc:
                raise DataError(f"cannot read '{path}': {exc.strerror}; run fashion prepare again") from None
        return list(self._rows[split])  # read once; a caller's list of its own

    def paths(self, split):
        """The split's absolute image paths, in the order of ``<split>.csv``."""
        try:
            return [row["path"] for row in self.rows(split)]
        except KeyError:
            raise DataError(f"{self.root / split}.csv has no path column; run fashion prepare again") from None

    def labels(self, split):
        """The split's class indices (into ``classes``) of its label column."""
        out = []
        for line, row in enumerate(self.rows(split), start=2):
            try:
                out.append(self.class_index[row["label"]])
            except KeyError:
                raise DataError(
                    f"{self.root / split}.csv:{line}: needs columns path,label with a label from dataset.json, "
                    f"got {dict(row)}"
                ) from None
        return np.array(out, dtype=np.int64)

    def samples(self, split):
        """[(absolute image path, class index, or None when the rows have no label column)] in the
        order of ``<split>.csv``."""
        rows = self.rows(split)
        labelled = bool(rows) and "label" in rows[0]
        labels = self.labels(split).tolist() if labelled else [None] * len(rows)
        return list(zip(self.paths(split), labels))

    def boxes(self, split):
        """Each row's bounding box (x1, y1, x2, y2) or None, in the order of ``<split>.csv``;
        None for a split without a box column (every image whole)."""
        if split not in self._boxes:
            boxes = None
            if self.meta.get("boxes"):
                rows, boxes = self.rows(split), []
                for line, row in enumerate(rows, start=2):
                    try:
                        boxes.append(parse_box(row["box"]))
                    except KeyError:
                        raise DataError(f"{self.root / split}.csv has no box column; "
                                        "run fashion prepare again") from None
                    except ImageError as exc:
                        raise DataError(f"{self.root / split}.csv:{line}: {exc}; run fashion prepare again") from None
            self._boxes[split] = boxes
        return self._boxes[split]

    def cache(self, split, size=None, workers=None, progress=True):
        """The split's images as an N x size x size x 3 uint8 array (memmap), built on first use."""
        size = int(size or self.image_size)
        return cached(self.paths(split), size, self.root / "cache" / str(size), split,
                      workers=workers, progress=progress, boxes=self.boxes(split))

    def __repr__(self):
        counts = ", ".join(f"{s}={n}" for s, n in self.meta["splits"].items())
        return f"PreparedDataset('{self.root}', {len(self.classes)} classes, {counts})"
