"""The multi-task part of `fashion prepare`: a source's heads -> <split>.csv cells, each head's
classes and hierarchy, and a count table per head."""
from collections import Counter

from ...data.clean import checked_samples, listed_twice
from ...data.labels import add_label
from ...data.report import count_table
from ...errors import DataError
from ..preparation import Preparation
from .heads import LABEL_SEP, Head

MISSING_ROW = "(missing)"  # a report's count of images without a label for a head


class MultiTaskPreparation(Preparation):
    """Cells of a prepared <split>.csv: '' for a missing label, labels joined by LABEL_SEP for a
    multilabel head ('|' alone: known, with no label). A sample's label is the tuple of its cells."""

    required = ("heads",)

    def __init__(self, imported, options):
        super().__init__(imported, options)
        self.heads = dict(imported.heads)  # declared specs until ``finish`` makes them Heads

    def labels(self):
        found = {}
        for name, spec in self.imported.heads.items():
            add_label(found, "head", name, "the heads")
            for c in spec.get("classes") or ():
                add_label(found, f"head '{name}' label", c, "declared classes")
        for path, labels, _ in self.imported.samples:
            for name, value in (labels or {}).items():
                for v in value if isinstance(value, (list, tuple)) else [value]:
                    add_label(found, f"head '{name}' label", v, f"image '{path}'")
        return found

    def clean(self, problems):
        if self.options.classes is not None:
            raise DataError("classes: a multi-task source keeps every class; choose its heads instead")
        seen, samples = set(), []
        for path, labels, split, box in checked_samples(self.imported, problems):
            if (path, box) in seen:
                problems.append({"path": path, "reason": f"{listed_twice(box)}; kept the first"})
                continue
            seen.add((path, box))
            cells = []
            for name, spec in self.heads.items():
                value = labels.get(name)
                if value is None:
                    cells.append("")
                elif spec["type"] == "multilabel":
                    cells.append(LABEL_SEP.join(value) if value else LABEL_SEP)
                else:
                    cells.append(str(value))
            samples.append((path, tuple(cells), split, box))
        if "box" in self.heads and any(box is not None for *_, box in samples):
            raise DataError("heads.box: 'box' names the bounding-box column of a prepared dataset; rename the head")
        return samples, []

    def stratum(self, label):
        """The first head's cell."""
        return label[0] if label else None

    def strata(self, label):
        """Every known label of every head ('head=label'): several heads or a multi-label head are
        split iteratively, so that each label's positives reach every split."""
        found = []
        for (name, spec), cell in zip(self.heads.items(), label):
            values = cell.split(LABEL_SEP) if spec["type"] == "multilabel" else [cell]
            found += [f"{name}={v}" for v in values if v]
        return found

    def finish(self, splits, notes):
        self.heads = finish_heads(self.heads, [r[1] for rows in splits.values() for r in rows], notes)

    def columns(self):
        return tuple(self.heads)

    def cells(self, label):
        return label

    def describe(self):
        return {"heads": {h: head.to_json() for h, head in self.heads.items()}}

    def counts(self, splits):
        """{head: {split: {class: images, "(missing)": images}}}."""
        out = {}
        for i, (name, head) in enumerate(self.heads.items()):
            out[name] = {}
            for split, rows in splits.items():
                found = Counter()
                for _, cells, _ in rows:
                    cell = cells[i]
                    if not cell:
                        found[MISSING_ROW] += 1
                    else:
                        found.update(cell.split(LABEL_SEP) if head.type == "multilabel" else [cell])
                out[name][split] = {c: found.get(c, 0) for c in [*head.classes, MISSING_ROW]}
        return out

    def markdown(self, report):
        """One count table per head."""
        lines, splits = [], list(report["splits"])
        for name, counts in report["counts"].items():
            spec = report["heads"][name]
            lines += [f"## Head `{name}` ({spec['type']}, {len(spec['classes'])} classes"
                      + (f", belongs to `{spec['parent']}`" if spec.get("parent") else "") + ")", ""]
            lines += count_table(counts, list(next(iter(counts.values()))), splits)
        return lines

    def summary(self, report):
        """Classes per head (per-class counts of many heads would bury the summary: report.md has them)."""
        return {"heads": {h: len(head.classes) for h, head in self.heads.items()}}


def finish_heads(declared, rows, notes):
    """Heads with their classes (declared, else the values seen) and, for a head with a parent,
    each class's parent class (the most common one; disagreements become notes)."""
    names = list(declared)
    heads = {}
    for i, name in enumerate(names):
        spec = declared[name]
        cells = [r[i] for r in rows]
        if spec.get("classes"):
            classes = [str(c) for c in spec["classes"]]
        elif spec["type"] == "binary":
            classes = [name]
        elif spec["type"] == "multilabel":
            classes = sorted({label for c in cells for label in c.split(LABEL_SEP) if label})
        else:
            classes = sorted({c for c in cells if c})
        if spec["type"] != "binary":
            known = set(classes)
            values = {label for c in cells for label in (c.split(LABEL_SEP) if spec["type"] == "multilabel" else [c])}
            stray = sorted(v for v in values if v and v not in known)
            if stray:
                raise DataError(f"heads.{name}: values not among its declared classes: {', '.join(stray[:5])}")
        if not classes:
            raise DataError(f"heads.{name}: no labels at all in the readable images")
        heads[name] = Head(name, spec["type"], classes, spec.get("parent"))
    for i, name in enumerate(names):
        parent = heads[name].parent
        if not parent:
            continue
        if parent not in heads or heads[parent].type != "categorical" or heads[name].type != "categorical":
            raise DataError(f"heads.{name}.parent: '{parent}' must be another categorical head ({', '.join(names)})")
        j = names.index(parent)
        pairs = Counter((r[i], r[j]) for r in rows if r[i] and r[j])
        parent_of, disagree = {}, 0
        for (child, up), n in pairs.most_common():
            if child in parent_of:
                disagree += n
            else:
                parent_of[child] = up
        heads[name].parent_of = parent_of
        if disagree:
            notes.append(f"{disagree} images disagree with the {parent} of their {name}; the most common {parent} was kept")
    return heads

