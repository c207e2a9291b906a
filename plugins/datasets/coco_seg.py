"""COCO JSON segmentations (Fashionpedia): polygons, RLE and compressed RLE per instance.

See _annotation_masks.py for how overlapping instances are painted.
"""
import functools
import json as jsonlib
import os
import re
from pathlib import Path
from typing import Annotated

import numpy as np

from fashioncli.api import SPLIT_ALIASES, DataError, Imported, MaskError, hookimpl, normalize_split

from ._annotation_masks import BACKGROUND, DETECT_SCORE, image_listing, mask_dtype, paint


@hookimpl
def register_datasets(register):
    register("coco-seg", coco_seg, detect=_detect_coco)


# -- RLE and polygons
def coco_counts(text, where):
    """COCO's compressed RLE string -> run lengths (pycocotools' ``rleFrString``).

    Each count is a little-endian base-32 number, 5 bits per character (character - 48), the
    0x20 bit saying another character follows and 0x10 of the last one the sign; from the fourth
    count on, the stored value is the difference to the count two places earlier.
    """
    counts, value, shift = [], 0, 0
    for pos, ch in enumerate(text):
        c = ord(ch) - 48
        if not 0 <= c < 64:
            raise MaskError(f"{where}: RLE string has character {ch!r} at {pos}, outside COCO's '0'..'o'")
        value |= (c & 0x1F) << shift
        shift += 5
        if c & 0x20:
            continue
        if c & 0x10:
            value -= 1 << shift  # sign-extend
        if len(counts) > 2:
            value += counts[-2]
        counts.append(value)
        value, shift = 0, 0
    if shift:
        raise MaskError(f"{where}: RLE string ends in the middle of a count")
    return counts


def rle_to_mask(counts, height, width, where):
    """Run lengths (background run first, column-major pixel order) -> (H, W) bool mask."""
    counts = np.asarray(counts, dtype=np.int64)
    if counts.ndim != 1 or (counts < 0).any():
        raise MaskError(f"{where}: RLE counts must be a list of non-negative numbers")
    if counts.sum() != height * width:
        raise MaskError(f"{where}: RLE counts cover {int(counts.sum())} pixels, the {height}x{width} image has "
                        f"{height * width}")
    flat = np.repeat(np.arange(len(counts)) % 2 == 1, counts)
    return flat.reshape(width, height).T  # column-major: pixels run down the first column first



def polygon_mask(polygons, height, width, where):
    """COCO polygons ([x1, y1, x2, y2, ...] in pixel-edge coordinates) -> (H, W) bool mask.

    A pixel belongs to a polygon when its centre lies inside (even-odd rule); several polygons of
    one annotation are united. Not cv2.fillPoly: it also fills every pixel the outline touches,
    which on random 12-point shapes of radius 4 px painted 55% more pixels than pycocotools (and
    disagreed on 14% of them at radius 60 px); this rule disagrees with pycocotools on 0.4-5%.
    """
    out = np.zeros((height, width), dtype=bool)
    for poly in polygons:
        try:
            p = np.asarray(poly, dtype=np.float64)
        except (TypeError, ValueError):
            raise MaskError(f"{where}: a polygon holds something other than numbers") from None
        if p.ndim != 1 or len(p) % 2:
            raise MaskError(f"{where}: a polygon has {p.size} numbers; expected x,y pairs")
        if not np.isfinite(p).all():
            raise MaskError(f"{where}: a polygon has a non-finite coordinate")
        if len(p) >= 6:  # two points enclose no pixel centre under any rule
            out |= _fill_polygon(p.reshape(-1, 2), height, width)
    return out


def _fill_polygon(p, height, width):
    x0, y0 = p[:, 0], p[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    lo, hi = np.minimum(y0, y1), np.maximum(y0, y1)
    # The rows whose centre line y + 0.5 each edge crosses, counting [lo, hi): horizontal edges none.
    first = np.clip(np.ceil(lo - 0.5), 0, height).astype(np.int64)
    n = np.maximum(np.clip(np.ceil(hi - 0.5), 0, height).astype(np.int64) - first, 0)
    out = np.zeros((height, width), dtype=bool)
    if not n.sum():
        return out
    edge = np.repeat(np.arange(len(p)), n)
    rows = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n) + first[edge]
    xs = x0[edge] + (rows + 0.5 - y0[edge]) * (x1[edge] - x0[edge]) / (y1[edge] - y0[edge])
    cols = np.clip(np.ceil(xs - 0.5), 0, width).astype(np.int64)  # first pixel whose centre is right of it
    top, bottom = rows.min(), rows.max() + 1
    flips = np.bincount((rows - top) * (width + 1) + cols, minlength=(bottom - top) * (width + 1))
    out[top:bottom] = (np.cumsum(flips.reshape(bottom - top, width + 1), axis=1)[:, :width] & 1).astype(bool)
    return out



# -- the importer
def _split_from_name(stem):
    """'instances_attributes_val2020' -> 'val'; None when no word of the name is a split."""
    for word in re.findall(r"[a-z]+", stem.lower()):
        split = normalize_split(word)
        if split:
            return split
    return None


_COCO_KEYS = ("images", "annotations", "categories")
# Where a JSON's images may lie, besides the folder named by its split: Fashionpedia ships
# instances_attributes_val2020.json with its images in test/.
_IMAGE_DIR_NAMES = ("images", "imgs", "img", "photos")


def coco_seg(
    source,
    json: Annotated[object, "the annotation JSON(s) to read, relative to the source folder (default: every COCO "
                    "JSON found)"] = None,
    images: Annotated[str, "the folder the JSONs' file names are relative to (default: found per JSON)"] = None,
    crowd: Annotated[str, "iscrowd regions: 'class' paints them with their class, 'ignore' with the ignore "
                     "index"] = "class",
):
    """COCO-style instance annotations (the Fashionpedia layout) -> class-index masks.

    Layout: a folder with the annotation JSON(s) (at its top or in ``annotations/``) and image
    folder(s), e.g. ``instances_attributes_train2020.json`` + ``train/`` and
    ``instances_attributes_val2020.json`` + ``test/``; or the path of one JSON. A JSON holds
    ``images`` [{id, file_name, height, width}], ``annotations`` [{image_id, category_id,
    segmentation, iscrowd}] and ``categories`` [{id, name}]; a segmentation is a list of polygons
    [x1, y1, x2, y2, ...] or an RLE {"counts": [runs] or COCO's compressed string, "size": [h, w]}.

    json: the annotation file(s) to read (a path, or a list; relative to the source folder);
        default: every COCO JSON found. A JSON without annotations (Fashionpedia's image list of
        its test set) is left out with a note in the problems.
    images: the folder the JSONs' file names are relative to; default: per JSON, the folder
        under the source where its first listed images exist (its split's folder first).
    crowd: 'class' (default) paints iscrowd regions with their class; 'ignore' paints them with
        the ignore index.

    Classes: 'background' (index 0), then the categories in id order (a category named
    'background' takes index 0 itself). The split comes from the JSON's file name (train2020 ->
    train) when it names one. An image listed without annotations is all background (COCO lists
    every object of an image); a missing image file or an annotation of an unknown category makes
    a problem row, a bad polygon or RLE a MaskError when the mask is read.
    """
    if crowd not in ("class", "ignore"):
        raise DataError(f"crowd must be 'class' or 'ignore', not '{crowd}'")
    src = Path(source)
    problems = []
    if src.is_file():
        root, files = src.parent, [src]
    elif src.is_dir():
        root = src
        if json is not None:
            files = [Path(j) if Path(j).is_absolute() else root / j
                     for j in ([json] if isinstance(json, (str, os.PathLike)) else json)]
        else:
            files = []
            for p in _json_files(root):
                found = _coco_keys(p)
                if {"images", "segmentation"} <= found:
                    files.append(p)
                elif "images" in found and "annotations" not in found:
                    problems.append({"path": str(p), "reason": "lists images but no annotations (an unlabelled "
                                                               "image list, e.g. a test set); left out"})
            if not files:
                raise DataError(f"'{root}' holds no COCO annotation JSON (with images, annotations and "
                                "categories) at its top or in annotations/; pass json=FILE")
    else:
        raise DataError(f"source '{source}' not found (a folder or a COCO .json file)")
    for f in files:
        if not f.is_file():
            raise DataError(f"annotation file '{f}' not found")
    image_root = None
    if images is not None:
        image_root = Path(images) if Path(images).is_absolute() else root / images
        if not image_root.is_dir():
            raise DataError(f"images: '{image_root}' is not a folder")

    categories, records = {}, []  # category id -> (name, file it came from)
    for f in files:
        data = _load_coco(f, problems)
        if data is None:
            continue
        for cat in data["categories"]:
            try:
                cid, name = int(cat["id"]), str(cat["name"])
            except (KeyError, TypeError, ValueError):
                raise DataError(f"'{f}': every category needs an id (a number) and a name; found {cat!r:.80}") from None
            known = categories.setdefault(cid, (name, f.name))
            if known[0] != name:
                raise DataError(f"category id {cid} is '{known[0]}' in {known[1]} but '{name}' in {f.name}")
        folder = image_root or _coco_image_dir(root, f, data["images"])
        records += _coco_records(f, data, folder, problems)
        del data
    if not categories:
        raise DataError(f"no categories in {', '.join(f.name for f in files)}")

    ids = sorted(categories)
    named_bg = [i for i in ids if categories[i][0].strip().lower() in (BACKGROUND, "_background_")]
    if named_bg:
        ids.remove(named_bg[0])
        ids.insert(0, named_bg[0])
        classes = [categories[i][0] for i in ids]
        index_of = {cid: k for k, cid in enumerate(ids)}
    else:
        classes = [BACKGROUND] + [categories[i][0] for i in ids]
        index_of = {cid: k + 1 for k, cid in enumerate(ids)}
    dtype, ignore = mask_dtype(len(classes))

    samples, masks = [], []
    for path, split, height, width, anns, where in records:
        bad = next((a for a in anns if a[0] not in index_of), None)
        if bad is not None:
            problems.append({"path": str(path), "reason": f"{where}: annotation {bad[3]} has category_id {bad[0]}, "
                                                          "which categories does not list"})
            continue
        samples.append((str(path), None, split))
        masks.append(functools.partial(_coco_mask, anns, height, width, index_of, dtype,
                                       ignore if crowd == "ignore" else None, where))
    if not samples:
        raise DataError(f"no usable image in {', '.join(f.name for f in files)} ({len(problems)} problems)")
    return Imported(classes, samples, problems, masks=masks, ignore_index=ignore)


def _json_files(root):
    return sorted(root.glob("*.json")) + sorted((root / "annotations").glob("*.json"))


def _load_coco(path, problems):
    """The JSON as a dict, or None (with a problem row) for one that lists no annotations."""
    try:
        with open(path, encoding="utf-8-sig") as f:
            data = jsonlib.load(f)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read '{path}': {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise DataError(f"'{path}' is not a COCO annotation file (expected an object with {', '.join(_COCO_KEYS)})")
    if "annotations" not in data and "images" in data:
        problems.append({"path": str(path), "reason": "lists images but no annotations (an unlabelled image list, "
                                                      "e.g. a test set); left out"})
        return None
    missing = [k for k in _COCO_KEYS if not isinstance(data.get(k), list)]
    if missing:
        raise DataError(f"'{path}' has no list '{missing[0]}'; a COCO annotation file has {', '.join(_COCO_KEYS)}")
    return data


def _coco_image_dir(root, json_path, images):
    """The folder where most of the JSON's first 20 file names exist (its split's folders first)."""
    split = _split_from_name(json_path.stem)
    words = [w for w in re.findall(r"[a-z]+\d*", json_path.stem.lower()) if _split_from_name(w)]  # 'train2020'
    names = words + [a for a, v in SPLIT_ALIASES.items() if v == split]
    candidates = [root / n for n in names]
    candidates += [root / d / n for d in _IMAGE_DIR_NAMES for n in names]
    candidates += [root / d for d in _IMAGE_DIR_NAMES] + [root, json_path.parent]
    candidates += sorted(d for d in root.iterdir() if d.is_dir())
    files = [str(im.get("file_name", "")) for im in images[:20] if isinstance(im, dict)]
    best, hits = None, 0
    for folder in dict.fromkeys(candidates):
        if folder.is_dir():
            n = sum((folder / name).is_file() for name in files)
            if n > hits:
                best, hits = folder, n
    if best is None and files:
        raise DataError(f"cannot find the images of '{json_path.name}' (e.g. '{files[0]}') under '{root}' or its "
                        "folders; pass images=FOLDER")
    return best or root


def _coco_records(path, data, folder, problems):
    """[(image path, split, height, width, [(category id, segmentation, iscrowd, annotation id)], where)]."""
    split = _split_from_name(path.stem)
    by_id, records = {}, []
    listing = {}
    for im in data["images"]:
        try:
            iid, name = im["id"], str(im["file_name"])
            height, width = int(im["height"]), int(im["width"])
        except (KeyError, TypeError, ValueError):
            problems.append({"path": str(path), "reason": f"image entry {str(im)[:80]} needs id, file_name, height "
                                                          "and width"})
            continue
        if height < 1 or width < 1:
            problems.append({"path": str(path), "reason": f"image '{name}' has size {height}x{width}"})
            continue
        if iid in by_id:
            problems.append({"path": str(path), "reason": f"image id {iid} is listed twice; the second ('{name}') "
                                                          "is left out"})
            continue
        image = folder / name
        parent = image.parent
        if parent not in listing:
            listing[parent] = image_listing(parent)
        if image.name not in listing[parent]:
            problems.append({"path": str(image), "reason": f"image file not found (listed in {path.name})"})
            by_id[iid] = None
            continue
        anns = []
        by_id[iid] = anns
        records.append((image, split, height, width, anns, f"{path.name} image '{name}'"))
    for a in data["annotations"]:
        try:
            iid, cid = a["image_id"], int(a["category_id"])
        except (KeyError, TypeError, ValueError):
            problems.append({"path": str(path), "reason": f"annotation {str(a)[:80]} needs image_id and category_id"})
            continue
        if iid not in by_id:
            problems.append({"path": str(path), "reason": f"annotation {a.get('id', '?')} refers to image id {iid}, "
                                                          "which images does not list"})
            continue
        if by_id[iid] is not None:
            by_id[iid].append((cid, _compact(a.get("segmentation")), bool(a.get("iscrowd", 0)), a.get("id", "?")))
    return records


def _compact(seg):
    """Polygons as float arrays (a third of the memory of lists of Python floats); RLE as it is."""
    if isinstance(seg, list) and seg and all(isinstance(p, list) for p in seg):
        try:
            return [np.asarray(p, dtype=np.float64) for p in seg]
        except (TypeError, ValueError):
            return seg  # reported when the mask is read
    return seg


def _coco_mask(anns, height, width, index_of, dtype, crowd_value, where):
    layers = []
    for cid, seg, iscrowd, aid in anns:
        at = f"{where} annotation {aid}"
        value = crowd_value if iscrowd and crowd_value is not None else index_of[cid]
        layers.append((value, _segmentation(seg, height, width, at)))
    return paint((height, width), layers, dtype)


def _segmentation(seg, height, width, where):
    if isinstance(seg, dict):
        counts, size = seg.get("counts"), seg.get("size")
        try:
            h, w = (int(v) for v in size)
        except (TypeError, ValueError):
            raise MaskError(f"{where}: RLE needs a size [height, width]") from None
        if (h, w) != (height, width):
            raise MaskError(f"{where}: RLE size {h}x{w} differs from the image's {height}x{width}")
        if isinstance(counts, (str, bytes)):
            counts = coco_counts(counts.decode("ascii", "replace") if isinstance(counts, bytes) else counts, where)
        elif not isinstance(counts, list):
            raise MaskError(f"{where}: RLE counts must be a list of numbers or a COCO string")
        return rle_to_mask(counts, h, w, where)
    if isinstance(seg, list) and seg:
        if all(isinstance(v, (int, float)) for v in seg):  # one polygon, not wrapped in a list
            seg = [seg]
        return polygon_mask(seg, height, width, where)
    raise MaskError(f"{where}: no segmentation (expected polygons or an RLE)")


def _looks_coco(path):
    return {"images", "segmentation"} <= _coco_keys(path)


def _coco_keys(path):
    """Which of the keys images, annotations, segmentation a JSON object holds, as a set (scanned
    in chunks until all are seen: Fashionpedia's training JSON is 0.5 GB)."""
    keys = ("images", "annotations", "segmentation")
    wanted, tail = {f'"{k}"'.encode() for k in keys}, b""
    try:
        with open(path, "rb") as f:
            head = f.read(1)
            while head[:1].isspace():
                head = f.read(1)
            if head[:1] != b"{":
                return set()
            while wanted:
                chunk = f.read(1 << 22)
                if not chunk:
                    break
                text = tail + chunk
                wanted = {w for w in wanted if w not in text}
                tail = chunk[-20:]
    except OSError:
        return set()
    return {k for k in keys if f'"{k}"'.encode() not in wanted}


def _detect_coco(source):
    src = Path(str(source))
    if src.is_file():
        return DETECT_SCORE if src.suffix.lower() == ".json" and _looks_coco(src) else 0
    if src.is_dir():
        return DETECT_SCORE if any(_looks_coco(p) for p in _json_files(src)) else 0
    return 0
