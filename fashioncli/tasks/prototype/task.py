"""The prototype task: classification plus distances to class prototypes and a rejection threshold."""
from ..base import log_probabilities
from ..classification import ClassificationTask


class PrototypeTask(ClassificationTask):
    name = "prototype"
    mixes = False  # its loss pulls each image to its own class's prototype

    # -- prepare
    @classmethod
    def prepares(cls, imported):
        """None: prototype models train on classification datasets, which classification prepares."""
        return 0

    # -- train
    def __init__(self, recipe, data):
        super().__init__(recipe, data)
        self.rejection = None

    def validate(self, outputs, targets):
        metrics = super().validate(outputs, targets)
        self.rejection = self.reject_settings(outputs["distances"])
        return metrics

    def reject_settings(self, distances):
        """The rejection threshold: the recipe's eval.reject.threshold, else the one that rejects
        eval.reject.false_rejection_rate of these (validation) images; it travels with the
        checkpoint of these weights to eval, predict and export."""
        from .openset import calibrate_threshold

        reject = self.recipe["eval"]["reject"]
        if reject["threshold"] is not None:
            return {"threshold": reject["threshold"], "source": "recipe"}
        rate = reject["false_rejection_rate"]
        return {"threshold": calibrate_threshold(distances, rate), "false_rejection_rate": rate, "source": "validation"}

    def meta(self):
        meta = super().meta()
        if self.rejection:
            meta["rejection"] = self.rejection
        return meta

    # -- eval
    @classmethod
    def meets_unseen(cls, meta):
        return bool(meta.get("held_out") or meta.get("rejection"))

    @classmethod
    def unseen_score(cls, outputs):
        from .openset import min_distance

        return min_distance(outputs["distances"]), "min_distance"

    @classmethod
    def open_set_extras(cls, model, meta, outputs, targets, score, unseen, present, out):
        from .evaluate import embedding_plot, rejection_reports

        entries = rejection_reports(meta, outputs, targets, score, present)
        return entries, embedding_plot(model, meta, outputs, targets, unseen, out)

    # -- predict and export
    # Besides the probabilities, each image's distance to its nearest prototype.
    @classmethod
    def threshold(cls, meta):
        """The distance (squared) to the nearest prototype beyond which the model says `unknown`; None: never."""
        return (meta.get("rejection") or {}).get("threshold")

    @classmethod
    def check_labels(cls, meta, source):
        from ...model_meta import check_mapping, is_finite_number, metadata_error, show

        widths = super().check_labels(meta, source)
        threshold = check_mapping(meta, "rejection", source, required=False).get("threshold")
        if threshold is not None and not is_finite_number(threshold):
            raise metadata_error(source, f"'rejection.threshold' must be a finite number, got {show(threshold)}")
        return widths

    @classmethod
    def activation(cls, meta):
        from .openset import min_distance

        def probabilities_and_distance(outputs):
            return outputs["logits"].softmax(1), min_distance(outputs["distances"])
        return probabilities_and_distance

    @classmethod
    def engine_outputs(cls, meta, results):
        """-> {"probabilities": N x C, "distance": (N,)}."""
        from .export import OUTPUTS

        return dict(zip(OUTPUTS, results))

    @classmethod
    def raw_outputs(cls, meta, outputs):
        """{"logits": log-probabilities, "distances": N x 1, the nearest prototype's}: enough for eval's
        accuracy, open-set score and rejection (an export has no embedding to plot)."""
        import torch

        return {"logits": log_probabilities(outputs["probabilities"]),
                "distances": torch.as_tensor(outputs["distance"]).float().reshape(-1, 1)}

    @classmethod
    def output_shapes(cls, outputs):
        if not isinstance(outputs, dict) or "distances" not in outputs:  # not a prototype model: counts differ
            return super().output_shapes(outputs)
        logits = outputs["logits"]
        return [("probabilities", logits.shape), ("distance", logits.shape[:1])]

    @classmethod
    def expected_outputs(cls, meta):
        return [*super().expected_outputs(meta), ("distance", 1, None)]

    @classmethod
    def labels(cls, meta):
        return {**super().labels(meta), "threshold": cls.threshold(meta)}

    @classmethod
    def row_layout(cls, meta, out, fmt, options):
        from .predict import NearestPrototypeRows

        classes = list(meta["classes"])
        return NearestPrototypeRows(classes, min(options.topk, len(classes)), cls.threshold(meta))

    @classmethod
    def export_metadata(cls, meta, size):
        from .export import export_metadata

        return export_metadata(meta, size)

    @classmethod
    def parity(cls, meta, want, got, atol):
        from .export import parity

        return parity(cls.threshold(meta), want, got, atol)

    @classmethod
    def parity_text(cls, parity):
        from .export import parity_text

        return parity_text(parity)
