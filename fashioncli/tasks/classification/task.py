"""The classification task: one label per image; the recipe's data.classes may hold classes out."""
import numpy as np

from ...errors import RecipeError
from ..base import Task, log_probabilities, logits_of


class ClassificationTask(Task):
    name = "classification"
    dataset_kind = "classification"
    holds_classes_out = True
    mixes = True

    # -- prepare
    @classmethod
    def preparation(cls):
        from .prepare import ClassificationPreparation

        return ClassificationPreparation

    @classmethod
    def prepares(cls, imported):
        """Any source that declares no kind of its own (nor heads or masks, which other tasks claim)."""
        from ..preparation import FALLBACK

        return FALLBACK if imported.kind is None else super().prepares(imported)

    # -- train
    def __init__(self, recipe, data):
        super().__init__(recipe, data)
        self.classes = _chosen_classes(recipe["data"].get("classes"), data)
        self.held_out = [c for c in data.classes if c not in self.classes]
        # dataset label -> model class (the recipe's order); -1 for a held-out class
        self.index = np.array([self.classes.index(c) if c in self.classes else -1 for c in data.classes], np.int64)

    def model_args(self):
        return {"num_classes": len(self.classes)}

    def rows(self, data, split):
        """The split's images of the chosen classes (None: all)."""
        return np.flatnonzero(self.targets(data, split) >= 0) if self.held_out else None

    def strata(self, data, split):
        return self.targets(data, split)

    def targets(self, data, split):
        return self.index[data.labels(split)]

    def criterion(self):
        from ...plugins import get

        loss = self.recipe["loss"]
        return get("losses").create(loss["name"], **loss["args"], **self.weight_args())

    def weight_args(self):
        """The loss's per-class weights from the recipe's class_weight and the train split (computed once)."""
        from ..class_weights import loss_args, setting, softmax_weights

        chosen = setting(self.recipe.get("class_weight"), "recipe")
        if chosen is None:
            return {}
        if not self.class_weights:
            targets = self.targets(self.data, self.recipe["data"]["train_split"])
            counts = np.bincount(targets[targets >= 0], minlength=len(self.classes))
            weights = softmax_weights(counts, *chosen)
            self.class_weights = {"loss": {"mode": chosen[0], "cap": chosen[1], "argument": None,
                                           "weights": dict(zip(self.classes, weights)),
                                           "train_images": dict(zip(self.classes, counts.tolist()))}}
        entry = self.class_weights["loss"]
        args = loss_args(self.recipe["loss"], self.recipe["loss"]["args"], list(entry["weights"].values()), False, "recipe")
        entry["argument"] = next(iter(args))
        return args

    def correct(self, outputs, targets):
        return (logits_of(outputs).argmax(1) == targets).sum(), targets.numel()

    def validate(self, outputs, targets):
        import torch

        from .metrics import classification_metrics

        logits = logits_of(outputs).float()
        metrics = classification_metrics(logits, targets, self.classes, topk=self.recipe["eval"]["topk"])
        loss = torch.nn.functional.cross_entropy(logits, targets).item()
        return {"val_loss": loss, **{f"val_{k}": v for k, v in metrics.items() if isinstance(v, (int, float))}}

    def monitor(self):
        return "val_accuracy"

    def preview_tile(self, image, target):
        return image, self.classes[int(target)]

    def meta(self):
        meta = {"classes": self.classes}
        if self.held_out:
            meta["held_out"] = self.held_out
        return meta

    # -- eval
    @classmethod
    def evaluate(cls, model, meta, root, split, out, options):
        from .evaluate import evaluate_classification

        return evaluate_classification(cls, model, meta, root, split, out, options)

    @classmethod
    def meets_unseen(cls, meta):
        """Whether eval scores images of classes the model does not know (held out by the recipe)."""
        return bool(meta.get("held_out"))

    @classmethod
    def unseen_score(cls, outputs):
        """-> (per-image score that is higher for unseen images, its name): 1 - top-1 probability."""
        return 1 - logits_of(outputs).softmax(1).max(1).values, "1-max_probability"

    @classmethod
    def open_set_extras(cls, model, meta, outputs, targets, score, unseen, present, out):
        """-> ({summary entries}, [files]) a task adds to the open-set figures: none here."""
        return {}, []

    # -- predict and export
    @classmethod
    def raw_outputs(cls, meta, outputs):
        """Log-probabilities as the logits eval reads."""
        return log_probabilities(outputs)

    @classmethod
    def row_layout(cls, meta, out, fmt, options):
        from .predict import TopK

        return TopK(list(meta["classes"]), min(options.topk, len(meta["classes"])))

    @classmethod
    def export_metadata(cls, meta, size):
        from .export import export_metadata

        return export_metadata(meta, size)

    @classmethod
    def parity(cls, meta, want, got, atol):
        from .export import agreement

        return agreement(want, got, None, atol)

    @classmethod
    def parity_text(cls, parity):
        from .export import agreement_text

        return agreement_text(parity)


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
