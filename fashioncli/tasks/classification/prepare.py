"""The classification part of `fashion prepare`: one class per image, an optional class subset,
and classes without a readable image left out."""
from collections import Counter

from ...data.clean import checked_samples, listed_twice
from ...data.report import count_table
from ...errors import DataError, did_you_mean
from ..preparation import Preparation


class ClassificationPreparation(Preparation):
    required = ("classes",)
    summary_counts = True

    def clean(self, problems):
        """The --classes subset (in the importer's order), unknown labels and repeated (path, box) pairs."""
        imported, classes = self.imported, self.options.classes
        names = list(dict.fromkeys(imported.classes))
        if classes is not None:
            wanted = [c.strip() for c in classes.split(",")] if isinstance(classes, str) else [str(c) for c in classes]
            unknown = [c for c in wanted if c not in names]
            if unknown:
                raise DataError(
                    f"class '{unknown[0]}' is not in the dataset{did_you_mean(unknown[0], names)}; "
                    f"classes: {', '.join(names)}"
                )
            names = [c for c in names if c in set(wanted)]  # the importer's order, not the request's
        self.classes = names
        known = set(names)
        seen, samples, left_out = {}, [], Counter()
        for path, label, split, box in checked_samples(imported, problems):
            if label not in known:
                if classes is None:
                    problems.append({"path": path, "reason": f"label '{label}' is not one of the importer's classes",
                                     "kind": "label is not a class"})
                else:
                    left_out[label] += 1  # left out on purpose: a note, not a problem
                continue
            if (path, box) in seen:  # a sample is an image, or one box of it
                first = seen[path, box]
                note = "" if first == label else f" with labels '{first}' and '{label}'"
                problems.append({"path": path, "reason": f"{listed_twice(box)}{note}; kept the first"})
                continue
            seen[path, box] = label
            samples.append((path, label, split, box))
        notes = []
        if left_out:
            counts = ", ".join(f"{label} ({n})" for label, n in left_out.most_common())
            notes.append(f"{sum(left_out.values())} images of classes not asked for were left out: {counts}")
        return samples, notes

    def finish(self, splits, notes):
        """Classes left without a readable image leave the class list, with a note."""
        present = {r[1] for rows in splits.values() for r in rows}
        notes += [f"class '{c}' has no readable images and was left out" for c in self.classes if c not in present]
        self.classes = [c for c in self.classes if c in present]

    def columns(self):
        return ("label",)

    def describe(self):
        return {"classes": self.classes}

    def counts(self, splits):
        counts = {s: {c: 0 for c in self.classes} for s in splits}
        for split, rows in splits.items():
            counts[split].update(Counter(r[1] for r in rows))
        return counts

    def markdown(self, report):
        return count_table(report["counts"], report["classes"], list(report["splits"]), totals=report["splits"])
