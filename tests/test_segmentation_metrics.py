"""Segmentation metrics (against hand-computed values and torchmetrics) and mask rendering."""
import json
import math
from functools import partial

import cv2
import numpy as np
import pytest
import torch
from torchmetrics.classification import MulticlassJaccardIndex

from fashioncli.data.masks import read_index_mask
from fashioncli.tasks.segmentation.metrics import (
    confusion, foreground_mapping, fw_iou, iou, mean_iou, merge, pixel_accuracy, precision, recall,
    segmentation_report, subset_mapping)
from fashioncli.tasks.segmentation.render import (
    IGNORE_COLOUR, class_colours, colourise, grid_png, overlay, write_image_png, write_mask_png)

approx = partial(pytest.approx, abs=1e-9, nan_ok=True)
CLASSES = ["background", "shirt", "pants", "hat"]
# A 2 x 3 mask: truth and prediction; 255 is ignored, class 3 (hat) appears in neither.
TRUTH = torch.tensor([[0, 0, 1], [1, 2, 255]])
PRED = torch.tensor([[0, 1, 1], [2, 2, 0]])
# (truth, pred) pairs counted: (0,0) (0,1) (1,1) (1,2) (2,2); the (255, 0) pixel is ignored.
CONF = [[1, 1, 0, 0],
        [0, 1, 1, 0],
        [0, 0, 1, 0],
        [0, 0, 0, 0]]


# -- confusion ---------------------------------------------------------------------------------
def test_confusion_of_a_tiny_mask():
    conf = confusion(PRED, TRUTH, 4)
    assert conf.dtype == torch.int64
    assert conf.tolist() == CONF


def test_confusion_ignores_out_of_range_targets_and_overflowing_dtypes():
    # uint8 inputs: target * C must not wrap around in uint8.
    truth = torch.tensor([0, 1, 2, 5, 255], dtype=torch.uint8)
    pred = torch.tensor([0, 1, 1, 2, 2], dtype=torch.uint8)
    assert confusion(pred, truth, 3).tolist() == [[1, 0, 0], [0, 1, 0], [0, 1, 0]]
    # ignore_index inside the class range (ignoring background) and negative targets.
    assert confusion(torch.tensor([0, 1, 1]), torch.tensor([0, 1, -1]), 2, ignore_index=0).tolist() == [[0, 0], [0, 1]]


def test_confusion_accumulates_by_summing_and_takes_numpy():
    gen = torch.Generator().manual_seed(0)
    pred, truth = torch.randint(0, 5, (4, 7, 9), generator=gen), torch.randint(0, 5, (4, 7, 9), generator=gen)
    whole = confusion(pred, truth, 5)
    assert torch.equal(whole, sum(confusion(p, t, 5) for p, t in zip(pred, truth)))
    assert torch.equal(whole, confusion(pred.numpy(), truth.numpy(), 5))
    assert int(whole.sum()) == pred.numel()


def test_confusion_rejects_bad_predictions_and_shapes():
    with pytest.raises(ValueError, match="predictions must lie in"):
        confusion(torch.tensor([0, 3]), torch.tensor([0, 1]), 3)
    with pytest.raises(ValueError, match="differs from target shape"):
        confusion(torch.zeros(2, 3), torch.zeros(3, 2), 3)


# -- per-class and summary metrics -------------------------------------------------------------
def test_metrics_by_hand():
    conf = torch.tensor(CONF)
    # IoU = TP / (truth + predicted - TP): background 1/2, shirt 1/(2+2-1), pants 1/(1+2-1), hat absent.
    assert iou(conf).tolist() == approx([1 / 2, 1 / 3, 1 / 2, math.nan])
    assert mean_iou(conf) == approx((1 / 2 + 1 / 3 + 1 / 2) / 3)
    assert pixel_accuracy(conf) == approx(3 / 5)
    assert precision(conf).tolist() == approx([1, 1 / 2, 1 / 2, math.nan])
    assert recall(conf).tolist() == approx([1 / 2, 1 / 2, 1, math.nan])
    # Truth shares 2/5, 2/5, 1/5.
    assert fw_iou(conf) == approx(2 / 5 * 1 / 2 + 2 / 5 * 1 / 3 + 1 / 5 * 1 / 2)


def test_a_class_only_predicted_counts_with_iou_zero():
    conf = torch.tensor([[2, 1], [0, 0]])  # class 1 predicted once, never true
    assert iou(conf).tolist() == approx([2 / 3, 0.0])
    assert mean_iou(conf) == approx(1 / 3)
    assert fw_iou(conf) == approx(2 / 3)


def test_empty_matrix_is_undefined_not_zero():
    conf = torch.zeros(3, 3, dtype=torch.int64)
    assert math.isnan(mean_iou(conf)) and math.isnan(pixel_accuracy(conf)) and math.isnan(fw_iou(conf))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_against_torchmetrics(seed):
    gen = torch.Generator().manual_seed(seed)
    c = 6
    truth = torch.randint(0, c - 1, (3, 16, 16), generator=gen)  # class 5 never true...
    pred = torch.randint(0, c - 2, (3, 16, 16), generator=gen)  # ...nor predicted: absent
    truth[torch.rand(truth.shape, generator=gen) < 0.2] = 255
    conf = confusion(pred, truth, c)
    macro = MulticlassJaccardIndex(num_classes=c, ignore_index=255, average="macro")
    per_class = MulticlassJaccardIndex(num_classes=c, ignore_index=255, average="none")
    assert mean_iou(conf) == pytest.approx(float(macro(pred, truth)), abs=1e-6)
    # Per class torchmetrics reports 0 for the absent class, where iou reports NaN.
    ours = iou(conf)
    assert math.isnan(ours[5]) and float(per_class(pred, truth)[5]) == 0.0
    assert ours[:5].tolist() == pytest.approx(per_class(pred, truth)[:5].tolist(), abs=1e-6)


# -- merging -----------------------------------------------------------------------------------
def test_subset_and_foreground_mappings():
    assert subset_mapping(CLASSES, ["pants", "shirt"]) == ([0, 1, 2, 0], ["background", "shirt", "pants"])
    assert subset_mapping(CLASSES, ["hat", "background"]) == ([0, 0, 0, 1], ["background", "hat"])
    assert foreground_mapping(CLASSES) == ([0, 1, 1, 1], ["background", "foreground"])
    with pytest.raises(ValueError, match="unknown classes \\['scarf'\\]"):
        subset_mapping(CLASSES, ["shirt", "scarf"])


def test_merge_equals_counting_merged_masks():
    conf = torch.tensor(CONF)
    # Keep shirt: pants goes to background. By hand: (0,0) (0,1) (1,1) (1,0) (0,0).
    groups, names = subset_mapping(CLASSES, ["shirt"])
    assert merge(conf, groups).tolist() == [[2, 1], [1, 1]]
    # Foreground / background: (0,0) (0,1) (1,1) (1,1) (1,1).
    assert merge(conf, foreground_mapping(CLASSES)[0]).tolist() == [[1, 1], [0, 3]]
    # Same as relabelling the masks, on random data with ignored pixels.
    gen = torch.Generator().manual_seed(3)
    truth, pred = torch.randint(0, 4, (50,), generator=gen), torch.randint(0, 4, (50,), generator=gen)
    truth[:5] = 255
    lut = torch.tensor(groups + [0] * 252)  # 255 must stay ignored, so look it up separately
    merged_truth = torch.where(truth == 255, truth, lut[truth.clamp(max=3)])
    assert torch.equal(merge(confusion(pred, truth, 4), groups), confusion(lut[pred], merged_truth, 2))
    assert merge(conf, [0, 0, 0, 0], num_groups=3).tolist() == [[5, 0, 0], [0, 0, 0], [0, 0, 0]]


# -- report ------------------------------------------------------------------------------------
def test_segmentation_report():
    report = segmentation_report(torch.tensor(CONF), CLASSES, {"2 of 4": ["shirt"]})
    json.dumps(report, allow_nan=False)  # NaN became None
    approx = partial(pytest.approx, abs=1e-6)  # reported to 6 decimals
    assert report["pixel_accuracy"] == approx(0.6)
    assert report["miou"] == approx((1 / 2 + 1 / 3 + 1 / 2) / 3)
    assert report["background_iou"] == approx(1 / 2)
    assert report["foreground_iou"] == approx(3 / 4)
    assert report["fg_bg_miou"] == approx(5 / 8)
    hat = report["per_class"][3]
    assert hat == {"class": "hat", "iou": None, "precision": None, "recall": None, "pixels": 0, "predicted": 0}
    assert report["per_class"][1] == {"class": "shirt", "iou": approx(1 / 3), "precision": 0.5,
                                      "recall": 0.5, "pixels": 2, "predicted": 2}
    subset = report["class_sets"]["2 of 4"]
    # Merged [[2, 1], [1, 1]]: background 2/4, shirt 1/3.
    assert subset["classes"] == ["background", "shirt"]
    assert subset["per_class"] == {"background": 0.5, "shirt": approx(1 / 3)}
    assert subset["miou"] == approx((1 / 2 + 1 / 3) / 2)
    with pytest.raises(ValueError, match="for 3 classes"):
        segmentation_report(torch.tensor(CONF), CLASSES[:3])


# -- rendering ---------------------------------------------------------------------------------
def test_class_colours_voc_and_palette():
    colours = class_colours(300)
    assert colours.dtype == np.uint8 and colours.shape == (300, 3)
    assert np.array_equal(colours, class_colours(300))
    assert colours[:5].tolist() == [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0], [0, 0, 128]]
    assert len({tuple(c) for c in colours.tolist()}) == 300
    palette = [[0, 0, 0], [10, 20, 30], [40, 50, 60]]
    assert class_colours(2, palette).tolist() == palette[:2]
    with pytest.raises(ValueError, match="palette of shape"):
        class_colours(4, palette)


def test_colourise_known_mask():
    colours = class_colours(3)
    mask = np.array([[0, 1], [2, 255]], dtype=np.uint8)
    rgb = colourise(mask, colours)
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 2, 3)
    assert rgb.tolist() == [[[0, 0, 0], [128, 0, 0]], [[0, 128, 0], list(IGNORE_COLOUR)]]


def test_overlay_leaves_background_unchanged():
    image = np.full((2, 3, 3), 100, dtype=np.uint8)
    mask = np.array([[0, 1, 2], [0, 255, 1]])
    out = overlay(image, mask, class_colours(3), alpha=0.5)
    assert out.dtype == np.uint8
    assert (out[mask == 0] == 100).all() and (out[mask == 255] == 100).all()
    assert out[0, 1].tolist() == [114, 50, 50]  # (100 + 128) / 2, 100 / 2
    assert out[0, 2].tolist() == [50, 114, 50]
    with pytest.raises(ValueError, match="differ"):
        overlay(image, mask.T, class_colours(3))


def test_colourise_and_overlay_of_a_uint8_mask_match_the_plain_computation():
    # uint8 masks take OpenCV's lookup table and blend; wider ones numpy's indexing. Same pixels.
    rng = np.random.default_rng(0)
    colours = class_colours(47)
    mask = rng.integers(0, 60, (31, 17)).astype(np.uint8)
    mask[0, :3] = [0, 46, 255]
    image = rng.integers(0, 256, (31, 17, 3)).astype(np.uint8)
    rgb = colourise(mask, colours)
    assert rgb.tolist() == colourise(mask.astype(np.int64), colours).tolist()
    assert rgb[0, 2].tolist() == list(IGNORE_COLOUR) and rgb[0, 1].tolist() == colours[46].tolist()
    painted = (mask > 0) & (mask < 47)
    want = image.copy()
    want[painted] = np.rint(image[painted] * 0.5 + np.asarray(colours)[mask[painted]] * 0.5).astype(np.uint8)
    assert overlay(image, mask, colours, alpha=0.5).tolist() == want.tolist()
    assert overlay(image, mask.astype(np.uint16), colours, alpha=0.5).tolist() == want.tolist()


@pytest.mark.parametrize("high, dtype", [(46, np.uint8), (300, np.uint16)])
def test_mask_png_round_trip(tmp_path, high, dtype):
    mask = np.arange(30, dtype=np.int64).reshape(5, 6) % (high + 1)
    mask[0, 0] = high
    path = tmp_path / "sub" / "mask.png"
    write_mask_png(path, mask)
    back = read_index_mask(path)
    assert back.dtype == dtype and np.array_equal(back, mask)
    assert [p.name for p in path.parent.iterdir()] == ["mask.png"]  # no temporary left
    if dtype == np.uint8:  # a palette PNG: viewers show the given class colours, the ignore index grey
        from PIL import Image

        write_mask_png(path, mask, [[1, 2, 3], [4, 5, 6]])
        image = Image.open(path)
        palette = np.array(image.getpalette()).reshape(-1, 3)
        assert image.mode == "P" and palette[:2].tolist() == [[1, 2, 3], [4, 5, 6]]
        assert palette[255].tolist() == list(IGNORE_COLOUR) and np.array_equal(read_index_mask(path), mask)
    mask[0, 0] = -1
    with pytest.raises(ValueError, match="do not fit"):
        write_mask_png(path, mask)


def test_image_png_round_trip(tmp_path):
    rgb = np.zeros((4, 5, 3), dtype=np.uint8)
    rgb[..., 0] = 200  # red: stored BGR, read back RGB
    write_image_png(tmp_path / "o.png", rgb)
    assert np.array_equal(cv2.imread(str(tmp_path / "o.png"))[..., ::-1], rgb)


def _centre(picture, colour):
    """Mean (x, y) of the pixels of exactly this RGB colour."""
    ys, xs = np.nonzero((picture == colour).all(axis=2))
    assert len(xs), f"colour {colour} not drawn"
    return xs.mean(), ys.mean()


def test_grid_png_layout(tmp_path):
    colours = class_colours(len(CLASSES))
    first = np.zeros((40, 60, 3), dtype=np.uint8)
    first[:] = (10, 200, 30)
    second = np.full((40, 60, 3), (200, 10, 230), dtype=np.uint8)
    samples = [(first, np.full((40, 60), 1), np.full((40, 60), 2)),
               (second, None, np.full((40, 60), 3))]
    path = tmp_path / "grid.png"
    grid_png(path, samples, colours, CLASSES)
    picture = cv2.imread(str(path))[..., ::-1]
    assert picture is not None and picture.shape[0] > 0 and picture.shape[1] > picture.shape[0] / 2
    # Row 1: image | shirt | pants from left to right; row 2 below it, its prediction in column 3.
    image_x, image_y = _centre(picture, (10, 200, 30))
    truth_x, truth_y = _centre(picture, colours[1])
    pred_x, pred_y = _centre(picture, colours[2])
    assert image_x < truth_x < pred_x and image_y == pytest.approx(truth_y, abs=2) == pred_y
    second_x, second_y = _centre(picture, (200, 10, 230))
    hat_x, hat_y = _centre(picture, colours[3])
    assert second_y > image_y and second_x == pytest.approx(image_x, abs=2) and hat_x == pytest.approx(pred_x, abs=2)
    assert [p.name for p in tmp_path.iterdir()] == ["grid.png"]
