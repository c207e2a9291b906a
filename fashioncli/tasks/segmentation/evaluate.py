"""`fashion eval` for segmentation checkpoints: one confusion matrix over a prepared split.

Predictions are scored at each mask's own resolution (the prepared full-size PNG), not at the
model's input size: logits are resized bilinearly to the mask before the argmax, as a deployed
model's masks would be. Class sets (the dataset's, e.g. the 17 evaluated classes, plus
foreground/background) are exact merges of the one matrix (metrics.py).
"""
from pathlib import Path

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
from .metrics import confusion, mean_iou, segmentation_report
from .render import colourise, colours_of, grid_png

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
    samples, shown = [], []  # grid.png's (at the model's size) and report.html's (at the mask's)
    model.eval()
    with torch.inference_mode():
        for x, index in bar(loader, options.progress, enabled=options.progress is not None):
            logits = segment_logits(model, normalize(x.to(device), pre["mean"], pre["std"]), tta)
            for j, i in enumerate(index.tolist()):
                mask = read_index_mask(rows[i]["mask"])
                truth = torch.from_numpy(mask.astype(np.int64))
                full = F.interpolate(logits[j:j + 1], size=truth.shape, mode="bilinear", align_corners=False)
                pred = full.argmax(1)[0].cpu()
                mine = confusion(pred, truth, len(classes), ignore)
                conf += mine
                if i in picks:
                    samples.append((np.array(images[i]), resize_mask(mask, size, size), logits[j].argmax(0).cpu().numpy()))
                    shown.append((i, mask, pred.numpy(), mean_iou(mine)))
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
    if options.report is not None:
        report_sections(options.report, report, metrics, conf, classes, meta, rows, images, shown)
    return summary


def report_sections(page, report, metrics, conf, classes, meta, rows, images, shown):
    """report.html: per-class IoU as bars beside the recipe's reference figures (eval.reference, when
    they were measured on this data: ``page.reference``), the per-class table, the pixel confusion
    matrix, and sample rows image | truth | prediction at the mask's own resolution with each
    image's IoU."""
    from ...plots import bar_chart
    from ...report import loose, picture_uri

    per_class = report["per_class"]
    given = page.reference
    reference = {k: {"measured": metrics.get(k), "report": v["report"]} for k, v in (given.get("reference") or {}).items()}
    lines = {"mIoU": report["miou"], **({"report's mIoU": reference["miou"]["report"]} if reference and "miou" in reference else {})}
    chart = loose().figure(bar_chart([r["class"] for r in per_class], [r["iou"] for r in per_class],
                                     "IoU per class", "IoU", lines=lines),
                           caption="n/a: a class in neither the truth nor the prediction")
    figures = loose()
    if reference:
        figures.table(["metric", "measured", "report", "measured − report"],
                      [[k, v["measured"], v["report"], None if v["measured"] is None or v["report"] is None
                        else v["measured"] - v["report"]] for k, v in reference.items()],
                      title="against the reference figures (eval.reference)")
    else:
        figures.text(given.get("reference_left_out") or "The recipe gives no reference figures (eval.reference) to compare with.")
    if report["class_sets"]:
        figures.table(["class set", "classes", "mIoU"],
                      [[name, len(entry["classes"]), entry["miou"]] for name, entry in report["class_sets"].items()],
                      title="class sets", bars=("mIoU",))
    page.section("IoU per class").side_by_side(chart, figures)
    page.section("Per class").table(["class", "iou", "precision", "recall", "pixels", "predicted"],
                                    [[r[k] for k in ("class", "iou", "precision", "recall", "pixels", "predicted")]
                                     for r in per_class], bars=("iou", "precision", "recall"))
    page.section("Confusion matrix", "Counted in pixels, at each mask's own resolution.").matrix(
        classes, conf.numpy(), title="")
    colours = colours_of(meta)
    table, seen = [], set()
    for i, truth, pred, iou in shown:
        image = _full_image(rows[i]["path"], images[i], truth.shape)
        seen.update(np.unique(truth).tolist() + np.unique(pred).tolist())
        table.append({"cells": [picture_uri(image, "jpeg"), picture_uri(colourise(truth, colours)),
                                picture_uri(colourise(pred, colours))],
                      "text": [Path(rows[i]["path"]).name, f"{truth.shape[1]}×{truth.shape[0]} px",
                               "IoU " + ("n/a" if iou != iou else f"{iou:.3f}")]})
    legend = [(classes[c], colours[c]) for c in sorted(seen) if 0 <= c < len(classes)]
    page.section("Samples", "Each image at its own resolution: the photo, the true mask, the prediction; IoU is "
                 "the mean over the classes in its truth or prediction.").image_rows(
        ["image", "truth", "prediction", ""], table, legend)


def _full_image(path, cached, shape):
    """The photo at the mask's resolution: the source file, else the cached copy (a moved source)."""
    import cv2

    from ...data.images import read_image

    try:
        image = read_image(path)
    except Exception:  # a moved or unreadable source: the model's own input still shows the scene
        image = np.array(cached)
    if image.shape[:2] != tuple(shape):
        image = cv2.resize(image, (shape[1], shape[0]), interpolation=cv2.INTER_AREA)
    return image

