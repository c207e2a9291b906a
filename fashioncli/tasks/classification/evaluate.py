"""`fashion eval` for a classification (or prototype) model: a prepared split or a folder of class
folders; summary.json, per_class.csv, the confusion matrix (CSV and PNG) and predictions.csv.

Images of classes the model was not trained on (held out by the recipe's data.classes, or any for
a model that can reject) are scored as unseen: the task adds open-set figures (``open_set_reports``).
"""
import numpy as np
import torch

from ...data.loaders import CachedImages, FileImages, make_loader
from ...errors import DataError
from ...inference import iter_outputs
from ...io import json_number, write_csv
from ..base import concat, logits_of, rows_of
from .metrics import classification_metrics, extra_metric_names

REPORTS = ("summary.json", "per_class.csv", "confusion_matrix.csv", "confusion_matrix.png", "predictions.csv")


def evaluate_classification(task, model, meta, root, split, out, options):
    """Score ``model`` (of ``task``: classification or one built on it) -> the summary."""
    classes, pre = meta["classes"], meta["preprocessing"]
    make = _prepared_split if (root / "dataset.json").is_file() else _class_folders
    open_set = task.meets_unseen(meta)
    dataset, paths, unseen = make(root, split, classes, pre["image_size"], open_set)
    if not paths:
        raise DataError(f"split '{split}' of '{root}' is empty")
    loader = make_loader(dataset, options.batch_size, num_workers=options.num_workers)

    outputs, targets, unreadable = [], [], []
    for batch_outputs, batch in iter_outputs(model, loader, options.device, pre["mean"], pre["std"], tta=options.tta,
                                              progress=options.progress):
        outputs.append(batch_outputs)
        targets.append(batch[1])
        if len(batch) == 4:  # FileImages: (x, label, index, error)
            unreadable += [(i, e) for i, e in zip(batch[2].tolist(), batch[3]) if e]
    outputs, targets = concat(outputs), torch.cat(targets).long()
    if unreadable:  # a blank stand-in image must not count as a prediction
        if len(unreadable) == len(paths):
            raise DataError(f"none of the {len(paths)} images in '{root}' could be read (first: {unreadable[0][1]})")
        keep = torch.ones(len(paths), dtype=torch.bool)
        keep[[i for i, _ in unreadable]] = False
        outputs = rows_of(outputs, keep)
        targets = targets[keep]
        unreadable = [{"path": paths[i], "error": e} for i, e in unreadable]
        paths = [p for p, k in zip(paths, keep.tolist()) if k]
    known = targets < len(classes)  # the rest are images of unseen classes
    if not known.any():
        raise DataError(f"none of the images in '{root}' ({split}) is of the model's classes: {', '.join(classes)}")

    logits = logits_of(outputs)
    metrics = classification_metrics(logits[known], targets[known], classes, topk=options.topk,
                                     extra=extra_metric_names())
    known_paths = [p for p, k in zip(paths, known.tolist()) if k]
    _write_reports(out, metrics, classes, known_paths, logits[known].softmax(1), targets[known])
    entries, files = open_set_reports(task, model, meta, outputs, targets, unseen, out)
    if options.report is not None:
        report_sections(options.report, metrics, classes, known_paths, logits[known].softmax(1), targets[known])
        extra_sections(options.report, entries, out, files)
    return {
        "data": str(root),
        "split": split,
        "num_samples": int(known.sum()),
        "num_classes": len(classes),
        "metrics": {k: v for k, v in metrics.items() if k not in ("per_class", "confusion_matrix")},
        **entries,
        "unreadable": unreadable,
        "out": str(out),
        "files": [*REPORTS, *files],
    }


def _label_map(data_classes, model_classes, where, open_set=False):
    """Data label index -> model class index, by name -> (map, unseen class names).

    Classes the model does not know are an error, or with ``open_set`` unseen classes, numbered
    after the model's (C, C+1, ...).
    """
    index = {c: i for i, c in enumerate(model_classes)}
    unknown = [c for c in data_classes if c not in index]
    if unknown and not open_set:
        raise DataError(
            f"'{where}' has classes the model does not know: {', '.join(unknown)}; "
            f"the model's classes are: {', '.join(model_classes)}"
        )
    index.update((c, len(model_classes) + i) for i, c in enumerate(unknown))
    return np.array([index[c] for c in data_classes], dtype=np.int64), unknown


def _prepared_split(root, split, classes, size, open_set=False):
    from ...data.dataset import PreparedDataset

    ds = PreparedDataset.open(root)
    index, unseen = _label_map(ds.classes, classes, root, open_set)
    return CachedImages(ds.cache(split, size), index[ds.labels(split)], image_size=size), ds.paths(split), unseen


def _class_folders(root, split, classes, size, open_set=False):
    from ...data.images import iter_image_files

    if (root / split).is_dir() and split not in classes:
        root = root / split  # <root>/<split>/<class>/ as well as <root>/<class>/
    # A class folder is a subfolder holding images; stray ones (__MACOSX, empty) are not classes.
    folders = [d for d in sorted(root.iterdir()) if d.is_dir() and not d.name.startswith(".")]
    files = {d.name: list(iter_image_files(d)) for d in folders}
    files = {name: found for name, found in files.items() if found}
    if not files:
        raise DataError(
            f"'{root}' is neither a prepared dataset (no dataset.json) nor a folder of class folders with images"
        )
    index, unseen = _label_map(list(files), classes, root, open_set)
    label_of = dict(zip(files, index))
    paths = [str(p) for name in files for p in files[name]]
    labels = [label_of[name] for name in files for _ in files[name]]
    return FileImages(paths, size, labels), paths, unseen



def _write_reports(out, metrics, classes, paths, probs, targets):
    from ...plots import plot_confusion_matrix

    per_class = metrics["per_class"]
    columns = list(next(iter(per_class.values())))
    write_csv(out / "per_class.csv", ["class", *columns], [[c, *per_class[c].values()] for c in classes])
    matrix = metrics["confusion_matrix"]
    write_csv(out / "confusion_matrix.csv", ["true\\predicted", *classes],
               [[c, *row] for c, row in zip(classes, matrix)])
    plot_confusion_matrix(matrix, classes, out / "confusion_matrix.png")
    score, predicted = probs.max(1)
    write_csv(out / "predictions.csv", ["path", "true", "predicted", "score"], [
        [p, classes[t], classes[q], f"{s:.6f}"]
        for p, t, q, s in zip(paths, targets.tolist(), predicted.tolist(), score.tolist())
    ])



def report_sections(report, metrics, classes, paths, probs, targets):
    """report.html's per-class table, confusion matrix and gallery, a section each."""
    single_label_blocks([report.section(name) for name in ("Per class", "Confusion matrix", "Gallery")],
                        metrics, classes, paths, probs, targets)


def single_label_blocks(sections, metrics, classes, paths, probs, targets, parent_of=None):
    """The per-class table, the confusion matrix (grouped by ``parent_of``) and the gallery of one
    single-label output, into three report sections (or one, thrice): a classification model's, or
    a multi-task model's categorical head's. ``paths``, ``probs`` and ``targets`` are row for row."""
    from ...report import confidence_gallery, thumbnail

    per_class = metrics["per_class"]
    columns = list(next(iter(per_class.values())))
    table, matrix, gallery = sections
    table.table(["class", *columns], [[c, *per_class[c].values()] for c in classes],
                title="per class" if table is matrix else "", bars=("precision", "recall", "f1", "auroc"))
    matrix.matrix(classes, metrics["confusion_matrix"], title="confusion matrix" if table is matrix else "",
                  parent_of=parent_of)
    score, predicted = probs.max(1)
    groups, note = confidence_gallery(classes, targets.numpy(), predicted.numpy(), score.numpy(),
                                      lambda i: thumbnail(paths[i]))
    gallery.gallery(groups, title="gallery" if table is matrix else "",
                    note="Per class: the images the model got wrong with the highest confidence, and those it "
                         "got right with the lowest." + (f" Showing {note}." if note else ""))


def extra_sections(report, entries, out, files):
    """The open-set figures (images of classes the model does not know) and the pictures the task
    added (a prototype model's embedding.png)."""
    if entries:
        section = report.section("Open set", "Images of classes the model was not trained on.")
        for name, values in entries.items():
            section.metrics(values, title=name)
    pictures = [name for name in files if name.endswith(".png")]
    if pictures:
        section = report.section("Embedding")
        for name in pictures:
            section.figure(out / name, caption=name)


def fraction(flags):
    """Share of True in a bool tensor; None when it is empty."""
    return json_number(flags.double().mean()) if flags.numel() else None


def open_set_reports(task, model, meta, outputs, targets, unseen, out):
    """-> ({summary entries}, [files]) for images of classes the model does not know: "open_set",
    the AUROC of known against unseen images by the task's ``unseen_score``, then whatever the task
    adds (``task.open_set_extras``: a prototype model's rejection figures and embedding)."""
    from ..prototype.openset import open_set_metrics

    classes = meta["classes"]
    known = targets < len(classes)
    score, score_name = task.unseen_score(outputs)
    # {unseen class name: its label} for the unseen classes that have images here
    present = {unseen[i - len(classes)]: i for i in targets[~known].unique().tolist()}
    entries = {}
    if present:
        entries["open_set"] = {
            "known_classes": classes, "unseen_classes": list(present),
            "num_known": int(known.sum()), "num_unseen": int((~known).sum()),
            "score": score_name,
            "auroc": json_number(open_set_metrics(score[known], score[~known])["auroc"]),
        }
    extra, files = task.open_set_extras(model, meta, outputs, targets, score, unseen, present, out)
    return {**entries, **extra}, files
