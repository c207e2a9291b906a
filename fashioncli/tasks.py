"""What differs between tasks during training: model arguments, targets, loss, progress and validation.

The trainer runs the same loop for every task; a task object supplies the parts that depend on
what the model predicts. ``classification``: one label per image (a model may return a dict
with "logits", e.g. a prototype model, whose loss then gets the whole dict). ``multitask``: one
backbone with a head per label column, outputs and targets as {head: tensor} (heads.py).
"""
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


def make_task(recipe, data):
    data.require(recipe["task"])
    return TASKS[recipe["task"]](recipe, data)


class ClassificationTask:
    name = "classification"

    def __init__(self, recipe, data):
        self.recipe, self.classes = recipe, data.classes

    def model_args(self):
        return {"num_classes": len(self.classes)}

    def targets(self, data, split):
        return data.labels(split)

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
        return {"val_loss": loss, **{f"val_{k}": v for k, v in metrics.items() if isinstance(v, (int, float))}}

    def monitor(self):
        return "val_accuracy"

    def meta(self):
        return {"classes": self.classes}


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


TASKS = {"classification": ClassificationTask, "multitask": MultiTask}
