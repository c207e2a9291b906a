"""Classification losses: single-label (cross-entropy, focal) and binary/multi-label (BCE, asymmetric)."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from fashioncli.api import RecipeError, hookimpl


def per_class_tensor(value, name, scalar=True):
    """None, a number or a list of numbers -> None or a float tensor (a buffer that follows .to(device))."""
    if value is None:
        return None
    is_list = isinstance(value, (list, tuple))
    values = value if is_list else [value]
    # A single class weight would only scale the loss: refused where weights are per class.
    if not (is_list or scalar) or not values or any(isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 for v in values):
        what = "a non-negative number or a list of them" if scalar else "a list of non-negative numbers, one per class"
        raise RecipeError(f"loss argument '{name}': expected {what}, got {value!r}")
    return torch.tensor(values, dtype=torch.float32)


def check_width(weights, width, name):
    """A per-class argument has one value or one per output."""
    if weights is not None and weights.numel() not in (1, width):
        raise RecipeError(f"loss argument '{name}': {weights.numel()} values for {width} outputs; give one per output or a single number")


def cross_entropy(label_smoothing=0.0, ignore_index=-100, weight=None):
    """Cross-entropy with optional label smoothing and per-class weights."""
    return nn.CrossEntropyLoss(weight=per_class_tensor(weight, "weight", scalar=False), label_smoothing=label_smoothing, ignore_index=ignore_index)


class FocalLoss(nn.Module):
    """-alpha_t (1 - p_t)^gamma log p_t, averaged over the rows whose target is not ignore_index.

    Logits (N, C) with targets (N,), or per pixel: (N, C, H, W) with (N, H, W) (segmentation).
    """

    def __init__(self, gamma=2.0, alpha=None, ignore_index=-100):
        super().__init__()
        self.gamma, self.ignore_index = float(gamma), ignore_index
        self.register_buffer("alpha", per_class_tensor(alpha, "alpha"), persistent=False)

    def forward(self, logits, targets):
        if logits.dim() > 2:  # one row per pixel: (N, C, ...) -> (N * ..., C)
            logits, targets = logits.movedim(1, -1).reshape(-1, logits.shape[1]), targets.reshape(-1)
        keep = targets != self.ignore_index
        if not keep.any():
            return logits.sum() * 0.0  # a batch without labels for this head: no signal, still a graph
        # float32 under AMP: log-probabilities of half precision underflow for confident rows.
        logits, targets = logits.float()[keep], targets[keep]
        log_pt = F.log_softmax(logits, dim=1).gather(1, targets.unsqueeze(1)).squeeze(1)
        loss = -((1.0 - log_pt.exp()).clamp(min=0.0) ** self.gamma) * log_pt
        if self.alpha is not None:
            check_width(self.alpha, logits.shape[1], "alpha")
            loss = loss * (self.alpha if self.alpha.numel() == 1 else self.alpha[targets])
        return loss.mean()


def focal(gamma=2.0, alpha=None, ignore_index=-100):
    """Multi-class focal loss (Lin et al. 2017); alpha is one weight or one per class."""
    return FocalLoss(gamma, alpha, ignore_index)


def mean_of_labelled(per_entry, logits, targets):
    """``per_entry(logits, targets)`` (float32, as under AMP) averaged over the entries that have a
    label: a target below 0 is a missing label. No label at all: 0, still part of the graph."""
    keep = targets >= 0
    if not keep.any():
        return logits.sum() * 0.0
    return per_entry(logits.float(), targets.float())[keep].mean()


class BCELoss(nn.Module):
    """Binary cross-entropy with logits on 0/1 float targets; entries below 0 (missing labels) are left out."""

    def __init__(self, pos_weight=None, label_smoothing=0.0):
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise RecipeError(f"loss argument 'label_smoothing': expected a number in [0, 1), got {label_smoothing!r}")
        self.label_smoothing = float(label_smoothing)
        self.register_buffer("pos_weight", per_class_tensor(pos_weight, "pos_weight"), persistent=False)

    def forward(self, logits, targets):
        return mean_of_labelled(self.per_entry, logits, targets)

    def per_entry(self, logits, targets):
        check_width(self.pos_weight, logits.shape[-1], "pos_weight")
        targets = targets * (1.0 - self.label_smoothing) + 0.5 * self.label_smoothing
        return F.binary_cross_entropy_with_logits(logits, targets, pos_weight=self.pos_weight, reduction="none")


def bce(pos_weight=None, label_smoothing=0.0):
    """Binary cross-entropy with logits for binary and multi-label heads; pos_weight is one or one per label."""
    return BCELoss(pos_weight, label_smoothing)


class AsymmetricLoss(nn.Module):
    """Asymmetric loss for multi-label heads (Ridnik et al., ICCV 2021), per entry:
    positives -(1 - p)^gamma_pos log p; negatives -p_m^gamma_neg log(1 - p_m), p_m = max(p - clip, 0).

    With most tags rare, nearly every entry is an easy negative; their loss is focused away
    (gamma_neg) and the easiest discarded outright (clip). timm has the same loss, but summed over
    every entry: this one averages over the labelled ones, so missing labels (< 0) are left out.
    """

    def __init__(self, gamma_neg=4.0, gamma_pos=0.0, clip=0.05):
        super().__init__()
        if not 0.0 <= clip < 1.0:
            raise RecipeError(f"loss argument 'clip': expected a number in [0, 1), got {clip!r}")
        self.gamma_neg, self.gamma_pos, self.clip = float(gamma_neg), float(gamma_pos), float(clip)

    def forward(self, logits, targets):
        return mean_of_labelled(self.per_entry, logits, targets)

    def per_entry(self, logits, positive):
        p = torch.sigmoid(logits)
        p_neg = (p - self.clip).clamp(min=0.0) if self.clip else p
        # log-sigmoid from the logits, exact where p saturates; the clipped negative uses p_neg.
        loss_pos = -((1.0 - p) ** self.gamma_pos) * F.logsigmoid(logits)
        loss_neg = -(p_neg ** self.gamma_neg) * torch.log((1.0 - p_neg).clamp(min=1e-8))
        return positive * loss_pos + (1.0 - positive) * loss_neg


def asymmetric(gamma_neg=4.0, gamma_pos=0.0, clip=0.05):
    """Asymmetric loss (ASL) for multi-label heads: easy negatives focused away and clipped."""
    return AsymmetricLoss(gamma_neg, gamma_pos, clip)


@hookimpl
def register_losses(register):
    register("cross_entropy", cross_entropy)
    register("focal", focal)
    register("bce", bce)
    register("asymmetric", asymmetric)
