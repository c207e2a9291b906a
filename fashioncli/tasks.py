"""What differs between tasks during training: model arguments, targets, loss, progress and validation.

The trainer runs the same loop for every task; a task object supplies the parts that depend on
what the model predicts. ``classification``: one label per image (a model may return a dict
with "logits", e.g. a prototype model, whose loss then gets the whole dict; the recipe's
data.classes may hold some of the dataset's classes out). ``multitask``: one backbone with a head
per label column, outputs and targets as {head: tensor} (heads.py). ``segmentation``: a class
per pixel; targets are masks, and validation reduces each batch to its argmax mask (``reduce``) so
that a split's logits never sit in memory at once.
"""
import numpy as np
import torch

from .errors import RecipeError
from .heads import present
from .plugins import get


def logits_of(outputs):
    return outputs["logits"] if isinstance(outputs, dict) else outputs


def concat(chunks):
    """Batches of tensors or of {name: tensor} -> one tensor or {name: tensor}, on the CPU."""
    if not chunks:
        return torch.empty(0)
    if isinstance(chunks[0], dict):
        return {k: torch.cat([c[k] for c in chunks]).cpu() for k in chunks[0]}
    return torch.cat(chunks).cpu()


def rows_of(batch, index):
    """Rows ``index`` of a tensor or of every tensor of a {name: tensor}."""
    if isinstance(batch, dict):
        return {k: v[index] for k, v in batch.items()}
    return batch[index]


def make_task(recipe, data):
    data.require(recipe["task"])
    if recipe["data"].get("classes") and recipe["task"] != "classification":
        raise RecipeError("data.classes: only a classification recipe can hold classes out; a multi-task "
                          "recipe chooses its heads, a segmentation one its classes at prepare (--classes)")
    return TASKS[recipe["task"]](recipe, data)


class ClassificationTask:
    name = "classification"

    def __init__(self, recipe, data):
        self.recipe, self.rejection = recipe, None
        self.classes = _chosen_classes(recipe["data"].get("classes"), data)
        self.held_out = [c for c in data.classes if c not in self.classes]
        # dataset label -> model class (the recipe's order); -1 for a held-out class
        self.index = np.array([self.classes.index(c) if c in self.classes else -1 for c in data.classes], np.int64)

    def model_args(self):
        return {"num_classes": len(self.classes)}

    def rows(self, data, split):
        """Which of the split's images training sees: those of the chosen classes (None: all)."""
        return np.flatnonzero(self.targets(data, split) >= 0) if self.held_out else None

    def targets(self, data, split):
        return self.index[data.labels(split)]

    def criterion(self):
        loss = self.recipe["loss"]
        return get("losses").create(loss["name"], **loss["args"])

    def correct(self, outputs, targets):
        """(right, counted) of a training batch, for the progress bar."""
        return (logits_of(outputs).argmax(1) == targets).sum().item(), targets.numel()

    def validate(self, outputs, targets):
        from .evaluate import classification_metrics

        logits = logits_of(outputs).float()
        metrics = classification_metrics(logits, targets, self.classes, topk=self.recipe["eval"]["topk"])
        loss = torch.nn.functional.cross_entropy(logits, targets).item()
        if isinstance(outputs, dict) and "distances" in outputs:
            self.rejection = self.reject_settings(outputs["distances"])
        return {"val_loss": loss, **{f"val_{k}": v for k, v in metrics.items() if isinstance(v, (int, float))}}

    def reject_settings(self, distances):
        """A prototype model's rejection threshold: the recipe's eval.reject.threshold, else the one
        that rejects eval.reject.false_rejection_rate of these (validation) images; it travels with
        the checkpoint of these weights to eval, predict and export."""
        from .openset import calibrate_threshold

        reject = self.recipe["eval"]["reject"]
        if reject["threshold"] is not None:
            return {"threshold": reject["threshold"], "source": "recipe"}
        rate = reject["false_rejection_rate"]
        return {"threshold": calibrate_threshold(distances, rate), "false_rejection_rate": rate, "source": "validation"}

    def monitor(self):
        return "val_accuracy"

    def meta(self):
        meta = {"classes": self.classes}
        if self.held_out:
            meta["held_out"] = self.held_out
        if self.rejection:
            meta["rejection"] = self.rejection
        return meta


def _chosen_classes(chosen, data):
    """The recipe's data.classes (all of the dataset's when unset), checked against the dataset."""
    if chosen is None:
        return list(data.classes)
    unknown = [c for c in chosen if c not in data.class_index]
    if unknown:
        raise RecipeError(f"data.classes: '{unknown[0]}' is not a class of '{data.root}'; "
                          f"its classes: {', '.join(data.classes)}")
    if not chosen or len(set(chosen)) != len(chosen):
        raise RecipeError(f"data.classes: expected one or more distinct class names, got {chosen}")
    return list(chosen)


class MultiTask:
    """Heads chosen in the recipe (all of the dataset's by default), each with its loss and weight."""

    name = "multitask"

    def __init__(self, recipe, data):
        self.recipe = recipe
        chosen = recipe.get("heads") or {name: {} for name in data.heads}
        unknown = [h for h in chosen if h not in data.heads]
        if unknown:
            raise RecipeError(f"heads.{unknown[0]}: the dataset '{data.root}' has no such head; "
                              f"its heads: {', '.join(data.heads)}")
        template = recipe.get("head") or {}
        self.config = {name: {**template, **(cfg or {})} for name, cfg in chosen.items()}
        self.heads = {name: data.heads[name] for name in chosen}

    def model_args(self):
        mlp = ("hidden", "batch_norm", "dropout")
        return {"heads": {
            name: {"outputs": head.outputs, **{k: self.config[name][k] for k in mlp if k in self.config[name]}}
            for name, head in self.heads.items()
        }}

    def rows(self, data, split):
        return None  # every image: data.classes restricts single-label classification only

    def targets(self, data, split):
        return {name: t for name, t in data.targets(split).items() if name in self.heads}

    def criterion(self):
        losses, weights = {}, {}
        for name, head in self.heads.items():
            cfg = self.config[name]
            spec = cfg.get("loss") or {"name": "bce" if head.sigmoid else "cross_entropy", "args": {}}
            losses[name] = get("losses").create(spec["name"], **(spec.get("args") or {}))
            weights[name] = cfg.get("weight", 1.0)
        return MultiTaskLoss(self.heads, losses, weights)

    def correct(self, outputs, targets):
        right = counted = 0
        for name, head in self.heads.items():
            if head.type == "categorical":
                t = targets[name]
                keep = present(head, t)
                right += (outputs[name].argmax(1)[keep] == t[keep]).sum().item()
                counted += int(keep.sum())
        return right, counted

    def validate(self, outputs, targets):
        """Validation metrics; sigmoid heads' per-label thresholds are tuned here (best F1 on this
        data) and travel with the checkpoint of these weights to eval, predict and export."""
        from .head_metrics import flat_metrics, multitask_metrics, tune_thresholds

        self.thresholds = {
            name: tune_thresholds(outputs[name].sigmoid(), targets[name])
            for name, head in self.heads.items() if head.sigmoid
        }
        loss = self.criterion()(outputs, targets).item()
        result = multitask_metrics(self.heads, outputs, targets, thresholds=self.thresholds,
                                   topk=self.recipe["eval"]["topk"])
        return {"val_loss": loss, **{f"val_{k}": v for k, v in flat_metrics(result).items()}}

    def monitor(self):
        has_accuracy = any(h.type != "multilabel" for h in self.heads.values())
        return "val_mean_accuracy" if has_accuracy else "val_mean_ap"

    def meta(self):
        return {"heads": {name: head.to_json() for name, head in self.heads.items()},
                "thresholds": getattr(self, "thresholds", {})}


class MultiTaskLoss(torch.nn.Module):
    """Weighted sum of the heads' losses, each over the rows where that head's label is known."""

    def __init__(self, heads, losses, weights):
        super().__init__()
        self.heads, self.weights = heads, weights
        self.losses = torch.nn.ModuleDict(losses)

    def forward(self, outputs, targets):
        total = 0.0
        for name, head in self.heads.items():
            t = targets[name]
            keep = present(head, t)
            if keep.any():  # a batch without this label teaches the head nothing (and 0/0 is NaN)
                total = total + self.weights[name] * self.losses[name](outputs[name][keep].float(), t[keep])
        if not torch.is_tensor(total):
            total = sum(o.sum() * 0.0 for o in outputs.values())  # keeps the graph for backward()
        return total


class SegmentationTask:
    """One class per pixel: the prepared dataset's classes, masks as targets, mIoU to monitor."""

    name = "segmentation"

    def __init__(self, recipe, data):
        self.recipe, self.data = recipe, data
        self.classes = list(data.classes)
        self.ignore_index = data.meta.get("ignore_index", 255)
        self.class_sets = data.meta.get("class_sets") or {}

    def model_args(self):
        return {"num_classes": len(self.classes)}

    def rows(self, data, split):
        return None

    def targets(self, data, split):
        return data.mask_cache(split, self.recipe["data"]["image_size"])

    def dataset(self, images, masks, transform=None):
        from .data import CachedMasks

        return CachedMasks(images, masks, transform)

    def criterion(self):
        import inspect

        loss = self.recipe["loss"]
        factory = get("losses").get(loss["name"]).factory
        args = dict(loss["args"])
        # The prepared masks' "no label" value reaches every loss that can skip it.
        if "ignore_index" in inspect.signature(factory).parameters:
            args.setdefault("ignore_index", self.ignore_index)
        return get("losses").create(loss["name"], **args)

    def correct(self, outputs, targets):
        """(right, labelled) pixels of a training batch: the progress bar's pixel accuracy."""
        valid = targets != self.ignore_index
        return ((outputs.argmax(1) == targets) & valid).sum().item(), int(valid.sum())

    def reduce(self, outputs, targets):
        """One validation batch -> ({"pred": uint8 argmax masks, "loss": the batch's loss per row}, uint8 masks)."""
        if not hasattr(self, "_loss"):
            self._loss = self.criterion().to(outputs.device)
        targets = targets.to(outputs.device)
        loss = self._loss(outputs, targets).float()
        return {"pred": outputs.argmax(1).to(torch.uint8), "loss": loss.expand(len(outputs))}, targets.to(torch.uint8)

    def validate(self, outputs, targets):
        from .segmentation.metrics import confusion, segmentation_report

        conf = confusion(outputs["pred"], targets, len(self.classes), self.ignore_index)
        report = segmentation_report(conf, self.classes, self.class_sets)
        metrics = {"val_loss": outputs["loss"].mean().item(), "val_miou": report["miou"],
                   "val_pixel_accuracy": report["pixel_accuracy"], "val_fg_bg_miou": report["fg_bg_miou"]}
        metrics.update({f"val_miou_{name}": entry["miou"] for name, entry in report["class_sets"].items()})
        return {k: float("nan") if v is None else v for k, v in metrics.items()}

    def monitor(self):
        return "val_miou"

    def meta(self):
        return {"classes": self.classes, "palette": self.data.meta.get("palette"),
                "ignore_index": self.ignore_index, "class_sets": self.class_sets}


TASKS = {"classification": ClassificationTask, "multitask": MultiTask, "segmentation": SegmentationTask}
