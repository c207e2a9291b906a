"""A model over a loader: normalisation on the device, optional mixed precision and test-time
augmentation; what training's validation and every task's eval share, so both measure the same."""
from contextlib import nullcontext

import torch

from .data.preprocess import normalize


def _float(out):
    return {k: v.float() for k, v in out.items()} if isinstance(out, dict) else out.float()


def iter_outputs(model, loader, device, mean, std, memory_format=torch.contiguous_format, autocast=None, tta=None,
                 progress=None):
    """Yield (outputs on device, batch) for each batch ``(uint8 images, targets, ...)`` of ``loader``.

    Outputs are what the model returns (logits, or {name: logits}) in float32; ``tta`` (see
    tta.py) averages them over flipped and shifted copies of each batch. ``progress``: the label
    of a progress bar on stderr (progress.bar), or None for none.
    """
    from .progress import bar
    from .tta import augmented_views, enabled, unflip

    loader = bar(loader, progress, enabled=progress is not None)

    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for batch in loader:
                x = batch[0].to(device, non_blocking=True)
                x = normalize(x, mean, std).contiguous(memory_format=memory_format)
                with autocast() if autocast else nullcontext():
                    if enabled(tta):
                        out = _mean(unflip([_float(model(v)) for v in augmented_views(x, tta)], tta))
                    else:
                        out = _float(model(x))
                yield out, batch
    finally:
        model.train(was_training)


def _mean(views):
    if isinstance(views[0], dict):
        return {k: torch.stack([v[k] for v in views]).mean(0) for k in views[0]}
    return torch.stack(views).mean(0)


def run_model(model, loader, device, mean, std, memory_format=torch.contiguous_format, autocast=None, tta=None,
              reduce=None, progress=None):
    """Run ``model`` over ``loader`` -> (outputs, targets), both on the CPU.

    Outputs are float32 logits (N, C), or {name: logits} for a model with several outputs;
    targets are what the loader's batches carry (int64 (N,), or {head: tensor}). Batches are
    ``(uint8 NxCxHxW images, targets, ...)``; normalisation with ``mean``/``std`` happens on
    ``device``. ``autocast`` is an optional callable returning a context manager (e.g. mixed
    precision). ``reduce(outputs, targets) -> (outputs, targets)`` shrinks each batch before it is
    kept (segmentation: argmax masks instead of per-pixel logits). ``progress``: a progress bar's
    label, or None. The model's train/eval mode is restored afterwards.
    """
    from .tasks.base import concat

    outputs, targets = [], []
    for out, batch in iter_outputs(model, loader, device, mean, std, memory_format, autocast, tta, progress):
        target = batch[1]
        if reduce is not None:
            out, target = reduce(out, target)
        outputs.append(out)  # stays on the device: one transfer at the end, not one sync per batch
        targets.append(target)
    if not outputs:
        return torch.empty(0, 0), torch.empty(0, dtype=torch.long)
    return concat(outputs), concat(targets)
