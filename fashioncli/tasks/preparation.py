"""A task's part in `fashion prepare`: what it keeps of an imported source, and what the prepared
dataset and its report say about the labels.

``fashion prepare`` runs the importer, asks every registered task how well it prepares what came
back (``Task.prepares``), and hands the source to the best one's ``Preparation``. Everything else
(splits, the image cache, duplicates, image sizes, the files' layout) is the same for every task.
A sample is ``(path, label, split or None, box or None)`` until it is split, ``(path, label, box)``
after; ``label`` is whatever the task keeps per image: a class name (classification), a tuple of
head cells (multitask), a mask file (segmentation), a number (a plugin's regression task).
"""
from dataclasses import dataclass
from pathlib import Path

from ..data.labels import class_labels

# Scores of ``Task.prepares``: a task that recognises what an importer returned (its heads, its
# masks, or its own ``Imported.kind``) claims it over the task that takes any other source.
FALLBACK = 1
CLAIMS = 2


@dataclass
class PrepareOptions:
    """What `fashion prepare` was asked that a task acts on."""

    out: Path  # the prepared directory
    image_size: int
    workers: int  # threads that decode images and masks
    progress: bool = True
    classes: object = None  # the --classes given (list or comma-separated text), None: all
    other_classes: str = "background"  # segmentation: what classes left out by --classes become


class Preparation:
    """One task's work in `fashion prepare` of one source. prepare calls, in this order: labels,
    clean, stratum and strata (per sample, to draw splits), after_images, finish, then columns and cells
    (<split>.csv), describe, counts, report_extras and markdown (the report), dataset_meta
    (dataset.json) and summary."""

    # dataset.json keys a dataset of this kind cannot be read without (besides format_version, task, splits)
    required = ()
    # names this task writes under OUT besides <split>.csv, report.* and cache/ (e.g. "masks"):
    # prepare run again on that OUT knows them as its own
    writes = ()
    # prepare's summary repeats report.json's counts (false when they would bury it)
    summary_counts = False

    def __init__(self, imported, options):
        self.imported, self.options = imported, options

    def labels(self):
        """{scope: {label: where first seen}}: the texts ``data.labels.check_labels`` vets before any decoding."""
        return class_labels(self.imported)

    def clean(self, problems):
        """-> (samples [(path, label, split or None, box or None)], notes); the samples left out go to ``problems``.

        ``data.clean.checked_samples`` does the checks every task needs (split names, boxes).
        """
        raise NotImplementedError

    def stratum(self, label):
        """What prepare stratifies drawn splits by: the label (a class) by default; None: one stratum."""
        return label

    def strata(self, label):
        """The labels a sample carries, each spread evenly over drawn splits: ``[stratum]`` by
        default. Samples with several (multi-label, several heads) are split iteratively."""
        return [self.stratum(label)]

    def after_images(self, splits, infos, problems):
        """Work that needs the cached images ({split: cache metadata}); rows may leave ``splits``."""

    def finish(self, splits, notes):
        """Settle the labels on the rows left once images are read (e.g. drop empty classes); may add ``notes``."""

    def columns(self):
        """The columns of <split>.csv between path and box."""
        raise NotImplementedError

    def cells(self, label):
        """A row's cells under ``columns`` for a sample's label."""
        return (label,)

    def describe(self):
        """What report.json and dataset.json say the labels are, e.g. {"classes": [...]}."""
        raise NotImplementedError

    def counts(self, splits):
        """report.json's "counts": images per label and split."""
        raise NotImplementedError

    def report_extras(self, splits):
        """Sections report.json ends with (default: none)."""
        return {}

    def markdown(self, report):
        """report.md's lines on the labels, from report.json's content."""
        return []

    def dataset_meta(self):
        """dataset.json's entries on the labels: ``describe`` and what training reads besides."""
        return self.describe()

    def summary(self, report):
        """prepare's summary entries on the labels (kept short: the report has the details)."""
        return self.describe()
