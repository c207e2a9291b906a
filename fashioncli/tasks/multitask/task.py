"""The multi-task task: heads chosen in the recipe (all of the dataset's by default), each with its
loss and weight; outputs and targets are {head: tensor}."""
from ...errors import RecipeError
from ..base import Task, log_probabilities, logits_of_sigmoid
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
        self._train_targets = None  # encoded once, for class weights

    def model_args(self):
        mlp = ("hidden", "batch_norm", "dropout")
        return {"heads": {
            name: {"outputs": head.outputs, **{k: self.config[name][k] for k in mlp if k in self.config[name]}}
            for name, head in self.heads.items()
        }}

    def targets(self, data, split):
        return encode_split(data, split, self.heads)

    def preview_tile(self, image, target):
        """Each head's label on its own line (a missing one left out)."""
        from .heads import LABEL_SEP

        lines = []
        for name, head in self.heads.items():
            t = target[name]
            if head.sigmoid and (t >= 0).all():
                lines.append(f"{name}: {LABEL_SEP.join(c for c, on in zip(head.classes, t.tolist()) if on > 0.5) or '-'}")
            elif not head.sigmoid and int(t) >= 0:
                lines.append(f"{name}: {head.classes[int(t)]}")
        return image, "\n".join(lines)

    def curve_panel(self, column):
        """A panel per head (val_<head>_...), one for the means over heads."""
        for name in sorted(self.heads, key=len, reverse=True):  # "sub" must not claim "sub_type"
            if column.startswith((f"val_{name}_", f"train_{name}_")):
                return f"head: {name}"
        return "mean over heads" if "_mean_" in f"_{column}" else None

    def criterion(self):
        from ...plugins import get
        from .loss import MultiTaskLoss

        losses, weights = {}, {}
        for name, head in self.heads.items():
            cfg = self.config[name]
            spec = cfg.get("loss") or {"name": "bce" if head.sigmoid else "cross_entropy", "args": {}}
            losses[name] = get("losses").create(spec["name"], **(spec.get("args") or {}), **self.weight_args(name, spec))
            weights[name] = cfg.get("weight", 1.0)
        return MultiTaskLoss(self.heads, losses, weights)

    def weight_args(self, name, loss):
        """The head's loss's per-class weights (class_weight: balanced|sqrt), from the train split, computed once."""
        import numpy as np

        from ..class_weights import loss_args, setting, sigmoid_weights, softmax_weights

        head, where = self.heads[name], f"heads.{name}"
        chosen = setting(self.config[name].get("class_weight"), where)
        if chosen is None:
            return {}
        if name not in self.class_weights:
            if self._train_targets is None:
                self._train_targets = encode_split(self.data, self.recipe["data"]["train_split"], self.heads)
            t = np.asarray(self._train_targets[name])
            if head.sigmoid:
                known = t[(t >= 0).all(1)]
                counts = known.sum(0)
                weights = sigmoid_weights(counts, len(known), *chosen)
            else:
                counts = np.bincount(t[t >= 0], minlength=head.outputs)
                weights = softmax_weights(counts, *chosen)
            self.class_weights[name] = {"mode": chosen[0], "cap": chosen[1], "argument": None,
                                        "weights": dict(zip(head.classes, weights)),
                                        ("positives" if head.sigmoid else "train_images"):
                                            dict(zip(head.classes, np.asarray(counts).astype(int).tolist()))}
        entry = self.class_weights[name]
        args = loss_args(loss, loss.get("args"), list(entry["weights"].values()), head.sigmoid, where)
        entry["argument"] = next(iter(args))
        return args

    def correct(self, outputs, targets):
        right = counted = 0
        for name, head in self.heads.items():
            if head.type == "categorical":
                t = targets[name]
                keep = present(head, t)
                right = right + ((outputs[name].argmax(1) == t) & keep).sum()  # no boolean indexing: no sync
                counted = counted + keep.sum()
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
    # One output per head, named after it, in the heads' order.
    output_noun = "head"
    named_outputs = True

    @classmethod
    def activation(cls, meta):
        from .heads import heads_from_json

        heads = heads_from_json(meta["heads"])

        def head_probabilities(outputs):
            return tuple(outputs[n].sigmoid() if h.sigmoid else outputs[n].softmax(1) for n, h in heads.items())
        return head_probabilities

    @classmethod
    def engine_outputs(cls, meta, results):
        """-> {head: N x its classes}."""
        return dict(zip(meta["heads"], results))

    @classmethod
    def raw_outputs(cls, meta, outputs):
        """{head: logits}: a softmax head's log-probabilities, a sigmoid head's logits."""
        from .heads import heads_from_json

        heads = heads_from_json(meta["heads"])
        return {n: logits_of_sigmoid(outputs[n]) if h.sigmoid else log_probabilities(outputs[n])
                for n, h in heads.items()}

    @classmethod
    def output_shapes(cls, outputs):
        if not isinstance(outputs, dict):  # not a multi-task model: the names differ
            return super().output_shapes(outputs)
        return [(name, o.shape) for name, o in outputs.items()]

    @classmethod
    def expected_outputs(cls, meta):
        return [(name, 2, len(head["classes"])) for name, head in meta["heads"].items()]

    @classmethod
    def check_labels(cls, meta, source):
        from .metadata import check_heads

        return check_heads(meta, source)

    @classmethod
    def check_model_args(cls, injected, widths, source):
        from .metadata import check_head_outputs

        check_head_outputs(injected, widths, source)

    @classmethod
    def labels(cls, meta):
        from .heads import heads_from_json

        return {"heads": [(n, h.to_json()) for n, h in heads_from_json(meta["heads"]).items()]}

    @classmethod
    def row_layout(cls, meta, out, fmt, options):
        from .heads import heads_from_json
        from .predict import PerHead

        return PerHead(heads_from_json(meta["heads"]), meta.get("thresholds"), options.hierarchy)

    @classmethod
    def export_metadata(cls, meta, size):
        from .export import export_metadata

        return export_metadata(meta, size)

    @classmethod
    def export_summary(cls, meta):
        return {"heads": list(meta["heads"])}

    @classmethod
    def parity(cls, meta, want, got, atol):
        from .export import parity
        from .heads import heads_from_json

        return parity(heads_from_json(meta["heads"]), meta.get("thresholds") or {}, want, got, atol)

    @classmethod
    def parity_text(cls, parity):
        from ..classification.export import agreement_text

        return agreement_text(parity)

    @classmethod
    def headline(cls, summary):
        metrics = summary["metrics"]
        if metrics.get("mean_accuracy") is not None:
            return "mean_accuracy", metrics["mean_accuracy"]
        return "mean_ap", metrics["mean_ap"]
