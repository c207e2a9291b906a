"""fashioncli.data.masks (index/colour masks, palettes) and the `imat-tags` multi-label importer."""
import csv
import hashlib
import io
import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from conftest import shared_dataset
from fashion_plugins.datasets.imat_tags import imat_tags
from fashioncli.cli import cli
from fashioncli.data.masks import (
    Mask, MaskError, class_pixels, colours_to_index, describe_unknown, find_mask, mask_for, read_colour_mask,
    read_index_mask, read_palette, unknown_value,
)
from fashioncli.prepare import prepare

PALETTE = [("background", (0, 0, 0)), ("shirt, blouse", (128, 0, 0)), ("pants", (0, 128, 0)), ("shoe", (0, 0, 128))]


def write_palette(path, rows=PALETTE, header="name,r,g,b"):
    # As published: BOM-less UTF-8, CRLF lines, names with commas quoted.
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\r\n")
        writer.writerow(header.split(","))
        writer.writerows([(n, *rgb) for n, rgb in rows])
    return path


def write_colour(path, index, rows=PALETTE):
    """An index array painted with the palette's colours (RGB), saved as a PNG (BGR on disk)."""
    colours = np.array([rgb for _, rgb in rows], np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), colours[index][..., ::-1])
    return path


def write_index(path, index):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), index)
    return path


def write_photo(path, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.random.default_rng(seed).integers(0, 255, (20, 20, 3), dtype=np.uint8))
    return path


def test_read_palette_published_format(tmp_path):
    names, colours = read_palette(write_palette(tmp_path / "class_dict.csv"))
    assert names == ["background", "shirt, blouse", "pants", "shoe"]
    assert colours.dtype == np.uint8 and colours.tolist() == [[0, 0, 0], [128, 0, 0], [0, 128, 0], [0, 0, 128]]
    # A BOM and capitalised, spaced header names are accepted too.
    (tmp_path / "bom.csv").write_bytes(b"\xef\xbb\xbfName, R, G, B\nbackground,0,0,0\nshoe,1,2,3\n")
    assert read_palette(tmp_path / "bom.csv")[0] == ["background", "shoe"]


@pytest.mark.parametrize("text, message", [
    ("class,red,green,blue\nx,0,0,0\n", "no column name, r, g, b"),
    ("name,r,g,b\nx,0,0,0\ny,0,0,0\n", "already the colour of 'x'"),
    ("name,r,g,b\nx,0,0,0\nx,1,1,1\n", "listed twice"),
    ("name,r,g,b\nx,0,0,256\n", "0..255"),
    ("name,r,g,b\nx,0,0,blue\n", "whole numbers"),
    ("name,r,g,b\n", "no classes"),
])
def test_read_palette_refuses_ambiguous_tables(tmp_path, text, message):
    (tmp_path / "p.csv").write_text(text)
    with pytest.raises(MaskError, match=message):
        read_palette(tmp_path / "p.csv")


@pytest.mark.parametrize("fmt", ["PNG", "BMP"])
def test_palette_masks_keep_every_class_whatever_its_colour(tmp_path, fmt):
    """A VOC palette cut after class 4 and padded with black gives class 5 the background's colour;
    its pixels must still read as 5 (the palette index), in a palette PNG or BMP alike."""
    from PIL import Image

    from fashioncli.tasks.segmentation.render import class_colours

    index = np.arange(8, dtype=np.uint8).reshape(2, 4)
    index[1, 3] = 255  # the ignore index, black in a padded palette as well
    image = Image.fromarray(index, "P")
    image.putpalette(class_colours(5).ravel().tolist() + [0] * (256 - 5) * 3)
    image.save(tmp_path / f"m.{fmt.lower()}", fmt)
    assert read_index_mask(tmp_path / f"m.{fmt.lower()}").tolist() == index.tolist()


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_read_index_mask_keeps_values_and_dtype(tmp_path, dtype):
    index = np.array([[0, 1, 2], [3, 300 if dtype == np.uint16 else 46, 0]], dtype)
    out = read_index_mask(write_index(tmp_path / "m.png", index))
    assert out.dtype == dtype and out.shape == (2, 3) and (out == index).all()


def test_read_index_mask_palette_png_and_grey_rgb(tmp_path):
    from PIL import Image

    index = np.array([[0, 1, 2], [2, 1, 0]], np.uint8)
    png = Image.fromarray(index, "P")
    png.putpalette([0, 0, 0, 0, 0, 0, 200, 10, 10] + [0] * 759)  # colour 0 repeated, as padded palettes do
    buf = io.BytesIO()
    png.save(buf, "PNG")
    (tmp_path / "p.png").write_bytes(buf.getvalue())
    # OpenCV alone would give colours; the palette indices come back instead, repeated colours too.
    assert read_index_mask(tmp_path / "p.png").tolist() == index.tolist()
    grey = np.repeat(index[..., None] * 7, 3, axis=2)
    assert read_index_mask(write_index(tmp_path / "g.png", grey)).tolist() == (index * 7).tolist()
    with pytest.raises(MaskError, match="colour mask, not an index mask"):
        read_index_mask(write_colour(tmp_path / "c.png", index))
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(MaskError, match="not a readable image"):
        read_index_mask(tmp_path / "bad.png")


def test_colour_mask_to_indices_reports_unknown_colours(tmp_path):
    _, colours = read_palette(write_palette(tmp_path / "class_dict.csv"))
    index = np.array([[0, 1, 1], [2, 3, 3]], np.uint8)
    path = write_colour(tmp_path / "c.png", index)
    out, unknown = read_colour_mask(path, colours)
    assert out.dtype == np.uint8 and (out == index).all() and unknown == {}

    rgb = colours[index].copy()
    rgb[0, 0] = rgb[1, 0] = (1, 2, 3)  # anti-aliased edge colours the palette does not know
    rgb[0, 1] = (9, 9, 9)
    out, unknown = colours_to_index(rgb, colours)
    assert unknown == {(1, 2, 3): 2, (9, 9, 9): 1}  # largest first
    assert out[0, 0] == out[1, 0] == out[0, 1] == unknown_value(4) == 255  # never a class index
    assert out[0, 2] == 1 and out[1, 1] == 3
    assert describe_unknown(unknown).startswith("3 pixels of 2 colours not in the palette: (1, 2, 3) x 2")
    # More classes than a byte holds: uint16 indices, unknown -> 65535.
    many = np.stack([np.arange(300) % 256, np.arange(300) // 256, np.zeros(300)], 1).astype(np.uint8)
    out, unknown = colours_to_index(many[None, [0, 299]], many)
    assert out.dtype == np.uint16 and out.tolist() == [[0, 299]] and unknown_value(300) == 65535


def test_mask_for_prefers_index_and_falls_back_to_colour(tmp_path):
    _, colours = read_palette(write_palette(tmp_path / "class_dict.csv"))
    split = tmp_path / "train"
    index = np.array([[0, 1], [2, 3]], np.uint8)
    for stem in ("both", "colour_only", "neither"):
        write_photo(split / "images" / f"{stem}.jpg", 0)
    write_index(split / "labels" / "both.png", index)
    write_colour(split / "clabels" / "both.png", np.zeros_like(index))  # must not be read
    write_colour(split / "clabels" / "colour_only.PNG", index)  # another extension's case

    mask = mask_for(split / "images" / "both.jpg", colours)
    assert isinstance(mask, Mask) and mask.kind == "index" and mask.path.parent.name == "labels"
    assert (mask.index == index).all() and mask.unknown == {}
    mask = mask_for(split / "images" / "colour_only.jpg", colours)
    assert mask.kind == "colour" and mask.path.name == "colour_only.PNG" and (mask.index == index).all()
    assert mask_for(split / "images" / "neither.jpg", colours) is None
    assert find_mask(split / "images" / "neither.jpg", "labels") is None
    with pytest.raises(MaskError, match="needs the palette"):
        mask_for(split / "images" / "colour_only.jpg")
    # Index values past the palette are reported, and kept as stored.
    write_index(split / "labels" / "both.png", np.array([[0, 7], [7, 1]], np.uint8))
    mask = mask_for(split / "images" / "both.jpg", colours)
    assert mask.unknown == {7: 2} and mask.unknown_pixels == 2 and mask.index[0, 1] == 7
    assert class_pixels(mask.index, 4).tolist() == [1, 1, 0, 0]


# -- imat-tags -------------------------------------------------------------------
def make_imat(root, size=40):
    """A tiny iMaterialist-style source; returns {name: expected tags at the default threshold}.

    Default threshold at 40x40: ceil(0.00025 * 1600) = 1 pixel; the tests that check min_pixels
    pass their own.
    """
    root.mkdir(parents=True)
    write_palette(root / "class_dict.csv")
    (root / "evaluated_classes.txt").write_text("background\r\nshirt, blouse\r\nshoe")

    def index(shirt=0, pants=0, shoe=0):
        m = np.zeros((size, size), np.uint8)
        flat = m.reshape(-1)
        flat[:shirt] = 1
        flat[shirt:shirt + pants] = 2
        flat[shirt + pants:shirt + pants + shoe] = 3
        return m

    write_photo(root / "train/images/a.jpg", 1)
    write_index(root / "train/labels/a.png", index(shirt=400, shoe=3))        # 3 shoe pixels: a speck
    write_photo(root / "train/images/b.jpg", 2)
    write_colour(root / "train/clabels/b.png", index(pants=500, shoe=50))     # index mask missing
    write_photo(root / "train/images/c.jpg", 3)                               # no mask at all
    write_photo(root / "train/images/d.jpg", 4)
    write_index(root / "train/labels/d.png", index())                         # background only
    write_photo(root / "test/images/t1.jpg", 5)
    write_index(root / "test/labels/t1.png", index(shirt=100))
    write_photo(root / "test/images/t2.jpg", 6)
    write_colour(root / "test/clabels/t2.png", index(pants=100))
    (root / "valid/images").mkdir(parents=True)
    (root / "valid/images/t1.jpg").write_bytes((root / "test/images/t1.jpg").read_bytes())  # a copy of test
    write_index(root / "valid/labels/t1.png", index(shirt=100))
    write_photo(root / "valid/images/v.jpg", 7)
    write_index(root / "valid/labels/v.png", index(shoe=80))
    return root


def by_name(imported):
    return {path.rsplit("/", 1)[-1]: (labels["garments"], split) for path, labels, split in imported.samples}


def test_imat_tags_splits_fallback_duplicates_and_missing_masks(tmp_path):
    imported = imat_tags(str(make_imat(tmp_path / "src")), min_pixels=10)
    assert imported.heads == {"garments": {"type": "multilabel", "classes": ["shirt, blouse", "pants", "shoe"]}}
    assert by_name(imported) == {
        "a.jpg": (["shirt, blouse"], "train"),        # 3 shoe pixels < 10: no tag
        "b.jpg": (["pants", "shoe"], "train"),        # from the colour mask
        "d.jpg": ([], "train"),                       # known, no garment
        "v.jpg": (["shoe"], "val"),
        "t1.jpg": (["shirt, blouse"], "test"),
        "t2.jpg": (["pants"], "test"),
    }
    reasons = {p["path"].split("src/")[1]: p["reason"] for p in imported.problems}
    assert set(reasons) == {"valid/images/t1.jpg"}
    unused = {p["path"].split("src/")[1]: p["reason"] for p in imported.unused}  # not a problem: not used
    assert unused["train/images/c.jpg"].startswith("no mask (not used): neither train/labels/c.png nor train/clabels/c.png")
    assert "same bytes as test image 'test/images/t1.jpg'; left out of val" in reasons["valid/images/t1.jpg"]


def test_imat_tags_min_pixels_and_min_fraction(tmp_path):
    src = str(make_imat(tmp_path / "src"))
    assert by_name(imat_tags(src))["a.jpg"][0] == ["shirt, blouse", "shoe"]  # 1 pixel is enough at 40x40
    assert by_name(imat_tags(src, min_pixels=3))["a.jpg"][0] == ["shirt, blouse", "shoe"]
    assert by_name(imat_tags(src, min_pixels=4))["a.jpg"][0] == ["shirt, blouse"]
    # 0.03 of 1600 px = 48: b's 50 shoe pixels stay, v's 80 too, a's 3 do not.
    tags = by_name(imat_tags(src, min_fraction=0.03))
    assert tags["a.jpg"][0] == ["shirt, blouse"] and tags["b.jpg"][0] == ["pants", "shoe"]
    assert by_name(imat_tags(src, min_fraction=0.04))["b.jpg"][0] == ["pants"]
    for bad in ({"min_pixels": 0}, {"min_pixels": 2.5}, {"min_fraction": 1}):
        with pytest.raises(Exception, match="min_"):
            imat_tags(src, **bad)


def test_imat_tags_classes_file(tmp_path):
    src = make_imat(tmp_path / "src")
    imported = imat_tags(str(src), classes_file="evaluated", min_pixels=10)
    assert imported.heads["garments"]["classes"] == ["shirt, blouse", "shoe"]  # palette order, no background
    assert by_name(imported)["b.jpg"][0] == ["shoe"]
    (tmp_path / "mine.txt").write_text("pants\nshoe\n")
    assert imat_tags(str(src), classes_file=str(tmp_path / "mine.txt")).heads["garments"]["classes"] == ["pants", "shoe"]
    (tmp_path / "typo.txt").write_text("pant\n")
    with pytest.raises(Exception, match="'pant' is not in class_dict.csv .did you mean 'pants'"):
        imat_tags(str(src), classes_file=str(tmp_path / "typo.txt"))


def test_imat_tags_unknown_colour_is_a_problem_not_a_guess(tmp_path):
    src = make_imat(tmp_path / "src")
    painted = cv2.imread(str(src / "train/clabels/b.png"))
    painted[0, :5] = (7, 7, 7)
    cv2.imwrite(str(src / "train/clabels/b.png"), painted)
    imported = imat_tags(str(src))
    assert "b.jpg" not in by_name(imported)
    reason = next(p["reason"] for p in imported.problems if p["path"].endswith("b.jpg"))
    assert reason == "colour mask 'b.png': 5 pixels of 1 colours not in the palette: (7, 7, 7) x 5"


def test_prepare_imat_tags_writes_a_multilabel_dataset(tmp_path):
    src = make_imat(tmp_path / "src")
    # Detection picks segmentation (mask-folder) for this layout; tags are asked for by name.
    from fashioncli.data.sources import pick_importer

    assert pick_importer(str(src), None)[0] == "mask-folder"
    summary = prepare(str(src), str(tmp_path / "out"), importer="imat-tags", image_size=16, progress=False, workers=1,
                      min_pixels=10)
    assert summary["importer"] == "imat-tags" and summary["task"] == "multitask"
    assert summary["splits"] == {"train": 3, "val": 1, "test": 2}
    assert summary["duplicates_across_splits"] == 0 and summary["problems"] == 1 and summary["not_used"] == 1
    meta = json.loads((tmp_path / "out/dataset.json").read_text())
    assert meta["heads"]["garments"] == {"type": "multilabel", "classes": ["shirt, blouse", "pants", "shoe"]}
    rows = list(csv.DictReader(open(tmp_path / "out/train.csv")))
    assert [r["garments"] for r in rows] == ["shirt, blouse", "pants|shoe", "|"]


def test_real_imat_fashion_seg_as_tags(tmp_path):
    source = shared_dataset("imat-fashion-seg")
    out = tmp_path / "imat"
    result = CliRunner().invoke(cli, ["prepare", str(source), str(out), "--importer", "imat-tags",
                                      "--image-size", "64"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)  # progress bars go to stderr
    # 726 training images; 47 have neither mask (194 index masks + colour masks cover the other 679).
    # valid/ (186) repeats 115 test images, which leave val; test (860) stays whole.
    assert summary["splits"] == {"train": 679, "val": 71, "test": 860}
    assert summary["heads"] == {"garments": 46} and summary["duplicates_across_splits"] == 0
    report = json.loads((out / "report.json").read_text())
    reasons = [p["reason"] for p in report["problems"]]
    assert len(report["not_used"]) == 47 and not any(r.startswith("no mask") for r in reasons)
    assert sum(r.startswith("same bytes as test image") for r in reasons) == 115

    def digests(split):
        return {hashlib.sha1(open(r["path"], "rb").read()).hexdigest() for r in csv.DictReader(open(out / f"{split}.csv"))}

    assert not digests("val") & digests("test")
    tags = [r["garments"] for r in csv.DictReader(open(out / "train.csv"))]
    assert all(t and t != "|" for t in tags)  # every training image shows at least one garment
