"""The segmentation task: a class per pixel; masks as targets, mIoU to monitor."""
from ..base import Task, log_probabilities


class SegmentationTask(Task):
    name = "segmentation"
    dataset_kind = "segmentation"

    # -- prepare
    @classmethod
    def preparation(cls):
        from .prepare import SegmentationPreparation

        return SegmentationPreparation

    @classmethod
    def prepares(cls, imported):
        """A source with masks."""
        from ..preparation import CLAIMS

        return CLAIMS if imported.masks is not None else super().prepares(imported)

    # -- train
    def __init__(self, recipe, data):
        super().__init__(recipe, data)
        self.classes = list(data.classes)
        self.ignore_index = data.meta.get("ignore_index", 255)
        self.class_sets = data.meta.get("class_sets") or {}

    def model_args(self):
        return {"num_classes": len(self.classes)}

    def targets(self, data, split):
        from .prepare import mask_cache

        return mask_cache(data, split, self.recipe["data"]["image_size"])

    spatial_targets = True

    def dataset(self, images, masks, transform=None):
        from ...data.loaders import CachedMasks

        return CachedMasks(images, masks, transform)

    def criterion(self):
        import inspect

        from ...plugins import get

        loss = self.recipe["loss"]
        factory = get("losses").get(loss["name"]).factory
        args = dict(loss["args"])
        # The prepared masks' "no label" value reaches every loss that can skip it.
        if "ignore_index" in inspect.signature(factory).parameters:
            args.setdefault("ignore_index", self.ignore_index)
        return get("losses").create(loss["name"], **args)

    def preview_tile(self, image, target):
        """The mask's colours over the image, captioned with the classes it holds (most pixels first)."""
        import numpy as np

        from .render import colours_of, overlay

        mask = np.asarray(target)
        colours = colours_of({**self.data.meta, "classes": self.classes})
        counts = np.bincount(mask[(mask > 0) & (mask < len(self.classes))].ravel(), minlength=len(self.classes))
        shown = [self.classes[c] for c in np.argsort(-counts)[:3] if counts[c]]
        return overlay(image, np.where(mask < len(self.classes), mask, 0), colours), ", ".join(shown) or "background"

    def correct(self, outputs, targets):
        """(right, labelled) pixels of a training batch: the progress bar's pixel accuracy."""
        valid = targets != self.ignore_index
        return ((outputs.argmax(1) == targets) & valid).sum(), valid.sum()

    def reduce(self, outputs, targets):
        """One validation batch -> ({"pred": uint8 argmax masks, "loss": the batch's loss per row}, uint8
        masks), so that a split's per-pixel logits never sit in memory at once."""
        import torch

        if not hasattr(self, "_loss"):
            self._loss = self.criterion().to(outputs.device)
        targets = targets.to(outputs.device)
        loss = self._loss(outputs, targets).float()
        return {"pred": outputs.argmax(1).to(torch.uint8), "loss": loss.expand(len(outputs))}, targets.to(torch.uint8)

    def validate(self, outputs, targets):
        from .metrics import confusion, segmentation_report

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

    # -- eval
    @classmethod
    def evaluate(cls, model, meta, root, split, out, options):
        from .evaluate import evaluate_segmentation

        return evaluate_segmentation(model, meta, root, split, out, options)

    # -- predict and export
    # Per-pixel probabilities N x C x S x S; predict writes masks and overlays beside its rows.
    @classmethod
    def raw_outputs(cls, meta, outputs):
        """Per-pixel log-probabilities as logits: they differ from the model's by one number per pixel,
        the same for every class, so eval's bilinear resizing to the mask keeps the same argmax."""
        return log_probabilities(outputs)

    @classmethod
    def expected_outputs(cls, meta):
        return [("probabilities", 4, len(meta["classes"]))]

    @classmethod
    def row_layout(cls, meta, out, fmt, options):
        from .predict import MaskRows

        return MaskRows(meta, out, fmt, options.overlay, options.num_workers, options.save_dir)

    @classmethod
    def check_tta(cls, tta):
        from ...tta import check_per_pixel

        check_per_pixel(tta)

    @classmethod
    def export_metadata(cls, meta, size):
        from .export import export_metadata

        return export_metadata(meta, size)

    @classmethod
    def parity(cls, meta, want, got, atol):
        from .export import mask_agreement

        return mask_agreement(want, got, atol)

    @classmethod
    def parity_text(cls, parity):
        from .export import agreement_text

        return agreement_text(parity)

    @classmethod
    def agreement(cls, parity):
        return parity["mask_agreement"]

    @classmethod
    def headline(cls, summary):
        return "miou", summary["metrics"]["miou"]
