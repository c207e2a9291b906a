"""The segmentation importers of published annotation formats: coco-seg, imaterialist-csv, mat-seg.

Masks are checked against arrays computed by hand; the images are 8 wide and 6 high, so that a
row-major decoding of a column-major RLE gives a different (wrong) mask.
"""
import json

import cv2
import numpy as np
import pytest

from fashioncli.errors import DataError
from fashioncli.data.masks import MaskError
from fashioncli.plugins import get
from fashion_plugins.datasets.coco_seg import coco_counts, polygon_mask, rle_to_mask
from fashion_plugins.datasets.imaterialist_csv import starts_lengths_to_mask

H, W = 6, 8


def importer(name):
    return get("datasets").get(name)


def write_jpg(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((H, W, 3), 128, np.uint8))
    return path


def one_at(*cells, value=1, dtype=np.uint8):
    m = np.zeros((H, W), dtype)
    for r, c in cells:
        m[r, c] = value
    return m


# -- decoders ------------------------------------------------------------------
def test_polygon_fill_takes_pixels_whose_centres_are_inside():
    rect = polygon_mask([[1, 1, 5, 1, 5, 4, 1, 4]], H, W, "t")
    expected = np.zeros((H, W), bool)
    expected[1:4, 1:5] = True  # x 1..4, y 1..3: edges are pixel borders, 4x3 = 12 pixels
    assert (rect == expected).all()
    # Triangle (1,1) (7,1) (4,5): at row centre y=1.5 it spans x 1.375..6.625 -> columns 1..6;
    # y=2.5: 2.125..5.875 -> 2..5; y=3.5: 2.875..5.125 -> 3..4; y=4.5: 3.625..4.375 -> none.
    tri = polygon_mask([[1, 1, 7, 1, 4, 5]], H, W, "t").astype(int)
    assert tri.tolist() == [
        [0, 0, 0, 0, 0, 0, 0, 0],
        [0, 1, 1, 1, 1, 1, 1, 0],
        [0, 0, 1, 1, 1, 1, 0, 0],
        [0, 0, 0, 1, 1, 0, 0, 0],
        [0, 0, 0, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0, 0, 0],
    ]
    # Two polygons of one annotation are united; one past the image is clipped.
    two = polygon_mask([[0, 0, 1, 0, 1, 1, 0, 1], [6, 4, 20, 4, 20, 20, 6, 20]], H, W, "t")
    expected = np.zeros((H, W), bool)
    expected[0, 0] = True
    expected[4:, 6:] = True
    assert (two == expected).all()


def test_polygon_errors():
    with pytest.raises(MaskError, match="x,y pairs"):
        polygon_mask([[1, 1, 5, 1, 5]], H, W, "ann 7")
    with pytest.raises(MaskError, match="ann 7"):
        polygon_mask([["a", 1, 5, 1, 5, 4]], H, W, "ann 7")


def test_uncompressed_rle_is_column_major():
    # 6 background pixels down column 0, then 1 pixel: row 0 of column 1 (row-major would say row 0, column 6).
    m = rle_to_mask([6, 1, 41], H, W, "t")
    assert (m == one_at((0, 1)).astype(bool)).all()
    assert (rle_to_mask([0, 2, 46], H, W, "t") == one_at((0, 0), (1, 0)).astype(bool)).all()
    with pytest.raises(MaskError, match="cover 47 pixels"):
        rle_to_mask([6, 1, 40], H, W, "t")
    with pytest.raises(MaskError, match="non-negative"):
        rle_to_mask([6, -1, 43], H, W, "t")


def test_compressed_rle_strings_encoded_by_hand():
    # counts [6, 1, 41]: 6 -> '6', 1 -> '1', 41 = 9 + 1*32 -> chr(48 + 9 + 0x20) 'Y' then '1'.
    assert coco_counts("61Y1", "t") == [6, 1, 41]
    # From the fourth count on the difference to the count two back is stored:
    # [2, 3, 2, 3, 38] -> 2, 3, 2, 3-3=0, 38-2=36 (4 + 1*32: 'T' '1').
    assert coco_counts("2320T1", "t") == [2, 3, 2, 3, 38]
    # A negative difference: [2, 3, 1, 2, 40] -> 2-3 = -1 is 31 with the sign bit 0x10: 'O'.
    assert coco_counts("231OW1", "t") == [2, 3, 1, 2, 40]
    m = rle_to_mask(coco_counts("2320T1", "t"), H, W, "t")
    assert (m == one_at((2, 0), (3, 0), (4, 0), (1, 1), (2, 1), (3, 1)).astype(bool)).all()
    # pycocotools' encoding of a mask with pixels (0,0), rows 1..3 x columns 2..4 and (5,7).
    expected = np.zeros((H, W), bool)
    expected[0, 0] = expected[5, 7] = True
    expected[1:4, 2:5] = True
    assert (rle_to_mask(coco_counts("01<2G000`0N", "t"), H, W, "t") == expected).all()
    with pytest.raises(MaskError, match="character '~'"):
        coco_counts("61~1", "t")
    with pytest.raises(MaskError, match="middle of a count"):
        coco_counts("61Y", "t")


def test_rle_agrees_with_pycocotools():
    mask_api = pytest.importorskip("pycocotools.mask")
    rng = np.random.default_rng(0)
    for _ in range(50):
        h, w = rng.integers(1, 40, 2)
        m = (rng.random((h, w)) < rng.random()).astype(np.uint8)
        rle = mask_api.encode(np.asfortranarray(m))
        assert (rle_to_mask(coco_counts(rle["counts"].decode(), "t"), h, w, "t") == m.astype(bool)).all()
        poly = list(rng.uniform(0, 40, 6))
        ref = mask_api.decode(mask_api.merge(mask_api.frPyObjects([poly], 40, 40)))
        assert (polygon_mask([poly], 40, 40, "t") != ref).sum() <= 0.2 * ref.sum() + 8


def test_kaggle_encoded_pixels_are_one_based_and_column_major():
    # '7 1': 1-based pixel 7 = 0-based 6 = row 0 of column 1.
    assert (starts_lengths_to_mask("7 1", H, W, "t") == one_at((0, 1)).astype(bool)).all()
    # '1 3 13 2': rows 0..2 of column 0, then 0-based 12, 13 = rows 0..1 of column 2.
    got = starts_lengths_to_mask("1 3 13 2", H, W, "t")
    assert (got == one_at((0, 0), (1, 0), (2, 0), (0, 2), (1, 2)).astype(bool)).all()
    assert starts_lengths_to_mask("48 1", H, W, "t")[5, 7]  # the last pixel
    for bad, why in (("5", "pairs"), ("0 3", "outside"), ("45 5", "outside"), ("1 x", "whole numbers")):
        with pytest.raises(MaskError, match=why):
            starts_lengths_to_mask(bad, H, W, "t.csv ImageId 'a'")


# -- coco-seg ------------------------------------------------------------------
def coco_source(root):
    """A Fashionpedia-like folder: train JSON + train/, val JSON + test/ (as Fashionpedia ships it)."""
    cats = [{"id": 0, "name": "shirt, blouse"}, {"id": 31, "name": "sleeve"}, {"id": 5, "name": "pants"}]
    train = {
        "images": [{"id": 1, "file_name": "a.jpg", "height": H, "width": W},
                   {"id": 2, "file_name": "b.jpg", "height": H, "width": W},
                   {"id": 3, "file_name": "gone.jpg", "height": H, "width": W},
                   {"id": 4, "file_name": "c.jpg", "height": H, "width": W}],
        "annotations": [
            # a small sleeve listed before the whole-image shirt: the sleeve must stay on top
            {"id": 10, "image_id": 1, "category_id": 31, "iscrowd": 0, "segmentation": [[1, 1, 5, 1, 5, 4, 1, 4]]},
            {"id": 11, "image_id": 1, "category_id": 0, "iscrowd": 0, "segmentation": [[0, 0, 8, 0, 8, 6, 0, 6]]},
            {"id": 12, "image_id": 2, "category_id": 5, "iscrowd": 1,
             "segmentation": {"counts": [6, 1, 41], "size": [H, W]}},
            {"id": 13, "image_id": 2, "category_id": 0, "iscrowd": 0,
             "segmentation": {"counts": "2320T1", "size": [H, W]}},
            {"id": 14, "image_id": 3, "category_id": 0, "iscrowd": 0, "segmentation": [[0, 0, 2, 0, 2, 2]]},
            {"id": 15, "image_id": 4, "category_id": 0, "iscrowd": 0,
             "segmentation": {"counts": [6, 1, 40], "size": [H, W]}},
            {"id": 16, "image_id": 99, "category_id": 0, "iscrowd": 0, "segmentation": [[0, 0, 2, 0, 2, 2]]},
        ],
        "categories": cats,
    }
    val = {
        "images": [{"id": 1, "file_name": "v.jpg", "height": H, "width": W},
                   {"id": 2, "file_name": "w.jpg", "height": H, "width": W}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 5, "iscrowd": 0,
                         "segmentation": [[1, 1, 7, 1, 4, 5]]},
                        {"id": 2, "image_id": 2, "category_id": 77, "iscrowd": 0,
                         "segmentation": [[1, 1, 7, 1, 4, 5]]}],
        "categories": cats,
    }
    root.mkdir(parents=True)
    (root / "instances_attributes_train2020.json").write_text(json.dumps(train))
    (root / "instances_attributes_val2020.json").write_text(json.dumps(val))
    (root / "info_test2020.json").write_text(json.dumps({"images": [{"id": 1, "file_name": "t.jpg"}],
                                                         "categories": cats}))
    for name in ("a", "b", "c"):
        write_jpg(root / "train" / f"{name}.jpg")
    for name in ("v", "w"):
        write_jpg(root / "test" / f"{name}.jpg")
    return root


def test_coco_seg_folder(tmp_path):
    root = coco_source(tmp_path / "fp")
    got = importer("coco-seg").factory(str(root))
    # background, then categories in id order: 0 -> 1, 5 -> 2, 31 -> 3
    assert got.classes == ["background", "shirt, blouse", "pants", "sleeve"]
    by_name = {p.split("/")[-1]: (split, mask) for (p, label, split), mask in zip(got.samples, got.masks)}
    assert all(label is None for _, label, _ in got.samples)
    assert sorted(by_name) == ["a.jpg", "b.jpg", "c.jpg", "v.jpg"]
    assert {n: s for n, (s, _) in by_name.items()} == {"a.jpg": "train", "b.jpg": "train", "c.jpg": "train",
                                                         "v.jpg": "val"}
    a = by_name["a.jpg"][1]()
    expected = np.ones((H, W), np.uint8)  # shirt everywhere...
    expected[1:4, 1:5] = 3  # ...and the sleeve painted over it (smaller area last)
    assert a.dtype == np.uint8 and (a == expected).all()
    b = by_name["b.jpg"][1]()  # pants (crowd, uncompressed) at (0,1), shirt (compressed) at 6 pixels
    expected = np.zeros((H, W), np.uint8)
    for r, c in ((2, 0), (3, 0), (4, 0), (1, 1), (2, 1), (3, 1)):
        expected[r, c] = 1
    expected[0, 1] = 2
    assert (b == expected).all()
    with pytest.raises(MaskError, match=r"instances_attributes_train2020.json image 'c.jpg' annotation 15.*47"):
        by_name["c.jpg"][1]()
    tri = by_name["v.jpg"][1]()
    assert (tri == 2 * polygon_mask([[1, 1, 7, 1, 4, 5]], H, W, "t")).all() and tri.sum() == 2 * 12

    reasons = {p["path"].split("/")[-1]: p["reason"] for p in got.problems}
    assert "image file not found" in reasons["gone.jpg"]
    assert "category_id 77" in reasons["w.jpg"]
    assert "image id 99" in reasons["instances_attributes_train2020.json"]
    assert "no annotations" in reasons["info_test2020.json"]


def test_coco_seg_crowd_ignore_json_path_and_images_arg(tmp_path):
    root = coco_source(tmp_path / "fp")
    factory = importer("coco-seg").factory
    got = factory(str(root / "instances_attributes_train2020.json"), crowd="ignore")
    b = dict(zip((p.split("/")[-1] for p, _, _ in got.samples), got.masks))["b.jpg"]()
    assert b[0, 1] == got.ignore_index == 255
    got = factory(str(root), json="instances_attributes_val2020.json", images="test")
    assert [p.split("/")[-1] for p, _, _ in got.samples] == ["v.jpg"]
    with pytest.raises(DataError, match="images: .* is not a folder"):
        factory(str(root), json="instances_attributes_val2020.json", images="nowhere")
    with pytest.raises(DataError, match="crowd"):
        factory(str(root), crowd="skip")
    with pytest.raises(DataError, match="not found"):
        factory(str(root), json="missing.json")


def test_coco_seg_named_background_and_missing_images(tmp_path):
    root = tmp_path / "c"
    root.mkdir()
    data = {"images": [{"id": 1, "file_name": "x.jpg", "height": H, "width": W}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 2, "segmentation": [[0, 0, 1, 0, 1, 1, 0, 1]]}],
            "categories": [{"id": 1, "name": "dress"}, {"id": 2, "name": "background"}]}
    (root / "ann.json").write_text(json.dumps(data))
    with pytest.raises(DataError, match="cannot find the images of 'ann.json'.*images=FOLDER"):
        importer("coco-seg").factory(str(root))
    write_jpg(root / "images" / "x.jpg")
    got = importer("coco-seg").factory(str(root))
    assert got.classes == ["background", "dress"] and got.samples[0][2] is None
    assert (got.masks[0]() == 0).all()
    (root / "ann.json").write_text(json.dumps({"images": [], "annotations": []}))
    with pytest.raises(DataError, match="no list 'categories'"):
        importer("coco-seg").factory(str(root / "ann.json"))


# -- imaterialist-csv ----------------------------------------------------------
def kaggle_source(root, labels=True):
    root.mkdir(parents=True)
    rows = [
        "ImageId,EncodedPixels,Height,Width,ClassId",
        "img1,7 1,6,8,3_28_77",  # 2020 style: no extension; class 3 with attributes
        "img1,1 48,6,8,0",  # the whole image, listed after the small region
        "img2.jpg,1 3 13 2,6,8,1",  # 2019 style: with the extension
        "img3,1 1,6,8,0",
        "img3,1 1,7,8,0",  # disagrees on the size
        "img4,1 1,6,8,0",  # no image file
        "img5,5,6,8,0",  # bad EncodedPixels
        "img6,1 1,6,8,x_1",
    ]
    (root / "train.csv").write_text("\r\n".join(rows) + "\r\n")
    for name in ("img1", "img2", "img3", "img5", "img6"):
        write_jpg(root / "train" / f"{name}.jpg")
    if labels:
        cats = [{"id": i, "name": n} for i, n in enumerate(["shirt, blouse", "top", "sweater", "cardigan"])]
        (root / "label_descriptions.json").write_text(json.dumps({"info": {}, "categories": cats, "attributes": []}))
    return root


def test_imaterialist_csv(tmp_path):
    root = kaggle_source(tmp_path / "k")
    got = importer("imaterialist-csv").factory(str(root))
    assert got.classes == ["background", "shirt, blouse", "top", "sweater", "cardigan"]  # id k -> index k + 1
    masks = {p.split("/")[-1]: m for (p, _, split), m in zip(got.samples, got.masks)}
    assert sorted(masks) == ["img1.jpg", "img2.jpg", "img5.jpg"]
    assert all(split is None for _, _, split in got.samples)
    expected = np.ones((H, W), np.uint8)  # class 0 -> 1 everywhere, class 3 -> 4 on top at (0, 1)
    expected[0, 1] = 4
    assert (masks["img1.jpg"]() == expected).all()
    assert (masks["img2.jpg"]() == one_at((0, 0), (1, 0), (2, 0), (0, 2), (1, 2), value=2)).all()
    with pytest.raises(MaskError, match="train.csv ImageId 'img5'.*pairs"):
        masks["img5.jpg"]()
    reasons = {p["path"].split("/")[-1]: p["reason"] for p in got.problems}
    assert "different sizes (6x8, 7x8)" in reasons["img3.jpg"]
    assert "image file not found" in reasons["img4"]
    assert "ClassId 'x_1'" in reasons["img6.jpg"]


def test_imaterialist_csv_without_labels_and_errors(tmp_path):
    root = kaggle_source(tmp_path / "k", labels=False)
    factory = importer("imaterialist-csv").factory
    got = factory(str(root / "train.csv"))
    assert got.classes == ["background", "class_0", "class_1", "class_2", "class_3"]
    (root / "label_descriptions.json").write_text(json.dumps({"categories": [{"id": 0, "name": "shirt"}]}))
    got = factory(str(root))
    assert got.classes == ["background", "shirt"]
    assert any("ClassId 3 is not in label_descriptions.json" in p["reason"] for p in got.problems)
    (root / "bad.csv").write_text("ImageId,EncodedPixels,Height,ClassId\nimg1,1 1,6,0\n")
    with pytest.raises(DataError, match="no column Width"):
        factory(str(root), csv="bad.csv")
    with pytest.raises(DataError, match="images: .* is not a folder"):
        factory(str(root), images="nope")
    with pytest.raises(DataError, match="labels: .* not found"):
        factory(str(root), labels="nope.json")


# -- mat-seg ---------------------------------------------------------------------
def mat_source(root):
    savemat = pytest.importorskip("scipy.io").savemat
    (root / "annotations" / "pixel-level").mkdir(parents=True)
    (root / "annotations" / "image-level").mkdir(parents=True)
    labels = np.empty((1, 3), dtype=object)  # a 1x3 cell array, as CCP's label_list.mat
    labels[0, :] = ["null", "shirt", "pants"]
    savemat(root / "label_list.mat", {"label_list": labels})
    gt = np.zeros((H, W), np.uint8)
    gt[2:, 3:] = 2
    gt[0, 0] = 1
    savemat(root / "annotations" / "pixel-level" / "0001.mat", {"groundtruth": gt})
    savemat(root / "annotations" / "pixel-level" / "0002.mat", {"other": gt})
    savemat(root / "annotations" / "pixel-level" / "0009.mat", {"groundtruth": gt})
    savemat(root / "annotations" / "image-level" / "0003.mat", {"tags": np.array([[1, 2]])})
    for stem in ("0001", "0002", "0003"):
        write_jpg(root / "photos" / f"{stem}.jpg")
    return root, gt


def test_mat_seg(tmp_path):
    root, gt = mat_source(tmp_path / "ccp")
    got = importer("mat-seg").factory(str(root))
    assert got.classes == ["null", "shirt", "pants"]
    names = [p.split("/")[-1] for p, _, _ in got.samples]
    assert names == ["0001.jpg", "0002.jpg"]
    first = got.masks[0]()
    assert first.dtype == np.uint8 and first.shape == (H, W) and (first == gt).all()
    with pytest.raises(MaskError, match="0002.mat' has no variable 'groundtruth' \\(it has: other\\)"):
        got.masks[1]()
    reasons = {p["path"].split("/")[-1]: p["reason"] for p in got.problems}
    assert [p["path"].split("/")[-1] for p in got.unused] == ["0003.jpg"] and "0003.jpg" not in reasons
    assert reasons["0009.mat"].startswith("no image")


def test_mat_seg_keys_text_labels_and_bad_masks(tmp_path):
    root, gt = mat_source(tmp_path / "ccp")
    savemat = pytest.importorskip("scipy.io").savemat
    (root / "names.txt").write_text("null\nshirt\npants\n")
    got = importer("mat-seg").factory(str(root), labels="names.txt", mask_key="other")
    assert got.classes == ["null", "shirt", "pants"]
    assert (got.masks[1]() == gt).all()
    savemat(root / "annotations" / "pixel-level" / "0001.mat", {"groundtruth": gt.astype(float) + 0.5})
    with pytest.raises(MaskError, match="non-integer"):
        importer("mat-seg").factory(str(root)).masks[0]()
    savemat(root / "annotations" / "pixel-level" / "0001.mat", {"groundtruth": np.zeros((2, 3, 4))})
    with pytest.raises(MaskError, match=r"0001.mat' variable 'groundtruth'.*\(H, W\)"):
        importer("mat-seg").factory(str(root)).masks[0]()
    with pytest.raises(DataError, match="no variable 'names'.*labels_key"):
        importer("mat-seg").factory(str(root), labels_key="names")
    (root / "label_list.mat").unlink()
    with pytest.raises(DataError, match="label_list.mat' not found; pass labels=FILE"):
        importer("mat-seg").factory(str(root))


# -- detection -------------------------------------------------------------------
def test_detect_scores(tmp_path):
    coco = coco_source(tmp_path / "fp")
    kaggle = kaggle_source(tmp_path / "k")
    mat, _ = mat_source(tmp_path / "ccp")
    empty = tmp_path / "empty"
    empty.mkdir()
    detect = {n: importer(n).extra["detect"] for n in ("coco-seg", "imaterialist-csv", "mat-seg")}
    sources = {"coco": coco, "coco-json": coco / "instances_attributes_val2020.json", "kaggle": kaggle,
               "kaggle-csv": kaggle / "train.csv", "mat": mat, "empty": empty, "missing": tmp_path / "nope"}
    scores = {(n, s): detect[n](str(p)) for n in detect for s, p in sources.items()}
    own = {("coco-seg", "coco"), ("coco-seg", "coco-json"), ("imaterialist-csv", "kaggle"),
           ("imaterialist-csv", "kaggle-csv"), ("mat-seg", "mat")}
    assert {k: v for k, v in scores.items() if v} == {k: 30 for k in own}
    # Kaggle's label_descriptions.json is a JSON with categories but no segmentation: not COCO.
    assert detect["coco-seg"](str(kaggle / "label_descriptions.json")) == 0
    from fashioncli.data.sources import pick_importer

    assert pick_importer(str(coco), None)[0] == "coco-seg"
    assert pick_importer(str(kaggle), None)[0] == "imaterialist-csv"
    assert pick_importer(str(mat), None)[0] == "mat-seg"
