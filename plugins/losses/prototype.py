"""Losses of convolutional prototype learning (report 000, after Yang et al. 2018): the
distance-based cross-entropy (DCE) plus lambda times the prototype loss (PL)."""
import torch
import torch.nn as nn

from fashioncli.api import hookimpl
from fashion_plugins.losses.classification import check_width, per_class_tensor
from fashion_plugins.models.prototype import class_log_probs


class DCEPrototypeLoss(nn.Module):
    """loss(outputs, targets) = DCE + lam * PL, averaged over the labelled images of the batch.

    DCE = -log p(y|x), p(c|x) = sum_k exp(-gamma d_ck) / sum_{c',k} exp(-gamma d_c'k).
    PL  = ||f(x) - m_yj||^2 with m_yj the nearest prototype of the true class (no 1/2, as in the report).
    ``outputs`` is a prototype model's dict; only its "distances" (N, C, K) are used.
    ``weight`` (one number per class, e.g. from ``class_weight: balanced``) makes both terms a
    weighted mean over the images by their true class, as cross-entropy's ``weight`` does.
    """

    def __init__(self, gamma=1.0, lam=0.5, ignore_index=-100, weight=None):
        super().__init__()
        self.gamma, self.lam, self.ignore_index = float(gamma), float(lam), ignore_index
        self.register_buffer("weight", per_class_tensor(weight, "weight", scalar=False), persistent=False)
        self.components = {}  # the last batch's detached {"dce", "pl"}, for logging

    def forward(self, outputs, targets):
        if not isinstance(outputs, dict) or "distances" not in outputs:
            raise TypeError("the dce/dce_pl losses need a prototype model's output dict with 'distances' "
                            f"(e.g. model unet_prototype or timm_prototype), got {type(outputs).__name__}")
        distances = outputs["distances"]
        keep = targets != self.ignore_index
        distances, targets = distances[keep], targets[keep]
        if targets.numel() == 0:
            # No labelled image: a zero that still reaches the graph (cross_entropy would give NaN).
            return outputs["distances"].sum() * 0.0
        rows = torch.arange(targets.numel(), device=targets.device)
        nll = -class_log_probs(distances, self.gamma)[rows, targets]
        nearest = distances[rows, targets].min(dim=1).values
        if self.weight is None:
            dce, pl = nll.mean(), nearest.mean()
        else:
            check_width(self.weight, distances.shape[1], "weight")
            w = self.weight.expand(distances.shape[1])[targets]  # one value given: it applies to every class
            dce, pl = (w * nll).sum() / w.sum(), (w * nearest).sum() / w.sum()
        self.components = {"dce": dce.detach(), "pl": pl.detach()}
        return dce + self.lam * pl


def dce_pl(gamma=1.0, lam=0.5, ignore_index=-100, weight=None):
    """Distance-based cross-entropy + lam * prototype loss, for prototype models; optional per-class weights."""
    return DCEPrototypeLoss(gamma=gamma, lam=lam, ignore_index=ignore_index, weight=weight)


def dce(gamma=1.0, ignore_index=-100, weight=None):
    """Distance-based cross-entropy alone (dce_pl with lam=0), for prototype models; optional per-class weights."""
    return DCEPrototypeLoss(gamma=gamma, lam=0.0, ignore_index=ignore_index, weight=weight)


@hookimpl
def register_losses(register):
    register("dce_pl", dce_pl)
    register("dce", dce)
