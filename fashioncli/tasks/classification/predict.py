"""`fashion predict` for a classifier: a row per image with its top-k labels and their probabilities."""
import json

import numpy as np

from ...rows import one_line

COLUMNS = ("path", "label", "score", "top_labels", "top_scores", "error")


class TopK:
    """Single-label rows: path, label, score (top-1 probability), top_labels, top_scores (top-k lists;
    JSON text in CSV), error (why a file could not be read; such rows have no label)."""

    folders = ()  # written beside out: none

    def __init__(self, classes, k):
        self.classes, self.k = classes, k
        self.columns = COLUMNS
        self.summary = {"topk": k}
        self.counts = {}

    def rows(self, paths, probs, errors):
        top = np.argsort(-probs, axis=1, kind="stable")[:, :self.k]
        for path, p, idx, error in zip(paths, probs, top, errors):
            if error:
                yield {"path": path, "label": None, "score": None, "top_labels": [], "top_scores": [],
                       "error": one_line(error)}
                continue
            scores = [round(float(p[j]), 6) for j in idx]
            labels = [self.classes[j] for j in idx]
            yield {"path": path, "label": labels[0], "score": scores[0], "top_labels": labels,
                   "top_scores": scores, "error": None}

    def csv_values(self, row):
        return [
            row["path"], row["label"] or "", "" if row["score"] is None else row["score"],
            json.dumps(row["top_labels"], ensure_ascii=False, separators=(",", ":")),
            json.dumps(row["top_scores"], separators=(",", ":")),
            row["error"] or "",
        ]
