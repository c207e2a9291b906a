"""`fashion export`: a checkpoint -> one self-describing file, checked against PyTorch.

The exported model takes uint8 RGB images, N x 3 x S x S (S = image_size, any N), already resized
by squashing, and returns what its task's engines return (``Task.activation``; a classifier's
class probabilities N x C; tasks/<task>/export.py describes the others): normalisation and
activations are inside, so a consumer only decodes and resizes. The file carries
``file_metadata()`` as JSON: in ONNX ``metadata_props["fashion"]``, in TorchScript the extra file
``fashion.json``. The task decides the metadata of its outputs and the parity rule.
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
from .progress import status
from .engines import CheckpointEngine, decode
from .inputs import check_inputs, check_out, iter_inputs
from .tasks import task_of

FORMAT_VERSION = 1
CHECK_IMAGES = 16


class PackagedModel(torch.nn.Module):
    """What an exported file holds: uint8 images -> the outputs of the model's task (``Task.activation``:
    a classifier's softmax probabilities), with preprocess.normalize's arithmetic inside."""

    def __init__(self, model, meta):
        super().__init__()
        pre = meta["preprocessing"]
        self.model, self.activate = model, task_of(meta).activation(meta)
        self.register_buffer("mean", torch.tensor(pre["mean"], dtype=torch.float32).view(1, -1, 1, 1) * 255)
        self.register_buffer("std", torch.tensor(pre["std"], dtype=torch.float32).view(1, -1, 1, 1) * 255)

    def forward(self, images):
        return self.activate(self.model((images.float() - self.mean) / self.std))


def file_metadata(meta, source):
    """What an exported file says about itself: enough to run it without fashion."""
    pre = meta["preprocessing"]
    size = int(pre["image_size"])
    task = task_of(meta)
    return {
        "format_version": FORMAT_VERSION,
        "fashion_version": __version__,
        "task": task.name,
        **task.export_metadata(meta, size),
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


def _default_suffix(entry, exporter):
    """The exporter's own ``suffix``, else the first suffix it registered."""
    suffix = getattr(exporter, "suffix", None) or next(iter(entry.extra.get("suffixes") or ()), None)
    if not suffix:
        raise ExportError(f"exporter '{entry.name}' (plugin '{entry.plugin}') names no file suffix; pass --out")
    return suffix


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
    """Run both engines on ``images`` -> {images, ..., ok}: the task's parity rule (``Task.parity``)."""
    if _read_back(exported) != _read_back(reference):
        raise ExportError(f"'{exported.source}' reads back with other classes or image size than the checkpoint")
    want, got = reference.run(images), exported.run(images)
    return {"images": len(images), **reference.task.parity(reference.meta, want, got, atol)}


def _read_back(engine):
    """What an engine says about its outputs: an export must read back with the checkpoint's."""
    return engine.task.name, engine.task.labels(engine.meta), engine.image_size


def export(checkpoint, format="onnx", out=None, check_images=None, opset=None, atol=1e-3, progress=False):
    """Export ``checkpoint`` with the registered exporter ``format`` and check it; -> summary dict.
    ``progress``: a status line on stderr as each step starts.

    The file is written atomically. When the parity check fails it is moved to
    ``<out stem>.failed<suffix>`` instead, ``out`` is left as it was, and ExportError says so.
    """
    from .plugins import get

    entry = get("exporters").get(format)
    exporter = entry.factory()
    source = resolve_path(checkpoint)
    reference = CheckpointEngine(source, device="cpu")
    meta, task = reference.meta, reference.task
    if not task.exportable:
        raise ExportError(f"'{source}' is a {task.name} checkpoint, which `fashion export` cannot write")
    out = Path(out) if out else default_out(source, _default_suffix(entry, exporter))
    check_out(out, [] if not check_images else check_inputs(check_images), checkpoint)  # as predict's -o
    images, origin = sample_images(check_images, meta, reference.image_size)
    module = PackagedModel(reference.model, meta).eval()
    # Batch 2, not 1: exporters may specialise a dimension of size 1 and lose the dynamic batch.
    example = torch.zeros(2, 3, reference.image_size, reference.image_size, dtype=torch.uint8)
    start = time.perf_counter()
    with Lock(out), atomic_path(out) as tmp:  # a second export into it is refused, not raced
        status(f"export: writing '{out}' ({format})", progress)
        try:
            info = exporter.save(module, example, tmp, file_metadata(meta, source), opset=opset) or {}
        except FashionError:
            raise
        except Exception as exc:  # exporter internals raise anything; keep the message, drop the pages
            first = (str(exc).strip().splitlines() or [""])[0][:500]
            raise ExportError(
                f"exporting '{source}' to {format} failed: {type(exc).__name__}: {first}"
            ) from exc
        # The registered engine for the format (``open``); an exporter registered without one loads it itself.
        opener = entry.extra.get("open")
        exported = opener(tmp, device="cpu") if opener else exporter.load(tmp)
        status(f"export: checking it against PyTorch on {len(images)} {origin}", progress)
        parity = check_parity(reference, exported, images, atol)
        if not parity["ok"]:
            failed = out.with_name(f"{out.stem}.failed{out.suffix}")
            os.replace(tmp, failed)
            raise ExportError(
                f"'{failed}' disagrees with the PyTorch model on {parity['images']} {origin}: "
                f"max abs difference {parity['max_abs_diff']:.3g} (atol {atol}), {task.parity_text(parity)}; "
                f"the file is kept there for inspection "
                f"and '{out}' was "
                f"{'left unchanged' if out.exists() else 'not written'}. Try another --opset or --format, "
                "or a larger --atol if the difference is harmless"
            )
    del parity["ok"]
    return {
        "format": format, "path": str(out), "checkpoint": str(source),
        **task.export_summary(meta),
        "image_size": reference.image_size, "bytes": out.stat().st_size, **info,
        "parity": {**parity, "source": origin}, "seconds": round(time.perf_counter() - start, 2),
    }
