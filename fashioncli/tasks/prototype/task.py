"""The prototype task: classification plus distances to class prototypes and a rejection threshold."""
from ..classification import ClassificationTask


class PrototypeTask(ClassificationTask):
    name = "prototype"

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
