"""`fashion export`: a checkpoint -> one self-describing file, checked against PyTorch.

The exported model takes uint8 RGB images, N x 3 x S x S (S = image_size, any N), already resized
by squashing, and returns class probabilities N x C, or for a multi-task model one output per
head, named after it (softmax or sigmoid probabilities), or for a prototype model the
probabilities and "distance" (N, the squared distance to the nearest prototype; the metadata's
rejection threshold turns it into `unknown`), or for a segmentation model per-pixel softmax
probabilities N x C x S x S (the mask is their argmax, resized to the source image with
nearest-neighbour; the metadata carries classes, palette and ignore index): normalisation and
activations are inside, so a consumer only decodes and resizes. The file carries ``file_metadata()`` as JSON: in ONNX
``metadata_props["fashion"]``, in TorchScript the extra file ``fashion.json``.
"""
import os
import time
from pathlib import Path

import numpy as np
import torch

from . import __version__
from .checkpoint import resolve_path, run_dir
from .errors import DataError, ExportError, FashionError
from .io import atomic_path
from .locks import Lock
from .predict import CheckpointEngine, check_inputs, check_out, decode, iter_inputs, probabilities
from .tasks import task_of
from .tasks.segmentation.predict import export_metadata, is_segmentation, mask_agreement

FORMAT_VERSION = 1
CHECK_IMAGES = 16


class Classifier(torch.nn.Module):
    """uint8 images -> probabilities: preprocess.normalize's arithmetic, the model, softmax; for a
    multi-task model a tuple with each head's softmax or sigmoid, in the heads' order; for a
    prototype model (probabilities, distance to the nearest prototype)."""

    def __init__(self, model, mean, std, heads=None):
        super().__init__()
        self.model, self.heads = model, heads
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1) * 255)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1) * 255)

    def forward(self, images):
        return probabilities(self.model((images.float() - self.mean) / self.std), self.heads)


def file_metadata(meta, source, distance=False):
    """What an exported file says about itself: enough to run it without fashion. ``distance``: the
    model also outputs the distance to its nearest prototype (with the rejection threshold)."""
    pre = meta["preprocessing"]
    size = int(pre["image_size"])
    if is_segmentation(meta):
        labels = export_metadata(meta, size)
    elif meta.get("heads"):
        labels = {"heads": meta["heads"], "thresholds": meta.get("thresholds") or {}, "outputs": [
            {"name": name, "dtype": "float32", "shape": ["N", len(head["classes"])],
             "activation": "softmax" if head["type"] == "categorical" else "sigmoid"}
            for name, head in meta["heads"].items()
        ]}
    else:
        labels = {"classes": list(meta["classes"]), "output": {
            "name": "probabilities", "dtype": "float32", "shape": ["N", len(meta["classes"])], "softmax": True}}
        if distance:  # `unknown` where distance > rejection.threshold
            labels.update(rejection=meta.get("rejection"), outputs=[labels["output"], {
                "name": "distance", "dtype": "float32", "shape": ["N"], "squared_to_nearest_prototype": True}])
    return {
        "format_version": FORMAT_VERSION,
        "fashion_version": __version__,
        "task": meta.get("task", "classification"),
        **labels,
        "input": {"name": "images", "dtype": "uint8", "layout": "NCHW", "channels": "RGB", "shape": ["N", 3, size, size]},
        "preprocessing": {
            "image_size": size, "resize": pre.get("resize", "squash"), "mean": list(pre["mean"]),
            "std": list(pre["std"]), "normalized_in_model": True,
        },
        "model": meta.get("model"),
        "epoch": meta.get("epoch"),
        "source": str(source),
    }


def default_out(checkpoint, suffix):
    """<run>/export/model<suffix> for <run>/checkpoints/X.pt; beside any other checkpoint."""
    return run_dir(checkpoint) / "export" / f"model{suffix}"


def _test_split_paths(meta):
    """Images of the checkpoint's own test split, if its prepared dataset is still there."""
    from .data.dataset import PreparedDataset

    root = ((meta.get("recipe") or {}).get("data") or {}).get("root")
    try:
        # a few spare paths in case some files have gone missing since prepare
        return PreparedDataset.open(root).paths("test")[:CHECK_IMAGES * 4] if root else []
    except DataError:
        return []


def sample_images(check_images, meta, size):
    """-> (uint8 N x 3 x S x S, where they came from): check images, else the test split, else noise."""
    if check_images:
        inputs = check_inputs(check_images)
        paths, origin = iter_inputs(inputs), "check images"
    else:
        paths, origin = _test_split_paths(meta), "test-split images"
    images = []
    for path in paths:  # unreadable files test nothing: skip them
        image, error = decode(path, size)
        if not error:
            images.append(image)
            if len(images) == CHECK_IMAGES:
                break
    if not images:
        if check_images:
            raise ExportError(f"no readable images among the check images: {', '.join(inputs)}")
        rng = np.random.default_rng(0)
        return rng.integers(0, 256, (8, 3, size, size), dtype=np.uint8), "random images (no test split found)"
    return np.stack(images).transpose(0, 3, 1, 2), origin


def check_parity(reference, exported, images, atol):
    """Run both engines on ``images`` -> {images, max_abs_diff, top1_agreement, atol, ok}, plus
    {"heads": {head: the same}} for a multi-task model (a sigmoid head's agreement: every label
    on or off alike at its threshold), or {"distance": ...} for a prototype model (``_distance_agreement``);
    for a segmentation model {images, max_abs_diff, mask_agreement, ...} (``mask_agreement``)."""
    if _labels(exported) != _labels(reference):
        raise ExportError(f"'{exported.source}' reads back with other classes or image size than the checkpoint")
    want, got = reference.run(images), exported.run(images)
    if is_segmentation(reference.meta):  # per-pixel probabilities: the masks' argmax agreement
        return {"images": len(images), **mask_agreement(want, got, atol)}
    if isinstance(want, dict) and reference.heads is None:  # a prototype model
        result = {"images": len(images), **_agreement(want["probabilities"], got["probabilities"], None, atol),
                  "distance": _distance_agreement(want["distance"], got["distance"], reference.threshold, atol)}
        result["ok"] &= result["distance"].pop("ok")
        return result
    if reference.heads is None:
        return {"images": len(images), **_agreement(want, got, None, atol)}
    thresholds = reference.meta.get("thresholds") or {}
    heads = {n: _agreement(want[n], got[n], thresholds.get(n, 0.5) if h.sigmoid else None, atol)
             for n, h in reference.heads.items()}
    return {
        "images": len(images), "max_abs_diff": max(h["max_abs_diff"] for h in heads.values()),
        "top1_agreement": min(h["top1_agreement"] for h in heads.values()), "atol": atol,
        "ok": all(h.pop("ok") for h in heads.values()), "heads": heads,
    }


def _labels(engine):
    """What an engine says about its outputs: an export must read back with the checkpoint's."""
    heads = None if engine.heads is None else [h.to_json() for h in engine.heads.values()]
    return engine.classes, heads, engine.threshold, engine.image_size


def _agreement(want, got, threshold, atol):
    diff = float(np.abs(want - got).max())
    if threshold is None:
        agreement = float((want.argmax(1) == got.argmax(1)).mean())
    else:
        t = np.asarray(threshold, dtype=np.float64)
        agreement = float(((want.astype(np.float64) > t) == (got.astype(np.float64) > t)).all(1).mean())
    return {"max_abs_diff": diff, "top1_agreement": agreement, "atol": atol, "ok": diff <= atol and agreement == 1.0}


def _distance_agreement(want, got, threshold, atol):
    """Distances agree to ``atol`` relative to their size (they are not bounded like probabilities),
    and so do the `unknown` decisions at ``threshold``."""
    diff = float((np.abs(want - got) / np.maximum(1.0, np.abs(want))).max())
    agreement = 1.0 if threshold is None else float(((want > threshold) == (got > threshold)).mean())
    return {"max_rel_diff": diff, "unknown_agreement": agreement, "ok": diff <= atol and agreement == 1.0}


def _agreement_text(parity):
    if "mask_agreement" in parity:
        return f"mask agreement {parity['mask_agreement']:.4f} of pixels (at least {parity['min_mask_agreement']})"
    return f"top-1 agreement {parity['top1_agreement']:.3f}"


def _distance_text(parity):
    d = parity.get("distance")
    return "" if d is None else (f", distance relative difference {d['max_rel_diff']:.3g}, "
                                 f"`unknown` agreement {d['unknown_agreement']:.3f}")


def export(checkpoint, format="onnx", out=None, check_images=None, opset=None, atol=1e-3):
    """Export ``checkpoint`` with the registered exporter ``format`` and check it; -> summary dict.

    The file is written atomically. When the parity check fails it is moved to
    ``<out stem>.failed<suffix>`` instead, ``out`` is left as it was, and ExportError says so.
    """
    from .plugins import get

    exporter = get("exporters").create(format)
    source = resolve_path(checkpoint)
    reference = CheckpointEngine(source, device="cpu")
    meta = reference.meta
    if not task_of(meta).exportable:
        raise ExportError(f"'{source}' is a {meta['task']} checkpoint, which `fashion export` cannot write")
    out = Path(out) if out else default_out(source, exporter.suffix)
    check_out(out, [] if not check_images else check_inputs(check_images), checkpoint)  # as predict's -o
    images, origin = sample_images(check_images, meta, reference.image_size)
    pre = meta["preprocessing"]
    module = Classifier(reference.model, pre["mean"], pre["std"], reference.heads).eval()
    # Batch 2, not 1: exporters may specialise a dimension of size 1 and lose the dynamic batch.
    example = torch.zeros(2, 3, reference.image_size, reference.image_size, dtype=torch.uint8)
    with torch.inference_mode():
        distance = reference.heads is None and isinstance(module(example), tuple)  # a prototype model's
    start = time.perf_counter()
    with Lock(out), atomic_path(out) as tmp:  # a second export into it is refused, not raced
        try:
            info = exporter.save(module, example, tmp, file_metadata(meta, source, distance), opset=opset) or {}
        except FashionError:
            raise
        except Exception as exc:  # exporter internals raise anything; keep the message, drop the pages
            first = (str(exc).strip().splitlines() or [""])[0][:500]
            raise ExportError(
                f"exporting '{source}' to {format} failed: {type(exc).__name__}: {first}"
            ) from exc
        parity = check_parity(reference, exporter.load(tmp), images, atol)
        if not parity["ok"]:
            failed = out.with_name(f"{out.stem}.failed{out.suffix}")
            os.replace(tmp, failed)
            raise ExportError(
                f"'{failed}' disagrees with the PyTorch model on {parity['images']} {origin}: "
                f"max abs difference {parity['max_abs_diff']:.3g} (atol {atol}), {_agreement_text(parity)}"
                f"{_distance_text(parity)}; the file is kept there for inspection "
                f"and '{out}' was "
                f"{'left unchanged' if out.exists() else 'not written'}. Try another --opset or --format, "
                "or a larger --atol if the difference is harmless"
            )
    del parity["ok"]
    return {
        "format": format, "path": str(out), "checkpoint": str(source),
        **({"heads": list(reference.heads)} if reference.heads else {"classes": len(reference.classes)}),
        "image_size": reference.image_size, "bytes": out.stat().st_size, **info,
        "parity": {**parity, "source": origin}, "seconds": round(time.perf_counter() - start, 2),
    }
