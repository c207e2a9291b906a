"""MATLAB .mat label images (Clothing Co-Parsing and its kin), with a label_list.mat of class names."""
import functools
from pathlib import Path
from typing import Annotated

import numpy as np

from fashioncli.api import IMAGE_EXTENSIONS, DataError, Imported, MaskError, hookimpl

from ._annotation_masks import DETECT_SCORE, first_dir, image_listing, mask_dtype


@hookimpl
def register_datasets(register):
    register("mat-seg", mat_seg, detect=_detect_mat)


MAT_IMAGE_DIRS = ("photos", "images", "JPEGImages", "img", "image")
MAT_MASK_DIRS = ("annotations/pixel-level", "annotations/pixel_level", "annotations", "masks", "labels")
MAT_LABELS = "label_list.mat"


def mat_seg(
    source,
    images: Annotated[str, "the image folder (default: the first of photos/, images/, JPEGImages/, img/, "
                      "image/)"] = None,
    masks: Annotated[str, "the folder of .mat masks (default: the first of annotations/pixel-level/, "
                     "annotations/, masks/, labels/ holding .mat files)"] = None,
    labels: Annotated[str, "the label list: a .mat file or a text file of names (default: "
                      "label_list.mat)"] = None,
    mask_key: Annotated[str, "the variable holding a mask inside its .mat file"] = "groundtruth",
    labels_key: Annotated[str, "the variable holding the names inside the label list .mat"] = "label_list",
):
    """MATLAB .mat label images plus a label list -> class-index masks.

    Layout (Clothing Co-Parsing): ``photos/0001.jpg``, ``annotations/pixel-level/0001.mat`` holding
    the variable ``groundtruth`` ((H, W) class indices), and ``label_list.mat`` holding
    ``label_list`` (a 1xK cell array of names; index 0 = 'null', the background). Images and masks
    pair by file stem.

    images: the image folder (default: the first of photos/, images/, JPEGImages/, img/, image/).
    masks: the folder of .mat masks (default: the first of annotations/pixel-level/, annotations/,
        masks/, labels/ that holds .mat files).
    labels: the label list: a .mat file (variable ``labels_key``) or a text file of names, one a
        line (default: label_list.mat).
    mask_key, labels_key: the variable names inside the .mat files.

    Classes: the label list as it is, in index order (the dataset's own names: CCP's background is
    'null'). No splits (prepare assigns them). An image without a mask (CCP labels 1004 of its 2098
    photos pixel by pixel) and a mask without an image are problem rows; a .mat without the
    variable, or with a non-integer or non-2-D one, is a MaskError when read.
    """
    root = Path(source)
    if not root.is_dir():
        raise DataError(f"source '{source}' is not a folder (expected photos/, annotations/pixel-level/, {MAT_LABELS})")
    image_dir = _given_dir(root, images, "images") or first_dir(root, MAT_IMAGE_DIRS)
    if image_dir is None:
        raise DataError(f"'{root}' has no image folder ({', '.join(MAT_IMAGE_DIRS)}); pass images=FOLDER")
    mask_dir = _given_dir(root, masks, "masks") or _mat_mask_dir(root)
    if mask_dir is None:
        raise DataError(f"'{root}' has no folder of .mat masks ({', '.join(MAT_MASK_DIRS)}); pass masks=FOLDER")
    label_path = (Path(labels) if Path(labels).is_absolute() else root / labels) if labels else root / MAT_LABELS
    if not label_path.is_file():
        raise DataError(f"label list '{label_path}' not found; pass labels=FILE (a .mat with variable "
                        f"'{labels_key}' or a text file of names)")
    classes = _mat_labels(label_path, labels_key)
    dtype, ignore = mask_dtype(len(classes))

    photos = {p.stem: p for p in sorted(image_listing(image_dir).values()) if p.suffix.lower() in IMAGE_EXTENSIONS}
    mats = {p.stem: p for p in sorted(image_listing(mask_dir).values()) if p.suffix.lower() == ".mat"}
    problems, unused, samples, readers = [], [], [], []
    for stem, photo in sorted(photos.items()):
        if stem not in mats:
            unused.append({"path": str(photo), "reason": f"no mask (not used): {mask_dir.name}/{stem}.mat not found"})
            continue
        samples.append((str(photo), None, None))
        readers.append(functools.partial(_mat_mask, mats[stem], mask_key, dtype))
    for stem, mat in sorted(mats.items()):
        if stem not in photos:
            problems.append({"path": str(mat), "reason": f"no image for this mask in {image_dir.name}/"})
    if not samples:
        raise DataError(f"no image in '{image_dir}' has a mask in '{mask_dir}' ({len(problems)} problems)")
    return Imported(classes, samples, problems, masks=readers, ignore_index=ignore, unused=unused)


def _given_dir(root, value, what):
    if value is None:
        return None
    path = Path(value) if Path(value).is_absolute() else root / value
    if not path.is_dir():
        raise DataError(f"{what}: '{path}' is not a folder")
    return path


def _mat_mask_dir(root):
    for name in MAT_MASK_DIRS:
        folder = root / name
        if folder.is_dir() and any(p.suffix.lower() == ".mat" for p in image_listing(folder).values()):
            return folder
    return None


def _loadmat(path, key, error):
    """One variable of a .mat file; ``error`` (DataError or MaskError) names what is wrong."""
    import scipy.io

    try:
        value = scipy.io.loadmat(str(path), variable_names=[key]).get(key)
        if value is None:
            present = [v[0] for v in scipy.io.whosmat(str(path))]
    except NotImplementedError:
        raise error(f"'{path}' is a MATLAB v7.3 (HDF5) file, which scipy cannot read; save it with -v7") from None
    except (OSError, ValueError, TypeError) as exc:
        raise error(f"cannot read '{path}' as a MATLAB file: {str(exc).splitlines()[0]}") from None
    if value is None:
        raise error(f"'{path}' has no variable '{key}' (it has: {', '.join(present) or 'none'}); "
                    f"pass {'mask_key' if error is MaskError else 'labels_key'}=NAME")
    return value


def _mat_labels(path, key):
    if path.suffix.lower() != ".mat":
        try:
            names = [line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines() if line.strip()]
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"cannot read label list '{path}': {exc}") from None
    else:
        value = _loadmat(path, key, DataError)
        if value.dtype == object:  # a cell array: one name per cell
            names = [_mat_text(v) for v in value.ravel()]
        elif value.dtype.kind == "U":  # a char matrix: one name per row
            names = [str(v).strip() for v in value.ravel()]
        else:
            raise DataError(f"'{path}' variable '{key}' holds {value.dtype} values, not names "
                            "(a cell array or char matrix)")
    if not names or not all(names):
        raise DataError(f"label list '{path}' has {'no names' if not names else 'an empty name'}")
    if len(set(names)) != len(names):
        twice = next(n for n in names if names.count(n) > 1)
        raise DataError(f"label list '{path}' names '{twice}' twice")
    return names


def _mat_text(value):
    value = np.asarray(value).ravel()
    if value.dtype == object:
        return "".join(_mat_text(v) for v in value)
    return "".join(str(v) for v in value).strip()


def _mat_mask(path, key, dtype):
    value = _loadmat(path, key, MaskError)
    if value.ndim != 2 or value.dtype.kind not in "uifb":
        raise MaskError(f"'{path}' variable '{key}' is a {value.dtype} array of shape {value.shape}, "
                        "not an (H, W) label image")
    if value.dtype.kind == "f" and not (np.isfinite(value).all() and (value == np.round(value)).all()):
        raise MaskError(f"'{path}' variable '{key}' holds non-integer values")
    if value.size and (value.min() < 0 or value.max() > np.iinfo(dtype).max):
        raise MaskError(f"'{path}' variable '{key}' holds values outside 0..{np.iinfo(dtype).max}")
    return value.astype(dtype)


def _detect_mat(source):
    root = Path(str(source))
    if not root.is_dir() or not (root / MAT_LABELS).is_file():
        return 0
    return DETECT_SCORE if _mat_mask_dir(root) is not None and first_dir(root, MAT_IMAGE_DIRS) else 0
