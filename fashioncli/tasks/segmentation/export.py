"""`fashion export` for segmentation models: per-pixel softmax probabilities N x C x S x S (the mask
is their argmax, resized to the source image with nearest-neighbour); the metadata carries classes,
palette and ignore index; parity compares the masks pixel by pixel."""
import numpy as np

# Below this the parity check fails. Not 1.0: where two classes' logits are nearly equal, the
# export's float rounding (another operator order, fused kernels) can flip a pixel's argmax without
# anything being wrong; a wrong export (normalisation, resizing, weights) disagrees on far more.
MIN_MASK_AGREEMENT = 0.999


def export_metadata(meta, size):
    """The segmentation part of an exported file's metadata: classes, colours, ignore index, output."""
    from .render import colours_of

    classes = list(meta["classes"])
    return {
        "classes": classes,
        "palette": colours_of(meta).tolist(),
        "ignore_index": meta.get("ignore_index", 255),
        "class_sets": meta.get("class_sets") or {},
        "output": {"name": "probabilities", "dtype": "float32", "shape": ["N", len(classes), size, size],
                   "softmax": True, "mask": "argmax over dim 1, resized to the source image with nearest-neighbour"},
    }


def mask_agreement(want, got, atol):
    """Per-pixel probabilities (N, C, S, S) of PyTorch and an export -> {max_abs_diff,
    mask_agreement (fraction of pixels whose argmax agrees), atol, ok}."""
    diff = float(np.abs(want - got).max())
    agreement = float((want.argmax(1) == got.argmax(1)).mean())
    return {"max_abs_diff": diff, "mask_agreement": agreement, "min_mask_agreement": MIN_MASK_AGREEMENT,
            "atol": atol, "ok": diff <= atol and agreement >= MIN_MASK_AGREEMENT}


def agreement_text(parity):
    return f"mask agreement {parity['mask_agreement']:.4f} of pixels (at least {parity['min_mask_agreement']})"
