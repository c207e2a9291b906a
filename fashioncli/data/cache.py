"""The decoded-once image cache: every image of a split, resized, in one uint8 memmap.

Decoding JPEGs is most of a small model's epoch on CPU; decoding them once per image size
makes every later epoch a memory copy. ``<dir>/<name>.u8`` holds N x size x size x 3 RGB rows (x 1
for segmentation masks: ``<split>.mask``) in
the order of the paths it was built from (each cropped to its bounding box first, when the
samples have boxes); ``<dir>/<name>.json`` describes it. Both are written
to temporary names first and renamed, so a crashed or concurrent build never leaves a cache
that looks complete.
"""
import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..errors import DataError
from .images import ImageError, decode_resized, format_box, read_file

CACHE_VERSION = 3  # 2: large JPEGs at a reduced libjpeg scale (images.decode_resized); 3: masks at pixel centres


def paths_key(paths, boxes=None):
    """Fingerprint of a path list and its boxes: a cache built from other paths (re-prepared split)
    or other boxes is stale. Without boxes (None, or all None) it is the key of the paths alone,
    so caches built before boxes existed stay valid."""
    lines = map(str, paths)
    if boxes is not None and any(b is not None for b in boxes):
        # NUL cannot occur in a path, so "path\0box" is unambiguous.
        lines = (f"{p}\0{format_box(b)}" for p, b in zip(map(str, paths), boxes, strict=True))
    return hashlib.sha1("\n".join(lines).encode("utf-8", "surrogateescape")).hexdigest()


def build_cache(paths, size, out_dir, name, workers=2, progress=True, boxes=None, decode=None, channels=3):
    """Decode, crop, resize and store every image of ``paths``; returns one error string or None per path.

    decode: ``(bytes, size, box) -> (size x size x channels uint8 array, [height, width])``;
        default ``images.decode_resized`` (RGB photos). Segmentation masks use their own (nearest
        neighbour, one channel) and the same cache machinery.

    boxes: None, or one checked box (see ``images.check_box``) or None per path: the image is
        cropped to it (clamped to the image) before resizing; a box wholly outside its image is
        that row's error.
    Rows of unreadable images stay zero and are marked ``ok: false`` in the metadata, which also
    records each source image's [height, width] (before cropping) and SHA-1 (for prepare's report).
    """
    paths = [str(p) for p in paths]
    if boxes is not None and len(boxes) != len(paths):
        raise ValueError(f"build_cache: {len(boxes)} boxes for {len(paths)} paths")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    n = len(paths)
    tmp = out_dir / f"{name}.u8.{os.getpid()}.tmp"
    rows = _create(tmp, n, size, channels)
    decode = decode or decode_resized
    errors, shapes, hashes = [None] * n, [None] * n, [None] * n

    def work(i):
        # Threads suffice: file reads, hashing, cv2 decode and resize all release the GIL.
        try:
            data = read_file(paths[i])  # read_image's two steps, so the same bytes get hashed
            rows[i], shapes[i] = decode(data, size, None if boxes is None else boxes[i])
        except ImageError as exc:
            errors[i] = str(exc)
            return
        hashes[i] = hashlib.sha1(data).hexdigest()

    try:
        with ThreadPoolExecutor(max(1, workers)) as pool:
            for _ in tqdm(pool.map(work, range(n)), total=n, disable=not progress or n == 0,
                          desc=f"caching {name} at {size}px", unit="img", leave=False):
                pass
        if rows is not None:
            rows.flush()
        del rows
        _replace_data(tmp, out_dir, name)
    finally:
        tmp.unlink(missing_ok=True)
    _write_json(out_dir / f"{name}.json", {
        "version": CACHE_VERSION, "count": n, "size": size, "channels": channels,
        "ok": [e is None for e in errors], "paths_key": paths_key(paths, boxes),
        "shapes": shapes, "sha1": hashes,
        "errors": [[i, e] for i, e in enumerate(errors) if e is not None],
    })
    return errors


def open_cache(out_dir, name):
    """(array N x size x size x 3, metadata) of a built cache; DataError if absent or cut short.

    The memmap is copy-on-write: consumers may treat rows as ordinary writable arrays (torch
    wants those), and nothing they do reaches the file.
    """
    out_dir = Path(out_dir)
    data_path, meta_path = out_dir / f"{name}.u8", out_dir / f"{name}.json"
    try:
        meta = json.loads(meta_path.read_text())
        n, size = meta["count"], meta["size"]
    except (OSError, ValueError, KeyError):
        raise DataError(f"no image cache '{name}' in '{out_dir}'") from None
    shape = (n, size, size, meta.get("channels", 3))
    expected = int(np.prod(shape))
    actual = data_path.stat().st_size if data_path.exists() else -1
    if actual != expected:
        raise DataError(
            f"image cache '{data_path}' is incomplete ({actual} of {expected} bytes); delete it to rebuild"
        )
    if n == 0:  # mmap cannot map an empty file
        return np.zeros(shape, np.uint8), meta
    return np.memmap(data_path, np.uint8, "c", shape=shape), meta


def cached(paths, size, out_dir, name, workers=None, progress=True, boxes=None, decode=None, channels=3):
    """The cache for exactly these paths (and boxes) at this size: opened if up to date, else built
    first (``decode`` and ``channels`` as in ``build_cache``)."""
    paths = [str(p) for p in paths]
    try:
        rows, meta = open_cache(out_dir, name)
        fresh = ((meta.get("version"), meta["size"], meta.get("paths_key"))
                 == (CACHE_VERSION, size, paths_key(paths, boxes)))
    except DataError:
        fresh = False
    if not fresh:
        build_cache(paths, size, out_dir, name, workers=workers or default_decode_threads(), progress=progress, boxes=boxes,
                    decode=decode, channels=channels)
        rows, meta = open_cache(out_dir, name)
    if meta["errors"]:
        i, reason = meta["errors"][0]
        raise DataError(
            f"{len(meta['errors'])} of {meta['count']} images of '{name}' cannot be read "
            f"(first: {paths[i]}: {reason}); run `fashion prepare` again to drop them"
        )
    return rows


def ensure_cache(prepared_dir, split, size, workers=None, progress=True):
    """``<prepared>/cache/<size>/<split>.u8`` as an array, built on first use (e.g. a new image size)."""
    from .dataset import PreparedDataset  # dataset.py builds on this module

    return PreparedDataset.open(prepared_dir).cache(split, size, workers=workers, progress=progress)


def keep_rows(out_dir, name, keep, paths, boxes=None):
    """Rewrite cache ``name`` with only the rows in ``keep`` (indices, in order); ``paths`` (and
    ``boxes``) are the kept rows'. Used by prepare to drop unreadable images without decoding again."""
    out_dir = Path(out_dir)
    src, meta = open_cache(out_dir, name)
    keep = np.asarray(keep, dtype=np.int64)
    tmp = out_dir / f"{name}.u8.{os.getpid()}.tmp"
    dst = _create(tmp, len(keep), meta["size"], meta.get("channels", 3))
    try:
        for start in range(0, len(keep), 1024):  # bounded memory for large splits
            dst[start:start + 1024] = src[keep[start:start + 1024]]
        if dst is not None:
            dst.flush()
        del dst, src
        _replace_data(tmp, out_dir, name)
    finally:
        tmp.unlink(missing_ok=True)
    picked = keep.tolist()
    reasons = dict(meta["errors"])
    meta.update(
        count=len(picked), paths_key=paths_key(paths, boxes),
        ok=[meta["ok"][i] for i in picked], shapes=[meta["shapes"][i] for i in picked],
        sha1=[meta["sha1"][i] for i in picked],
        errors=[[j, reasons[i]] for j, i in enumerate(picked) if i in reasons],
    )
    _write_json(out_dir / f"{name}.json", meta)


def default_decode_threads():
    """Threads that decode images into a cache when the caller does not say: one per core, at most 8."""
    return min(8, os.cpu_count() or 1)


def cache_splits(splits, cache_dir, size, workers, progress, problems):
    """Decode (and crop) every split of prepare into its cache once; unreadable images leave
    ``splits`` ({split: [(path, label, box)]}, in place) for ``problems``, and a split left empty
    leaves with its cache. Returns {split: cache metadata} (source shape and SHA-1 of every kept row)."""
    infos = {}
    has_boxes = any(box is not None for rows in splits.values() for *_, box in rows)
    boxes_of = (lambda rows: [box for *_, box in rows]) if has_boxes else (lambda rows: None)  # noqa: E731
    for split, rows in list(splits.items()):
        errors = build_cache([p for p, *_ in rows], size, cache_dir, split, workers=workers, progress=progress,
                             boxes=boxes_of(rows))
        problems += [{"path": rows[i][0], "reason": e, "kind": problem_kind(rows[i][0])}
                     for i, e in enumerate(errors) if e]
        keep_split_rows(splits, infos, cache_dir, split, [i for i, e in enumerate(errors) if e is None])
    return infos


def keep_split_rows(splits, infos, cache_dir, split, keep):
    """Keep only rows ``keep`` (indices, in order) of prepare's ``splits[split]`` and its cache;
    a split left empty leaves with its cache. ``infos`` gets the split's new cache metadata."""
    rows = splits[split]
    if not keep:
        del splits[split]
        infos.pop(split, None)
        for suffix in (".u8", ".json"):
            (cache_dir / f"{split}{suffix}").unlink()
        return
    if len(keep) < len(rows):
        has_boxes = any(box is not None for r in splits.values() for *_, box in r)
        rows = splits[split] = [rows[i] for i in keep]
        keep_rows(cache_dir, split, keep, [p for p, *_ in rows], boxes=[b for *_, b in rows] if has_boxes else None)
    infos[split] = open_cache(cache_dir, split)[1]


def problem_kind(path):
    """What kind of problem an unreadable image is, for the report: a missing file or an unreadable one."""
    return "missing file" if not os.path.lexists(path) else "unreadable image"


def _create(path, n, size, channels=3):
    """A new zero-filled memmap file (None for n == 0: mmap cannot map an empty file)."""
    if n == 0:
        path.write_bytes(b"")
        return None
    return np.memmap(path, np.uint8, "w+", shape=(n, size, size, channels))


def _replace_data(tmp, out_dir, name):
    # The old metadata goes first, so no reader can pair it with the new rows; the new metadata
    # is written last, and until then the cache reads as absent.
    (out_dir / f"{name}.json").unlink(missing_ok=True)
    os.replace(tmp, out_dir / f"{name}.u8")


def _write_json(path, obj):
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj))
    os.replace(tmp, path)
