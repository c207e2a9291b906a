"""`fashion export` for a prototype model: a second output, each image's squared distance to its
nearest prototype, which the metadata's rejection threshold turns into `unknown`; parity checks the
distances and the `unknown` decisions too."""
import numpy as np

from ..classification.export import agreement, agreement_text, export_metadata as classifier_metadata

OUTPUTS = ("probabilities", "distance")  # what its engines and exported files return, in this order


def export_metadata(meta, size):
    labels = classifier_metadata(meta, size)
    distance = {"name": "distance", "dtype": "float32", "shape": ["N"], "squared_to_nearest_prototype": True}
    return {**labels, "rejection": meta.get("rejection"), "outputs": [labels["output"], distance]}


def distance_agreement(want, got, threshold, atol):
    """Distances agree to ``atol`` relative to their size (they are not bounded like probabilities),
    and so do the `unknown` decisions at ``threshold``."""
    diff = float((np.abs(want - got) / np.maximum(1.0, np.abs(want))).max())
    same = 1.0 if threshold is None else float(((want > threshold) == (got > threshold)).mean())
    return {"max_rel_diff": diff, "unknown_agreement": same, "ok": diff <= atol and same == 1.0}


def parity(threshold, want, got, atol):
    result = {**agreement(want["probabilities"], got["probabilities"], None, atol),
              "distance": distance_agreement(want["distance"], got["distance"], threshold, atol)}
    result["ok"] &= result["distance"].pop("ok")
    return result


def parity_text(parity):
    d = parity["distance"]
    return (f"{agreement_text(parity)}, distance relative difference {d['max_rel_diff']:.3g}, "
            f"`unknown` agreement {d['unknown_agreement']:.3f}")
