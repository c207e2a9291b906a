"""`fashion eval` for a multi-task checkpoint: metrics per head, reports per head, one predictions table.

    <out>/summary.json              every head's scalar metrics, mean accuracy, mean AP, thresholds
    <out>/heads.csv                 one row per head: type, support, accuracy, balanced accuracy, majority
                                    baseline, macro F1, AUROC, mAP
    <out>/<head>/per_class.csv      categorical: P/R/F1/AUROC/support; sigmoid: AP/AUROC/P/R/F1/threshold
    <out>/<head>/confusion_matrix.csv|.png   categorical heads
    <out>/predictions.csv           path, then <head>_true, <head>_pred, <head>_score per head
"""
import numpy as np

from ...data.loaders import CachedImages, make_loader
from ...errors import DataError
from ...inference import run_model
from .metrics import multitask_metrics
from .heads import LABEL_SEP, decode, encode_split, heads_from_json
from ...io import write_csv

SCALARS = ("support", "accuracy", "balanced_accuracy", "majority_baseline", "f1_macro", "auroc_macro", "map")


def evaluate_heads(model, meta, root, split, out, options):
    """Score ``model`` on ``split`` of the prepared multi-task dataset ``root`` -> summary dict."""
    from ...data.dataset import PreparedDataset

    heads, pre = heads_from_json(meta["heads"]), meta["preprocessing"]
    thresholds = meta.get("thresholds") or {}
    data = PreparedDataset.open(root).require("multitask")
    known = data.meta["heads"]
    missing = [h for h in heads if h not in known]
    if missing:
        raise DataError(f"'{root}' has no head {', '.join(missing)} (its heads: {', '.join(known)})")
    targets = encode_split(data, split, heads)  # the model's classes, not the data's: encoded by name
    paths = data.paths(split)
    if not paths:
        raise DataError(f"split '{split}' of '{root}' is empty")
    dataset = CachedImages(data.cache(split, pre["image_size"]), targets, image_size=pre["image_size"])
    loader = make_loader(dataset, options.batch_size, num_workers=options.num_workers)
    logits, targets = run_model(model, loader, options.device, pre["mean"], pre["std"], tta=options.tta,
                                progress=options.progress)

    result = multitask_metrics(heads, logits, targets, thresholds=thresholds, topk=options.topk)
    _write_head_reports(out, heads, result)
    probs = {n: (logits[n].sigmoid() if h.sigmoid else logits[n].softmax(1)).numpy() for n, h in heads.items()}
    _write_predictions(out / "predictions.csv", heads, paths, probs, {n: t.numpy() for n, t in targets.items()},
                       thresholds)
    if options.report is not None:
        report_sections(options.report, heads, result, paths, probs, targets)
    return {
        "data": str(root), "split": split, "num_samples": len(paths), "task": "multitask",
        "metrics": {
            **({"mean_accuracy": result["mean_accuracy"]} if "mean_accuracy" in result else {}),
            "mean_balanced_accuracy": result["mean_balanced_accuracy"],
            **({"mean_ap": result["mean_ap"]} if "mean_ap" in result else {}),
            "heads": {n: {k: v for k, v in r.items() if not isinstance(v, (dict, list))} for n, r in result["heads"].items()},
        },
        "thresholds": thresholds, "tta": options.tta, "out": str(out),
    }


def _write_head_reports(out, heads, result):
    from ...plots import plot_confusion_matrix

    rows = []
    for name, head in heads.items():
        r = result["heads"][name]
        rows.append([name, head.type, *(r.get(k) for k in SCALARS)])
        per = r.get("per_class") or r.get("per_label") or {}
        if per:
            columns = list(next(iter(per.values())))
            write_csv(out / name / "per_class.csv", ["class", *columns], [[c, *v.values()] for c, v in per.items()])
        if r.get("confusion_matrix"):
            matrix = r["confusion_matrix"]
            write_csv(out / name / "confusion_matrix.csv", ["true\\predicted", *head.classes],
                       [[c, *row] for c, row in zip(head.classes, matrix)])
            if len(head.classes) <= 60:  # past that a picture is unreadable; the CSV has it all
                plot_confusion_matrix(matrix, head.classes, out / name / "confusion_matrix.png")
    write_csv(out / "heads.csv", ["head", "type", *SCALARS], rows)


def report_sections(report, heads, result, paths, probs, targets):
    """report.html: the heads side by side, then a section per head: its figures, and for a
    categorical head its classes, confusion matrix (grouped by the parent head's classes) and
    gallery; for a multi-label or binary head its labels' AP as bars and their table."""
    import torch

    from ...plots import bar_chart
    from ..classification.evaluate import single_label_blocks

    rows = [[name, head.type, *(result["heads"][name].get(k) for k in SCALARS)] for name, head in heads.items()]
    report.section("Heads").table(["head", "type", *SCALARS], rows, bars=("accuracy", "f1_macro", "auroc_macro", "map"))
    for name, head in heads.items():
        r = result["heads"][name]
        section = report.section(f"Head: {name}", f"{head.type}, {len(head.classes)} classes"
                                 + (f", child of head '{head.parent}'" if head.parent else ""))
        section.metrics({k: v for k, v in r.items() if not isinstance(v, (dict, list))})
        if not r.get("support"):
            section.text("no test image has a label for this head")
        elif head.sigmoid:
            per = r.get("per_label") or {}
            labels = list(per)
            chart = bar_chart(labels, [per[c]["ap"] for c in labels], f"{name}: average precision per label",
                              "AP", lines={"mAP": r.get("map")})
            section.figure(chart, caption="average precision per label (n/a: no positive test image)")
            columns = list(next(iter(per.values()))) if per else []
            section.table(["label", *columns], [[c, *per[c].values()] for c in labels], title="per label",
                          bars=("ap", "auroc", "precision", "recall", "f1"))
        else:
            present = targets[name] >= 0  # rows with this head's label
            single_label_blocks([section] * 3, r, head.classes, [p for p, k in zip(paths, present.tolist()) if k],
                                torch.as_tensor(probs[name])[present], targets[name][present], head.parent_of)


def label_text(head, decoded, row):
    """The predicted label of one row as text: a class, or the labels on joined by '|'."""
    if head.sigmoid:
        return LABEL_SEP.join(c for c, on in zip(head.classes, decoded["mask"][row]) if on)
    return head.classes[decoded["index"][row]]


def _true_text(head, target):
    if head.sigmoid:
        if (target < 0).all():
            return ""
        return LABEL_SEP.join(c for c, on in zip(head.classes, target) if on > 0.5)
    return "" if target < 0 else head.classes[int(target)]


def _write_predictions(path, heads, paths, probs, targets, thresholds):
    decoded = decode(heads, probs, thresholds, hierarchy=False)  # as the metrics count them
    header = ["path"]
    for name, head in heads.items():
        header += [f"{name}_true", f"{name}_pred", f"{name}_score"]
    rows = []
    for i, p in enumerate(paths):
        row = [p]
        for name, head in heads.items():
            d = decoded[name]
            score = d["score"][i] if "score" in d else float(np.max(probs[name][i]))
            row += [_true_text(head, targets[name][i]), label_text(head, d, i), f"{score:.6f}"]
        rows.append(row)
    write_csv(path, header, rows)
