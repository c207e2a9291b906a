"""DeepFashion, Category and Attribute Prediction Benchmark: a garment category and its attributes
per image, each image cropped to its garment's bounding box.

The layout, as the benchmark's README describes it (every list file starts with a line holding its
number of entries, then a header line; an image name is the first field of its line)::

    Anno/list_category_cloth.txt   category_name category_type   50 lines; type 1 upper-body,
                                                                 2 lower-body, 3 full-body
    Anno/list_category_img.txt     image_name category_label     label: 1-based line of the above
    Anno/list_attr_cloth.txt       attribute_name attribute_type 1000 lines (names may hold spaces);
                                                                 type 1 texture, 2 fabric, 3 shape,
                                                                 4 part, 5 style
    Anno/list_attr_img.txt         image_name attribute_labels   1000 values: 1 positive,
                                                                 -1 negative, 0 unknown
    Anno/list_bbox.txt             image_name x_1 y_1 x_2 y_2    the garment's box, in pixels
    Eval/list_eval_partition.txt   image_name evaluation_status  train | val | test
    img/...                        the images (names in the lists start with img/)

Written from that description; not yet run on a downloaded copy. Assumptions where it is silent:
x_2, y_2 are taken as exclusive (the crop is img[y_1:y_2, x_1:x_2]; one pixel at most differs from
an inclusive reading); a multilabel head cannot mark one attribute unknown, so an unknown (0)
attribute counts as absent, and a head whose attributes are all unknown for an image is missing
for that image; a file with no -1 at all is read as 0/1 (0 = absent). Without
Eval/list_eval_partition.txt, prepare makes a seeded split.
"""
import os
import warnings
from pathlib import Path
from typing import Annotated

import numpy as np

from fashioncli.api import DataError, Imported, hookimpl

ATTRIBUTE_TYPES = {1: "texture", 2: "fabric", 3: "shape", 4: "part", 5: "style"}
ATTRIBUTE_MODES = ("by-type", "all", "none")
_CHUNK = 8192  # list_attr_img.txt lines parsed at once (289,222 x 1000 values in the full set)


@hookimpl
def register_datasets(register):
    register("deepfashion", deepfashion, detect=_detect)


def deepfashion(
    source,
    attributes: Annotated[str, "'by-type': a multilabel head per attribute type; 'all': one head of all 1000; "
                          "'none': the category alone"] = "by-type",
    crop: Annotated[bool, "crop every image to its box from Anno/list_bbox.txt"] = True,
):
    """DeepFashion Category and Attribute Prediction: head ``category`` (50 classes) and attributes.

    attributes: 'by-type' (default): one multilabel head per attribute type (texture, fabric,
        shape, part, style); 'all': one multilabel head ``attributes`` of all 1000; 'none': the
        category alone.
    crop: crop every image to its box from Anno/list_bbox.txt (default); false keeps whole images.
    """
    root = Path(os.path.abspath(source))
    if attributes not in ATTRIBUTE_MODES:
        raise DataError(f"attributes: '{attributes}' is not one of {', '.join(ATTRIBUTE_MODES)}")
    anno = root / "Anno"
    categories = _unique([name for name, _ in _pairs(anno / "list_category_cloth.txt")])
    heads = {"category": {"type": "categorical", "classes": categories}}

    samples, problems, index = [], [], {}
    for line, (name, label) in _pairs(anno / "list_category_img.txt", with_line=True):
        path = str(root / name)
        if name in index:
            problems.append({"path": path, "reason": f"list_category_img.txt line {line}: listed twice; "
                                                     "kept the first"})
            continue
        if not label.isdigit() or not 1 <= int(label) <= len(categories):
            problems.append({"path": path, "reason": f"list_category_img.txt line {line}: category label '{label}' "
                                                     f"is not 1..{len(categories)} (list_category_cloth.txt)"})
            continue
        index[name] = len(samples)
        samples.append((path, {"category": categories[int(label) - 1]}, None))
    if not samples:
        raise DataError(f"'{anno / 'list_category_img.txt'}' lists no images")

    if attributes != "none":
        heads.update(_attributes(anno, attributes, samples, index))
    boxes = _boxes(anno / "list_bbox.txt", samples, index) if crop else None
    partition = root / "Eval" / "list_eval_partition.txt"
    if partition.is_file():
        for name, split in _pairs(partition):
            if name in index:
                path, labels, _ = samples[index[name]]
                samples[index[name]] = (path, labels, split)  # prepare checks the name
    return Imported([], samples, problems, heads=heads, boxes=boxes)


def _attributes(anno, mode, samples, index):
    """Set each listed sample's attribute heads from list_attr_img.txt; returns the heads' declarations."""
    attrs = list(_pairs(anno / "list_attr_cloth.txt"))
    head_of = []
    for name, kind in attrs:
        if mode == "all":
            head_of.append("attributes")
        elif kind.isdigit() and int(kind) in ATTRIBUTE_TYPES:
            head_of.append(ATTRIBUTE_TYPES[int(kind)])
        else:
            raise DataError(f"'{anno / 'list_attr_cloth.txt'}': attribute '{name}' has type '{kind}', not one of "
                            f"1..5 ({', '.join(ATTRIBUTE_TYPES.values())}); pass attributes=all to ignore types")
    names = ["attributes"] if mode == "all" else [h for h in ATTRIBUTE_TYPES.values() if h in head_of]
    columns = {h: np.array([i for i, x in enumerate(head_of) if x == h]) for h in names}
    heads = {h: {"type": "multilabel", "classes": _unique([attrs[i][0] for i in columns[h]])} for h in names}

    path = anno / "list_attr_img.txt"
    unknown, saw_negative = [], False  # unknown: (labels, head) whose values are all 0
    for chunk in _chunks(_lines(path), _CHUNK):
        values = _values(path, chunk, len(attrs))
        saw_negative = saw_negative or bool((values == -1).any())
        rows = [index.get(name) for _, name, _ in chunk]
        for head, cols in columns.items():
            part = values[:, cols]
            classes = heads[head]["classes"]
            hit_row, hit_col = np.nonzero(part == 1)
            starts = np.searchsorted(hit_row, np.arange(len(chunk) + 1))
            known = part.any(axis=1)
            for r, i in enumerate(rows):
                if i is None:
                    continue  # not in list_category_img.txt
                labels = samples[i][1]
                labels[head] = [classes[j] for j in hit_col[starts[r]:starts[r + 1]]]
                if not known[r]:
                    unknown.append((labels, head))
    if saw_negative:  # 1 / -1 / 0 values: all zeros means nothing is known; in a 0/1 file, no attribute
        for labels, head in unknown:
            labels[head] = None
    return heads


def _chunks(lines, size):
    """(line, image name, rest of the line) in lists of ``size``."""
    chunk = []
    for line, text in lines:
        name, rest = (text.split(None, 1) + [""])[:2]
        chunk.append((line, name, rest))
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _values(path, chunk, n_attrs):
    """The attribute values of a chunk of list_attr_img.txt lines -> int8 (lines x n_attrs)."""
    with warnings.catch_warnings():  # numpy warns (and stops) at a token that is not a number
        warnings.simplefilter("ignore", DeprecationWarning)
        values = np.fromstring(" ".join(rest for _, _, rest in chunk), dtype=np.int8, sep=" ")
    if values.size == len(chunk) * n_attrs and np.isin(values, (-1, 0, 1)).all():
        return values.reshape(len(chunk), n_attrs)
    for line, _, rest in chunk:  # the slow path, only to name the bad line
        fields = rest.split()
        if len(fields) != n_attrs or any(f not in ("1", "-1", "0") for f in fields):
            raise DataError(f"'{path}' line {line}: expected {n_attrs} values of 1, -1 or 0 "
                            f"(one per attribute of list_attr_cloth.txt), got {len(fields)} fields")
    raise DataError(f"'{path}': cannot read the attribute values")


def _boxes(path, samples, index):
    """One (x_1, y_1, x_2, y_2) or None per sample, from list_bbox.txt."""
    boxes = [None] * len(samples)
    for line, text in _lines(path):
        name, *coords = text.split()
        try:
            box = tuple(float(c) for c in coords)
        except ValueError:
            box = ()
        if len(box) != 4:
            raise DataError(f"'{path}' line {line}: expected image_name x_1 y_1 x_2 y_2, got '{text[:80]}'")
        if name in index:
            boxes[index[name]] = box  # prepare checks it, and crops it to the image
    return boxes


def _pairs(path, with_line=False):
    """(name, last field) of every entry; the names in list_*_cloth.txt may hold spaces."""
    for line, text in _lines(path):
        parts = text.rsplit(None, 1)
        if len(parts) != 2:
            raise DataError(f"'{path}' line {line}: expected a name and a value, got '{text[:80]}'")
        yield (line, tuple(parts)) if with_line else tuple(parts)


def _lines(path):
    """(line number, stripped text) of the entries of a list file, after its count and header lines;
    DataError if the file is missing or holds another number of entries than its first line says."""
    if not path.is_file():
        raise DataError(f"DeepFashion file '{path}' not found (the Category and Attribute Prediction "
                        "layout: Anno/, Eval/, img/)")
    with open(path, encoding="utf-8") as f:
        first = f.readline().strip()
        if not first.isdigit():
            raise DataError(f"'{path}' line 1: expected the number of entries, got '{first[:40]}'")
        f.readline()  # the header, e.g. "image_name  category_label"
        n = 0
        for line, text in enumerate(f, start=3):
            text = text.strip()
            if text:
                n += 1
                yield line, text
    if n != int(first):
        raise DataError(f"'{path}' lists {n} entries but its first line says {first}: a cut-off copy? "
                        "(a subset made by hand must update that line)")


def _unique(names):
    """Class names as a head needs them: distinct, without the multilabel separator '|'."""
    out, seen = [], set()
    for i, name in enumerate(names, start=1):
        name = name.replace("|", "/")
        if name in seen:
            name = f"{name}#{i}"  # the published lists have none; a hand-made one might
        seen.add(name)
        out.append(name)
    return out


def _detect(source):
    return 60 if (Path(source) / "Anno" / "list_category_img.txt").is_file() else 0
