"""Bounding boxes (crop before resize, (path, box) samples, the cache fingerprint) and the
`deepfashion` importer (Category and Attribute Prediction Benchmark layout)."""
import csv
import hashlib
import json

import cv2
import numpy as np
import pytest

from fashioncli.data import cache as cache_module
from fashioncli.data.dataset import PreparedDataset
from fashioncli.errors import DataError
from fashioncli.data.images import ImageError, check_box, crop_box, format_box, parse_box
from fashioncli.prepare import prepare
from fashioncli.tasks.multitask.heads import encode_split, heads_from_json

WHITE = (255, 255, 255)


def run(source, out, **kw):
    return prepare(str(source), str(out), progress=False, **kw)


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def draw(path, size, rects):
    """A white PNG of ``size`` (h, w) with solid RGB rectangles {(x1, y1, x2, y2): colour}, x2/y2 exclusive."""
    h, w = size
    img = np.full((h, w, 3), 255, np.uint8)
    for (x1, y1, x2, y2), rgb in rects.items():
        img[y1:y2, x1:x2] = rgb
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))  # PNG: exact colours
    return path


def assert_solid(row, rgb):
    assert row.reshape(-1, 3).tolist() == [list(rgb)] * (row.shape[0] * row.shape[1])


# --- boxes: check, crop, text form, fingerprint ----------------------------------------------------

def test_check_box_crop_box_and_text_form():
    assert check_box(None) is None
    assert check_box(("072", "079", "232", "273")) == (72, 79, 232, 273)  # DeepFashion's zero padding
    assert check_box([1.5, 2, 3.25, 4]) == (1.5, 2, 3.25, 4)
    for bad, reason in (((5, 5, 3, 9), "empty box"), ((1, 2, 3), "four finite"), (("a", 1, 2, 3), "four numbers"),
                        ((0, 0, float("nan"), 3), "four finite")):
        with pytest.raises(ImageError, match=reason):
            check_box(bad)
    image = np.arange(10 * 20 * 3, dtype=np.uint8).reshape(10, 20, 3)
    assert crop_box(image, (-5, 2, 8, 99)).shape == (8, 8, 3)  # clamped to the image
    np.testing.assert_array_equal(crop_box(image, (1.5, 2, 3.25, 4)), image[2:4, 1:4])  # every pixel touched
    with pytest.raises(ImageError, match="lies outside the 20x10 image"):
        crop_box(image, (30, 0, 40, 5))
    for box in [(1, 2, 3, 4), (0.5, 1e-3, 1234567.25, 8)]:
        assert parse_box(format_box(box)) == box and format_box(parse_box(format_box(box))) == format_box(box)
    assert format_box(None) == "" and parse_box("") is None


def test_paths_key_without_boxes_is_unchanged_and_changes_with_any_box():
    paths = ["/a.png", "/b.png"]
    old = hashlib.sha1("\n".join(paths).encode()).hexdigest()  # the key of caches built before boxes
    assert cache_module.paths_key(paths) == cache_module.paths_key(paths, [None, None]) == old
    keys = {cache_module.paths_key(paths, boxes) for boxes in
            ([None, None], [(0, 0, 5, 5), None], [(0, 0, 5, 6), None], [None, (0, 0, 5, 5)])}
    assert len(keys) == 4


# --- the table importer with box_cols ----------------------------------------------------------------

def test_table_box_cols_crop_two_garments_of_one_photo_and_report_bad_boxes(tmp_path):
    red, blue, green = (220, 0, 0), (0, 0, 220), (0, 180, 0)
    draw(tmp_path / "img" / "two.png", (40, 60), {(2, 4, 20, 30): red, (30, 10, 55, 38): blue})
    draw(tmp_path / "img" / "one.png", (30, 30), {(5, 5, 25, 25): green})
    (tmp_path / "t.csv").write_text(
        "image,label,x1,y1,x2,y2\n"
        "img/two.png,shirt,2,4,20,30\n"
        "img/two.png,skirt,30,10,55,38\n"    # the same photo, another garment: another sample
        "img/one.png,shirt,5,5,25,25\n"
        "img/two.png,shirt,2,4,20,30\n"      # a true repeat: (path, box) seen before
        "img/one.png,skirt,9,9,3,20\n"       # x2 < x1
        "img/one.png,skirt,40,40,50,50\n"    # wholly outside the 30x30 image
        "img/one.png,skirt,1,,5,5\n"         # a cell missing
        "img/one.png,skirt,,,,\n"            # no box at all: the whole image
    )
    summary = run(tmp_path / "t.csv", tmp_path / "out", image_size=8, val_fraction=0, test_fraction=0,
                  box_cols="x1,y1,x2,y2")
    assert summary["splits"] == {"train": 4} and summary["problems"] == 4
    rows = read_csv(tmp_path / "out" / "train.csv")
    assert [(r["path"].rsplit("/", 1)[-1], r["label"], r["box"]) for r in rows] == [
        ("two.png", "shirt", "2 4 20 30"), ("two.png", "skirt", "30 10 55 38"), ("one.png", "shirt", "5 5 25 25"),
        ("one.png", "skirt", ""),
    ]
    ds = PreparedDataset.open(tmp_path / "out")
    assert ds.meta["boxes"] is True and ds.boxes("train")[:2] == [(2, 4, 20, 30), (30, 10, 55, 38)]
    cache = ds.cache("train")
    for row, colour in zip(cache, (red, blue, green)):
        assert_solid(row, colour)
    assert cache[3].reshape(-1, 3).tolist() != [list(green)] * 64  # the whole image: white border kept

    reasons = [p["reason"] for p in json.loads((tmp_path / "out" / "report.json").read_text())["problems"]]
    assert any(r.startswith("listed twice with box 2 4 20 30") for r in reasons)
    assert any("t.csv row 6: empty box 9 9 3 20" in r for r in reasons)
    assert any("box 40 40 50 50 lies outside the 30x30 image" in r for r in reasons)
    assert any("t.csv row 8: invalid box" in r for r in reasons)
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["cropped_to_box"] == 3 and report["duplicates"]["extra_copies_within_splits"] == 0

    with pytest.raises(DataError, match="box_cols: expected four columns"):
        run(tmp_path / "t.csv", tmp_path / "bad", box_cols=["x1", "y1", "x2"])
    with pytest.raises(DataError, match="no column 'w'"):
        run(tmp_path / "t.csv", tmp_path / "bad", box_cols=["x1", "y1", "x2", "w"])


def test_table_without_box_cols_keeps_the_old_layout_and_repeats(tmp_path):
    draw(tmp_path / "a.png", (20, 20), {})
    (tmp_path / "t.csv").write_text("image,label,x1,y1,x2,y2\na.png,shirt,1,1,5,5\na.png,dress,2,2,6,6\n")
    summary = run(tmp_path / "t.csv", tmp_path / "out", image_size=8, val_fraction=0, test_fraction=0)
    assert summary["splits"] == {"train": 1} and summary["problems"] == 1
    assert list(read_csv(tmp_path / "out" / "train.csv")[0]) == ["path", "label"]
    assert "boxes" not in json.loads((tmp_path / "out" / "dataset.json").read_text())


# --- deepfashion ------------------------------------------------------------------------------------

CATEGORIES = [("Blouse", 1), ("Shorts", 2), ("Dress", 3)]
ATTRIBUTES = [("floral print", 1), ("cotton", 2), ("a-line", 3), ("pocket", 4), ("boho", 5), ("denim", 2)]
# name, category (1-based), box, attribute values, split, (h, w), colour
IMAGES = [
    ("img/Floral_Blouse/img_00000001.png", 1, (5, 6, 30, 20), [1, -1, -1, 1, -1, 1], "train", (40, 50), (200, 30, 30)),
    ("img/Floral_Blouse/img_00000002.png", 1, (0, 0, 10, 10), [-1, 1, -1, -1, -1, 1], "train", (30, 60), (30, 200, 30)),
    ("img/Denim_Shorts/img_00000001.png", 2, (10, 3, 25, 33), [0, 0, 0, 0, 0, 0], "val", (36, 28), (30, 30, 200)),
    ("img/Boho_Dress/img_00000001.png", 3, (2, 2, 40, 30), [-1, -1, 1, -1, 1, -1], "test", (32, 44), (200, 200, 0)),
    ("img/Boho_Dress/img_00000002.png", 3, (4, 4, 20, 24), [-1, -1, 1, -1, -1, -1], "train", (50, 30), (0, 200, 200)),
]


def _list(path, header, lines, count=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{len(lines) if count is None else count}\n{header}\n" + "".join(f"{line}\n" for line in lines))


def make_deepfashion(root, images=IMAGES, zero_one=False):
    """The benchmark's files, padded like the published ones, and images with the garment drawn in its box."""
    anno = root / "Anno"
    _list(anno / "list_category_cloth.txt", "category_name  category_type", [f"{n:<24}{t}" for n, t in CATEGORIES])
    _list(anno / "list_attr_cloth.txt", "attribute_name  attribute_type", [f"{n:<29}{t}" for n, t in ATTRIBUTES])
    _list(anno / "list_category_img.txt", "image_name  category_label", [f"{p:<71}{c}" for p, c, *_ in images])
    values = [(p, [0 if zero_one and v == -1 else v for v in a]) for p, _, _, a, *_ in images]
    _list(anno / "list_attr_img.txt", "image_name  attribute_labels",
          [f"{p:<71}" + " ".join(f"{v:2d}" for v in a) for p, a in values])
    _list(anno / "list_bbox.txt", "image_name  x_1  y_1  x_2  y_2",
          [f"{p:<71}" + " ".join(f"{v:03d}" for v in b) for p, _, b, *_ in images])
    _list(root / "Eval" / "list_eval_partition.txt", "image_name  evaluation_status",
          [f"{p:<71}{s}" for p, *_, s, _, _ in images])
    for name, _, box, _, _, size, colour in images:
        draw(root / name, size, {box: colour})
    return root


def test_deepfashion_heads_splits_and_crops(tmp_path):
    src = make_deepfashion(tmp_path / "DeepFashion")
    summary = run(src, tmp_path / "out", image_size=12)
    assert summary["importer"] == "deepfashion" and summary["problems"] == 0
    assert summary["splits"] == {"train": 3, "val": 1, "test": 1}
    meta = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert meta["boxes"] is True
    assert {h: (s["type"], s["classes"]) for h, s in meta["heads"].items()} == {
        "category": ("categorical", ["Blouse", "Shorts", "Dress"]), "texture": ("multilabel", ["floral print"]),
        "fabric": ("multilabel", ["cotton", "denim"]), "shape": ("multilabel", ["a-line"]),
        "part": ("multilabel", ["pocket"]), "style": ("multilabel", ["boho"]),
    }
    train = read_csv(tmp_path / "out" / "train.csv")
    assert list(train[0]) == ["path", "category", "texture", "fabric", "shape", "part", "style", "box"]
    assert train[0] == {"path": str(src / IMAGES[0][0]), "category": "Blouse", "texture": "floral print",
                        "fabric": "denim", "shape": "|", "part": "pocket", "style": "|", "box": "5 6 30 20"}
    assert train[1]["fabric"] == "cotton|denim"
    val = read_csv(tmp_path / "out" / "val.csv")[0]  # all 0: unknown, not "none of them"
    assert val["category"] == "Shorts" and [val[h] for h in ("texture", "fabric", "shape", "part", "style")] == [""] * 5

    ds = PreparedDataset.open(tmp_path / "out")
    colours = {str(src / name): colour for name, *_, colour in IMAGES}
    for split in ds.splits:
        for size in (12, 7):  # the prepared size, and one PreparedDataset.cache builds with the boxes
            for row, path in zip(ds.cache(split, size), ds.paths(split)):
                assert_solid(row, colours[path])
    targets = encode_split(ds, "train", heads_from_json(ds.meta["heads"]))
    assert targets["category"].tolist() == [0, 0, 2] and targets["fabric"].tolist() == [[0, 1], [1, 1], [0, 0]]


def test_deepfashion_options_all_attributes_none_and_no_crop(tmp_path):
    src = make_deepfashion(tmp_path / "df")
    run(src, tmp_path / "all", image_size=8, attributes="all")
    heads = json.loads((tmp_path / "all" / "dataset.json").read_text())["heads"]
    assert list(heads) == ["category", "attributes"] and heads["attributes"]["classes"] == [n for n, _ in ATTRIBUTES]
    assert read_csv(tmp_path / "all" / "train.csv")[0]["attributes"] == "floral print|pocket|denim"

    run(src, tmp_path / "none", image_size=8, attributes="none", crop=False)
    meta = json.loads((tmp_path / "none" / "dataset.json").read_text())
    assert list(meta["heads"]) == ["category"] and "boxes" not in meta
    assert list(read_csv(tmp_path / "none" / "train.csv")[0]) == ["path", "category"]
    with pytest.raises(DataError, match="attributes: 'types' is not one of by-type, all, none"):
        run(src, tmp_path / "bad", attributes="types")


def test_deepfashion_zero_one_attributes_mean_absent(tmp_path):
    src = make_deepfashion(tmp_path / "df", zero_one=True)  # no -1 anywhere: 0 is "absent"
    run(src, tmp_path / "out", image_size=8, attributes="all")
    assert read_csv(tmp_path / "out" / "val.csv")[0]["attributes"] == "|"


def test_deepfashion_bad_entries_are_problems_and_bad_files_errors(tmp_path):
    images = IMAGES + [
        ("img/Boho_Dress/img_00000003.png", 3, (40, 40, 60, 60), [-1] * 6, "train", (20, 20), (9, 9, 9)),  # outside
        ("img/Boho_Dress/img_00000004.png", 9, (0, 0, 5, 5), [-1] * 6, "train", (20, 20), (9, 9, 9)),  # category 9
    ]
    src = make_deepfashion(tmp_path / "df", images)
    bbox = src / "Anno" / "list_bbox.txt"
    bbox.write_text(bbox.read_text().replace("000 000 010 010", "010 000 005 010"))  # x2 < x1
    summary = run(src, tmp_path / "out", image_size=8)
    assert summary["splits"] == {"train": 2, "val": 1, "test": 1} and summary["problems"] == 3
    reasons = {p["path"].rsplit("/", 2)[-2] + "/" + p["path"].rsplit("/", 1)[-1]: p["reason"]
               for p in json.loads((tmp_path / "out" / "report.json").read_text())["problems"]}
    assert reasons["Floral_Blouse/img_00000002.png"].startswith("empty box 10 0 5 10")
    assert reasons["Boho_Dress/img_00000003.png"] == "box 40 40 60 60 lies outside the 20x20 image"
    assert "category label '9' is not 1..3" in reasons["Boho_Dress/img_00000004.png"]

    _list(src / "Anno" / "list_bbox.txt", "image_name  x_1  y_1  x_2  y_2", [f"{IMAGES[0][0]} 1 2 3 4"], count=7)
    with pytest.raises(DataError, match="lists 1 entries but its first line says 7"):
        run(src, tmp_path / "out2")
    (src / "Anno" / "list_attr_img.txt").write_text(f"1\nimage_name  attribute_labels\n{IMAGES[0][0]} 1 -1\n")
    with pytest.raises(DataError, match="line 3: expected 6 values of 1, -1 or 0"):
        run(src, tmp_path / "out3")


def test_changed_box_makes_the_cache_stale(tmp_path, monkeypatch):
    src = make_deepfashion(tmp_path / "df")
    run(src, tmp_path / "out", image_size=8, attributes="none")
    builds = []
    real_build = cache_module.build_cache
    monkeypatch.setattr(cache_module, "build_cache", lambda *a, **k: builds.append(a[1]) or real_build(*a, **k))
    assert_solid(PreparedDataset.open(tmp_path / "out").cache("train", 8)[0], IMAGES[0][-1])
    assert builds == []  # fresh: prepare built it with the same boxes

    # Move the first box onto the white background (as a re-prepare with a corrected box would).
    path = tmp_path / "out" / "train.csv"
    path.write_text(path.read_text().replace(",5 6 30 20\n", ",40 30 50 40\n"))
    ds = PreparedDataset.open(tmp_path / "out")
    assert ds.boxes("train")[0] == (40, 30, 50, 40)
    assert_solid(ds.cache("train", 8)[0], WHITE)
    assert builds == [8]
