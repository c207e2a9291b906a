"""`fashion eval`: score a classification checkpoint on a prepared split or a folder of class folders.

``run_model`` and ``classification_metrics`` are also what training uses to validate each epoch,
so evaluation and validation measure the same thing.
"""
import csv
import io
import time
import warnings
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

from .checkpoint import load_model, resolve_path, run_dir
from .data import CachedImages, FileImages, make_loader, resolve_device
from .errors import CheckpointError, DataError, PluginError
from .io import write_json, write_text
from .preprocess import normalize

REPORTS = ("summary.json", "per_class.csv", "confusion_matrix.csv", "confusion_matrix.png", "predictions.csv")

# -- inference ---------------------------------------------------------------
def _float(out):
    return {k: v.float() for k, v in out.items()} if isinstance(out, dict) else out.float()


def _infer(model, loader, device, mean, std, memory_format=torch.contiguous_format, autocast=None, tta=None):
    """Yield (outputs on device, batch) for each batch ``(uint8 images, targets, ...)`` of ``loader``.

    Outputs are what the model returns (logits, or {name: logits}) in float32; ``tta`` (see
    tta.py) averages them over flipped and shifted copies of each batch.
    """
    from .tta import augmented_views, enabled

    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for batch in loader:
                x = batch[0].to(device, non_blocking=True)
                x = normalize(x, mean, std).contiguous(memory_format=memory_format)
                with autocast() if autocast else nullcontext():
                    if enabled(tta):
                        views = [_float(model(v)) for v in augmented_views(x, tta)]
                        out = _mean(views)
                    else:
                        out = _float(model(x))
                yield out, batch
    finally:
        model.train(was_training)


def _mean(views):
    if isinstance(views[0], dict):
        return {k: torch.stack([v[k] for v in views]).mean(0) for k in views[0]}
    return torch.stack(views).mean(0)


def run_model(model, loader, device, mean, std, memory_format=torch.contiguous_format, autocast=None, tta=None):
    """Run ``model`` over ``loader`` -> (outputs, targets), both on the CPU.

    Outputs are float32 logits (N, C), or {name: logits} for a model with several outputs;
    targets are what the loader's batches carry (int64 (N,), or {head: tensor}). Batches are
    ``(uint8 NxCxHxW images, targets, ...)``; normalisation with ``mean``/``std`` happens on
    ``device``. ``autocast`` is an optional callable returning a context manager (e.g. mixed
    precision). The model's train/eval mode is restored afterwards.
    """
    from .tasks import concat

    outputs, targets = [], []
    for out, batch in _infer(model, loader, device, mean, std, memory_format, autocast, tta):
        outputs.append(out)  # stays on the device: one transfer at the end, not one sync per batch
        targets.append(batch[1])
    if not outputs:
        return torch.empty(0, 0), torch.empty(0, dtype=torch.long)
    return concat(outputs), concat(targets)


# -- metrics -----------------------------------------------------------------
def _value(t):
    """Tensor -> float rounded past float32 noise, or None where undefined (NaN: JSON has no NaN)."""
    v = float(t)
    return None if np.isnan(v) else round(v, 6)


def classification_metrics(logits, targets, classes, topk=5, extra=()):
    """Single-label metrics from the registered metric factories (torchmetrics).

    -> {"accuracy", "top{k}_accuracy" (k = min(topk, C)), "precision_macro", "recall_macro",
    "f1_macro", "auroc_macro": floats (None when undefined), "per_class": {class: {precision,
    recall, f1, auroc, support}}, "confusion_matrix": C x C list (rows true, columns predicted)}.

    Macro AUROC (one-vs-rest) averages only classes with both positives and negatives, since
    ROC is undefined otherwise. ``extra`` names more registered metrics (or ``{"name", "args"}``):
    a scalar result is added under its name, a per-class vector into ``per_class``.
    """
    from .plugins import get

    registry, n = get("metrics"), len(classes)
    probs, targets = logits.float().softmax(1), torch.as_tensor(targets).long()

    def compute(name, **args):
        metric = registry.create(name, n, **args)
        metric.update(probs, targets)
        return metric.compute()

    k = min(topk, n)
    matrix = compute("confusion_matrix")
    support = matrix.sum(1)
    result = {"accuracy": _value(compute("accuracy")), f"top{k}_accuracy": _value(compute("top_k_accuracy", k=k))}
    for name in ("precision", "recall", "f1"):
        result[f"{name}_macro"] = _value(compute(name))
    per_class = {name: compute(name, average="none") for name in ("precision", "recall", "f1")}
    with warnings.catch_warnings():  # "no positive samples" for absent classes: handled below
        warnings.simplefilter("ignore", UserWarning)
        auroc = compute("auroc", average="none")
    defined = (support > 0) & (support < len(targets))
    result["auroc_macro"] = _value(auroc[defined].mean()) if defined.any() else None
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
            result[name] = _value(value)
        elif value.shape == (n,):
            per_class[name] = value
        else:
            result[name] = value.tolist()
    result["per_class"] = {
        c: {**{m: _value(v[i]) for m, v in per_class.items()}, "support": int(support[i])}
        for i, c in enumerate(classes)
    }
    result["confusion_matrix"] = matrix.tolist()
    return result


# -- data --------------------------------------------------------------------
def _label_map(data_classes, model_classes, where):
    """Data label index -> model class index, by name; unknown names are an error."""
    index = {c: i for i, c in enumerate(model_classes)}
    unknown = [c for c in data_classes if c not in index]
    if unknown:
        raise DataError(
            f"'{where}' has classes the model does not know: {', '.join(unknown)}; "
            f"the model's classes are: {', '.join(model_classes)}"
        )
    return np.array([index[c] for c in data_classes], dtype=np.int64)


def _prepared_split(root, split, classes, size):
    from .dataset import PreparedDataset

    ds = PreparedDataset.open(root)
    labels = _label_map(ds.classes, classes, root)[ds.labels(split)]
    return CachedImages(ds.cache(split, size), labels, image_size=size), ds.paths(split)


def _class_folders(root, split, classes, size):
    from .images import iter_image_files

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
    label_of = dict(zip(files, _label_map(list(files), classes, root)))
    paths = [str(p) for name in files for p in files[name]]
    labels = [label_of[name] for name in files for _ in files[name]]
    return FileImages(paths, size, labels), paths


def _data_root(meta, data):
    if data is not None:
        root = Path(data)
    else:
        root = (meta.get("recipe") or {}).get("data", {}).get("root")
        if not root:
            raise DataError("the checkpoint does not record its dataset; pass the data to evaluate on (--data)")
        root = Path(root)
    if not root.is_dir():
        where = "" if data is not None else "the checkpoint's dataset "
        raise DataError(
            f"{where}'{root}' is not a folder; pass a prepared dataset or a folder of class folders (--data)"
        )
    return root


# -- outputs -----------------------------------------------------------------
def _write_csv(path, header, rows):
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    writer.writerows(rows)
    write_text(path, buf.getvalue())


def _write_reports(out, metrics, classes, paths, probs, targets):
    from .plots import plot_confusion_matrix

    per_class = metrics["per_class"]
    columns = list(next(iter(per_class.values())))
    _write_csv(out / "per_class.csv", ["class", *columns], [[c, *per_class[c].values()] for c in classes])
    matrix = metrics["confusion_matrix"]
    _write_csv(out / "confusion_matrix.csv", ["true\\predicted", *classes],
               [[c, *row] for c, row in zip(classes, matrix)])
    plot_confusion_matrix(matrix, classes, out / "confusion_matrix.png")
    score, predicted = probs.max(1)
    _write_csv(out / "predictions.csv", ["path", "true", "predicted", "score"], [
        [p, classes[t], classes[q], f"{s:.6f}"]
        for p, t, q, s in zip(paths, targets.tolist(), predicted.tolist(), score.tolist())
    ])


def _default_out(checkpoint, data, split):
    """<run>/eval-<split> for the run's own dataset, <run>/eval-<data name>-<split> for any other."""
    return run_dir(checkpoint) / (f"eval-{split}" if data is None else f"eval-{Path(data).resolve().name}-{split}")


def _extra_metric_names():
    """Metrics registered by third-party plugins: evaluated with their default arguments."""
    from .plugins import BUILTIN_PLUGINS, get

    return [e.name for e in get("metrics") if e.plugin not in BUILTIN_PLUGINS]


def evaluate(checkpoint, data=None, split="test", out=None, batch_size=64, device="auto", topk=None, num_workers=None,
             tta=None):
    """Evaluate a ``checkpoint`` (.pt or run directory) and write reports into ``out``.

    ``data``: None (the dataset the checkpoint was trained on), a prepared dataset directory
    (its uint8 cache at the model's image size) or a folder of class folders, optionally split
    into ``<split>/<class>/``. Writes summary.json, per_class.csv, confusion_matrix.csv/.png and
    predictions.csv; unreadable images are left out of the metrics and listed in the summary.
    ``topk`` defaults to the recipe's eval.topk (else 5), so eval and validation report the same k;
    ``tta`` ({"hflip", "shift"}, see tta.py) to the recipe's eval.tta. A multi-task checkpoint is
    scored per head (evaluate_heads.py). Returns the summary.
    """
    start = time.perf_counter()
    checkpoint = resolve_path(checkpoint)
    device = resolve_device(device)
    model, meta = load_model(checkpoint, device)
    recipe_eval = (meta.get("recipe") or {}).get("eval", {})
    if topk is None:
        topk = recipe_eval.get("topk", 5)
    if tta is None:
        tta = recipe_eval.get("tta")
    root = _data_root(meta, data)
    task = meta.get("task", "classification")
    if task == "multitask":
        from .evaluate_heads import evaluate_heads

        out = Path(out) if out is not None else _default_out(checkpoint, data, split)
        summary = evaluate_heads(model, meta, root, split, out, batch_size, device, num_workers, tta, topk)
        summary.update(checkpoint=str(checkpoint), device=str(device), seconds=round(time.perf_counter() - start, 2))
        write_json(out / "summary.json", summary)
        return summary
    if task != "classification":
        raise CheckpointError(f"'{checkpoint}' is a {task} model; `fashion eval` cannot score it")
    classes, pre = meta["classes"], meta["preprocessing"]
    make = _prepared_split if (root / "dataset.json").is_file() else _class_folders
    dataset, paths = make(root, split, classes, pre["image_size"])
    if not paths:
        raise DataError(f"split '{split}' of '{root}' is empty")
    loader = make_loader(dataset, batch_size, num_workers=num_workers)

    logits, targets, unreadable = [], [], []
    for batch_logits, batch in _infer(model, loader, device, pre["mean"], pre["std"], tta=tta):
        logits.append(batch_logits.cpu())
        targets.append(batch[1])
        if len(batch) == 4:  # FileImages: (x, label, index, error)
            unreadable += [(i, e) for i, e in zip(batch[2].tolist(), batch[3]) if e]
    logits, targets = torch.cat(logits), torch.cat(targets).long()
    if unreadable:  # a blank stand-in image must not count as a prediction
        if len(unreadable) == len(paths):
            raise DataError(f"none of the {len(paths)} images in '{root}' could be read (first: {unreadable[0][1]})")
        keep = torch.ones(len(paths), dtype=torch.bool)
        keep[[i for i, _ in unreadable]] = False
        logits, targets = logits[keep], targets[keep]
        unreadable = [{"path": paths[i], "error": e} for i, e in unreadable]
        paths = [p for p, k in zip(paths, keep.tolist()) if k]

    metrics = classification_metrics(logits, targets, classes, topk=topk, extra=_extra_metric_names())
    out = Path(out) if out is not None else _default_out(checkpoint, data, split)
    _write_reports(out, metrics, classes, paths, logits.softmax(1), targets)
    summary = {
        "checkpoint": str(checkpoint),
        "data": str(root),
        "split": split,
        "num_samples": len(paths),
        "num_classes": len(classes),
        "metrics": {k: v for k, v in metrics.items() if k not in ("per_class", "confusion_matrix")},
        "unreadable": unreadable,
        "out": str(out),
        "files": list(REPORTS),
        "device": str(device),
        "seconds": round(time.perf_counter() - start, 2),
    }
    write_json(out / "summary.json", summary)
    return summary
