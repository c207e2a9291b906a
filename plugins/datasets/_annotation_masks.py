"""What the importers of published segmentation formats share (coco_seg, imaterialist_csv, mat_seg).

Each importer lists images and returns one deferred mask reader per image (``Imported.masks``):
nothing is decoded until ``prepare`` calls the reader, once, in a worker thread. A reader returns
an (H, W) uint8 class-index mask (uint16 past 254 classes) or raises ``MaskError`` naming the file.

Where instances overlap (COCO and the Kaggle CSV list one region per garment or garment part),
the mask is painted largest region first, so that a small part (a sleeve, a collar, a pocket)
stays visible on top of the garment that contains it; file order would let whichever garment is
listed last erase the parts drawn before it. Equal areas keep their file order.

Detection scores 30 for each of their layouts (unambiguous: a COCO JSON with segmentations, a CSV
with ``ImageId`` and ``EncodedPixels`` columns, a label-list .mat beside a folder of .mat masks).
"""
import os
from pathlib import Path

import numpy as np

BACKGROUND = "background"
DETECT_SCORE = 30


def mask_dtype(num_classes):
    """(dtype, ignore index): uint8 with 255 free for up to 255 classes, else uint16 with 65535."""
    return (np.uint8, 255) if num_classes <= 255 else (np.uint16, 65535)


def paint(shape, layers, dtype, background=0):
    """[(value, bool mask)] -> one index mask, largest region first (see the module docstring)."""
    out = np.full(shape, background, dtype=dtype)
    areas = [int(m.sum()) for _, m in layers]
    for i in sorted(range(len(layers)), key=lambda i: -areas[i]):  # sorted() is stable: ties keep file order
        value, m = layers[i]
        out[m] = value
    return out


def image_listing(folder):
    """{file name: path} of the files directly in ``folder`` (one listing instead of a stat per image)."""
    try:
        return {e.name: Path(e.path) for e in os.scandir(folder) if e.is_file()}
    except OSError:
        return {}


def first_dir(root, names):
    for name in names:
        if (root / name).is_dir():
            return root / name
    return None
