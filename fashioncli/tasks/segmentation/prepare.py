"""The segmentation half of `fashion prepare`: class sets, mask validation, mask files and cache.

Every mask an importer lists is read once, checked (its size is its image's; every value is a
class or the ignore index), mapped to the chosen class set, and written as a single-channel index
PNG under ``<out>/masks/<split>/``; ``<split>.csv`` pairs it with its image (columns path,mask).
The masks are cached like the images (nearest-neighbour resizing, ``cache/<size>/<split>.mask``).
"""
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ...data.cache import cached, keep_rows, open_cache
from ...data.clean import checked_samples
from ...data.masks import MaskError, class_pixels, index_from_bytes, resize_mask
from ...data.report import count_table
from ...errors import DataError, PluginError, did_you_mean
from ...io import md_cell
from ..preparation import Preparation
from .render import write_mask_png

IGNORE = 255  # the prepared masks' ignore index: uint8 masks hold at most 255 classes
OTHER_CLASSES = ("background", "ignore")
BACKGROUND = 0


class SegmentationPreparation(Preparation):
    """A sample's label is None until its mask is written, then the prepared mask file."""

    required = ("classes",)
    writes = ("masks",)

    def clean(self, problems):
        """The class set chosen (--classes, --other-classes) and one mask reader per path (a path
        listed twice keeps its first mask); boxes are not read: masks cover whole images."""
        imported = self.imported
        self.classes, self.lut = class_mapping(imported.classes, self.options.classes, self.options.other_classes,
                                               imported.class_sets)
        if len(imported.masks) != len(imported.samples):
            raise PluginError(f"dataset importer returned {len(imported.masks)} masks for {len(imported.samples)} samples")
        # each sample with its mask reader as its label, so the checks keep the two together
        paired = [(path, reader, split) for (path, _, split), reader in zip(imported.samples, imported.masks)]
        with_masks = replace(imported, samples=paired)
        self.readers, samples = {}, []
        for path, reader, split, _ in checked_samples(with_masks, problems, boxes=False):
            if path in self.readers:
                problems.append({"path": path, "reason": "listed twice; kept the first mask"})
            else:
                self.readers[path] = reader
                samples.append((path, None, split, None))
        return samples, []

    def after_images(self, splits, infos, problems):
        """Check, write and cache every mask (see ``cache_masks``)."""
        o = self.options
        self.pixels = cache_masks(splits, self.readers, infos, self.lut, self.imported, self.classes, o.out,
                                  o.image_size, o.workers, o.progress, problems)

    def columns(self):
        return ("mask",)

    def describe(self):
        return {"classes": self.classes}

    def counts(self, splits):
        """Images that show each class."""
        return {s: dict(zip(self.classes, self.pixels[s][0])) for s in splits}

    def report_extras(self, splits):
        """Class pixel frequencies per split and training class weights."""
        train = self.pixels.get("train", next(iter(self.pixels.values())))[1]
        total = max(1, sum(train))
        return {
            "pixels": {s: dict(zip(self.classes, p[1])) for s, p in self.pixels.items()},
            "pixel_frequency": {c: round(n / total, 6) for c, n in zip(self.classes, train)},
            "class_weights": dict(zip(self.classes, class_weights(train))),
        }

    def markdown(self, report):
        splits = list(report["splits"])
        lines = ["## Images that show each class", ""]
        lines += count_table(report["counts"], report["classes"], splits, totals=report["splits"])
        lines += ["## Pixels", "", f"Pixel counts at {report['image_size']} px; frequency and median-frequency class "
                  "weights from train (use them as `loss.args.weight`).", "",
                  "| class | " + " | ".join(splits) + " | frequency | weight |", "|---|" + "---:|" * (len(splits) + 2)]
        lines += [f"| {md_cell(c)} | " + " | ".join(str(report["pixels"][s][c]) for s in splits)
                  + f" | {report['pixel_frequency'][c]:.4%} | {report['class_weights'][c]:g} |" for c in report["classes"]]
        return lines + [""]

    def dataset_meta(self):
        return {"classes": self.classes, **dataset_meta(self.imported, self.classes)}


def class_mapping(names, classes=None, other_classes="background", class_sets=None):
    """The prepared class list and a lookup table from the importer's indices to it.

    classes: None (all), "foreground" (background vs everything else), the name of one of the
        importer's class sets (e.g. "evaluated"), or a list (or comma-separated text) of class
        names. The first class (background) is always kept.
    other_classes: what the classes left out become: "background", or "ignore" (not trained on,
        not scored).
    Returns (names, lut): lut[source index] = prepared index; lut[IGNORE] = IGNORE.
    """
    if other_classes not in OTHER_CLASSES:
        raise DataError(f"other_classes: '{other_classes}' is not one of {', '.join(OTHER_CLASSES)}")
    if len(names) > IGNORE:
        raise DataError(f"{len(names)} classes: prepared masks are uint8 and hold at most {IGNORE} classes")
    if isinstance(classes, (list, tuple)) and len(classes) == 1:
        classes = classes[0]  # `--classes evaluated` arrives as a list of one
    lut = np.full(256, IGNORE, np.uint8)
    rest = BACKGROUND if other_classes == "background" else IGNORE
    if classes is None:
        lut[:len(names)] = np.arange(len(names))
        return list(names), lut
    if classes == "foreground":
        lut[:len(names)] = 1
        lut[BACKGROUND] = BACKGROUND
        return [names[BACKGROUND], "foreground"], lut
    sets = class_sets or {}
    if isinstance(classes, str) and classes in sets:
        wanted = sets[classes]
    else:
        wanted = [c.strip() for c in classes.split(",")] if isinstance(classes, str) else [str(c) for c in classes]
    unknown = [c for c in wanted if c not in names]
    if unknown:
        choices = [*names, "foreground", *sets]
        raise DataError(f"classes: '{unknown[0]}' is not a class or class set of the dataset"
                        f"{did_you_mean(unknown[0], choices)}; class sets: {', '.join(['foreground', *sets])}")
    kept = [n for n in names if n in set(wanted) or n == names[BACKGROUND]]  # the dataset's order
    lut[:len(names)] = rest
    for new, name in enumerate(kept):
        lut[names.index(name)] = new
    return kept, lut


def check_mask(index, shape, num_source_classes, ignore_index):
    """Raise MaskError unless ``index`` has the image's [height, width] and only class values."""
    index = np.asarray(index)
    if index.ndim != 2:
        raise MaskError(f"a mask has one value per pixel, not shape {index.shape}")
    if list(index.shape) != list(shape):
        raise MaskError(f"mask is {index.shape[1]}x{index.shape[0]} but its image is {shape[1]}x{shape[0]}")
    bad = (index >= num_source_classes) & (index != ignore_index) | (index < 0)
    if bad.any():
        values = np.unique(index[bad])
        raise MaskError(f"{int(bad.sum())} pixels have values {values[:5].tolist()} that are not class indices "
                        f"0..{num_source_classes - 1}" + (f" (or {ignore_index}, ignored)" if ignore_index is not None else ""))


def write_masks(splits, readers, infos, lut, imported, out, workers, progress, problems):
    """Read, check, map and write every mask; rows whose mask fails leave ``splits`` for ``problems``.

    splits: {split: [(image path, None, box)]} (in place: rows become (path, mask file, box));
    infos: the image caches' metadata per split (source [height, width] of every row; unreadable
    images have already left ``splits``).
    Returns {split: kept row indices} for the image caches to follow.
    """
    kept = {}
    num_source = len(imported.classes)
    for split, rows in splits.items():
        folder = Path(out) / "masks" / split
        folder.mkdir(parents=True, exist_ok=True)

        def work(i, rows=rows, folder=folder, shapes=infos[split]["shapes"]):
            path = rows[i][0]
            index = readers[path]()
            check_mask(index, shapes[i], num_source, imported.ignore_index)
            index = np.where(index == imported.ignore_index, IGNORE, index).astype(np.int64)
            target = folder / f"{i:06d}_{Path(path).stem}.png"
            write_mask_png(target, lut[index])
            return str(target)

        def safe(i):
            try:
                return work(i), None
            except MaskError as exc:
                return None, str(exc)
            except Exception as exc:  # an importer's reader failing on one file is that file's problem
                return None, f"cannot read mask: {exc}"

        with ThreadPoolExecutor(max(1, workers)) as pool:
            results = list(tqdm(pool.map(safe, range(len(rows))), total=len(rows), disable=not progress,
                                desc=f"masks {split}", unit="mask", leave=False))
        keep = []
        for i, (target, error) in enumerate(results):
            if error:
                problems.append({"path": rows[i][0], "reason": error})
            else:
                keep.append(i)
        splits[split] = [(rows[i][0], results[i][0], rows[i][2]) for i in keep]
        kept[split] = keep
    return kept


def cache_masks(splits, readers, infos, lut, imported, class_names, out, size, workers, progress, problems):
    """prepare's segmentation step, after the images are cached: check and write every mask, drop
    the rows whose mask fails from the image caches too, and cache the masks -> {split: (images
    per class, pixels per class)}."""
    cache_dir = out / "cache" / str(size)
    kept = write_masks(splits, readers, infos, lut, imported, out, workers, progress, problems)
    pixels = {}
    for split in list(splits):
        rows = splits[split]
        if not rows:
            del splits[split], infos[split]
            for suffix in (".u8", ".json"):
                (cache_dir / f"{split}{suffix}").unlink(missing_ok=True)
            continue
        if len(kept[split]) < infos[split]["count"]:
            keep_rows(cache_dir, split, kept[split], [p for p, *_ in rows])
            infos[split] = open_cache(cache_dir, split)[1]
        masks = cached([m for _, m, _ in rows], size, cache_dir, f"{split}.mask", workers=workers, progress=progress,
                       decode=decode_mask, channels=1)
        pixels[split] = pixel_report(masks, class_names)
    return pixels


def dataset_meta(imported, class_names):
    """dataset.json's segmentation keys: palette (one colour per prepared class), ignore index,
    and the importer's class sets restricted to the prepared classes."""
    meta = {"ignore_index": IGNORE}
    if imported.palette is not None:
        colours = dict(zip(imported.classes, imported.palette))
        meta["palette"] = [list(map(int, colours[c])) if c in colours else None for c in class_names]
    sets = {name: [c for c in members if c in class_names] for name, members in (imported.class_sets or {}).items()}
    # A set of every class (evaluated_classes_all.txt) would only repeat the overall mIoU.
    meta["class_sets"] = {name: members for name, members in sets.items() if 1 < len(members) < len(class_names)}
    return meta


def decode_mask(data, size, box=None):
    """Mask PNG bytes -> (size x size x 1 uint8 class indices, [height, width]): the mask cache's
    decoder. Nearest neighbour, so no pixel gets a class that is a blend of two."""
    index = index_from_bytes(data, "prepared mask")
    if index.dtype != np.uint8:
        raise MaskError("a prepared mask must be an 8-bit PNG; run fashion prepare again")
    return resize_mask(index, size, size)[..., None], list(index.shape)


def pixel_report(mask_cache, names):
    """Per class: images that show it and pixels (at the cached size) -> (images, pixels) lists."""
    images, pixels = np.zeros(len(names), np.int64), np.zeros(len(names), np.int64)
    for start in range(0, len(mask_cache), 256):
        for mask in mask_cache[start:start + 256]:
            counts = class_pixels(mask[..., 0], len(names))
            pixels += counts
            images += counts > 0
    return images.tolist(), pixels.tolist()


def class_weights(pixels):
    """Median-frequency balancing (Eigen & Fergus): weight_c = median(freq) / freq_c over the
    classes present; 0 for a class with no training pixel. Pass as ``loss.args.weight``."""
    pixels = np.asarray(pixels, np.float64)
    present = pixels > 0
    if not present.any():
        return [0.0] * len(pixels)
    freq = pixels / pixels.sum()
    weights = np.zeros_like(freq)
    weights[present] = np.median(freq[present]) / freq[present]
    return [round(float(w), 4) for w in weights]



def mask_cache(data, split, size=None, workers=None, progress=True):
    """A prepared split's masks as an N x size x size x 1 uint8 array (like its image cache), built on first use."""
    size = int(size or data.image_size)
    masks = [row["mask"] for row in data.rows(split)]
    return cached(masks, size, data.root / "cache" / str(size), f"{split}.mask", workers=workers,
                  progress=progress, decode=decode_mask, channels=1)
