"""Images with mask files beside them: the layout of iMaterialist-style segmentation sets.

    class_dict.csv              name,r,g,b: the palette, row order = class index (0 = background);
                                or classes.txt (one name a line) for index masks only
    evaluated_classes*.txt      optional: named class subsets eval reports mIoU over
    <split>/images/X.jpg        split = train | valid | test (any alias of train/val/test)
    <split>/labels/X.png        single-channel class-index mask
    <split>/clabels/X.png       colour mask, used where the index mask is missing (needs class_dict.csv)

The same layout without split folders (``images/`` + ``labels/`` at the top) lets prepare split
the images. An image byte-identical to one in another split is kept only in the first of test,
val, train (the published imat-fashion-seg valid/ repeats 115 test images).
"""
from pathlib import Path
from typing import Annotated

from fashioncli.api import (
    COLOUR_DIR, INDEX_DIR, PALETTE_FILE, DataError, Imported, MaskError, describe_unknown, drop_copies, find_mask,
    hookimpl, iter_image_files, mask_for, read_palette, split_folders,
)

IMAGES_DIR = "images"
CLASSES_FILE = "classes.txt"
CLASS_SET_GLOB = "evaluated_classes*.txt"


@hookimpl
def register_datasets(register):
    register("mask-folder", mask_folder, detect=_detect)


def mask_folder(
    source,
    index_dir: Annotated[str, "the folder (beside images/) of class-index mask PNGs"] = INDEX_DIR,
    colour_dir: Annotated[str, "the folder (beside images/) of colour mask PNGs, read with the palette"] = COLOUR_DIR,
):
    """Images with index masks (``index_dir``) or colour masks (``colour_dir`` + class_dict.csv).

    An image without either mask is a problem row. Unknown colours or index values are reported
    by prepare, which validates every mask.
    """
    root = Path(source)
    names, colours = _classes(root)
    splits = split_folders(root, IMAGES_DIR) or ([(None, root)] if (root / IMAGES_DIR).is_dir() else [])
    if not splits:
        raise DataError(f"'{root}' has no {IMAGES_DIR}/ folder, at the top or in split folders (train/{IMAGES_DIR}/)")
    listed, problems, unused = [], [], []
    for split, folder in splits:
        listed += [(path, split, folder.name) for path in iter_image_files(folder / IMAGES_DIR, recursive=False)]
    kept = drop_copies(listed, problems) if splits[0][0] else listed
    samples, masks = [], []
    for path, split, folder in kept:
        if find_mask(path, index_dir) is None and find_mask(path, colour_dir) is None:
            unused.append({"path": str(path), "reason": f"no mask (not used): neither {folder}/{index_dir}/{path.stem}.png "
                                                          f"nor {folder}/{colour_dir}/{path.stem}.png exists"})
            continue
        samples.append((str(path), None, split))
        masks.append(_reader(path, colours, index_dir, colour_dir))
    if not samples:
        raise DataError(f"no image in '{root}' has a mask ({len(problems)} problems)")
    return Imported(names, samples, problems, masks=masks, palette=None if colours is None else colours.tolist(),
                    class_sets=_class_sets(root, names), unused=unused)


def _reader(path, colours, index_dir, colour_dir):
    def read():
        mask = mask_for(path, colours, index_dir, colour_dir)
        if mask.unknown:  # a colour (or index) the palette lacks: never guessed
            raise MaskError(f"{mask.kind} mask '{mask.path}': {describe_unknown(mask.unknown)}")
        return mask.index
    return read


def _classes(root):
    """(class names, palette colours or None) from class_dict.csv, else classes.txt."""
    if (root / PALETTE_FILE).is_file():
        return read_palette(root / PALETTE_FILE)
    if (root / CLASSES_FILE).is_file():
        names = [n.strip() for n in (root / CLASSES_FILE).read_text(encoding="utf-8-sig").splitlines() if n.strip()]
        if names:
            return names, None
    raise DataError(f"'{root}' has neither {PALETTE_FILE} (name,r,g,b) nor {CLASSES_FILE} (one class name a line): "
                    "the mask values need class names")


def _class_sets(root, names):
    """evaluated_classes.txt -> {"evaluated": [...]}, evaluated_classes_all.txt -> {"all": [...]}."""
    sets = {}
    for path in sorted(root.glob(CLASS_SET_GLOB)):
        listed = [n.strip() for n in path.read_text(encoding="utf-8-sig").splitlines() if n.strip()]
        unknown = [n for n in listed if n not in names]
        if unknown:
            raise DataError(f"'{path}': class '{unknown[0]}' is not one of the dataset's classes")
        sets[path.stem.replace("evaluated_classes", "evaluated").replace("evaluated_", "")] = listed
    return sets


def _detect(source):
    root = Path(str(source))
    if not root.is_dir() or not ((root / PALETTE_FILE).is_file() or (root / CLASSES_FILE).is_file()):
        return 0
    folders = [f for _, f in split_folders(root, IMAGES_DIR)] or [root]
    return 30 if any((f / INDEX_DIR).is_dir() or (f / COLOUR_DIR).is_dir() for f in folders) else 0
