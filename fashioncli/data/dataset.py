"""A prepared dataset: the directory `fashion prepare` writes and train/eval read.

    <dir>/dataset.json          {"format_version": 1, "task": "classification", "classes": [...],
                                 "splits": {"train": n, ...}, "importer", "source", "image_size"}
                                a multi-task dataset has "task": "multitask" and "heads":
                                {name: {"type", "classes", "parent"?, "parent_of"?}} (see heads.py);
                                "boxes": true when the samples have bounding boxes;
                                a segmentation dataset has "task": "segmentation", "classes",
                                "ignore_index", "palette"? and "class_sets" (segmentation/prepare.py)
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
from ..tasks.multitask.heads import heads_from_json
from .images import ImageError, parse_box
from ..io import ENCODING, CsvReader

FORMAT_VERSION = 1


def dataset_kinds():
    """The kinds of prepared dataset the registered tasks train on."""
    from ..plugins import get

    return sorted({entry.factory.dataset_kind for entry in get("tasks")})


class PreparedDataset:
    def __init__(self, root, meta):
        self.root = Path(root)
        self.meta = meta
        self.task = meta["task"]
        self.heads = heads_from_json(meta.get("heads") or {})
        self.classes = list(meta.get("classes") or [])
        self.class_index = {name: i for i, name in enumerate(self.classes)}
        self.splits = list(meta["splits"])
        self.image_size = meta.get("image_size")
        self._samples = {}
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
            version, task = meta["format_version"], meta["task"]
            meta["heads" if task == "multitask" else "classes"], meta["splits"]
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError(f"'{meta_path}' is damaged ({exc}); run fashion prepare again") from None
        if version != FORMAT_VERSION:
            raise DataError(
                f"'{root}' was prepared in format {version}, this fashion reads {FORMAT_VERSION}; "
                "run fashion prepare again"
            )
        kinds = dataset_kinds()
        if task not in kinds:
            raise DataError(f"'{root}' holds a {task} dataset; this fashion reads {', '.join(kinds)} datasets")
        return cls(root, meta)

    def require(self, kind, task=None):
        """DataError unless the dataset is of ``kind`` (what the recipe's ``task`` trains on)."""
        if self.task != kind:
            raise DataError(f"'{self.root}' is a {self.task} dataset but the recipe's task is {task or kind}")
        return self

    def _check_split(self, split):
        if split not in self.splits:
            raise DataError(f"'{self.root}' has no '{split}' split (it has: {', '.join(self.splits) or 'none'})")

    def rows(self, split):
        """``<split>.csv`` as a list of dicts (its header's columns), in the order of its cache."""
        self._check_split(split)
        path = self.root / f"{split}.csv"
        try:
            with open(path, newline="", **ENCODING) as f:
                return list(CsvReader(f))
        except OSError as exc:
            raise DataError(f"cannot read '{path}': {exc.strerror}; run fashion prepare again") from None

    def targets(self, split):
        """Multi-task labels of a split: {head: encoded numpy targets} (see heads.py)."""
        rows = self.rows(split)
        try:
            return {name: head.encode([row[name] for row in rows]) for name, head in self.heads.items()}
        except KeyError as exc:
            raise DataError(f"'{self.root / split}.csv' has a label {exc} that dataset.json does not list; "
                            "run fashion prepare again") from None

    def samples(self, split):
        """[(absolute image path, label index or None for multi-task)] in the order of ``<split>.csv``."""
        if split not in self._samples:
            rows = self.rows(split)
            if self.task != "classification":
                self._samples[split] = [(row["path"], None) for row in rows]
                return self._samples[split]
            out = []
            for line, row in enumerate(rows, start=2):
                try:
                    out.append((row["path"], self.class_index[row["label"]]))
                except KeyError:
                    raise DataError(
                        f"{self.root / split}.csv:{line}: needs columns path,label with a label from dataset.json, "
                        f"got {dict(row)}"
                    ) from None
            self._samples[split] = out
        return self._samples[split]

    def paths(self, split):
        return [p for p, _ in self.samples(split)]

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

    def mask_cache(self, split, size=None, workers=None, progress=True):
        """Segmentation: the split's masks as an N x size x size x 1 uint8 array, like ``cache``."""
        from ..tasks.segmentation.prepare import decode_mask

        size = int(size or self.image_size)
        masks = [row["mask"] for row in self.rows(split)]
        return cached(masks, size, self.root / "cache" / str(size), f"{split}.mask", workers=workers,
                      progress=progress, decode=decode_mask, channels=1)

    def labels(self, split):
        return np.array([label for _, label in self.samples(split)], dtype=np.int64)

    def cache(self, split, size=None, workers=None, progress=True):
        """The split's images as an N x size x size x 3 uint8 array (memmap), built on first use."""
        size = int(size or self.image_size)
        return cached(self.paths(split), size, self.root / "cache" / str(size), split,
                      workers=workers, progress=progress, boxes=self.boxes(split))

    def __repr__(self):
        counts = ", ".join(f"{s}={n}" for s, n in self.meta["splits"].items())
        return f"PreparedDataset('{self.root}', {len(self.classes)} classes, {counts})"
