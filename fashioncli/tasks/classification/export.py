"""`fashion export` for a classifier: the metadata of its probabilities output, and the parity rule
(the export's probabilities within atol of PyTorch's, the same top-1 class for every image)."""
import numpy as np


def export_metadata(meta, size):
    classes = list(meta["classes"])
    return {"classes": classes, "output": {
        "name": "probabilities", "dtype": "float32", "shape": ["N", len(classes)], "softmax": True}}


def agreement(want, got, threshold, atol):
    """Probabilities of PyTorch and an export -> {max_abs_diff, top1_agreement, atol, ok}; with a
    ``threshold`` (sigmoid outputs) agreement is every label on or off alike at it."""
    diff = float(np.abs(want - got).max())
    if threshold is None:
        same = float((want.argmax(1) == got.argmax(1)).mean())
    else:
        t = np.asarray(threshold, dtype=np.float64)
        same = float(((want.astype(np.float64) > t) == (got.astype(np.float64) > t)).all(1).mean())
    return {"max_abs_diff": diff, "top1_agreement": same, "atol": atol, "ok": diff <= atol and same == 1.0}


def agreement_text(parity):
    return f"top-1 agreement {parity['top1_agreement']:.3f}"
