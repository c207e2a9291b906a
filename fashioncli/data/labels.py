"""The labels a source gives prepare, checked once for every importer.

A label becomes a folder name (eval's ``<split>/<class>/``, a head's report folder), a line of
text files and a cell of CSV and Markdown tables: one with a line break or a path separator is
refused. Labels that differ only by case or Unicode normalisation (``Dress``/``dress``, ``café``
composed or decomposed) stay separate classes, which is rarely what the source meant: a warning.
"""
import unicodedata
from collections import defaultdict

from ..errors import DataError

_SEPARATORS = ("/", "\\")


def check_labels(found, source):
    """DataError for the first label with a line break or path separator, naming it and where it
    came from; -> warnings for labels that differ only by case or Unicode normalisation.

    found: {scope ("label", "head", "head 'x' label"): {label: where it was first seen}}, what the
    task preparing the source names (``Preparation.labels``; ``add_label`` fills it).
    """
    warnings = []
    for scope, labels in found.items():
        for label, origin in labels.items():
            _refuse(label, f"'{source}': {scope} {label!r} ({origin})")
        warnings += _lookalikes(scope, labels)
    return warnings


def add_label(found, scope, label, where):
    """Record ``label`` of ``scope`` in ``found`` (see ``check_labels``) unless it is missing or
    already seen: the first place it occurs is the one a message names."""
    if label is not None and label != "":
        found.setdefault(scope, {}).setdefault(str(label), where)


def class_labels(imported):
    """{"label": {label: where first seen}} of a source with a class per image: the samples'
    labels, then the class list (the row to fix in the source is more use than the class list
    made from it)."""
    found = {}
    for path, label, _ in imported.samples:
        add_label(found, "label", label, f"image '{path}'")
    for c in imported.classes:
        add_label(found, "label", c, "the class list")
    return found


def _refuse(label, named):
    if label.splitlines() != [label]:
        raise DataError(f"{named} has a line break; labels must be one line: rename it in the source")
    separator = next((s for s in _SEPARATORS if s in label), None)
    if separator:
        raise DataError(f"{named} has a path separator ('{separator}'); labels name folders: rename it in the source")


def _lookalikes(scope, labels):
    groups = defaultdict(list)
    for label in labels:
        groups[unicodedata.normalize("NFKC", label).casefold()].append(label)
    warnings = []
    for group in groups.values():
        if len(group) > 1:
            # Only escapes show two spellings of one text apart (café composed or decomposed).
            same_text = len({unicodedata.normalize("NFC", label) for label in group}) < len(group)
            shown = ", ".join(ascii(label) if same_text else f"'{label}'" for label in group)
            warnings.append(f"{scope}s {shown} differ only by case or Unicode normalisation; "
                            "they stay separate classes")
    return warnings
