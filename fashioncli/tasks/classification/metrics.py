"""Single-label metrics from the registered metric factories (torchmetrics): what validation and
eval report, and what a multi-task model's categorical heads report too."""
import warnings

import torch

from ...errors import PluginError
from ...io import json_number


def _local():
    return False


def classification_metrics(logits, targets, classes, topk=5, extra=()):
    """Single-label metrics from the registered metric factories (torchmetrics).

    -> {"accuracy", "top{k}_accuracy" (k = min(topk, C)), "precision_macro", "recall_macro",
    "f1_macro", "balanced_accuracy" (mean recall over classes present), "majority_baseline" (the
    accuracy of always answering the most common class), "auroc_macro": floats (None when undefined), "per_class": {class: {precision,
    recall, f1, auroc, support}}, "confusion_matrix": C x C list (rows true, columns predicted)}.

    Macro AUROC (one-vs-rest) averages only classes with both positives and negatives, since
    ROC is undefined otherwise. ``extra`` names more registered metrics (or ``{"name", "args"}``):
    a scalar result is added under its name, a per-class vector into ``per_class``.
    """
    from ...plugins import get

    registry, n = get("metrics"), len(classes)
    probs, targets = logits.float().softmax(1), torch.as_tensor(targets).long()

    def compute(name, **args):
        metric = registry.create(name, n, **args)
        # The outputs are already whole here (distributed training gathers them on rank 0): a
        # torchmetrics metric would otherwise wait for the other processes to sync.
        metric.distributed_available_fn = _local
        metric.update(probs, targets)
        return metric.compute()

    k = min(topk, n)
    matrix = compute("confusion_matrix")
    support = matrix.sum(1)
    result = {"accuracy": json_number(compute("accuracy")), f"top{k}_accuracy": json_number(compute("top_k_accuracy", k=k))}
    for name in ("precision", "recall", "f1"):
        result[f"{name}_macro"] = json_number(compute(name))
    result.update(balanced_accuracy(matrix))
    per_class = {name: compute(name, average="none") for name in ("precision", "recall", "f1")}
    with warnings.catch_warnings():  # "no positive samples" for absent classes: handled below
        warnings.simplefilter("ignore", UserWarning)
        auroc = compute("auroc", average="none")
    defined = (support > 0) & (support < len(targets))
    result["auroc_macro"] = json_number(auroc[defined].mean()) if defined.any() else None
    per_class["auroc"] = torch.where(defined, auroc, torch.nan)
    for spec in extra:
        name, args = (spec, {}) if isinstance(spec, str) else (spec["name"], spec.get("args") or {})
        entry = registry.get(name)
        entry.check_args(args, injected=("num_classes",))
        try:
            value = compute(name, **args)
        except Exception as exc:  # a third-party metric must say whose it is
            raise PluginError(
                f"metric '{name}' of plugin '{entry.plugin}' failed on classification outputs: {exc}"
            ) from exc
        if value.numel() == 1:
            result[name] = json_number(value)
        elif value.shape == (n,):
            per_class[name] = value
        else:
            result[name] = value.tolist()
    result["per_class"] = {
        c: {**{m: json_number(v[i]) for m, v in per_class.items()}, "support": int(support[i])}
        for i, c in enumerate(classes)
    }
    result["confusion_matrix"] = matrix.tolist()
    return result


def balanced_accuracy(matrix):
    """{"balanced_accuracy": mean recall over the classes present in truth, "majority_baseline":
    the accuracy of always predicting the most common true class} of a confusion matrix (rows true)."""
    matrix = torch.as_tensor(matrix, dtype=torch.float64)
    support = matrix.sum(1)
    present = support > 0
    if not present.any():
        return {"balanced_accuracy": None, "majority_baseline": None}
    recall = matrix.diagonal()[present] / support[present]
    return {"balanced_accuracy": json_number(recall.mean()), "majority_baseline": json_number(support.max() / support.sum())}


def extra_metric_names():
    """Metrics registered by third-party plugins: evaluated with their default arguments."""
    from ...plugins import BUILTIN_PLUGINS, get

    return [e.name for e in get("metrics") if e.plugin not in BUILTIN_PLUGINS]
