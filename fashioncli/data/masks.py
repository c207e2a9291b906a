"""Segmentation masks on disk: index masks, colour masks and the palette that maps one to the other.

- An *index mask* holds one class index per pixel: a single-channel PNG (uint8 or uint16), or a
  palette ("P" mode) PNG whose palette indices are the classes.
- A *colour mask* paints each class in its colour; a palette table (``class_dict.csv``: a header
  ``name,r,g,b`` then one row per class, row order = class index) turns it into indices.

Pixels that name no class are never guessed: a colour missing from the palette (or an index
value past the palette, when one is given) is counted per colour/value in ``Mask.unknown``,
and a converted colour pixel gets the value ``unknown_value(num_classes)``, which is never a
class index. OpenCV decodes masks; Pillow reads palette images, whose indices OpenCV would turn
into colours (and two indices of one colour into one class).
"""
import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from ..errors import DataError
from ..userfiles import UnreadableFile, read_bytes

PALETTE_FILE = "class_dict.csv"
# Lossless formats only: a JPEG mask would invent colours and indices at every edge.
MASK_SUFFIXES = (".png", ".bmp", ".tif", ".tiff")
# Folders beside an image's folder that hold its masks, as iMaterialist-style sets lay them out:
# <split>/images/X.jpg, <split>/labels/X.png (indices), <split>/clabels/X.png (colours).
INDEX_DIR, COLOUR_DIR = "labels", "clabels"


class MaskError(DataError):
    """A mask or palette file cannot be used; the message is a one-line reason naming the file."""


@dataclass
class Mask:
    """A mask read for one image.

    index: (H, W) uint8/uint16 class indices.
    path: the file it was read from; kind: "index" or "colour" (which one was found).
    unknown: pixels that name no class, {(r, g, b) or index value: pixel count}, largest first.
    """

    index: np.ndarray
    path: Path
    kind: str
    unknown: dict = field(default_factory=dict)

    @property
    def unknown_pixels(self):
        return sum(self.unknown.values())


# -- palette -------------------------------------------------------------------
def read_palette(path):
    """A palette table (``name,r,g,b``; BOM, CRLF and quoted names with commas accepted) ->
    (names, colours): class names in row order and an (K, 3) uint8 RGB array.

    A repeated colour or name is an error: a pixel of that colour would belong to two classes.
    """
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except FileNotFoundError:
        raise MaskError(f"palette '{path}' not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise MaskError(f"cannot read palette '{path}': {exc}") from None
    rows = [(line, r) for line, r in enumerate(rows, start=1) if any(c.strip() for c in r)]
    if not rows:
        raise MaskError(f"palette '{path}' is empty; expected a header name,r,g,b and one row per class")
    header = [c.strip().lower() for c in rows[0][1]]
    missing = [c for c in ("name", "r", "g", "b") if c not in header]
    if missing:
        raise MaskError(f"palette '{path}': the header has no column {', '.join(missing)} "
                        f"(expected name,r,g,b; found {','.join(rows[0][1])})")
    at = [header.index(c) for c in ("name", "r", "g", "b")]
    names, colours, seen = [], [], {}
    for line, row in rows[1:]:
        if len(row) < len(header):
            raise MaskError(f"palette '{path}' line {line}: {len(row)} fields, expected {len(header)}")
        name = row[at[0]].strip()
        try:
            rgb = tuple(int(row[i].strip()) for i in at[1:])
        except ValueError:
            raise MaskError(f"palette '{path}' line {line}: r,g,b must be whole numbers, not "
                            f"{','.join(row[i] for i in at[1:])}") from None
        if not name or not all(0 <= v <= 255 for v in rgb):
            raise MaskError(f"palette '{path}' line {line}: expected a name and r,g,b in 0..255")
        if name in names:
            raise MaskError(f"palette '{path}' line {line}: class '{name}' is listed twice")
        if rgb in seen:
            raise MaskError(f"palette '{path}' line {line}: colour {rgb} of '{name}' is already the colour of "
                            f"'{seen[rgb]}'")
        seen[rgb] = name
        names.append(name)
        colours.append(rgb)
    if not names:
        raise MaskError(f"palette '{path}' lists no classes")
    return names, np.array(colours, dtype=np.uint8).reshape(-1, 3)


def unknown_value(num_classes):
    """The index a converted pixel of an unknown colour gets: 255 (uint8) for up to 255 classes,
    else 65535 (uint16). Never a class index."""
    return 255 if num_classes <= 255 else 65535


# -- reading -------------------------------------------------------------------
def read_index_mask(path):
    """A class-index mask -> (H, W) uint8 or uint16 array, values as stored.

    Single-channel PNGs are read as they are; a palette ("P" mode) PNG or BMP gives its palette
    indices, whatever their colours (a padded palette repeats black); a 3-channel file whose
    channels are all equal (a grey mask saved as RGB) gives one of them. Anything else is a colour
    mask, which needs a palette.
    """
    path = Path(path)
    return index_from_bytes(_read_bytes(path), path)


def index_from_bytes(data, path):
    """``read_index_mask`` of a file's bytes (``path`` names it in errors)."""
    palette_indices = _palette_indices(data, path)
    if palette_indices is not None:
        return palette_indices
    raw = _decode(data, path)
    if raw.ndim == 2:
        return raw
    if raw.ndim == 3 and raw.shape[2] in (3, 4):
        bgr = raw[..., :3]
        if (bgr[..., 0] == bgr[..., 1]).all() and (bgr[..., 1] == bgr[..., 2]).all():
            return np.ascontiguousarray(bgr[..., 0])
    raise MaskError(f"'{path}' has {raw.shape[2] if raw.ndim == 3 else raw.ndim} channels of different "
                    "values: a colour mask, not an index mask (read it with its palette)")


def read_colour_mask(path, colours):
    """A colour mask + the palette's (K, 3) RGB colours -> (index, unknown), see ``colours_to_index``.

    An alpha channel is ignored; a single-channel file is read as grey colours (r = g = b).
    """
    path = Path(path)
    raw = _decode(_read_bytes(path), path)
    if raw.dtype != np.uint8:
        raise MaskError(f"'{path}' is a {raw.dtype} image; colour masks hold 8-bit r,g,b colours")
    if raw.ndim == 2:
        rgb = np.repeat(raw[..., None], 3, axis=2)
    elif raw.shape[2] in (3, 4):
        rgb = raw[..., 2::-1]  # BGR(A) -> RGB
    else:
        raise MaskError(f"'{path}' has {raw.shape[2]} channels; a colour mask has 3 (r,g,b)")
    return colours_to_index(rgb, colours)


def colours_to_index(rgb, colours):
    """(H, W, 3) uint8 RGB + (K, 3) palette colours -> (index, unknown).

    index: (H, W) class indices (uint8 for K <= 255, else uint16); a pixel whose colour is not in
    the palette gets ``unknown_value(K)``. unknown: {(r, g, b): pixel count}, largest first.
    """
    rgb = np.asarray(rgb)
    colours = np.asarray(colours, dtype=np.uint8).reshape(-1, 3)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise MaskError(f"expected an (H, W, 3) RGB array, not shape {rgb.shape}")
    k = len(colours)
    if k == 0:
        raise MaskError("the palette has no colours")
    keys, palette = _pack(rgb), _pack(colours)
    order = np.argsort(palette, kind="stable")
    ordered = palette[order]
    if (np.diff(ordered) == 0).any():
        raise MaskError("the palette repeats a colour: a pixel of it would belong to two classes")
    pos = np.searchsorted(ordered, keys).clip(0, k - 1)
    known = ordered[pos] == keys
    dtype = np.uint8 if unknown_value(k) == 255 else np.uint16
    index = np.where(known, order[pos], unknown_value(k)).astype(dtype)
    unknown = {}
    if not known.all():
        values, counts = np.unique(keys[~known], return_counts=True)
        for v, n in sorted(zip(values.tolist(), counts.tolist()), key=lambda t: -t[1]):
            unknown[(v >> 16, (v >> 8) & 255, v & 255)] = n
    return index, unknown


def find_mask(image_path, folder, suffixes=MASK_SUFFIXES):
    """The mask of ``<split>/images/X.jpg`` in the sibling folder ``<split>/<folder>/X.<suffix>``
    (any of ``suffixes``, lower or upper case), or None."""
    image_path = Path(image_path)
    base = image_path.parent.parent / folder
    for suffix in suffixes:
        for s in (suffix, suffix.upper()):
            candidate = base / (image_path.stem + s)
            if candidate.is_file():
                return candidate
    return None


def mask_for(image_path, colours=None, index_dir=INDEX_DIR, colour_dir=COLOUR_DIR):
    """The mask of one image: its index mask, else (only when that file is missing) its colour
    mask converted with ``colours``; None when it has neither.

    colours: the palette's (K, 3) RGB array (``read_palette(...)[1]``). Needed for the colour
    fallback; with it, index values >= K are counted in ``Mask.unknown`` too (and kept as stored).
    A mask file that exists but cannot be read raises MaskError: it does not fall back silently.
    """
    path = find_mask(image_path, index_dir)
    if path is not None:
        index = read_index_mask(path)
        unknown = {}
        if colours is not None:
            k = len(colours)
            counts = np.bincount(index.ravel())
            unknown = {v: int(counts[v]) for v in np.nonzero(counts[k:])[0] + k}
            unknown = dict(sorted(unknown.items(), key=lambda t: -t[1]))
        return Mask(index, path, "index", unknown)
    path = find_mask(image_path, colour_dir)
    if path is None:
        return None
    if colours is None:
        raise MaskError(f"'{path}' is a colour mask; reading it needs the palette ({PALETTE_FILE})")
    index, unknown = read_colour_mask(path, colours)
    return Mask(index, path, "colour", unknown)


def resize_mask(index, height, width):
    """(H, W) class indices -> (height, width), nearest neighbour at pixel centres.

    Every mask resize (the training cache, eval's grid, predict's full-size masks) goes through
    here, so masks stay aligned with their images. INTER_NEAREST_EXACT samples each output pixel's
    centre (as PIL does); plain INTER_NEAREST is shifted by half an output pixel.
    """
    if index.shape[:2] == (height, width):
        return index
    return cv2.resize(index, (width, height), interpolation=cv2.INTER_NEAREST_EXACT)


def class_pixels(index, num_classes):
    """(num_classes,) int64 pixel count of every class in an index mask (values >= num_classes,
    i.e. unknown pixels, are not counted)."""
    return np.bincount(np.asarray(index).ravel(), minlength=num_classes)[:num_classes]


def describe_unknown(unknown, limit=4):
    """{colour or value: pixels} -> '12 pixels of 2 colours not in the palette: (1, 2, 3) x 10, ...'."""
    total = sum(unknown.values())
    what = "colours" if any(isinstance(k, tuple) for k in unknown) else "values"
    shown = ", ".join(f"{k} x {n}" for k, n in list(unknown.items())[:limit])
    more = f", ... {len(unknown) - limit} more" if len(unknown) > limit else ""
    return f"{total} pixels of {len(unknown)} {what} not in the palette: {shown}{more}"


# -- helpers -------------------------------------------------------------------
def _read_bytes(path):
    try:
        data = read_bytes(path)  # a regular file of bounded size: a FIFO or /dev/zero never hangs
    except UnreadableFile as exc:
        if exc.reason == "file not found":
            raise MaskError(f"mask '{path}' not found") from None
        raise MaskError(f"cannot read mask '{path}': {exc.reason}") from None
    if not data:
        raise MaskError(f"mask '{path}' is empty (0 bytes)")
    return data


def _decode(data, path):
    # Bytes read by Python: non-ASCII names work everywhere (cv2.imread fails on them on Windows).
    try:
        raw = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        raw = None
    if raw is None:
        raise MaskError(f"mask '{path}' is not a readable image (damaged, or not PNG/BMP/TIFF)")
    if raw.dtype not in (np.uint8, np.uint16):
        raise MaskError(f"mask '{path}' holds {raw.dtype} values; masks are uint8 or uint16")
    return raw


def _palette_indices(data, path):
    """A palette image's indices as stored (H, W) uint8, or None for any other image."""
    try:
        image = Image.open(io.BytesIO(data))
        if image.mode != "P":
            return None
        return np.asarray(image)  # indices, not colours: Pillow keeps the palette apart
    except Image.DecompressionBombError:
        raise MaskError(f"mask '{path}' has too many pixels to be a mask") from None
    except (OSError, ValueError, SyntaxError):
        return None  # not an image Pillow reads (e.g. damaged): OpenCV decodes it or says why not


def _pack(rgb):
    rgb = np.asarray(rgb, dtype=np.uint32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
