"""Segmentation losses against values worked out by hand on 1x2-pixel images.

Image A: pixel 0 has logits (ln 3, 0) -> p = (0.75, 0.25), pixel 1 has (0, 0) -> p = (0.5, 0.5);
truth = (class 0, class 1). Per class (I = sum y p, P = sum p, T = sum y):
  class 0: I = 0.75, P = 1.25, T = 1 -> IoU = 0.75 / 1.5 = 0.5,  dice = 1.5 / 2.25 = 2/3
  class 1: I = 0.5,  P = 0.75, T = 1 -> IoU = 0.5 / 1.25 = 0.4, dice = 1.0 / 1.75 = 4/7
"""
import math

import pytest
import torch

from fashioncli.plugins import get

LOGITS = torch.tensor([[[[math.log(3.0), 0.0]], [[0.0, 0.0]]]])  # (N=1, C=2, H=1, W=2)
TRUTH = torch.tensor([[[0, 1]]])                                 # (N=1, H=1, W=2)
CE = (-math.log(0.75) - math.log(0.5)) / 2


def loss(name, **args):
    return get("losses").create(name, **args)


def test_miou_by_hand():
    assert loss("miou", smooth=0.0)(LOGITS, TRUTH).item() == pytest.approx(1 - (0.5 + 0.4) / 2)


def test_class_weighted_miou_is_a_weighted_mean_of_class_ious():
    weighted = loss("miou", smooth=0.0, weight=[1.0, 3.0])(LOGITS, TRUTH).item()
    assert weighted == pytest.approx(1 - (1 * 0.5 + 3 * 0.4) / 4)


def test_dice_by_hand_with_and_without_smoothing():
    assert loss("dice", smooth=0.0)(LOGITS, TRUTH).item() == pytest.approx(1 - (2 / 3 + 4 / 7) / 2)
    s = 0.01  # the report's default smoothing enters numerator and denominator
    want = 1 - ((1.5 + s) / (2.25 + s) + (1.0 + s) / (1.75 + s)) / 2
    assert loss("dice")(LOGITS, TRUTH).item() == pytest.approx(want)


def test_dice_ce_adds_cross_entropy():
    got = loss("dice_ce", smooth=0.0)(LOGITS, TRUTH).item()
    assert got == pytest.approx(1 - (2 / 3 + 4 / 7) / 2 + CE)
    assert loss("dice_ce", smooth=0.0, dice_weight=0.0, ce_weight=2.0)(LOGITS, TRUTH).item() == pytest.approx(2 * CE)


def test_cross_entropy_and_focal_work_per_pixel():
    assert loss("cross_entropy")(LOGITS, TRUTH).item() == pytest.approx(CE)
    # alpha 0.25, gamma 2: mean over pixels of 0.25 (1 - p_t)^2 (-ln p_t)
    want = (0.25 * 0.25 ** 2 * -math.log(0.75) + 0.25 * 0.5 ** 2 * -math.log(0.5)) / 2
    assert loss("focal", alpha=0.25, gamma=2.0)(LOGITS, TRUTH).item() == pytest.approx(want)


def test_ignored_pixels_count_nowhere():
    truth = torch.tensor([[[0, 255]]])  # pixel 1 unlabelled
    # class 0: I = 0.75, P = 0.75, T = 1 -> IoU 0.75; class 1: I = 0, P = 0.25, T = 0 -> IoU 0
    assert loss("miou", smooth=0.0)(LOGITS, truth).item() == pytest.approx(1 - 0.75 / 2)
    assert loss("cross_entropy", ignore_index=255)(LOGITS, truth).item() == pytest.approx(-math.log(0.75))
    assert loss("focal", gamma=0.0, ignore_index=255)(LOGITS, truth).item() == pytest.approx(-math.log(0.75))
    assert loss("dice", smooth=0.0)(LOGITS, truth).item() == pytest.approx(1 - (1.5 / 1.75 + 0) / 2)


def test_region_losses_average_per_image_not_over_the_batch():
    # The report computes the overlap of each image, then averages: a batch of A and a perfect
    # image B is the mean of their two losses, not the loss of their pooled pixels.
    perfect = torch.tensor([[[[20.0, -20.0]], [[-20.0, 20.0]]]])
    logits, truth = torch.cat([LOGITS, perfect]), torch.cat([TRUTH, TRUTH])
    for name in ("miou", "dice"):
        fn = loss(name, smooth=0.0)
        assert fn(logits, truth).item() == pytest.approx((fn(LOGITS, TRUTH).item() + fn(perfect, TRUTH).item()) / 2)


def test_gradients_flow_and_half_precision_logits_are_safe():
    logits = LOGITS.clone().half().requires_grad_()
    for name in ("miou", "dice", "dice_ce"):
        value = loss(name)(logits, TRUTH)
        assert value.dtype == torch.float32 and torch.isfinite(value)
        value.backward()
        assert logits.grad is not None and torch.isfinite(logits.grad).all()
        logits.grad = None


def test_weight_count_must_match_the_classes():
    from fashioncli.errors import RecipeError

    with pytest.raises(RecipeError, match="weight"):
        loss("miou", weight=[1.0, 2.0, 3.0])(LOGITS, TRUTH)


@pytest.mark.parametrize("channels_last", [False, True])
def test_overlap_sums_equal_a_dense_one_hot_in_either_memory_layout(channels_last):
    """soft_overlap sums per class without a one-hot; it must match the textbook dense computation,
    on many classes and pixels, with ignored pixels, whatever the logits' memory layout."""
    from fashion_plugins.losses.segmentation import soft_overlap

    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 7, 5, 6, generator=gen)
    truth = torch.randint(0, 7, (3, 5, 6), generator=gen)
    truth[0, 0] = 255
    probs = logits.softmax(1)
    valid = (truth != 255).unsqueeze(1).float()
    onehot = torch.nn.functional.one_hot(truth.clamp(max=6), 7).movedim(-1, 1).float() * valid
    expected = ((probs * onehot).sum((2, 3)), (probs * valid).sum((2, 3)), onehot.sum((2, 3)))
    if channels_last:
        logits = logits.contiguous(memory_format=torch.channels_last)
    for got, want in zip(soft_overlap(logits, truth), expected):
        assert torch.allclose(got, want, atol=1e-5)
