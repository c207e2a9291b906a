"""Region losses for semantic segmentation (report 001): soft dice, dice + CE, soft mIoU.

Pixel losses need nothing new: ``cross_entropy`` and ``focal`` take (N, C, H, W) logits with
(N, H, W) targets. Each loss here is computed as the report's appendix does: per image and per
class from softmax probabilities p and one-hot targets y, then averaged over images and classes::

    dice = 1 - mean[(2 sum(y p) + smooth) / (sum(y) + sum(p) + smooth)]
    miou = 1 - mean[(sum(y p) + smooth) / (sum(y + p - y p) + smooth)]

(the report writes the mIoU loss as -mean[...]; the constant 1 changes no gradient and keeps the
loss positive). Pixels whose target is ``ignore_index`` count in neither sum.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from fashioncli.api import hookimpl
from fashion_plugins.losses.classification import check_width, per_class_tensor


def soft_overlap(logits, targets, ignore_index=255):
    """-> (intersection, predicted, truth) sums per image and class, each (N, C) float32."""
    num_classes = logits.shape[1]
    probs = logits.float().softmax(dim=1)  # float32 under AMP: sums of many small numbers
    valid = (targets != ignore_index) & (targets >= 0) & (targets < num_classes)
    onehot = F.one_hot(torch.where(valid, targets, 0).long(), num_classes).movedim(-1, 1).float()
    keep = valid.unsqueeze(1).float()
    probs, onehot = probs * keep, onehot * keep
    dims = tuple(range(2, logits.dim()))
    return (probs * onehot).sum(dims), probs.sum(dims), onehot.sum(dims)


class DiceLoss(nn.Module):
    """Soft dice over every class, per image (report 001, appendix A2: smooth 0.01)."""

    def __init__(self, smooth=0.01, ignore_index=255):
        super().__init__()
        self.smooth, self.ignore_index = float(smooth), ignore_index

    def forward(self, logits, targets):
        inter, pred, truth = soft_overlap(logits, targets, self.ignore_index)
        return 1.0 - ((2 * inter + self.smooth) / (truth + pred + self.smooth)).mean()


class DiceCELoss(nn.Module):
    """dice_weight * soft dice + ce_weight * cross-entropy (report 001's 'Dice+CE')."""

    def __init__(self, smooth=0.01, dice_weight=1.0, ce_weight=1.0, ignore_index=255):
        super().__init__()
        self.dice = DiceLoss(smooth, ignore_index)
        self.dice_weight, self.ce_weight, self.ignore_index = float(dice_weight), float(ce_weight), ignore_index

    def forward(self, logits, targets):
        ce = F.cross_entropy(logits.float(), targets.long(), ignore_index=self.ignore_index)
        return self.dice_weight * self.dice(logits, targets) + self.ce_weight * ce


class MIoULoss(nn.Module):
    """Soft (Jaccard) mIoU, optionally a weighted mean over classes.

    ``weight`` (one number per class) weights each class's soft IoU in the mean over classes. The
    report's appendix multiplies both the intersection and the union by the weight, which cancels
    out; a weighted mean is what "class-weighted mIoU" has to mean for the weights to act.
    """

    def __init__(self, smooth=1e-8, weight=None, ignore_index=255):
        super().__init__()
        self.smooth, self.ignore_index = float(smooth), ignore_index
        self.register_buffer("weight", per_class_tensor(weight, "weight", scalar=False), persistent=False)

    def forward(self, logits, targets):
        inter, pred, truth = soft_overlap(logits, targets, self.ignore_index)
        iou = (inter + self.smooth) / (truth + pred - inter + self.smooth)  # (N, C)
        if self.weight is None:
            return 1.0 - iou.mean()
        check_width(self.weight, logits.shape[1], "weight")
        return 1.0 - (iou * self.weight).sum(dim=1).mean() / self.weight.sum()


def dice(smooth=0.01, ignore_index=255):
    """Soft dice loss over all classes, per image, as report 001."""
    return DiceLoss(smooth, ignore_index)


def dice_ce(smooth=0.01, dice_weight=1.0, ce_weight=1.0, ignore_index=255):
    """Soft dice + cross-entropy (report 001's Dice+CE)."""
    return DiceCELoss(smooth, dice_weight, ce_weight, ignore_index)


def miou(smooth=1e-8, weight=None, ignore_index=255):
    """Soft mIoU (Jaccard) loss, report 001's best; weight: one per class for class-weighted mIoU."""
    return MIoULoss(smooth, weight, ignore_index)


@hookimpl
def register_losses(register):
    register("dice", dice)
    register("dice_ce", dice_ce)
    register("miou", miou)
