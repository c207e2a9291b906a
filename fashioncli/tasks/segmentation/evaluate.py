"""`fashion eval` for segmentation checkpoints: one confusion matrix over a prepared split.

Predictions are scored at each mask's own resolution (the prepared full-size PNG), not at the
model's input size: logits are resized bilinearly to the mask before the argmax, as a deployed
model's masks would be. Class sets (the dataset's, e.g. the 17 evaluated classes, plus
foreground/background) are exact merges of the one matrix (metrics.py).
"""
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ...data.loaders import make_loader
from ...progress import bar
from ...errors import DataError
from ...data.masks import read_index_mask, resize_mask
from ...io import write_csv, write_json
from ...data.preprocess import normalize
from .metrics import confusion, segmentation_report
from .render import colours_of, grid_png

GRID_SAMPLES = 6


class _Rows(Dataset):
    """(uint8 CHW image from the cache, row index): masks are read at full size in the main loop."""

    def __init__(self, images):
        self.images = images

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return torch.from_numpy(np.array(self.images[i])).permute(2, 0, 1), i


def segment_logits(model, x, tta=None):
    """Float32 logits of a normalised batch, averaged over the test-time views (tta.py), each
    mapped back onto the image first."""
    from ...tta import augmented_views, enabled, unflip

    if not enabled(tta):
        return model(x).float()
    return torch.stack(unflip([model(v).float() for v in augmented_views(x, tta)], tta)).mean(0)


def class_sets_of(meta, recipe_sets=None):
    """The class sets eval reports: the dataset's (checkpoint meta) and the recipe's eval.class_sets."""
    return {**(meta.get("class_sets") or {}), **(recipe_sets or {})}


def evaluate_segmentation(model, meta, root, split, out, options):
    """Score ``model`` on ``split`` of the prepared dataset ``root``; writes summary.json,
    per_class.csv, confusion_matrix.csv and grid.png into ``out``; returns the summary."""
    from ...data.dataset import PreparedDataset

    if not (root / "dataset.json").is_file():
        raise DataError(f"'{root}' is not a prepared dataset; segmentation eval needs masks: "
                        f"fashion prepare {root} OUT, then --data OUT")
    data = PreparedDataset.open(root).require("segmentation")
    classes, pre = meta["classes"], meta["preprocessing"]
    if data.classes != classes:
        raise DataError(f"'{root}' has classes {data.classes[:4]}...; the model was trained on {classes[:4]}... "
                        "(prepare the data with the same --classes)")
    rows = data.rows(split)
    batch_size, device, num_workers, tta = options.batch_size, options.device, options.num_workers, options.tta
    if not rows:
        raise DataError(f"split '{split}' of '{root}' is empty")
    size, ignore = pre["image_size"], meta.get("ignore_index", 255)
    images = data.cache(split, size)
    loader = make_loader(_Rows(images), batch_size, num_workers=num_workers)
    conf = torch.zeros(len(classes), len(classes), dtype=torch.int64)
    picks = set(np.linspace(0, len(rows) - 1, min(GRID_SAMPLES, len(rows))).round().astype(int).tolist())
    samples = []
    model.eval()
    with torch.inference_mode():
        for x, index in bar(loader, options.progress, enabled=options.progress is not None):
            logits = segment_logits(model, normalize(x.to(device), pre["mean"], pre["std"]), tta)
            for j, i in enumerate(index.tolist()):
                mask = read_index_mask(rows[i]["mask"])
                truth = torch.from_numpy(mask.astype(np.int64))
                full = F.interpolate(logits[j:j + 1], size=truth.shape, mode="bilinear", align_corners=False)
                pred = full.argmax(1)[0].cpu()
                conf += confusion(pred, truth, len(classes), ignore)
                if i in picks:
                    samples.append((np.array(images[i]), resize_mask(mask, size, size), logits[j].argmax(0).cpu().numpy()))
    report = segmentation_report(conf, classes, class_sets_of(meta, (meta.get("recipe") or {}).get("eval", {}).get("class_sets")))
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "per_class.csv", ["class", "iou", "precision", "recall", "pixels", "predicted"],
               [[r["class"], r["iou"], r["precision"], r["recall"], r["pixels"], r["predicted"]] for r in report["per_class"]])
    write_csv(out / "confusion_matrix.csv", ["truth \\ prediction", *classes],
               [[c, *row] for c, row in zip(classes, conf.tolist())])
    write_json(out / "class_sets.json", report["class_sets"])  # each set's classes and per-class IoU
    grid_png(out / "grid.png", samples, colours_of(meta), classes)
    metrics = {k: v for k, v in report.items() if k not in ("per_class", "class_sets", "miou_averages")}
    metrics.update({f"miou_{name}": entry["miou"] for name, entry in report["class_sets"].items()})
    summary = {"data": str(root), "split": split, "num_samples": len(rows), "num_classes": len(classes),
               "metrics": metrics, "class_sets": {n: len(e["classes"]) for n, e in report["class_sets"].items()},
               # each mIoU's class count, and the classes without pixels in truth or prediction
               "miou_averages": report["miou_averages"],
               "out": str(out),
               "files": ["summary.json", "per_class.csv", "class_sets.json", "confusion_matrix.csv", "grid.png"]}
    write_json(out / "summary.json", summary)
    return summary

