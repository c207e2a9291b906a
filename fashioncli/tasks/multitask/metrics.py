"""Metrics of a multi-task model: one dict per head, computed only over the rows where that head's label is known.

Categorical heads get exactly what ``fashion eval`` reports (``classification_metrics``);
binary and multi-label heads get ranking metrics (AP, AUROC) and metrics at a decision threshold
per label, where a label is predicted when its sigmoid probability is ``> threshold`` (torchmetrics'
rule; prediction must use the same). Undefined values (no positives, 0/0) are None, as JSON has no NaN.
"""
import math
import warnings

import torch
from torchmetrics.functional.classification import (
    multilabel_accuracy,
    multilabel_auroc,
    multilabel_average_precision,
    multilabel_exact_match,
    multilabel_f1_score,
    multilabel_precision,
    multilabel_recall,
)

from ..classification.metrics import classification_metrics
from ...io import json_number
from .heads import present

DEFAULT_THRESHOLD = 0.5
DEFAULT_GRID = torch.linspace(0.05, 0.95, 19, dtype=torch.float64)


def _thresholds(threshold, num_labels, name="?"):
    """None | float | per-label sequence -> float64 (L,) thresholds."""
    if threshold is None:
        threshold = DEFAULT_THRESHOLD
    t = torch.as_tensor(threshold, dtype=torch.float64).flatten().cpu()
    if t.numel() == 1:
        return t.expand(num_labels).clone()
    if t.numel() != num_labels:
        raise ValueError(f"head '{name}': {t.numel()} thresholds given for {num_labels} labels")
    return t


def _blank(result):
    """The same keys with nothing measured: floats -> None, counts -> 0 (for a head with no present rows)."""
    if isinstance(result, dict):
        return {k: v if k in ("thresholds", "threshold") else _blank(v) for k, v in result.items()}
    if isinstance(result, list):
        return [_blank(v) for v in result]
    if isinstance(result, bool) or result is None:
        return result
    return 0 if isinstance(result, int) else None


def _mean(values):
    values = [v for v in values if v is not None]
    return round(sum(values) / len(values), 6) if values else None


def _sigmoid_metrics(head, logits, targets, thresholds):
    """Binary/multi-label metrics on present rows only. ``logits``/``targets`` (n, L), n >= 1."""
    labels, n = list(head.classes), len(targets)
    probs, target = logits.float().sigmoid(), targets.long()
    thr = thresholds.to(probs.device)
    preds = (probs.double() > thr).long()  # per-label thresholds: torchmetrics takes one scalar, so binarise here
    if len(labels) == 1:
        # torchmetrics' multilabel metrics refuse one label; a duplicated column leaves every
        # per-label value, micro average and per-row ratio unchanged.
        probs, target, preds = probs.repeat(1, 2), target.repeat(1, 2), preds.repeat(1, 2)
    L = probs.shape[1]
    positives = target.sum(0)
    with warnings.catch_warnings():  # "no positive samples": those labels are masked out below
        warnings.simplefilter("ignore", UserWarning)
        ap = multilabel_average_precision(probs, target, L, average="none")
        auroc = multilabel_auroc(probs, target, L, average="none")
    has_pos = positives > 0
    ap = torch.where(has_pos, ap, torch.nan)
    auroc = torch.where(has_pos & (positives < n), auroc, torch.nan)  # ROC needs positives and negatives
    per = {
        "precision": multilabel_precision(preds, target, L, average="none"),
        "recall": multilabel_recall(preds, target, L, average="none"),
        "f1": multilabel_f1_score(preds, target, L, average="none"),
    }
    # Macro P/R/F1 over labels with any positive or predicted positive (tp + fp + fn > 0): the
    # rule of torchmetrics' multiclass macro used for categorical heads; its multilabel macro
    # would count a label absent and never predicted as F1 = 0.
    active = (positives > 0) | (preds.sum(0) > 0)
    any_active = bool(active.any())
    result = {"support": n}
    # Balanced accuracy per label, (TPR + TNR) / 2, averaged over labels with positives and
    # negatives; the majority baseline answers each label's more common value.
    tp, tn = ((preds == 1) & (target == 1)).sum(0).double(), ((preds == 0) & (target == 0)).sum(0).double()
    both = (positives > 0) & (positives < n)
    balanced = (tp / positives.clamp(min=1) + tn / (n - positives).clamp(min=1)) / 2
    result["balanced_accuracy"] = json_number(balanced[both].mean()) if both.any() else None
    result["majority_baseline"] = json_number(torch.maximum(positives, n - positives).double().mean() / n)
    element_accuracy = json_number(multilabel_accuracy(preds, target, L, average="micro"))
    if head.type == "binary":
        result["accuracy"] = element_accuracy
    result.update(
        element_accuracy=element_accuracy,
        exact_match=json_number(multilabel_exact_match(preds, target, L)),
        map=json_number(ap[has_pos].mean()) if has_pos.any() else None,
        map_undefined=int((~has_pos[: len(labels)]).sum()),
        auroc_macro=json_number(auroc.nanmean()) if (~auroc.isnan()).any() else None,
        **{f"{m}_macro": json_number(v[active].mean()) if any_active else None for m, v in per.items()},
        f1_micro=json_number(multilabel_f1_score(preds, target, L, average="micro")) if any_active else None,
        thresholds=[round(float(t), 6) for t in thresholds],
    )
    per.update(ap=ap, auroc=auroc)
    result["per_label"] = {
        label: {
            "ap": json_number(ap[i]), "auroc": json_number(auroc[i]),
            **{m: json_number(per[m][i]) for m in ("precision", "recall", "f1")},
            "threshold": round(float(thresholds[i]), 6), "support": int(positives[i]),
        }
        for i, label in enumerate(labels)
    }
    return result


def head_metrics(head, logits, targets, threshold=None, topk=5):
    """Metrics of one head over the rows whose label is present (missing rows: target -1).

    categorical: ``classification_metrics`` + "support". binary/multilabel: "support",
    "element_accuracy", "exact_match", "map", "map_undefined", "auroc_macro", "precision_macro",
    "recall_macro", "f1_macro", "f1_micro", "thresholds", "per_label" ({label: ap, auroc,
    precision, recall, f1, threshold, support = positives}); a binary head adds "accuracy"
    (= element accuracy). ``threshold``: None (0.5), a float, or one per label.
    """
    logits = torch.as_tensor(logits)
    targets = torch.as_tensor(targets, device=logits.device)
    if head.sigmoid and logits.ndim == 1:  # a binary head given as (N,)
        logits, targets = logits.unsqueeze(1), targets.reshape(len(targets), -1)
    if logits.ndim != 2 or logits.shape[1] != head.outputs or len(logits) != len(targets):
        raise ValueError(
            f"head '{head.name}': logits {tuple(logits.shape)} and targets {tuple(targets.shape)} "
            f"do not fit {head.outputs} classes"
        )
    keep = present(head, targets)
    logits, targets = logits[keep], targets[keep]
    if head.sigmoid:
        thresholds = _thresholds(threshold, head.outputs, head.name)
        if not len(targets):  # same keys as a measured head, nothing measured
            dummy = torch.zeros(1, head.outputs)
            return {**_blank(_sigmoid_metrics(head, dummy, dummy, thresholds)), "map_undefined": head.outputs}
        return _sigmoid_metrics(head, logits, targets, thresholds)
    if not len(targets):
        dummy = classification_metrics(torch.zeros(1, head.outputs), torch.zeros(1, dtype=torch.long),
                                       head.classes, topk=topk)
        return {"support": 0, **_blank(dummy)}
    return {"support": len(targets), **classification_metrics(logits, targets, head.classes, topk=topk)}


def tune_thresholds(probs, targets, grid=None):
    """Per-label thresholds (list of L floats) maximising each label's F1 on ``probs``/``targets`` (N, L).

    Candidates are ``grid`` (default 0.05, 0.10, ..., 0.95), all scored at once: counts of scores
    ``> t`` come from a sorted copy of each column (``searchsorted``), so memory stays O(N*L).
    Missing rows (-1) are left out; labels without positives keep 0.5. Where several thresholds
    tie, the middle of the first run of best ones is taken (not its edge, which sits against a score).
    """
    probs = torch.as_tensor(probs).double()
    targets = torch.as_tensor(targets, device=probs.device)
    if probs.ndim == 1:
        probs, targets = probs.unsqueeze(1), targets.reshape(len(targets), -1)
    keep = (targets >= 0).all(1)
    probs, pos = probs[keep], targets[keep] == 1
    n, L = probs.shape
    grid = (DEFAULT_GRID if grid is None else torch.as_tensor(grid, dtype=torch.float64)).to(probs.device)
    if n == 0:
        return [DEFAULT_THRESHOLD] * L
    G = len(grid)
    cuts = grid.expand(L, G).contiguous()

    def above(scores):  # (L, G): how many of each label's scores are > each threshold
        return n - torch.searchsorted(scores.T.contiguous().sort(1).values, cuts, right=True)

    predicted = above(probs)
    tp = above(torch.where(pos, probs, -math.inf))  # negatives never pass a threshold
    positives = pos.sum(0)[:, None]
    f1 = 2 * tp / (predicted + positives).clamp(min=1)  # 2tp / (2tp + fp + fn)
    best = f1 == f1.max(1, keepdim=True).values
    first = best.int().argmax(1)
    # Length of the run of best thresholds that starts at ``first``.
    before = torch.arange(G, device=probs.device) < first[:, None]
    run = torch.cumprod((best | before).int(), 1).sum(1) - first
    chosen = grid[first + run // 2]
    chosen = torch.where(positives[:, 0] > 0, chosen, torch.tensor(DEFAULT_THRESHOLD, dtype=torch.float64))
    return [round(float(t), 6) for t in chosen]


def multitask_metrics(heads, logits, targets, thresholds=None, topk=5):
    """{"heads": {name: head_metrics}, "mean_accuracy" when any head is categorical or binary,
    "mean_balanced_accuracy", and "mean_ap" when any head is binary/multilabel}.

    "mean_accuracy": unweighted mean over categorical (top-1) and binary (element) heads;
    "mean_balanced_accuracy": over every head (a sigmoid head's: its labels' mean (TPR + TNR) / 2);
    "mean_ap": mean of the binary/multilabel heads' mAP. Heads with no present rows are left out
    of both means (None when nothing is left). ``thresholds``: {name: threshold(s)} for sigmoid heads.
    """
    thresholds = thresholds or {}
    out = {name: head_metrics(head, logits[name], targets[name], thresholds.get(name), topk=topk)
           for name, head in heads.items()}
    result = {"heads": out}
    scored = [name for name, head in heads.items() if head.type in ("categorical", "binary")]
    if scored:  # multi-label heads alone have no accuracy: no mean to print as nan every epoch
        result["mean_accuracy"] = _mean(out[name]["accuracy"] for name in scored)
    result["mean_balanced_accuracy"] = _mean(out[name].get("balanced_accuracy") for name in heads)
    sigmoid = [name for name, head in heads.items() if head.sigmoid]
    if sigmoid:
        result["mean_ap"] = _mean(out[name]["map"] for name in sigmoid)
    return result


def flat_metrics(result):
    """``multitask_metrics`` result -> {"<head>_accuracy", "<head>_f1_macro", "<head>_auroc_macro",
    "<head>_map", "mean_accuracy", "mean_ap": float} for metrics.csv and early stopping.

    Keys depend only on the heads, so the CSV's columns stay the same every epoch; a value
    undefined this epoch is NaN (never None, which means "not measured").
    """
    flat = {}
    for name, m in result["heads"].items():
        for key in ("accuracy", "balanced_accuracy", "f1_macro", "auroc_macro", "map"):
            if key in m:
                flat[f"{name}_{key}"] = m[key]
    for key in ("mean_accuracy", "mean_balanced_accuracy", "mean_ap"):
        if key in result:
            flat[key] = result[key]
    return {k: math.nan if v is None else float(v) for k, v in flat.items()}
