"""Semantic segmentation (report 001): one class index per pixel.

The pieces, one job each:
- ``prepare.py``: mask sources (``Imported.masks``) -> validated index PNGs + a mask cache, class sets,
  pixel frequencies and class weights.
- ``metrics.py``: confusion matrices -> per-class IoU, mIoU over class subsets, pixel accuracy.
- ``render.py``: colours for classes, overlays, the image / truth / prediction grid.
- ``predict.py``: masks, overlays and class areas for image folders.
- ``export.py``: an exported file's metadata and the parity rule (masks agree pixel by pixel).

A segmentation checkpoint's meta (train.py writes it; eval, predict and export read it)::

    {"task": "segmentation", "classes": [name, ...] (index = class id, 0 = background),
     "palette": [[r, g, b], ...] (one colour per class), "ignore_index": 255,
     "class_sets": {name: [class, ...]} (subsets eval reports mIoU over, e.g. the 17 evaluated classes),
     "preprocessing": {"image_size", "mean", "std", "resize": "squash", "layout": "RGB"}, ...}

The model maps normalised (N, 3, S, S) images to (N, C, S, S) logits; the predicted mask is their
argmax, resized to the source image with nearest-neighbour interpolation.
"""
from .task import SegmentationTask

__all__ = ["SegmentationTask"]
