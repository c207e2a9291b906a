"""Segmentation from end to end: mask folders through prepare (checks, colour fallback, copies
across splits, class sets), joint augmentation, training, eval, and the real imat-fashion-seg."""
import json

import cv2
import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner

from conftest import shared_dataset
from fashioncli.cli import cli
from fashioncli.data.dataset import PreparedDataset
from fashioncli.data.masks import read_index_mask
from fashioncli.prepare import prepare
from fashioncli.tasks.segmentation.prepare import IGNORE, class_mapping, class_weights, mask_cache

PALETTE = [("background", (0, 0, 0)), ("shirt, blouse", (128, 0, 0)), ("pants", (0, 128, 0)), ("shoe", (0, 0, 128))]
COLOURS = np.array([rgb for _, rgb in PALETTE], np.uint8)


def mask_of(seed, h=24, w=32):
    """A top (class 1) over trousers (2) with a shoe (3), shifted by the seed."""
    m = np.zeros((h, w), np.uint8)
    dx = seed % 5
    m[2:10, 6 + dx:20 + dx] = 1
    m[10:20, 8 + dx:18 + dx] = 2
    m[20:23, 8 + dx:12 + dx] = 3
    return m


def write_photo(path, mask, seed):
    """A photo whose colour follows its mask (plus noise), so a model can learn it."""
    rng = np.random.default_rng(seed)
    image = COLOURS[mask].astype(np.int16) + rng.integers(-20, 20, mask.shape + (3,))
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.clip(image, 0, 255).astype(np.uint8)[..., ::-1])


def write_png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array)


@pytest.fixture
def mask_source(tmp_path):
    """iMaterialist layout: train has index masks for some images and colour masks for others,
    valid repeats a test image byte for byte, and four images are faulty."""
    root = tmp_path / "src"
    root.mkdir()
    (root / "class_dict.csv").write_text("name,r,g,b\n" + "".join(f'"{n}",{r},{g},{b}\n' for n, (r, g, b) in PALETTE))
    (root / "evaluated_classes.txt").write_text("background\nshirt, blouse\npants\n")
    for i in range(8):
        mask = mask_of(i)
        write_photo(root / "train" / "images" / f"{i:03d}.jpg", mask, i)
        if i < 4:
            write_png(root / "train" / "labels" / f"{i:03d}.png", mask)
        else:  # no index mask: the colour mask is read with the palette
            write_png(root / "train" / "clabels" / f"{i:03d}.png", COLOURS[mask][..., ::-1])
    for i in range(8, 11):
        write_photo(root / "test" / "images" / f"{i:03d}.jpg", mask_of(i), i)
        write_png(root / "test" / "labels" / f"{i:03d}.png", mask_of(i))
    (root / "valid" / "images").mkdir(parents=True)
    (root / "valid" / "images" / "dup.jpg").write_bytes((root / "test" / "images" / "008.jpg").read_bytes())
    write_png(root / "valid" / "labels" / "dup.png", mask_of(8))
    for i in range(11, 13):
        write_photo(root / "valid" / "images" / f"{i:03d}.jpg", mask_of(i), i)
        write_png(root / "valid" / "labels" / f"{i:03d}.png", mask_of(i))
    # faulty: no mask at all, a mask of the wrong size, a value past the classes, a colour not in the palette
    write_photo(root / "train" / "images" / "nomask.jpg", mask_of(0), 50)
    write_photo(root / "train" / "images" / "small.jpg", mask_of(0), 51)
    write_png(root / "train" / "labels" / "small.png", mask_of(0, 12, 16))
    write_photo(root / "train" / "images" / "value.jpg", mask_of(0), 52)
    write_png(root / "train" / "labels" / "value.png", mask_of(0) * 3)  # 9 > 3
    write_photo(root / "train" / "images" / "colour.jpg", mask_of(0), 53)
    stray = COLOURS[mask_of(0)][..., ::-1].copy()
    stray[0, 0] = (7, 7, 7)
    write_png(root / "train" / "clabels" / "colour.png", stray)
    return root


def test_prepare_checks_every_mask_and_drops_copies(mask_source, tmp_path):
    summary = prepare(str(mask_source), str(tmp_path / "out"), image_size=32, progress=False)
    assert summary["task"] == "segmentation" and summary["importer"] == "mask-folder"
    assert summary["splits"] == {"train": 8, "val": 2, "test": 3}
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    reasons = {p["path"].rsplit("/", 1)[-1]: p["reason"] for p in report["problems"]}
    assert "same bytes as test image" in reasons["dup.jpg"]
    assert "nomask.jpg" not in reasons  # not a problem: reported as not used
    assert [p["path"].rsplit("/", 1)[-1] for p in report["not_used"]] == ["nomask.jpg"]
    assert "1 images have no mask (not used)" in (tmp_path / "out" / "report.md").read_text()
    assert "16x12 but its image is 32x24" in reasons["small.jpg"]
    assert "values not in the palette: 6 x 100, 9 x 12" in reasons["value.jpg"]
    assert "not in the palette" in reasons["colour.jpg"]

    data = PreparedDataset.open(tmp_path / "out").require("segmentation")
    meta = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert meta["classes"] == [n for n, _ in PALETTE] and meta["ignore_index"] == IGNORE
    assert meta["palette"] == [list(rgb) for _, rgb in PALETTE]
    assert meta["class_sets"] == {"evaluated": ["background", "shirt, blouse", "pants"]}
    rows = data.rows("train")
    for row in rows:  # index masks and converted colour masks alike, at full size
        i = int(row["path"].rsplit("/", 1)[-1][:3])
        np.testing.assert_array_equal(read_index_mask(row["mask"]), mask_of(i))
    masks, images = mask_cache(data, "train", 32), data.cache("train", 32)
    assert masks.shape == (8, 32, 32, 1) and images.shape == (8, 32, 32, 3)
    want = cv2.resize(mask_of(0), (32, 32), interpolation=cv2.INTER_NEAREST_EXACT)  # pixel centres
    np.testing.assert_array_equal(masks[0][..., 0], want)
    # pixel frequencies and median-frequency weights come from train
    pixels = report["pixels"]["train"]
    assert sum(pixels.values()) == 8 * 32 * 32 and all(v > 0 for v in pixels.values())
    assert report["class_weights"] == dict(zip(meta["classes"], class_weights(list(pixels.values()))))


def test_class_sets_keep_collapse_or_ignore(mask_source, tmp_path):
    names = [n for n, _ in PALETTE]
    kept, lut = class_mapping(names, ["pants"])
    assert kept == ["background", "pants"] and lut[:4].tolist() == [0, 0, 1, 0]
    kept, lut = class_mapping(names, "evaluated", "ignore", {"evaluated": names[:3]})
    assert kept == names[:3] and lut[:4].tolist() == [0, 1, 2, IGNORE]
    kept, lut = class_mapping(names, ["foreground"])
    assert kept == ["background", "foreground"] and lut[:4].tolist() == [0, 1, 1, 1]
    with pytest.raises(Exception, match="not a class or class set"):
        class_mapping(names, ["shoes"])

    prepare(str(mask_source), str(tmp_path / "ev"), image_size=32, classes=["evaluated"], other_classes="ignore",
            progress=False)
    data = PreparedDataset.open(tmp_path / "ev")
    assert data.classes == names[:3]
    values = np.unique(read_index_mask(data.rows("train")[0]["mask"])).tolist()
    assert values == [0, 1, 2, IGNORE]  # the shoe is unlabelled now


def test_augmentation_moves_the_mask_with_the_image():
    from fashioncli.data.loaders import CachedMasks, build_augment

    # Left half class 1 (white), right half class 2 (grey): a flip, crop or rotation that moved the
    # image alone would pair white pixels with class 2.
    image = np.zeros((1, 64, 64, 3), np.uint8)
    mask = np.zeros((1, 64, 64, 1), np.uint8)
    image[0, :, :32], mask[0, :, :32] = 255, 1
    image[0, :, 32:], mask[0, :, 32:] = 100, 2
    data = CachedMasks(image, mask, build_augment(64, {"hflip": True, "scale": [0.3, 1.0], "rotate": 30,
                                                       "color_jitter": 0.0}))
    torch.manual_seed(0)
    for _ in range(20):
        x, m = data[0]
        assert m.dtype == torch.int64 and set(m.unique().tolist()) <= {1, 2, IGNORE}
        grey = x[0].float()
        # colour and class agree (up to the blended seam): moved apart, the means would swap
        assert grey[m == 1].mean() > 230 and grey[m == 2].mean() < 125


def test_losses_get_the_ignore_index(mask_source, tmp_path):
    from fashioncli.recipe import validate
    from fashioncli.tasks import make_task

    prepare(str(mask_source), str(tmp_path / "out"), image_size=32, progress=False)
    recipe = validate({"task": "segmentation", "data": {"root": str(tmp_path / "out")}, "model": "unet",
                       "loss": {"name": "cross_entropy"}})
    task = make_task(recipe, PreparedDataset.open(tmp_path / "out"))
    assert task.criterion().ignore_index == IGNORE


def test_train_eval_on_synthetic_segmentation(tmp_path):
    runner = CliRunner()
    result = runner.invoke(cli, ["prepare", "synthetic-segmentation", str(tmp_path / "data"), "--image-size", "64",
                                 "--arg", "count=36", "--arg", "size=64"])
    assert result.exit_code == 0, result.output
    recipe = {
        "task": "segmentation", "data": {"root": str(tmp_path / "data"), "image_size": 64, "batch_size": 8,
                                         "num_workers": 0, "augment": {"hflip": True, "scale": None}},
        "model": {"name": "unet", "args": {"encoder": "test_efficientnet", "decoder_channels": [16, 8, 8, 8, 8]}},
        "loss": {"name": "dice_ce"}, "optimizer": {"name": "adam", "lr": 3e-3},
        "train": {"epochs": 2, "channels_last": False},
        "eval": {"reference": {"miou": 0.5, "fg_bg_miou": 0.9}},
        "output": {"dir": str(tmp_path / "runs"), "name": "seg"},
    }
    (tmp_path / "seg.yaml").write_text(yaml.safe_dump(recipe))
    result = runner.invoke(cli, ["train", str(tmp_path / "seg.yaml"), "-q", "--set", "train.epochs=1"])
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs" / "seg"
    # resumed like any run: the second epoch continues from the first one's checkpoint
    result = runner.invoke(cli, ["train", str(run / "recipe.yaml"), "-q", "--resume", "--set", "train.epochs=2"])
    assert result.exit_code == 0, result.output
    lines = (run / "metrics.csv").read_text().splitlines()
    assert len(lines) == 3
    header = lines[0].split(",")
    assert {"val_miou", "val_pixel_accuracy", "val_fg_bg_miou", "val_loss"} <= set(header)

    result = runner.invoke(cli, ["eval", str(run)])
    assert result.exit_code == 0, result.output
    summary = json.loads((run / "eval-test" / "summary.json").read_text())
    m = summary["metrics"]
    assert 0 <= m["miou"] <= 1 and 0 <= m["pixel_accuracy"] <= 1 and m["fg_bg_miou"] is not None
    assert summary["reference"]["miou"] == {"measured": m["miou"], "report": 0.5}
    per_class = (run / "eval-test" / "per_class.csv").read_text().splitlines()
    assert len(per_class) == 1 + 7 and per_class[0].startswith("class,iou")
    grid = cv2.imread(str(run / "eval-test" / "grid.png"))
    assert grid is not None and grid.shape[0] > 100
    # The confusion matrix counts every labelled test pixel once, at the masks' own size.
    conf = np.loadtxt(run / "eval-test" / "confusion_matrix.csv", delimiter=",", skiprows=1,
                      usecols=range(1, 8), dtype=np.int64)
    assert conf.sum() == summary["num_samples"] * 64 * 64

    # hflip TTA flips the second view's logits back before averaging; a shift cannot be undone
    result = runner.invoke(cli, ["eval", str(run), "--tta", "hflip", "-o", str(tmp_path / "tta")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "tta" / "summary.json").read_text())["metrics"]["miou"] is not None
    result = runner.invoke(cli, ["eval", str(run), "--tta", "shift=2", "-o", str(tmp_path / "shift")])
    assert result.exit_code != 0 and "hflip" in result.output


def test_hflip_tta_unflips_the_mask():
    from fashioncli.tasks.segmentation.evaluate import segment_logits

    class Bright(torch.nn.Module):
        """Class 1 where the first channel is bright: the output follows the image."""

        def forward(self, x):
            return torch.stack([torch.zeros_like(x[:, 0]), 5.0 * x[:, 0] - 1.0], dim=1)

    x = torch.zeros(1, 3, 4, 8)
    x[..., :4] = 1.0  # bright left half
    pred = segment_logits(Bright(), x, {"hflip": True}).argmax(1)[0]
    # un-flipped, the flipped view agrees with the plain one; left flipped, it would mark the right half too
    assert pred[:, :4].eq(1).all() and pred[:, 4:].eq(0).all()


def test_real_imat_fashion_seg_prepare(tmp_path):
    source = shared_dataset("imat-fashion-seg")
    summary = prepare(str(source), str(tmp_path / "imat"), image_size=32, progress=False)
    # 679 training images have a mask (194 index masks, the rest colour masks); valid keeps 71 of
    # its 186 images, the others being byte-identical copies of test images.
    assert summary["splits"] == {"train": 679, "val": 71, "test": 860}
    meta = json.loads((tmp_path / "imat" / "dataset.json").read_text())
    assert len(meta["classes"]) == 47 and len(meta["class_sets"]["evaluated"]) == 17
    report = json.loads((tmp_path / "imat" / "report.json").read_text())
    copies = [p for p in report["problems"] if "same bytes as test image" in p["reason"]]
    assert len(copies) == 115
