"""`fashion predict` for segmentation models.

predict's engines, batching and resume run unchanged: an engine returns per-pixel softmax
probabilities (N, C, S, S) (the checkpoint's model, or an exported file, which has normalisation and
the softmax inside), and ``MaskRows`` is the row layout that turns them into files and rows. For each
readable image:

- ``<masks>/<name>.png``: the argmax mask at the model's size, resized to the source image's height
  and width with nearest-neighbour interpolation; a palette PNG holding the class index of every
  pixel, shown in the class colours (``masks.read_index_mask`` reads the indices back);
- ``<overlays>/<name>.jpg`` (or ``.png``, or none): the class colours (the checkpoint's palette, else
  VOC colours) blended onto the source image at full size;

where ``<masks>`` and ``<overlays>`` are ``<out stem>_masks/`` and ``<out stem>_overlays/`` beside
``out`` (``preds.csv``: ``preds_masks/``; so a second ``out`` in the same folder has masks of its
own), or ``masks/`` and ``overlays/`` in ``save_dir`` (predict's --save-dir) when given;
- one row: path, mask, overlay, height, width, the area (fraction of pixels) of each class, error.
  CSV has a column ``area_<class>`` per class (0 where absent: a table any reader sums or filters);
  JSONL a dict ``areas`` of the classes present.

``<name>`` is the image's stem; a second image with the same stem (another folder, another suffix,
or only another case) gets ``<stem>-<8 hex digits of a hash of its absolute path>``, so no file is
overwritten and a name does not depend on what else was predicted. An unreadable image gets an error
row and no files. Files are written before their rows, so a row never names a missing file.
"""
import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from ...errors import DataError
from ...data.images import ImageError, decode_resized, read_file, read_image
from ...io import ENCODING, CsvReader, atomic_path
from ...data.masks import resize_mask

# render.py (matplotlib) is imported where it is used.

OVERLAY_FORMATS = ("jpg", "png", "none")
OVERLAY_ALPHA = 0.5
JPEG_QUALITY = 90


def area_column(name):
    return f"area_{name}"


class MaskRows:
    """The row layout of `fashion predict` for a segmentation model (``Task.row_layout``): writes each
    image's mask (and overlay) and yields its row."""

    ranked = True  # reads only each pixel's top class: scores before the softmax will do

    def __init__(self, meta, out, fmt, overlay="jpg", workers=None, save_dir=None):
        from .render import colours_of

        if overlay not in OVERLAY_FORMATS:
            raise DataError(f"overlay format '{overlay}': use one of {', '.join(OVERLAY_FORMATS)}")
        self.classes = list(meta["classes"])
        self.colours = colours_of(meta)
        self.size = int(meta["preprocessing"]["image_size"])
        self.out, self.fmt, self.overlay = Path(out), fmt, overlay
        masks, overlays = save_folders(self.out, save_dir)
        self.masks_dir = masks
        self.overlays_dir = None if overlay == "none" else overlays
        # Never read back as inputs, even when they are inside an input folder.
        self.folders = (masks, overlays)
        self.workers = max(1, workers or os.cpu_count() or 1)
        self.columns = ("path", "mask", "overlay", "height", "width",
                        *(area_column(c) for c in self.classes), "error")
        # Casefolded names in use, read from --out at the first batch: by then predict has opened it
        # (emptied, or for --resume cut to whole rows), so only the rows kept count.
        self._taken = None
        self.counts = {}  # no counters of its own in predict's summary

    @property
    def summary(self):
        return {"classes": len(self.classes), "masks": str(self.masks_dir),
                "overlays": None if self.overlays_dir is None else str(self.overlays_dir)}

    def rows(self, paths, probs, errors):
        if self._taken is None:
            self._taken = written_names(self.out, self.fmt)
        masks = top_class(probs).astype(np.uint8 if len(self.classes) <= 256 else np.uint16)
        jobs = [(path, mask, None if error else self._name(path), error)
                for path, mask, error in zip(paths, masks, errors)]
        # OpenCV's resize, PNG and JPEG coding release the GIL: threads overlap the images' work.
        with ThreadPoolExecutor(min(self.workers, len(jobs) or 1)) as pool:
            yield from pool.map(lambda job: self._row(*job), jobs)

    def _name(self, path):
        stem = Path(path).stem or "image"
        if stem.casefold() in self._taken:
            digest = hashlib.sha1(os.path.abspath(path).encode("utf-8", "surrogateescape")).hexdigest()
            stem = f"{stem}-{digest[:8]}"
        self._taken.add(stem.casefold())
        return stem

    def _row(self, path, small_mask, name, error):
        from .render import overlay as blend, write_mask_png

        row = {"path": path, "mask": None, "overlay": None, "height": None, "width": None, "areas": {}, "error": None}
        if not error:
            try:  # read again at full size: the overlay needs the pixels, the mask the height and width
                if self.overlays_dir is None:
                    image, (height, width) = None, decode_resized(read_file(path), self.size)[1]
                else:
                    image = read_image(path)
                    height, width = image.shape[:2]
            except ImageError as exc:  # changed or gone since the batch read it
                error = str(exc)
        if error:
            row["error"] = " ".join(error.split())
            return row
        mask = resize_mask(small_mask, height, width)
        row.update(height=height, width=width, areas=class_areas(mask, self.classes))
        row["mask"] = str(self.masks_dir / f"{name}.png")
        write_mask_png(row["mask"], mask, self.colours)
        if image is not None:
            row["overlay"] = str(self.overlays_dir / f"{name}.{self.overlay}")
            write_overlay(row["overlay"], blend(image, mask, self.colours, OVERLAY_ALPHA))
        return row

    def csv_values(self, row):
        def cell(value):
            return "" if value is None else value
        areas = [] if row["error"] else [row["areas"].get(c, 0) for c in self.classes]
        return [cell(row["path"]), cell(row["mask"]), cell(row["overlay"]), cell(row["height"]), cell(row["width"]),
                *(areas or [""] * len(self.classes)), cell(row["error"])]


def save_folders(out, save_dir=None):
    """-> (masks folder, overlays folder) of a prediction written to ``out`` (see the module's docstring)."""
    if save_dir is not None:
        return Path(save_dir) / "masks", Path(save_dir) / "overlays"
    return out.with_name(f"{out.stem}_masks"), out.with_name(f"{out.stem}_overlays")


def top_class(scores):
    """N x C x H x W scores (numpy) -> N x H x W index of each pixel's highest class score.

    A channels_last batch (classes innermost in memory, as a checkpoint's model returns it) is
    reduced over its free N x H x W x C view: numpy's argmax over a contiguous last axis runs about
    5x faster than over axis 1 of the same memory (BENCHMARKS.md, issue 15)."""
    scores = np.asarray(scores)
    last = np.moveaxis(scores, 1, -1)
    return last.argmax(-1) if last.flags.c_contiguous else scores.argmax(1)


def class_areas(mask, classes):
    """{class: fraction of the mask's pixels} for the classes present, in class order, 6 decimals."""
    counts = np.bincount(mask.ravel(), minlength=len(classes))
    return {classes[i]: round(float(counts[i]) / mask.size, 6) for i in np.flatnonzero(counts) if i < len(classes)}


def write_overlay(path, image_rgb):
    """An (H, W, 3) uint8 RGB image -> .png, else JPEG (quality JPEG_QUALITY), atomically."""
    from .render import write_image_png

    if str(path).endswith(".png"):
        return write_image_png(path, image_rgb)
    bgr = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR)
    ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise ValueError(f"cannot encode an image of shape {image_rgb.shape} as JPEG")
    with atomic_path(path) as tmp:
        tmp.write_bytes(data.tobytes())


def written_names(out, fmt):
    """Casefolded mask names (stems) the rows already in ``out`` use: a resumed run keeps them."""
    if not os.path.exists(out):
        return set()
    names = set()
    with open(out, newline="", **ENCODING) as f:
        if fmt == "csv":
            masks = (row.get("mask") for row in CsvReader(f))
        else:
            masks = (_json_field(line, "mask") for line in f)
        names.update(Path(m).stem.casefold() for m in masks if m)
    return names


def _json_field(line, key):
    try:
        return json.loads(line).get(key)
    except (ValueError, AttributeError):
        return None
