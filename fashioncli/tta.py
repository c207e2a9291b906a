"""Test-time augmentation: a batch seen as several flipped and shifted copies whose outputs are averaged.

Report 004 flips and translates its test images and averages the predictions. ``tta`` is the
recipe's ``eval.tta``: {"hflip": bool, "shift": pixels}. A shift of s adds four copies moved by s
pixels left, right, up and down, with the border repeated (not wrapped around, which would put a
sleeve on the wrong side).

Per-pixel outputs (segmentation) are mapped back onto the image before averaging (``unflip``):
the flipped view's output flipped back. A shifted view's repeated border cannot be mapped back,
so segmentation takes hflip only (``check_per_pixel``).
"""
import numpy as np


def augmented_views(x, tta):
    """Yield the views of an NCHW batch ``x`` (a tensor, or a numpy array: ONNX predict has no
    torch): itself first, then its augmented copies. Eval averages the views' logits, predict
    their probabilities (what an exported model returns)."""
    yield x
    is_numpy = isinstance(x, np.ndarray)
    if tta.get("hflip"):
        yield np.ascontiguousarray(x[..., ::-1]) if is_numpy else x.flip(-1)
    s = int(tta.get("shift") or 0)
    if s:
        h, w = x.shape[-2:]
        if is_numpy:
            padded = np.pad(x, ((0, 0), (0, 0), (s, s), (s, s)), mode="edge")
        else:
            import torch.nn.functional as F

            padded = F.pad(x, (s, s, s, s), mode="replicate")
        for dy, dx in ((0, -s), (0, s), (-s, 0), (s, 0)):
            view = padded[..., s + dy:s + dy + h, s + dx:s + dx + w]
            yield np.ascontiguousarray(view) if is_numpy else view


def enabled(tta):
    return bool(tta) and (bool(tta.get("hflip")) or bool(tta.get("shift")))


def check_per_pixel(tta):
    """Raise unless the views of ``tta`` can be mapped back onto the image (hflip can, shift not)."""
    from .errors import FashionError

    if enabled(tta) and tta.get("shift"):
        raise FashionError("--tta shift: a shifted view's border cannot be mapped back onto the image; "
                           "segmentation takes hflip")


def unflip(outputs, tta):
    """The outputs of ``augmented_views``' views, each per-pixel (N, C, H, W) output mapped back
    onto the original image (the flipped view's flipped back); per-image outputs as they are."""
    outputs = list(outputs)
    if getattr(outputs[0], "ndim", 0) != 4:  # scores per image (or a dict of them): nothing to undo
        return outputs
    check_per_pixel(tta)
    if enabled(tta) and tta.get("hflip"):
        flipped = outputs[1]
        outputs[1] = np.ascontiguousarray(flipped[..., ::-1]) if isinstance(flipped, np.ndarray) else flipped.flip(-1)
    return outputs


def parse(text):
    """The command line's --tta: 'none', 'hflip', 'shift=4' or 'hflip,shift=4' -> the recipe's form."""
    from .errors import FashionError

    tta = {"hflip": False, "shift": 0}
    for part in filter(None, (p.strip() for p in str(text).split(","))):
        key, _, value = part.partition("=")
        if key == "none" and not value:
            continue
        if key == "hflip" and not value:
            tta["hflip"] = True
        elif key == "shift" and value.isdigit():
            tta["shift"] = int(value)
        else:
            raise FashionError(f"--tta '{text}': expected none, hflip, shift=PIXELS or both, e.g. hflip,shift=4")
    return tta
