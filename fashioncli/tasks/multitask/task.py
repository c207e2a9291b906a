"""The multi-task task: heads chosen in the recipe (all of the dataset's by default), each with its
loss and weight; outputs and targets are {head: tensor}."""
from ...errors import RecipeError
from ..base import Task
from .heads import encode_split, heads_from_json, present


class MultiTask(Task):
    name = "multitask"
    dataset_kind = "multitask"

    # -- prepare
    @classmethod
    def preparation(cls):
        from .prepare import MultiTaskPreparation

        return MultiTaskPreparation

    @classmethod
    def prepares(cls, imported):
        """A source with heads."""
        from ..preparation import CLAIMS

        return CLAIMS if imported.heads is not None else super().prepares(imported)

    # -- train
    def __init__(self, recipe, data):
        super().__init__(recipe, data)
        known = heads_from_json(data.meta["heads"])
        chosen = recipe.get("heads") or {name: {} for name in known}
        unknown = [h for h in chosen if h not in known]
        if unknown:
            raise RecipeError(f"heads.{unknown[0]}: the dataset '{data.root}' has no such head; "
                              f"its heads: {', '.join(known)}")
        template = recipe.get("head") or {}
        self.config = {name: {**template, **(cfg or {})} for name, cfg in chosen.items()}
        self.heads = {name: known[name] for name in chosen}
        self.thresholds = {}

    def model_args(self):
        mlp = ("hidden", "batch_norm", "dropout")
        return {"heads": {
            name: {"outputs": head.outputs, **{k: self.config[name][k] for k in mlp if k in self.config[name]}}
            for name, head in self.heads.items()
        }}

    def targets(self, data, split):
        return encode_split(data, split, self.heads)

    def criterion(self):
        from ...plugins import get
        from .loss import MultiTaskLoss

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
        from .metrics import flat_metrics, multitask_metrics, tune_thresholds

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
        return {"heads": {name: head.to_json() for name, head in self.heads.items()}, "thresholds": self.thresholds}

    # -- eval
    @classmethod
    def evaluate(cls, model, meta, root, split, out, options):
        from .evaluate import evaluate_heads

        return evaluate_heads(model, meta, root, split, out, options)

    # -- predict and export
