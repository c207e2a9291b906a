"""`fashion predict` for a prototype model: top-k rows whose label is `unknown` where the image is
farther than the rejection threshold from every prototype, with that distance in a last column."""
from ..classification.predict import COLUMNS, TopK

UNKNOWN = "unknown"  # the label of an image farther than the model's threshold from every prototype


class NearestPrototypeRows(TopK):
    """TopK's rows; with a rejection ``threshold``, the label is `unknown` where the distance to the
    nearest prototype exceeds it (score and top lists stay the nearest classes'), a last column
    ``distance`` gives that distance, and the summary counts the `unknown` images. Without one, the
    rows are TopK's."""

    def __init__(self, classes, k, threshold=None):
        super().__init__(classes, k)
        self.threshold = threshold
        if threshold is not None:
            self.columns = (*COLUMNS, "distance")
            self.summary["threshold"] = threshold
            self.counts = {"unknown": 0}

    def rows(self, paths, outputs, errors):
        rows = super().rows(paths, outputs["probabilities"], errors)
        if self.threshold is None:
            yield from rows
            return
        for row, distance in zip(rows, outputs["distance"]):
            row["distance"] = None if row["error"] else round(float(distance), 6)
            if not row["error"] and distance > self.threshold:
                row["label"] = UNKNOWN
                self.counts["unknown"] += 1
            yield row

    def csv_values(self, row):
        values = super().csv_values(row)
        if self.threshold is not None:
            values.append("" if row["distance"] is None else row["distance"])
        return values
