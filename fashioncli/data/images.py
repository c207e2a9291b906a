"""Reading image files the one way every command shares: bytes -> OpenCV -> HxWx3 uint8 RGB.

A sample may also carry a bounding box (one garment of a photo): ``check_box`` validates it,
``crop_box`` cuts it out of the decoded image, and ``format_box``/``parse_box`` are its one text
form (a prepared ``<split>.csv`` cell and the cache's fingerprint).
"""
import io
import math
import os
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import DataError
from ..userfiles import UnreadableFile, read_bytes

# What `fashion` looks for in folders; anything else (README, .DS_Store, labels) is ignored.
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm", ".pgm", ".pbm"}
)
# A larger header is far more likely a decompression bomb (or a scan) than a clothing photo.
MAX_PIXELS = 100_000_000
# Folders that archivers add next to the real data (macOS zips) and that hold fake ._*.jpg files.
_SKIP_DIRS = {"__MACOSX"}

# Pillow's names of the formats OpenCV decodes (Pillow identifies more, e.g. PSD, ICO, EPS).
_OPENCV_FORMATS = {"JPEG", "MPO", "PNG", "BMP", "WEBP", "TIFF", "GIF", "PPM", "JPEG2000", "SUN"}
# OpenCV >= 4.11 decodes straight to RGB; older ones give BGR and need one conversion.
_IMREAD_RGB = getattr(cv2, "IMREAD_COLOR_RGB", None)


class ImageError(DataError):
    """One image cannot be used; the message is the short reason shown in prepare's report."""


def read_image(path, max_pixels=MAX_PIXELS):
    """Read an image file as an HxWx3 uint8 RGB array (EXIF orientation applied).

    The bytes are read by Python, so names that are not valid UTF-8 or contain non-ASCII
    characters work on every platform (cv2.imread cannot open those on Windows).
    """
    return decode_image(read_file(path), max_pixels)


def read_file(path):
    """A file's bytes, or ImageError with the reason it cannot be read (only regular files, at
    most ``userfiles.MAX_BYTES``: a FIFO or /dev/zero named like a photo never hangs a command)."""
    try:
        return read_bytes(path)
    except UnreadableFile as exc:
        raise ImageError(str(exc)) from None


def decode_image(data, max_pixels=MAX_PIXELS):
    """Decode encoded image bytes; raises ImageError with a one-line reason."""
    return _decode(data, max_pixels)[0]


def decode_resized(data, size, box=None, max_pixels=MAX_PIXELS):
    """Encoded bytes -> (size x size x 3 uint8 RGB, [height, width] of the source image): what the
    cache, eval on folders and predict all use, so they agree.

    A JPEG much larger than ``size`` is decoded at libjpeg's 1/2, 1/4 or 1/8 scale (the smallest
    that keeps both sides of the image, or of ``box``, at least ``size`` pixels): a fraction of the
    decoding work, for a squashed result within about a grey level of a full decode.
    """
    from .preprocess import resize_rgb

    image, scale, source = _decode(data, max_pixels, min_side=size, box=box)
    if box is not None:
        image = crop_box(image, [v / scale for v in box])
    return resize_rgb(image, size), source


def read_resized(path, size):
    """``decode_resized`` of a file, without the source size."""
    return decode_resized(read_file(path), size)[0]


# cv2.IMREAD_REDUCED_COLOR_{2,4,8} without the BGR bit, so that IMREAD_COLOR_RGB can join it.
_REDUCED = {2: cv2.IMREAD_REDUCED_GRAYSCALE_2, 4: cv2.IMREAD_REDUCED_GRAYSCALE_4, 8: cv2.IMREAD_REDUCED_GRAYSCALE_8}
_REDUCED_BGR = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}


def _scale_for(header, min_side, box):
    """The largest libjpeg scale-down that keeps the smaller side (of the box, if any) >= min_side."""
    if not min_side or header.format not in ("JPEG", "MPO"):
        return 1
    w, h = header.size
    if box is not None:
        w, h = box[2] - box[0], box[3] - box[1]
    return next((f for f in (8, 4, 2) if min(w, h) / f >= min_side), 1)


def _decode(data, max_pixels=MAX_PIXELS, min_side=None, box=None):
    """-> (HxWx3 uint8 RGB, scale it was decoded at, [height, width] at full scale)."""
    if not data:
        raise ImageError("empty file (0 bytes)")
    # Pillow's lazy open reads only the header: the size is checked before anything is decoded,
    # and bytes no known format claims never reach OpenCV (which would log errors of its own).
    try:
        header = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:
        limit = 2 * (Image.MAX_IMAGE_PIXELS or 0) / 1e6
        raise ImageError(f"too large: over {limit:.0f} megapixels (a decompression bomb?)") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise ImageError("not a readable image (unknown format or damaged header)") from None
    _check_pixels(*header.size, max_pixels)
    if _has_alpha(header):
        image = _decode_with_alpha(header)
        return image, 1, list(image.shape[:2])
    scale = _scale_for(header, min_side, box)
    if scale == 1:
        flags = cv2.IMREAD_COLOR if _IMREAD_RGB is None else _IMREAD_RGB
    else:
        flags = _REDUCED_BGR[scale] if _IMREAD_RGB is None else _REDUCED[scale] | _IMREAD_RGB
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    except cv2.error as exc:
        raise ImageError(f"cannot decode {header.format} data: {str(exc).strip().splitlines()[-1]}") from None
    if image is None:
        if header.format not in _OPENCV_FORMATS:
            raise ImageError(f"{header.format} images are not supported")
        raise ImageError(f"truncated or corrupt {header.format} data")
    if _IMREAD_RGB is None:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    source = list(image.shape[:2])
    if scale > 1:  # the header's size, turned the way EXIF turned the pixels
        w, h = header.size
        source = [h, w] if (image.shape[0] >= image.shape[1]) == (h >= w) else [w, h]
    return image, scale, source


def _check_pixels(width, height, max_pixels):
    if max_pixels and width * height > max_pixels:
        raise ImageError(
            f"too large: {width}x{height} = {width * height / 1e6:.0f} megapixels "
            f"(limit {max_pixels / 1e6:.0f}; a decompression bomb?)"
        )


def _has_alpha(header):
    return header.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in header.info


def _decode_with_alpha(header):
    """Transparent images (product cut-outs, GIFs) go onto white; OpenCV would expose whatever
    colour hides under alpha=0, often black, which is not what anyone sees in a viewer."""
    try:
        image = ImageOps.exif_transpose(header).convert("RGBA")
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageError(f"truncated or corrupt {header.format} data ({exc})") from None
    white = Image.new("RGBA", image.size, (255, 255, 255, 255))
    return np.asarray(Image.alpha_composite(white, image).convert("RGB"))


def is_image_file(path):
    name = os.path.basename(path)
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def iter_image_files(root, recursive=True, skip=()):
    """Image files under ``root`` in sorted order; hidden files/folders are skipped, symlinked
    folders are followed once each (a link back to an ancestor cannot loop forever), and so are
    the folders in ``skip`` (a command's own output folders: its masks are not its inputs)."""
    root = Path(root)
    found = []
    seen = {os.path.realpath(s) for s in skip}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in _SKIP_DIRS)
        found.extend(Path(dirpath) / f for f in filenames if is_image_file(f))
        if not recursive:
            break
    return iter(sorted(found))


# -- bounding boxes ------------------------------------------------------------
def check_box(box):
    """A box as given by an importer -> (x1, y1, x2, y2) of ints (floats where fractional), or None.

    Coordinates are source pixels of the decoded (EXIF-rotated) image: x1, y1 the top-left corner,
    x2, y2 the bottom-right one, exclusive (the crop is ``image[y1:y2, x1:x2]``; fractional
    coordinates take in every pixel they touch). Raises ImageError when it is not four finite
    numbers with x1 < x2 and y1 < y2. Parts outside the image are allowed: ``crop_box`` clamps.
    """
    if box is None:
        return None
    try:
        values = [float(v) for v in box]
    except (TypeError, ValueError):
        raise ImageError(f"invalid box {box!r}: expected four numbers x1 y1 x2 y2") from None
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise ImageError(f"invalid box {box!r}: expected four finite numbers x1 y1 x2 y2")
    x1, y1, x2, y2 = values
    if x2 <= x1 or y2 <= y1:
        raise ImageError(f"empty box {format_box(values)}: needs x1 < x2 and y1 < y2")
    return tuple(int(v) if v.is_integer() else v for v in values)


def format_box(box):
    """(x1, y1, x2, y2) -> 'x1 y1 x2 y2' ('' for None): integers without '.0', floats exactly."""
    if box is None:
        return ""
    return " ".join(str(int(v)) if float(v).is_integer() else repr(float(v)) for v in box)


def parse_box(text):
    """The text of ``format_box`` -> a checked box, None for ''; ImageError for anything else."""
    text = (text or "").strip()
    return check_box(text.split()) if text else None


def crop_box(image, box):
    """The part of an HxWx3 image inside a checked ``box``, clamped to the image; ImageError when
    nothing of it is left (a box wholly outside the image)."""
    if box is None:
        return image
    h, w = image.shape[:2]
    x1, y1 = max(0, math.floor(box[0])), max(0, math.floor(box[1]))
    x2, y2 = min(w, math.ceil(box[2])), min(h, math.ceil(box[3]))
    if x2 <= x1 or y2 <= y1:
        raise ImageError(f"box {format_box(box)} lies outside the {w}x{h} image")
    return image[y1:y2, x1:x2]
