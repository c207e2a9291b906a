"""Pictures of segmentation masks: class colours, colour masks, overlays, the image / truth /
prediction grid, and index-mask PNGs (palette PNGs: viewable, and the index kept per pixel).

Masks are (H, W) integer arrays of class indices, 0 = background; a value outside the colour
table (the ignore index 255, an unknown colour) is drawn in ``IGNORE_COLOUR``.
"""
import io

import cv2
import numpy as np
from matplotlib.patches import Patch
from PIL import Image

from ...io import atomic_path
from ...plots import plt, save_figure  # plots selects the Agg backend before pyplot loads

IGNORE_COLOUR = (224, 224, 224)  # light grey: visible on black background, unlike any VOC colour


def class_colours(num_classes, palette=None):
    """(num_classes, 3) uint8 RGB: the dataset's ``palette`` when given (its first num_classes
    colours), else PASCAL VOC's colours (class bits interleaved into r, g, b from the top bit:
    deterministic, distinct for any count, background black)."""
    if palette is not None:
        palette = np.asarray(palette)
        if palette.ndim != 2 or palette.shape[1] != 3 or len(palette) < num_classes:
            raise ValueError(f"palette of shape {palette.shape}; expected ({num_classes}, 3) r, g, b")
        if palette.min() < 0 or palette.max() > 255:
            raise ValueError("palette values must lie in 0..255")
        return palette[:num_classes].astype(np.uint8)
    ids = np.arange(num_classes)
    colours = np.zeros((num_classes, 3), dtype=np.int64)
    for bit in range(8):  # 8 x 3 bits: distinct up to 2**24 classes
        for channel in range(3):
            colours[:, channel] |= ((ids >> (3 * bit + channel)) & 1) << (7 - bit)
    return colours.astype(np.uint8)


def colours_of(meta):
    """The colours of a checkpoint's (or prepared dataset's) classes: its palette when it has one
    colour per class, else ``class_colours``' own (a collapsed "foreground" class has none)."""
    palette = meta.get("palette")
    complete = palette is not None and len(palette) == len(meta["classes"]) and None not in palette
    return class_colours(len(meta["classes"]), palette if complete else None)


def colourise(mask, colours):
    """(H, W) class indices -> (H, W, 3) uint8 RGB; indices outside ``colours`` in IGNORE_COLOUR."""
    mask = np.asarray(mask)
    colours = np.asarray(colours, dtype=np.uint8).reshape(-1, 3)
    if mask.dtype == np.uint8 and len(colours) <= 256:
        # OpenCV's lookup table: a tenth of numpy's fancy indexing, and it releases the GIL, so
        # predict's file-writing threads colour their masks in parallel.
        table = np.tile(np.array(IGNORE_COLOUR, dtype=np.uint8), (256, 1, 1))
        table[:len(colours), 0] = colours
        return cv2.LUT(cv2.merge([np.ascontiguousarray(mask)] * 3), table)
    table = np.vstack([colours, np.array(IGNORE_COLOUR, dtype=np.uint8)])
    return table[np.where((mask >= 0) & (mask < len(colours)), mask, len(colours))]


def overlay(image_rgb, mask, colours, alpha=0.5):
    """Blend class colours onto an (H, W, 3) uint8 RGB image with weight ``alpha`` (OpenCV's blend,
    rounded from float32); background (class 0) and pixels of no class (e.g. ignored) keep the
    image's own colour."""
    image, mask = np.ascontiguousarray(image_rgb, dtype=np.uint8), np.asarray(mask)
    colours = np.asarray(colours, dtype=np.uint8).reshape(-1, 3)
    if image.shape[:2] != mask.shape:
        raise ValueError(f"image of shape {image.shape[:2]} and mask of shape {mask.shape} differ")
    painted = ((mask > 0) & (mask < len(colours))).view(np.uint8)  # 0/1 bytes: OpenCV's copy mask
    # Whole-image OpenCV calls, not numpy's boolean indexing: 25x faster on a 256 px image, which
    # made the overlay the largest part of a segmentation model's `fashion predict` (issue 15).
    blend = cv2.addWeighted(image, 1.0 - alpha, colourise(mask, colours), alpha, 0.0)
    out = image.copy()
    cv2.copyTo(blend, painted, out)
    return out


def grid_png(path, samples, colours, classes, titles=("image", "truth", "prediction")):
    """Write one PNG with a row per sample, columns image | truth | prediction, and a legend of
    the classes that appear.

    samples: [(image RGB uint8, truth mask or None, predicted mask)]; masks index ``classes``
    and ``colours`` (``class_colours``).
    """
    if not samples:
        raise ValueError("no samples to draw")
    colours = np.asarray(colours, dtype=np.uint8).reshape(-1, 3)
    h, w = np.asarray(samples[0][0]).shape[:2]
    side = 3.0  # inches per column; rows keep the first image's aspect
    fig, axes = plt.subplots(len(samples), 3, figsize=(3 * side, len(samples) * side * h / max(w, 1)),
                             squeeze=False)
    seen = set()
    for row, (image, truth, pred) in zip(axes, samples):
        for ax in row:
            ax.set_axis_off()
        row[0].imshow(np.asarray(image), interpolation="nearest")
        for ax, mask in zip(row[1:], (truth, pred)):
            if mask is None:
                ax.text(0.5, 0.5, "no mask", ha="center", va="center", transform=ax.transAxes, color="0.5")
                continue
            ax.imshow(colourise(mask, colours), interpolation="nearest")  # nearest: no blended edges
            seen.update(np.unique(np.asarray(mask)).tolist())
    for ax, title in zip(axes[0], titles):
        ax.set_title(title)
    named = [i for i in sorted(seen) if 0 <= i < min(len(classes), len(colours))]
    handles = [Patch(facecolor=colours[i] / 255.0, edgecolor="0.4", label=classes[i]) for i in named]
    if len(named) < len(seen):
        handles.append(Patch(facecolor=np.array(IGNORE_COLOUR) / 255.0, edgecolor="0.4", label="ignored / unknown"))
    if handles:
        fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=min(4, len(handles)),
                   fontsize=8, frameon=False)
    fig.tight_layout()
    save_figure(fig, path)


def write_mask_png(path, mask, colours=None):
    """Write an (H, W) index mask atomically, read back by ``masks.read_index_mask``: values up to
    255 as a palette PNG, a viewer shows the classes in ``colours`` (VOC colours when None) with the
    index value still stored per pixel; larger values as a 16-bit single-channel PNG."""
    mask = np.asarray(mask)
    if mask.ndim != 2 or not mask.size or not np.issubdtype(mask.dtype, np.integer):
        raise ValueError(f"expected a non-empty (H, W) integer mask, not {mask.dtype} of shape {mask.shape}")
    low, high = int(mask.min()), int(mask.max())
    if low < 0 or high > 65535:
        raise ValueError(f"mask values {low}..{high} do not fit a PNG (0..65535)")
    if high > 255:
        return _write_png(path, mask.astype(np.uint16))
    image = Image.fromarray(mask.astype(np.uint8))
    image.putpalette(mask_palette(colours).ravel().tolist())  # an "L" image becomes "P", pixels unchanged
    data = io.BytesIO()
    image.save(data, "PNG")
    with atomic_path(path) as tmp:
        tmp.write_bytes(data.getvalue())


def mask_palette(colours=None):
    """(256, 3) uint8 RGB for palette masks: ``colours`` (the classes') first, VOC colours after them,
    and IGNORE_COLOUR at 255, the ignore index."""
    table = class_colours(256)
    if colours is not None:
        colours = np.asarray(colours, dtype=np.uint8).reshape(-1, 3)[:255]
        table[:len(colours)] = colours
    table[255] = IGNORE_COLOUR
    return table


def write_image_png(path, image_rgb):
    """Write an (H, W, 3) uint8 RGB image (e.g. an overlay) as a PNG, atomically."""
    _write_png(path, cv2.cvtColor(np.asarray(image_rgb, dtype=np.uint8), cv2.COLOR_RGB2BGR))


def _write_png(path, array):
    # Encoded in memory: cv2.imwrite picks the format from the name, and atomic_path's ends in .tmp.
    ok, data = cv2.imencode(".png", array)
    if not ok:
        raise ValueError(f"cannot encode a {array.dtype} array of shape {array.shape} as PNG")
    with atomic_path(path) as tmp:
        tmp.write_bytes(data.tobytes())
