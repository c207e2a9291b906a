"""Segmentation sources in published annotation formats: COCO JSON (Fashionpedia), the iMaterialist
Kaggle CSV, and MATLAB .mat label images (Clothing Co-Parsing and its kin).

Each importer lists images and returns one deferred mask reader per image (``Imported.masks``):
nothing is decoded until ``prepare`` calls the reader, once, in a worker thread. A reader returns
an (H, W) uint8 class-index mask (uint16 past 254 classes) or raises ``MaskError`` naming the file.

Where instances overlap (COCO and the Kaggle CSV list one region per garment or garment part),
the mask is painted largest region first, so that a small part (a sleeve, a collar, a pocket)
stays visible on top of the garment that contains it; file order would let whichever garment is
listed last erase the parts drawn before it. Equal areas keep their file order.

Detection scores 30 for each layout below (unambiguous: a COCO JSON with segmentations, a CSV
with ``ImageId`` and ``EncodedPixels`` columns, a label-list .mat beside a folder of .mat masks).
"""
import csv as csvlib
import functools
import json as jsonlib
import os
import re
from pathlib import Path

import numpy as np

from fashioncli import hookimpl
from fashioncli.errors import DataError
from fashioncli.data.images import IMAGE_EXTENSIONS
from fashioncli.data.importing import SPLIT_ALIASES, Imported, normalize_split
from fashioncli.data.masks import MaskError

BACKGROUND = "background"
DETECT_SCORE = 30


@hookimpl
def register_datasets(register):
    register("coco-seg", coco_seg, detect=_detect_coco)
    register("imaterialist-csv", imaterialist_csv, detect=_detect_kaggle)
    register("mat-seg", mat_seg, detect=_detect_mat)


# == shared ====================================================================
def _mask_dtype(num_classes):
    """(dtype, ignore index): uint8 with 255 free for up to 255 classes, else uint16 with 65535."""
    return (np.uint8, 255) if num_classes <= 255 else (np.uint16, 65535)


def _paint(shape, layers, dtype, background=0):
    """[(value, bool mask)] -> one index mask, largest region first (see the module docstring)."""
    out = np.full(shape, background, dtype=dtype)
    areas = [int(m.sum()) for _, m in layers]
    for i in sorted(range(len(layers)), key=lambda i: -areas[i]):  # sorted() is stable: ties keep file order
        value, m = layers[i]
        out[m] = value
    return out


def _split_from_name(stem):
    """'instances_attributes_val2020' -> 'val'; None when no word of the name is a split."""
    for word in re.findall(r"[a-z]+", stem.lower()):
        split = normalize_split(word)
        if split:
            return split
    return None


def _image_listing(folder):
    """{file name: path} of the files directly in ``folder`` (one listing instead of a stat per image)."""
    try:
        return {e.name: Path(e.path) for e in os.scandir(folder) if e.is_file()}
    except OSError:
        return {}


def _first_dir(root, names):
    for name in names:
        if (root / name).is_dir():
            return root / name
    return None


# == RLE =======================================================================
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


def starts_lengths_to_mask(text, height, width, where):
    """Kaggle's EncodedPixels ('start length ...', 1-based starts, column-major) -> (H, W) bool mask."""
    try:
        pairs = np.array(text.split(), dtype=np.int64)
    except ValueError:
        raise MaskError(f"{where}: EncodedPixels holds something other than whole numbers") from None
    if len(pairs) % 2:
        raise MaskError(f"{where}: EncodedPixels has {len(pairs)} numbers; expected start,length pairs")
    starts, lengths = pairs[0::2] - 1, pairs[1::2]
    total = height * width
    if len(starts) and (starts.min() < 0 or lengths.min() < 0 or (starts + lengths).max() > total):
        raise MaskError(f"{where}: EncodedPixels has a run outside the {height}x{width} image (starts are 1-based, "
                        f"at most {total})")
    # +1/-1 at each run's ends, then a running sum (overlapping runs stay painted)
    flat = np.bincount(starts, minlength=total + 1) - np.bincount(starts + lengths, minlength=total + 1)
    return (np.cumsum(flat[:total]) > 0).reshape(width, height).T


# == polygons ==================================================================
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


# == coco-seg ==================================================================
_COCO_KEYS = ("images", "annotations", "categories")
# Where a JSON's images may lie, besides the folder named by its split: Fashionpedia ships
# instances_attributes_val2020.json with its images in test/.
_IMAGE_DIR_NAMES = ("images", "imgs", "img", "photos")


def coco_seg(source, json=None, images=None, crowd="class"):
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
    dtype, ignore = _mask_dtype(len(classes))

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
            listing[parent] = _image_listing(parent)
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
    return _paint((height, width), layers, dtype)


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


# == imaterialist-csv ==========================================================
KAGGLE_COLUMNS = ("ImageId", "EncodedPixels", "Height", "Width", "ClassId")
KAGGLE_LABELS = "label_descriptions.json"


def imaterialist_csv(source, csv=None, images=None, labels=None):
    """The iMaterialist-Fashion Kaggle CSV (2019 and 2020 competitions) -> class-index masks.

    Layout: ``train.csv`` with columns ImageId, EncodedPixels, Height, Width, ClassId (one row per
    garment region; EncodedPixels = 'start length ...', 1-based starts, pixels numbered down each
    column; ClassId '6' or with attributes '6_28_77'), images in ``train/<ImageId>`` or
    ``train/<ImageId>.jpg``, optional ``label_descriptions.json`` ({"categories": [{id, name}]}).

    source: the folder, or the CSV's path.
    csv: the CSV (relative to the folder); default: train.csv, else the one CSV with those columns.
    images: the image folder; default: the folder named like the CSV (train/) beside it, else images/.
    labels: the label descriptions JSON; default: label_descriptions.json beside the CSV if present,
        else classes are named class_<id>.

    Classes: background = 0, category id k -> index k + 1. Splits are left to ``prepare`` (the
    CSV is the labelled training set). An image file that is missing, rows of one image that
    disagree on its size, or a ClassId that is not a number make problem rows; a bad EncodedPixels
    is a MaskError when the mask is read.
    """
    src = Path(source)
    if src.is_file():
        table = src
    elif src.is_dir():
        table = (Path(csv) if Path(csv).is_absolute() else src / csv) if csv else _kaggle_csv(src)
    else:
        raise DataError(f"source '{source}' not found (a folder or the Kaggle CSV)")
    if not table.is_file():
        raise DataError(f"CSV '{table}' not found")
    base = table.parent
    if images is not None:
        folder = Path(images) if Path(images).is_absolute() else base / images
        if not folder.is_dir():
            raise DataError(f"images: '{folder}' is not a folder")
    else:
        folder = _first_dir(base, (table.stem, "train", "images"))
        if folder is None:
            raise DataError(f"no image folder beside '{table.name}' (looked for {table.stem}/, train/, images/); "
                            "pass images=FOLDER")
    names = _kaggle_names(base, labels)

    problems = []
    rows, column = _kaggle_rows(table, problems)
    listing = _image_listing(folder)
    seen_ids = set()
    samples, masks = [], []
    for image_id, entries in rows.items():
        where = f"{table.name} ImageId '{image_id}'"
        name = image_id if Path(image_id).suffix.lower() in IMAGE_EXTENSIONS else None
        name = name if name in listing else next((image_id + s for s in (".jpg", ".jpeg", ".png", ".JPG")
                                                  if image_id + s in listing), None)
        if name is None:
            problems.append({"path": str(folder / image_id),
                             "reason": f"image file not found (listed in {table.name})"})
            continue
        sizes = {(h, w) for _, h, w, _ in entries}
        if len(sizes) > 1:
            shown = ", ".join(f"{h}x{w}" for h, w in sorted(sizes))
            problems.append({"path": str(listing[name]), "reason": f"{where}: rows give different sizes ({shown})"})
            continue
        bad = next((c for _, _, _, c in entries if not isinstance(c, int)), None)
        if bad is not None:
            problems.append({"path": str(listing[name]), "reason": f"{where}: ClassId '{bad}' does not start with a "
                                                                   "category number"})
            continue
        if names is not None:
            unknown = next((c for _, _, _, c in entries if c not in names), None)
            if unknown is not None:
                problems.append({"path": str(listing[name]), "reason": f"{where}: ClassId {unknown} is not in "
                                                                       f"{KAGGLE_LABELS}"})
                continue
        seen_ids.update(c for _, _, _, c in entries)
        (h, w), = sizes
        samples.append((str(listing[name]), None, None))
        masks.append([table, column, [(off, c + 1) for off, _, _, c in entries], h, w, where])
    if not samples:
        raise DataError(f"no usable image in '{table}' ({len(problems)} problems)")

    top = max(names) if names else max(seen_ids)
    classes = [BACKGROUND] + [names.get(k, f"class_{k}") if names else f"class_{k}" for k in range(top + 1)]
    dtype, ignore = _mask_dtype(len(classes))
    masks = [functools.partial(_kaggle_mask, *m, dtype) for m in masks]
    return Imported(classes, samples, problems, masks=masks, ignore_index=ignore)


def _kaggle_header(path):
    """{column name: position}, or None when the file cannot be read as a CSV."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            return {n.strip(): i for i, n in enumerate(next(csvlib.reader(f), []))}
    except (OSError, UnicodeDecodeError, csvlib.Error):
        return None


def _kaggle_csv(root):
    if (root / "train.csv").is_file():
        return root / "train.csv"
    found = [p for p in sorted(root.glob("*.csv")) if {"ImageId", "EncodedPixels"} <= set(_kaggle_header(p) or ())]
    if len(found) != 1:
        which = "no CSV" if not found else f"{len(found)} CSVs ({', '.join(p.name for p in found)})"
        raise DataError(f"'{root}' has {which} with ImageId and EncodedPixels columns; pass csv=FILE")
    return found[0]


def _kaggle_names(base, labels):
    """{category id: name} from the label descriptions, or None without them."""
    path = (Path(labels) if Path(labels).is_absolute() else base / labels) if labels else base / KAGGLE_LABELS
    if not path.is_file():
        if labels:
            raise DataError(f"labels: '{path}' not found")
        return None
    try:
        data = jsonlib.loads(path.read_text(encoding="utf-8-sig"))
        return {int(c["id"]): str(c["name"]) for c in data["categories"]}
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read '{path}': {str(exc).splitlines()[0]}") from None
    except (KeyError, TypeError):
        raise DataError(f"'{path}' needs a list 'categories' of {{id, name}} (Kaggle's {KAGGLE_LABELS})") from None


def _kaggle_rows(path, problems):
    """({ImageId: [(byte offset of the row, height, width, class id or the unparsable text)]},
    position of the EncodedPixels column).

    The EncodedPixels are not kept: the reader seeks back to its rows (the 2019 CSV is over 1 GB).
    """
    header = _kaggle_header(path)
    if header is None:
        raise DataError(f"cannot read '{path}' as a CSV")
    lowered = {k.lower(): v for k, v in header.items()}
    missing = [c for c in KAGGLE_COLUMNS if c.lower() not in lowered]
    if missing:
        raise DataError(f"'{path.name}' has no column {', '.join(missing)} (columns: {', '.join(header)}); "
                        f"the iMaterialist CSV has {', '.join(KAGGLE_COLUMNS)}")
    at = [lowered[c.lower()] for c in KAGGLE_COLUMNS]
    need = max(at) + 1
    rows = {}
    with open(path, "rb") as f:
        offset = len(f.readline())
        for number, raw in enumerate(f, start=2):
            here, offset = offset, offset + len(raw)
            if not raw.strip():
                continue
            row = next(csvlib.reader([raw.decode("utf-8", "replace")]), [])
            if len(row) < need:
                problems.append({"path": str(path),
                                 "reason": f"line {number}: {len(row)} fields, expected {len(header)}"})
                continue
            image_id, _, h, w, cls = (row[i].strip() for i in at)
            try:
                h, w = int(h), int(w)
            except ValueError:
                problems.append({"path": str(path), "reason": f"line {number}: Height/Width '{h}'/'{w}' are not "
                                                              "whole numbers"})
                continue
            head = cls.split("_")[0]
            rows.setdefault(image_id, []).append((here, h, w, int(head) if head.isdigit() else cls))
    return rows, at[1]


def _kaggle_mask(table, column, entries, height, width, where, dtype):
    layers = []
    try:
        with open(table, "rb") as f:
            for offset, value in entries:
                f.seek(offset)
                row = next(csvlib.reader([f.readline().decode("utf-8", "replace")]))
                layers.append((value, starts_lengths_to_mask(row[column], height, width, where)))
    except OSError as exc:
        raise MaskError(f"cannot read '{table}': {exc.strerror or exc}") from None
    return _paint((height, width), layers, dtype)


def _detect_kaggle(source):
    src = Path(str(source))
    if src.is_file():
        tables = [src] if src.suffix.lower() == ".csv" else []
    elif src.is_dir():
        tables = sorted(src.glob("*.csv"))
    else:
        return 0
    for t in tables:
        if {"imageid", "encodedpixels"} <= {k.lower() for k in (_kaggle_header(t) or ())}:
            return DETECT_SCORE
    return 0


# == mat-seg ===================================================================
MAT_IMAGE_DIRS = ("photos", "images", "JPEGImages", "img", "image")
MAT_MASK_DIRS = ("annotations/pixel-level", "annotations/pixel_level", "annotations", "masks", "labels")
MAT_LABELS = "label_list.mat"


def mat_seg(source, images=None, masks=None, labels=None, mask_key="groundtruth", labels_key="label_list"):
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
    image_dir = _given_dir(root, images, "images") or _first_dir(root, MAT_IMAGE_DIRS)
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
    dtype, ignore = _mask_dtype(len(classes))

    photos = {p.stem: p for p in sorted(_image_listing(image_dir).values()) if p.suffix.lower() in IMAGE_EXTENSIONS}
    mats = {p.stem: p for p in sorted(_image_listing(mask_dir).values()) if p.suffix.lower() == ".mat"}
    problems, samples, readers = [], [], []
    for stem, photo in sorted(photos.items()):
        if stem not in mats:
            problems.append({"path": str(photo), "reason": f"no mask: {mask_dir.name}/{stem}.mat not found"})
            continue
        samples.append((str(photo), None, None))
        readers.append(functools.partial(_mat_mask, mats[stem], mask_key, dtype))
    for stem, mat in sorted(mats.items()):
        if stem not in photos:
            problems.append({"path": str(mat), "reason": f"no image for this mask in {image_dir.name}/"})
    if not samples:
        raise DataError(f"no image in '{image_dir}' has a mask in '{mask_dir}' ({len(problems)} problems)")
    return Imported(classes, samples, problems, masks=readers, ignore_index=ignore)


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
        if folder.is_dir() and any(p.suffix.lower() == ".mat" for p in _image_listing(folder).values()):
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
    return DETECT_SCORE if _mat_mask_dir(root) is not None and _first_dir(root, MAT_IMAGE_DIRS) else 0
