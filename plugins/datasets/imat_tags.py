"""iMaterialist-Fashion segmentation data as a multi-label dataset: which garments an image shows.

The source keeps the layout of the `imat-fashion-seg` set (Jayi-S/COMP576-Finalproject)::

    class_dict.csv                 name,r,g,b: the palette, row order = class index (0 = background)
    evaluated_classes.txt          optional: the class subset the segmentation study evaluates
    <split>/images/X.jpg           split = train | valid | test (any alias of train/val/test)
    <split>/labels/X.png           class-index mask (missing for many images)
    <split>/clabels/X.png          colour mask, read when the index mask is missing

Every image gets one multilabel head, ``garments``: the classes its mask covers with at least
``min_fraction`` of the mask's area (or ``min_pixels`` pixels), background excluded. The default,
0.025% (16 pixels, a 4x4 patch, of a 256x256 mask), drops the one- and two-pixel specks that
resizing leaves along edges (the most common class count of all in this set) while keeping
small real parts: at 0.5% every watch and 43% of the shoes would lose their tag.

Detection scores 20: above the generic folder importer (1), below what a segmentation importer
of the same layout should score, since tags are a derived view of a segmentation set. Pass
``--importer imat-tags`` to ask for it explicitly.
"""
import math
from pathlib import Path
from typing import Annotated

from fashioncli.api import (
    COLOUR_DIR, INDEX_DIR, PALETTE_FILE, DataError, Imported, MaskError, class_pixels, describe_unknown, did_you_mean,
    drop_copies, hookimpl, iter_image_files, mask_for, read_palette, split_folders,
)

HEAD = "garments"
BACKGROUND = "background"
CLASS_FILES = {"evaluated": "evaluated_classes.txt", "all": None}
IMAGES_DIR = "images"
DEFAULT_MIN_FRACTION = 0.00025


@hookimpl
def register_datasets(register):
    register("imat-tags", imat_tags, detect=_detect)


def imat_tags(
    source,
    classes_file: Annotated[str, "'all' (every palette class but background), 'evaluated' "
                            "(evaluated_classes.txt) or a text file of class names"] = "all",
    min_fraction: Annotated[float, "share of the mask's area a class must cover to become a tag"] = DEFAULT_MIN_FRACTION,
    min_pixels: Annotated[int, "a fixed pixel count instead of min_fraction"] = None,
):
    """iMaterialist-Fashion masks -> one multilabel head ``garments``: the classes each image shows.

    classes_file: 'all' (every palette class but background, 46 here), 'evaluated'
        (evaluated_classes.txt: the study's 16 garment classes besides background) or the path of a
        text file of class names, one a line. The head keeps the palette's order.
    min_fraction: share of the mask's area a class must cover to become a tag (default 0.00025).
    min_pixels: a fixed pixel count instead of min_fraction.

    An image byte-identical to one in another split is kept only in the first of test, val, train
    (the published valid/ repeats 115 test images). An image without a mask, with an unreadable
    one, or with pixels whose colour (or index) the palette lacks is left out as a problem.
    """
    root = Path(source)
    if not (root / PALETTE_FILE).is_file():
        raise DataError(f"'{root}' has no {PALETTE_FILE} (the palette of an iMaterialist-style segmentation set)")
    names, colours = read_palette(root / PALETTE_FILE)
    wanted = _wanted_classes(root, names, classes_file)
    threshold = _threshold(min_fraction, min_pixels)

    splits = split_folders(root)
    if not splits:
        raise DataError(f"'{root}' has no split folder with an {IMAGES_DIR}/ folder (e.g. train/{IMAGES_DIR}/)")
    listed, copies, problems, unused = [], [], [], []
    for split, folder in splits:
        listed += [(path, split, folder.name) for path in iter_image_files(folder / IMAGES_DIR, recursive=False)]
    kept = drop_copies(listed, copies)

    columns = [i for i, n in enumerate(names) if n in wanted]
    samples = []
    for path, split, folder in kept:
        try:
            mask = mask_for(path, colours)
        except MaskError as exc:
            problems.append({"path": str(path), "reason": str(exc)})
            continue
        if mask is None:
            unused.append({"path": str(path), "reason": f"no mask (not used): neither {folder}/{INDEX_DIR}/{path.stem}.png "
                                                          f"nor {folder}/{COLOUR_DIR}/{path.stem}.png exists"})
            continue
        if mask.unknown:
            problems.append({"path": str(path), "reason": f"{mask.kind} mask '{mask.path.name}': "
                                                          f"{describe_unknown(mask.unknown)}"})
            continue
        counts = class_pixels(mask.index, len(names))
        need = threshold(mask.index.size)
        samples.append((str(path), {HEAD: [names[i] for i in columns if counts[i] >= need]}, split))
    if not samples:
        raise DataError(f"no image in '{root}' has a usable mask ({len(problems)} problems)")
    # Mask problems first: the report lists the first 50, and those are the ones to act on.
    heads = {HEAD: {"type": "multilabel", "classes": [names[i] for i in columns]}}
    return Imported([], samples, problems + copies, heads=heads, unused=unused)


def _wanted_classes(root, names, classes_file):
    """The head's classes as a set of palette names (background never)."""
    choice = str(classes_file)
    if choice == "all":
        return {n for n in names if n.lower() != BACKGROUND}
    path = root / CLASS_FILES[choice] if choice in CLASS_FILES else Path(choice)
    if not path.is_absolute() and not path.exists():
        path = root / path
    try:
        listed = [line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines() if line.strip()]
    except OSError:
        raise DataError(f"classes_file: '{path}' cannot be read; use 'all', 'evaluated' or a file of class names") from None
    unknown = [n for n in listed if n not in names]
    if unknown:
        raise DataError(f"classes_file '{path}': class '{unknown[0]}' is not in {PALETTE_FILE}"
                        f"{did_you_mean(unknown[0], names)}")
    wanted = {n for n in listed if n.lower() != BACKGROUND}
    if not wanted:
        raise DataError(f"classes_file '{path}' lists no class besides background")
    return wanted


def _threshold(min_fraction, min_pixels):
    """-> function(mask area) -> pixels a class needs to be a tag (at least 1)."""
    if min_pixels is not None:
        n = int(min_pixels)
        if n < 1 or n != float(min_pixels):
            raise DataError(f"min_pixels must be a whole number >= 1, not {min_pixels}")
        return lambda area: n
    fraction = float(min_fraction)
    if not 0 <= fraction < 1:
        raise DataError(f"min_fraction must be in [0, 1), not {min_fraction}")
    return lambda area: max(1, math.ceil(fraction * area))


def _detect(source):
    root = Path(str(source))
    return 20 if root.is_dir() and (root / PALETTE_FILE).is_file() and split_folders(root) else 0

