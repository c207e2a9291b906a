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
# A reduced-precision export (--quantize int8, --half): calibrated on this many images of the
# train split, and compared with the float export over this many test-split images and the
# test split's metric (fashion eval's, for both files).
CALIBRATION_IMAGES = 128
AGREEMENT_IMAGES = 512
MIN_AGREEMENT = 0.98
MAX_METRIC_DROP = 0.01  # one point of accuracy or mIoU


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


def _data_root(meta):
    return ((meta.get("recipe") or {}).get("data") or {}).get("root")


def _split_paths(meta, split, limit, spread=False):
    """Up to ``limit`` images of a split of the checkpoint's prepared dataset, if it is still there
    (``spread``: evenly spaced over the split, so that every class is in; else its first ones)."""
    from .data.dataset import PreparedDataset

    root = _data_root(meta)
    try:
        paths = PreparedDataset.open(root).paths(split) if root else []
    except DataError:
        return []
    return paths[::max(1, len(paths) // limit)][:limit] if spread else paths[:limit]


def _decoded(paths, size, limit):
    """The first ``limit`` readable images of ``paths`` -> uint8 N x 3 x S x S (N may be 0)."""
    images = []
    for path in paths:  # unreadable files test nothing: skip them
        image, error = decode(path, size)
        if not error:
            images.append(image)
            if len(images) == limit:
                break
    return np.stack(images).transpose(0, 3, 1, 2) if images else np.zeros((0, 3, size, size), np.uint8)


def sample_images(check_images, meta, size):
    """-> (uint8 N x 3 x S x S, where they came from): check images, else the test split, else noise."""
    if check_images:
        inputs = check_inputs(check_images)
        paths, origin = iter_inputs(inputs), "check images"
    else:  # a few spare paths in case some files have gone missing since prepare
        paths, origin = _split_paths(meta, "test", CHECK_IMAGES * 4), "test-split images"
    images = _decoded(paths, size, CHECK_IMAGES)
    if not len(images):
        if check_images:
            raise ExportError(f"no readable images among the check images: {', '.join(inputs)}")
        rng = np.random.default_rng(0)
        return rng.integers(0, 256, (8, 3, size, size), dtype=np.uint8), "random images (no test split found)"
    return images, origin


def check_parity(reference, exported, images, atol):
    """Run both engines on ``images`` -> {images, ..., ok}: the task's parity rule (``Task.parity``)."""
    if _read_back(exported) != _read_back(reference):
        raise ExportError(f"'{exported.source}' reads back with other classes or image size than the checkpoint")
    want, got = reference.run(images), exported.run(images)
    return {"images": len(images), **reference.task.parity(reference.meta, want, got, atol)}


def _read_back(engine):
    """What an engine says about its outputs: an export must read back with the checkpoint's."""
    return engine.task.name, engine.task.labels(engine.meta), engine.image_size


def calibration_batches(meta, size, batch_size=16):
    """uint8 batches of the train split's images (else the val split's) for int8's calibration;
    none without a prepared dataset (int8 is then dynamic quantization)."""
    for split in ("train", "val"):
        images = _decoded(_split_paths(meta, split, CALIBRATION_IMAGES * 2, spread=True), size, CALIBRATION_IMAGES)
        if len(images):
            return [images[i:i + batch_size] for i in range(0, len(images), batch_size)], f"{split} split"
    return [], None


def _batched_agreement(task, meta, reference, reduced, images, batch_size=32):
    """``task.agreement`` of the two engines over ``images``, batch by batch, weighted by batch size."""
    total = 0.0
    for i in range(0, len(images), batch_size):
        batch = images[i:i + batch_size]
        total += task.agreement(task.parity(meta, reference.run(batch), reduced.run(batch), float("inf"))) * len(batch)
    return total / len(images)


def _test_metric(engines, meta):
    """{name, float, reduced, drop}: the task's headline metric (``Task.headline``) of each engine on the
    checkpoint's test split, as `fashion eval` of each file reports it; {why} where it cannot be had."""
    import tempfile

    from .engine_model import EngineModel
    from .tasks.base import EvalOptions

    root = _data_root(meta)
    if not root or not _split_paths(meta, "test", 1):
        return {"why": "no prepared test split found"}
    values = {}
    with tempfile.TemporaryDirectory(prefix="fashion-export-") as tmp:
        for key, engine in engines.items():
            try:
                summary = engine.task.evaluate(EngineModel(engine), engine.meta, Path(root), "test", Path(tmp) / key,
                                               EvalOptions(batch_size=64, device="cpu", num_workers=0))
            except (FashionError, NotImplementedError) as exc:  # a task whose exports eval cannot score
                return {"why": str(exc)}
            name, values[key] = engine.task.headline(summary)
    return {"name": name, **values, "drop": round(values["float"] - values["reduced"], 6)}


def check_reduced(reference, reduced, images, checkpoint_meta, min_agreement=MIN_AGREEMENT,
                  max_metric_drop=MAX_METRIC_DROP):
    """A reduced-precision export against the float one it came from: labels on ``images`` and the
    metric on the test split of ``checkpoint_meta``'s dataset -> {images, agreement, min_agreement,
    metric, max_metric_drop, ok}."""
    agreement = _batched_agreement(reference.task, reference.meta, reference, reduced, images)
    metric = _test_metric({"float": reference, "reduced": reduced}, checkpoint_meta)
    ok = agreement >= min_agreement and metric.get("drop", 0) <= max_metric_drop
    return {"images": len(images), "agreement": round(agreement, 6), "min_agreement": min_agreement,
            "metric": metric, "max_metric_drop": max_metric_drop, "ok": ok}


def _reduced_text(check):
    metric = check["metric"]
    text = f"label agreement {check['agreement']:.4f} over {check['images']} images (at least {check['min_agreement']})"
    if "drop" in metric:
        return (f"{text}, test {metric['name']} {metric['float']:.4f} -> {metric['reduced']:.4f} "
                f"(at most {check['max_metric_drop']} lower)")
    return f"{text}, test metric not compared: {metric['why']}"


def _reduce(exporter, opener, exported, written, tmp, out, precision, meta, images, min_agreement, max_metric_drop):
    """The float export ``written`` -> ``tmp`` at ``precision``, checked against it (``check_reduced``)
    over the test split (else the parity images) -> its summary entry; fails as a parity failure does."""
    batches, calibrated_on = calibration_batches(meta, exported.image_size) if precision == "int8" else ([], None)
    try:
        facts = exporter.convert(written, tmp, precision, batches)
    except Exception as exc:  # the converter's internals raise anything; keep the message, drop the pages
        first = (str(exc).strip().splitlines() or [""])[0][:500]
        raise ExportError(f"writing the {precision} file failed: {type(exc).__name__}: {first}") from exc
    tested = _decoded(_split_paths(meta, "test", AGREEMENT_IMAGES), exported.image_size, AGREEMENT_IMAGES)
    check = check_reduced(exported, opener(tmp, device="cpu"), tested if len(tested) else images, meta,
                          min_agreement, max_metric_drop)
    if not check.pop("ok"):
        failed = out.with_name(f"{out.stem}.failed{out.suffix}")
        os.replace(tmp, failed)
        raise ExportError(f"'{failed}' ({precision}) falls short of the float export: {_reduced_text(check)}; "
                          f"the file is kept there for inspection and '{out}' was "
                          f"{'left unchanged' if out.exists() else 'not written'}")
    return {**facts, **({"calibration": calibrated_on} if calibrated_on else {}), **check,
            "float_bytes": written.stat().st_size}


def export(checkpoint, format="onnx", out=None, check_images=None, opset=None, atol=1e-3, precision=None,
           min_agreement=MIN_AGREEMENT, max_metric_drop=MAX_METRIC_DROP, progress=False):
    """Export ``checkpoint`` with the registered exporter ``format`` and check it; -> summary dict.
    ``progress``: a status line on stderr as each step starts.

    The file is written atomically. When the parity check fails it is moved to
    ``<out stem>.failed<suffix>`` instead, ``out`` is left as it was, and ExportError says so.
    ``precision`` "int8" or "fp16" writes a reduced-precision file from the float export (the
    exporter's ``convert``; int8 calibrated on the train split, ``calibration_batches``); it must
    agree with the float file on at least ``min_agreement`` of the test-split images' labels and
    lose at most ``max_metric_drop`` of the test split's metric (``check_reduced``), or it fails
    the same way.
    """
    from .plugins import get

    entry = get("exporters").get(format)
    exporter = entry.factory()
    if precision is not None and not hasattr(exporter, "convert"):
        raise ExportError(f"exporter '{format}' cannot write {precision} files; use --format onnx")
    source = resolve_path(checkpoint)
    reference = CheckpointEngine(source, device="cpu")
    meta, task = reference.meta, reference.task
    if not task.exportable:
        raise ExportError(f"'{source}' is a {task.name} checkpoint, which `fashion export` cannot write")
    suffix = _default_suffix(entry, exporter)
    out = Path(out) if out else default_out(source, f".{precision}{suffix}" if precision else suffix)
    check_out(out, [] if not check_images else check_inputs(check_images), checkpoint)  # as predict's -o
    images, origin = sample_images(check_images, meta, reference.image_size)
    module = PackagedModel(reference.model, meta).eval()
    # Batch 2, not 1: exporters may specialise a dimension of size 1 and lose the dynamic batch.
    example = torch.zeros(2, 3, reference.image_size, reference.image_size, dtype=torch.uint8)
    start = time.perf_counter()
    with Lock(out), atomic_path(out) as tmp:  # a second export into it is refused, not raced
        # A reduced-precision file is made from the float one, checked first as any export is.
        written = tmp.with_name(f"{tmp.stem}.float{tmp.suffix}") if precision else tmp
        status(f"export: writing '{out}' ({format})", progress)
        try:
            try:
                info = exporter.save(module, example, written, file_metadata(meta, source), opset=opset) or {}
            except FashionError:
                raise
            except Exception as exc:  # exporter internals raise anything; keep the message, drop the pages
                first = (str(exc).strip().splitlines() or [""])[0][:500]
                raise ExportError(
                    f"exporting '{source}' to {format} failed: {type(exc).__name__}: {first}"
                ) from exc
            # The registered engine for the format (``open``); an exporter registered without one loads it itself.
            opener = entry.extra.get("open") or (lambda path, device: exporter.load(path))
            exported = opener(written, device="cpu")
            status(f"export: checking it against PyTorch on {len(images)} {origin}", progress)
            parity = check_parity(reference, exported, images, atol)
            if not parity["ok"]:
                failed = out.with_name(f"{out.stem}.failed{out.suffix}")
                os.replace(written, failed)
                raise ExportError(
                    f"'{failed}' disagrees with the PyTorch model on {parity['images']} {origin}: "
                    f"max abs difference {parity['max_abs_diff']:.3g} (atol {atol}), {task.parity_text(parity)}; "
                    f"the file is kept there for inspection "
                    f"and '{out}' was "
                    f"{'left unchanged' if out.exists() else 'not written'}. Try another --opset or --format, "
                    "or a larger --atol if the difference is harmless"
                )
            if precision:
                status(f"export: writing and checking the {precision} file", progress)
                info["reduced"] = _reduce(exporter, opener, exported, written, tmp, out, precision, meta, images,
                                          min_agreement, max_metric_drop)
        finally:
            if precision and written.exists():
                written.unlink()
    del parity["ok"]
    return {
        "format": format, "path": str(out), "checkpoint": str(source),
        **task.export_summary(meta),
        "image_size": reference.image_size, "bytes": out.stat().st_size, **info,
        "parity": {**parity, "source": origin}, "seconds": round(time.perf_counter() - start, 2),
    }
