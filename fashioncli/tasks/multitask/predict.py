"""`fashion predict` for a multi-task model: a row per image with every head's labels and scores."""
import numpy as np

from ...rows import one_line
from .heads import LABEL_SEP, decode


class PerHead:
    """Multi-task rows: path, then <head> and <head>_score for every head, then error.

    A categorical head gives its class and probability; a binary or multilabel head the labels
    above their thresholds and their probabilities (lists in JSONL, joined by '|' in CSV).
    ``hierarchy``: a head with a parent predicts only classes of the parent's predicted class.
    """

    folders = ()  # written beside out: none

    def __init__(self, heads, thresholds=None, hierarchy=True):
        self.heads, self.thresholds, self.hierarchy = heads, thresholds or {}, hierarchy
        self.columns = ("path", *(c for h in heads for c in (h, f"{h}_score")), "error")
        self.summary = {"heads": list(heads)}
        self.counts = {}

    def rows(self, paths, probs, errors):
        decoded = decode(self.heads, probs, self.thresholds, self.hierarchy)
        for i, (path, error) in enumerate(zip(paths, errors)):
            row = {"path": path}
            for name, head in self.heads.items():
                d = decoded[name]
                if error:
                    row[name], row[f"{name}_score"] = None, None
                elif head.sigmoid:
                    on = np.flatnonzero(d["mask"][i])
                    row[name] = [head.classes[j] for j in on]
                    row[f"{name}_score"] = [round(float(probs[name][i, j]), 6) for j in on]
                else:
                    row[name], row[f"{name}_score"] = head.classes[d["index"][i]], round(float(d["score"][i]), 6)
            row["error"] = one_line(error) if error else None
            yield row

    def csv_values(self, row):
        def cell(value):
            if value is None:
                return ""
            return LABEL_SEP.join(map(str, value)) if isinstance(value, list) else value
        return [cell(row[c]) for c in self.columns]
