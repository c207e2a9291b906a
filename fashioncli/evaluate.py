"""`fashion eval`: score a classification checkpoint on a prepared split or a folder of class folders
(multi-task checkpoints: evaluate_heads.py; segmentation: segmentation/evaluate.py).

Images of classes the model was not trained on (held out by the recipe's data.classes, or any
for a prototype model that can reject) are scored as unseen: open-set AUROC and rejection figures.

``run_model`` and ``classification_metrics`` are also what training uses to validate each epoch,
so evaluation and validation measure the same thing.
"""
import time
import warnings
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

from .checkpoint import load_model, resolve_path, run_dir
from .data import CachedImages, FileImages, make_loader
from .devices import resolve_device
from .errors import CheckpointError, DataError, PluginError
from .io import json_number, write_csv, write_json
from .preprocess import normalize
from .protect import check_output, model_files

REPORTS = ("summary.json", "per_class.csv", "confusion_matrix.csv", "confusion_matrix.png", "predictions.csv")

# -- inference ---------------------------------------------------------------
def _float(out):
    return {k: v.float() for k, v in out.items()} if isinstance(out, dict) else out.float()


def _infer(model, loader, device, mean, std, memory_format=torch.contiguous_format, autocast=None, tta=None):
    """Yield (outputs on device, batch) for each batch ``(uint8 images, targets, ...)`` of ``loader``.

    Outputs are what the model returns (logits, or {name: logits}) in float32; ``tta`` (see
    tta.py) averages them over flipped and shifted copies of each batch.
    """
    from .tta import augmented_views, enabled, unflip

    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for batch in loader:
                x = batch[0].to(device, non_blocking=True)
                x = normalize(x, mean, std).contiguous(memory_format=memory_format)
                with autocast() if autocast else nullcontext():
                    if enabled(tta):
                        out = _mean(unflip([_float(model(v)) for v in augmented_views(x, tta)], tta))
                    else:
                        out = _float(model(x))
                yield out, batch
    finally:
        model.train(was_training)


def _mean(views):
    if isinstance(views[0], dict):
        return {k: torch.stack([v[k] for v in views]).mean(0) for k in views[0]}
    return torch.stack(views).mean(0)


def run_model(model, loader, device, mean, std, memory_format=torch.contiguous_format, autocast=None, tta=None,
              reduce=None):
    """Run ``model`` over ``loader`` -> (outputs, targets), both on the CPU.

    Outputs are float32 logits (N, C), or {name: logits} for a model with several outputs;
    targets are what the loader's batches carry (int64 (N,), or {head: tensor}). Batches are
    ``(uint8 NxCxHxW images, targets, ...)``; normalisation with ``mean``/``std`` happens on
    ``device``. ``autocast`` is an optional callable returning a context manager (e.g. mixed
    precision). ``reduce(outputs, targets) -> (outputs, targets)`` shrinks each batch before it is
    kept (segmentation: argmax masks instead of per-pixel logits). The model's train/eval mode is
    restored afterwards.
    """
    from .tasks import concat

    outputs, targets = [], []
    for out, batch in _infer(model, loader, device, mean, std, memory_format, autocast, tta):
        target = batch[1]
        if reduce is not None:
            out, target = reduce(out, target)
        outputs.append(out)  # stays on the device: one transfer at the end, not one sync per batch
        targets.append(target)
    if not outputs:
        return torch.empty(0, 0), torch.empty(0, dtype=torch.long)
    return concat(outputs), concat(targets)


# -- metrics -----------------------------------------------------------------
def _local():
    return False


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


# -- data --------------------------------------------------------------------
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
    from .dataset import PreparedDataset

    ds = PreparedDataset.open(root)
    index, unseen = _label_map(ds.classes, classes, root, open_set)
    return CachedImages(ds.cache(split, size), index[ds.labels(split)], image_size=size), ds.paths(split), unseen


def _class_folders(root, split, classes, size, open_set=False):
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
    index, unseen = _label_map(list(files), classes, root, open_set)
    label_of = dict(zip(files, index))
    paths = [str(p) for name in files for p in files[name]]
    labels = [label_of[name] for name in files for _ in files[name]]
    return FileImages(paths, size, labels), paths, unseen


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
def _write_reports(out, metrics, classes, paths, probs, targets):
    from .plots import plot_confusion_matrix

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


def _fraction(flags):
    """Share of True in a bool tensor; None when it is empty."""
    return json_number(flags.double().mean()) if flags.numel() else None


def _open_set_reports(model, outputs, targets, classes, unseen, rejection, out):
    """What a prototype model or held-out classes add to the summary -> ({entries}, [files]).

    "open_set", when some images are of classes the model does not know: AUROC of known against
    unseen images by distance to the nearest prototype (1 - top-1 probability for other models).
    "rejection", for a prototype model with a threshold: accuracy without and with `unknown`
    beyond it (a rejected image counts as wrong; "accepted_accuracy": over the images kept) and
    the fractions of known and unseen images rejected. "embedding.png": the learned embedding
    and the prototypes, coloured by class (report 000, Figure 7).
    """
    from .openset import min_distance, open_set_metrics, reject
    from .plots import plot_embedding
    from .tasks import logits_of

    logits, known = logits_of(outputs), targets < len(classes)
    distances = outputs.get("distances") if isinstance(outputs, dict) else None
    score = min_distance(distances) if distances is not None else 1 - logits.softmax(1).max(1).values
    # {unseen class name: its label} for the unseen classes that have images here
    present = {unseen[i - len(classes)]: i for i in targets[~known].unique().tolist()}
    entries, files = {}, []
    if present:
        entries["open_set"] = {
            "known_classes": classes, "unseen_classes": list(present),
            "num_known": int(known.sum()), "num_unseen": int((~known).sum()),
            "score": "min_distance" if distances is not None else "1-max_probability",
            "auroc": json_number(open_set_metrics(score[known], score[~known])["auroc"]),
        }
    if rejection and distances is not None:
        rejected = reject(score, rejection["threshold"])
        right = logits.argmax(1) == targets
        entries["rejection"] = {
            **rejection, "known_rejected": _fraction(rejected[known]),
            "accuracy_without_rejection": _fraction(right[known]),
            "accuracy_with_rejection": _fraction((right & ~rejected)[known]),
            "accepted_accuracy": _fraction(right[known & ~rejected]),
        }
        if present:
            entries["rejection"].update(
                unseen_rejected=_fraction(rejected[~known]),
                unseen_rejected_per_class={name: _fraction(rejected[targets == i]) for name, i in present.items()},
                # known images right and kept, unseen images rejected, over all images
                open_set_accuracy=_fraction(torch.where(known, right & ~rejected, rejected)),
            )
    if isinstance(outputs, dict) and "embedding" in outputs:
        prototypes = getattr(getattr(model, "head", None), "prototypes", None)
        plot_embedding(outputs["embedding"].numpy(), targets.numpy(), classes + unseen, len(classes),
                       out / "embedding.png", None if prototypes is None else prototypes.detach().cpu().numpy())
        files.append("embedding.png")
    return entries, files


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
    scored per head (evaluate_heads.py). Metrics and reports cover the images of the model's
    classes; a prototype model, or one whose recipe held classes out, adds "open_set" and
    "rejection" figures and embedding.png (``_open_set_reports``). Returns the summary.
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
    if out is not None:  # reports and pictures never land among the images or checkpoints they come from
        checkpoints = checkpoint.parent if checkpoint.parent.name == "checkpoints" else None
        check_output(out, files=model_files(checkpoint), folders=[root, checkpoints], what="--out")
    task = meta.get("task", "classification")
    if task == "multitask":
        from .evaluate_heads import evaluate_heads

        out = Path(out) if out is not None else _default_out(checkpoint, data, split)
        summary = evaluate_heads(model, meta, root, split, out, batch_size, device, num_workers, tta, topk)
        summary.update(checkpoint=str(checkpoint), device=str(device), seconds=round(time.perf_counter() - start, 2))
        write_json(out / "summary.json", summary)
        return summary
    if task == "segmentation":
        from .segmentation.evaluate import evaluate_segmentation

        out = Path(out) if out is not None else _default_out(checkpoint, data, split)
        summary = evaluate_segmentation(model, meta, root, split, out, batch_size, device, num_workers, tta)
        summary.update(checkpoint=str(checkpoint), device=str(device), seconds=round(time.perf_counter() - start, 2))
        write_json(out / "summary.json", summary)
        return summary
    if task != "classification":
        raise CheckpointError(f"'{checkpoint}' is a {task} model; `fashion eval` cannot score it")
    from .tasks import concat, logits_of, rows_of

    classes, pre = meta["classes"], meta["preprocessing"]
    make = _prepared_split if (root / "dataset.json").is_file() else _class_folders
    # A model trained on some of the data's classes, or one that can reject, meets unseen classes.
    open_set = bool(meta.get("held_out") or meta.get("rejection"))
    dataset, paths, unseen = make(root, split, classes, pre["image_size"], open_set)
    if not paths:
        raise DataError(f"split '{split}' of '{root}' is empty")
    loader = make_loader(dataset, batch_size, num_workers=num_workers)

    outputs, targets, unreadable = [], [], []
    for batch_outputs, batch in _infer(model, loader, device, pre["mean"], pre["std"], tta=tta):
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
    metrics = classification_metrics(logits[known], targets[known], classes, topk=topk, extra=_extra_metric_names())
    out = Path(out) if out is not None else _default_out(checkpoint, data, split)
    _write_reports(out, metrics, classes, [p for p, k in zip(paths, known.tolist()) if k],
                   logits[known].softmax(1), targets[known])
    open_set_entries, files = _open_set_reports(model, outputs, targets, classes, unseen, meta.get("rejection"), out)
    summary = {
        "checkpoint": str(checkpoint),
        "data": str(root),
        "split": split,
        "num_samples": int(known.sum()),
        "num_classes": len(classes),
        "metrics": {k: v for k, v in metrics.items() if k not in ("per_class", "confusion_matrix")},
        **open_set_entries,
        "unreadable": unreadable,
        "out": str(out),
        "files": [*REPORTS, *files],
        "device": str(device),
        "seconds": round(time.perf_counter() - start, 2),
    }
    write_json(out / "summary.json", summary)
    return summary
