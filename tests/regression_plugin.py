"""A test-only plugin that adds a sixth kind of work to fashion: regression, one number per image
read from a table column, scored by mean absolute error. It imports only from ``fashioncli.api``
and changes no core file: it proves the task seam (tests/test_new_task.py)."""
import csv
from pathlib import Path

import numpy as np

from fashioncli.api import (
    CachedImages, DataError, Imported, PreparedDataset, Preparation, Task, checked_samples, hookimpl, make_loader,
    run_model,
)


# -- prepare: an importer and what prepare keeps ---------------------------------------------------
def value_table(source, value_col="value"):
    """A CSV with columns path,<value_col>: one number per image (paths relative to the CSV)."""
    table = Path(source)
    with open(table, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or value_col not in rows[0]:
        raise DataError(f"'{table}' has no column '{value_col}'")
    samples = [(str(table.parent / r["path"]), r[value_col], None) for r in rows]
    return Imported(classes=[], samples=samples, kind="regression")


class ValuePreparation(Preparation):
    """Keeps rows whose value is a number; splits them as one stratum."""

    required = ("target",)

    def labels(self):
        return {}  # numbers name no folders or classes

    def clean(self, problems):
        samples = []
        for path, value, split, box in checked_samples(self.imported, problems):
            try:
                samples.append((path, float(value), split, box))
            except (TypeError, ValueError):
                problems.append({"path": path, "reason": f"value {value!r} is not a number"})
        return samples, []

    def stratum(self, label):
        return None

    def columns(self):
        return ("value",)

    def describe(self):
        return {"target": "price"}

    def counts(self, splits):
        return {s: {"images": len(rows), "mean": float(np.mean([r[1] for r in rows])) if rows else None}
                for s, rows in splits.items()}


# -- the task -----------------------------------------------------------------------------------------
def _values(data, split):
    return np.array([float(r["value"]) for r in data.rows(split)], np.float32)


class Regression(Task):
    name = "regression"
    dataset_kind = "regression"

    @classmethod
    def preparation(cls):
        return ValuePreparation

    def model_args(self):
        return {"num_classes": 1}

    def targets(self, data, split):
        return {"value": _values(data, split)}  # a mapping: the loader keeps float targets as they are

    def criterion(self):
        return SquaredError()

    def correct(self, outputs, targets):
        return 0, 0  # no accuracy to show

    def validate(self, outputs, targets):
        error = (outputs[:, 0] - targets["value"]).abs()
        return {"val_loss": float((error ** 2).mean()), "val_mae": float(error.mean()), "val_neg_mae": -float(error.mean())}

    def monitor(self):
        return "val_neg_mae"  # checkpoints keep the highest

    def meta(self):
        return {"target": self.data.meta["target"]}

    @classmethod
    def evaluate(cls, model, meta, root, split, out, options):
        data = PreparedDataset.open(root)
        data.require(cls.dataset_kind, cls.name)
        pre = meta["preprocessing"]
        values = _values(data, split)
        loader = make_loader(CachedImages(data.cache(split, pre["image_size"]), {"value": values}),
                             options.batch_size, num_workers=options.num_workers)
        outputs, _ = run_model(model, loader, options.device, pre["mean"], pre["std"], tta=options.tta,
                               progress=options.progress)
        predicted = outputs[:, 0].numpy()
        out.mkdir(parents=True, exist_ok=True)
        with open(out / "predictions.csv", "w", newline="") as f:
            csv.writer(f).writerows([("path", "true", "predicted"),
                                     *zip(data.paths(split), values.tolist(), predicted.tolist())])
        mae = float(np.abs(predicted - values).mean())
        return {"data": str(root), "split": split, "num_samples": len(values), "metrics": {"mae": mae},
                "out": str(out), "files": ["summary.json", "predictions.csv"]}

    # -- predict and export: the raw output is the value
    @classmethod
    def activation(cls, meta):
        return lambda outputs: outputs

    @classmethod
    def output_shapes(cls, outputs):
        return [("value", tuple(outputs.shape))]

    @classmethod
    def expected_outputs(cls, meta):
        return [("value", 2, 1)]

    @classmethod
    def check_labels(cls, meta, source):
        return {"value": 1}

    @classmethod
    def check_model_args(cls, injected, widths, source):
        pass

    @classmethod
    def labels(cls, meta):
        return {"target": meta.get("target")}

    @classmethod
    def row_layout(cls, meta, out, fmt, options):
        return ValueRows(meta["target"])

    @classmethod
    def export_metadata(cls, meta, size):
        return {"target": meta["target"], "output": {"name": "value", "dtype": "float32", "shape": ["N", 1]}}

    @classmethod
    def export_summary(cls, meta):
        return {"target": meta["target"]}

    @classmethod
    def parity(cls, meta, want, got, atol):
        diff = float(np.abs(want - got).max())
        return {"max_abs_diff": diff, "atol": atol, "ok": diff <= atol}

    @classmethod
    def parity_text(cls, parity):
        return "every value must be within atol"


def SquaredError():
    import torch

    class SquaredError(torch.nn.Module):
        def forward(self, outputs, targets):
            return torch.nn.functional.mse_loss(outputs[:, 0].float(), targets["value"].float())

    return SquaredError()


class ValueRows:
    """predict's rows: path, <target>, error."""

    folders = ()
    counts = {}

    def __init__(self, target):
        self.target = target
        self.columns = ("path", target, "error")
        self.summary = {"target": target}

    def rows(self, paths, outputs, errors):
        for path, value, error in zip(paths, outputs[:, 0].tolist(), errors):
            yield {"path": path, self.target: None if error else round(value, 6), "error": error or None}

    def csv_values(self, row):
        return [row["path"], "" if row[self.target] is None else row[self.target], row["error"] or ""]


@hookimpl
def register_tasks(register):
    register("regression", Regression)


@hookimpl
def register_datasets(register):
    register("value-table", value_table)

