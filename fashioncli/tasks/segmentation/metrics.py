"""Segmentation metrics from a confusion matrix (rows = truth, columns = prediction).

Everything is derived from one (C, C) int64 matrix: batches accumulate by summing, and class
sets (47 -> 17 classes, foreground/background) are exact merges of its rows and columns, so one
pass over the data reports every set.

Undefined values are NaN, never 0: a class with no pixel in truth nor prediction has no IoU and
does not count in the mean. ``MulticlassJaccardIndex(average="macro")`` of torchmetrics leaves
such classes out of its mean too (weight 0), so ``mean_iou`` equals it; per class
(``average="none"``) torchmetrics reports 0 where ``iou`` reports NaN.

Per-class functions return float64 tensors; the single numbers are Python floats.
"""
import math

import torch

from ...io import json_number


def confusion(pred, target, num_classes, ignore_index=255):
    """(C, C) int64 counts of (truth, prediction) pixel pairs, on the inputs' device.

    pred, target: integer tensors (or arrays) of the same shape, any shape. Pixels whose target
    is ``ignore_index``, negative or >= ``num_classes`` are not counted. A prediction outside
    [0, num_classes) is an error (it would be counted in another cell).
    """
    pred, target = torch.as_tensor(pred), torch.as_tensor(target)
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} differs from target shape {tuple(target.shape)}")
    c = int(num_classes)
    pred, target = pred.reshape(-1).long(), target.reshape(-1).long()  # long first: uint8 * C overflows
    if pred.numel() and (pred.min() < 0 or pred.max() >= c):
        raise ValueError(f"predictions must lie in [0, {c}); found {int(pred.min())}..{int(pred.max())}")
    keep = (target >= 0) & (target < c) & (target != ignore_index)
    # Ignored pixels go to one extra bin that is dropped: cheaper than boolean indexing (a copy).
    cells = torch.where(keep, target * c + pred, torch.full_like(target, c * c))
    return torch.bincount(cells, minlength=c * c + 1)[:c * c].reshape(c, c)


def merge(conf, groups, num_groups=None):
    """Merge the classes of a confusion matrix: class i goes to group ``groups[i]`` -> (G, G).

    Exact: a pixel's truth and prediction both move to their groups, so summing the rows and the
    columns of each group gives the matrix a G-class evaluation would have counted.
    G = ``num_groups`` or max(groups) + 1.
    """
    conf = torch.as_tensor(conf)
    groups = torch.as_tensor(groups, dtype=torch.long, device=conf.device)
    if groups.shape != (conf.shape[0],):
        raise ValueError(f"{len(groups)} groups for a {conf.shape[0]}-class confusion matrix")
    g = int(num_groups) if num_groups is not None else int(groups.max()) + 1
    rows = torch.zeros(g, conf.shape[1], dtype=conf.dtype, device=conf.device).index_add_(0, groups, conf)
    return torch.zeros(g, g, dtype=conf.dtype, device=conf.device).index_add_(1, groups, rows)


def subset_mapping(classes, keep, rest=0):
    """Keep the classes named in ``keep``; every other class goes to ``classes[rest]`` (background).

    Returns (groups, names): ``groups[i]`` is the new index of class i (for ``merge``) and
    ``names`` the merged classes, in their original order; ``classes[rest]`` is always kept.
    """
    classes = list(classes)
    unknown = [k for k in keep if k not in classes]
    if unknown:
        raise ValueError(f"unknown classes {unknown}; the classes are {classes}")
    wanted = set(keep) | {classes[rest]}
    names = [c for c in classes if c in wanted]
    new = {c: names.index(c) for c in names}
    return [new.get(c, new[classes[rest]]) for c in classes], names


def foreground_mapping(classes, background=0):
    """Background vs everything else -> (groups, [background name, "foreground"])."""
    classes = list(classes)
    return [0 if i == background else 1 for i in range(len(classes))], [classes[background], "foreground"]


def _ratio(num, den):
    num, den = num.double(), den.double()
    return torch.where(den > 0, num / den.clamp(min=1), torch.full_like(num, math.nan))


def iou(conf):
    """Per-class IoU, TP / (TP + FP + FN), float64; NaN for a class absent from truth and prediction."""
    conf = torch.as_tensor(conf)
    tp = conf.diagonal()
    return _ratio(tp, conf.sum(0) + conf.sum(1) - tp)


def mean_iou(conf):
    """Mean IoU over the classes present in truth or prediction (NaN-mean of ``iou``); classes with
    no pixel in either do not count, as in torchmetrics' macro JaccardIndex. NaN when none is present."""
    return _nanmean(iou(conf))


def pixel_accuracy(conf):
    """Share of counted pixels predicted correctly (NaN when none was counted)."""
    conf = torch.as_tensor(conf)
    return _ratio(conf.trace(), conf.sum()).item()


def precision(conf):
    """Per-class pixel precision TP / predicted pixels; NaN for a class never predicted."""
    conf = torch.as_tensor(conf)
    return _ratio(conf.diagonal(), conf.sum(0))


def recall(conf):
    """Per-class pixel recall TP / truth pixels; NaN for a class absent from truth."""
    conf = torch.as_tensor(conf)
    return _ratio(conf.diagonal(), conf.sum(1))


def fw_iou(conf):
    """Frequency-weighted IoU: per-class IoU weighted by the class's share of truth pixels."""
    conf = torch.as_tensor(conf)
    truth = conf.sum(1).double()
    if truth.sum() == 0:
        return math.nan
    # A class with truth pixels always has a defined IoU; the others weigh 0 (their NaN must not spread).
    return float((truth / truth.sum() * iou(conf).nan_to_num(0.0)).sum())


def _nanmean(values):
    values = values[~values.isnan()]
    return float(values.mean()) if values.numel() else math.nan


def segmentation_report(conf, classes, class_sets=None, background=0):
    """A JSON-serialisable summary of a confusion matrix over ``classes`` (index = class id).

    class_sets: {name: [class names kept]}; every other class is merged into the background
    before the set's mIoU is computed (report 001's 17 evaluated classes of 47).
    Undefined values (a class absent from truth and prediction) are None.
    """
    conf = torch.as_tensor(conf).cpu()
    classes = list(classes)
    if conf.shape != (len(classes), len(classes)):
        raise ValueError(f"a {tuple(conf.shape)} confusion matrix for {len(classes)} classes")
    per_iou, per_precision, per_recall = iou(conf), precision(conf), recall(conf)
    fg_groups, _ = foreground_mapping(classes, background)
    fg_bg = iou(merge(conf, fg_groups, 2))
    report = {
        "pixel_accuracy": json_number(pixel_accuracy(conf)),
        "miou": json_number(mean_iou(conf)),
        "fw_iou": json_number(fw_iou(conf)),
        "foreground_iou": json_number(fg_bg[1]),
        "background_iou": json_number(fg_bg[0]),
        "fg_bg_miou": json_number(_nanmean(fg_bg)),
        "per_class": [
            {"class": name, "iou": json_number(per_iou[i]), "precision": json_number(per_precision[i]),
             "recall": json_number(per_recall[i]), "pixels": int(conf[i].sum()), "predicted": int(conf[:, i].sum())}
            for i, name in enumerate(classes)],
        "class_sets": {},
        "miou_averages": {"miou": averaged(conf, classes), "fg_bg_miou": averaged(merge(conf, fg_groups, 2),
                                                                                  ["background", "foreground"])},
    }
    for set_name, keep in (class_sets or {}).items():
        groups, names = subset_mapping(classes, keep, background)
        merged_conf = merge(conf, groups, len(names))
        merged = iou(merged_conf)
        report["class_sets"][set_name] = {
            "classes": names, "miou": json_number(_nanmean(merged)),
            "per_class": {name: json_number(merged[i]) for i, name in enumerate(names)}}
        report["miou_averages"][f"miou_{set_name}"] = averaged(merged_conf, names)
    return report


def averaged(conf, classes):
    """What an mIoU averages: {"classes": how many of "of" (those with a pixel in truth or
    prediction), "no_truth_pixels", "no_predicted_pixels": class names}. A class in neither list
    counts; one in both is left out of the mean; one only without truth pixels counts as IoU 0."""
    conf = torch.as_tensor(conf)
    truth, predicted = conf.sum(1), conf.sum(0)
    return {"classes": int(((truth > 0) | (predicted > 0)).sum()), "of": len(classes),
            "no_truth_pixels": [c for c, n in zip(classes, truth.tolist()) if n == 0],
            "no_predicted_pixels": [c for c, n in zip(classes, predicted.tolist()) if n == 0]}

