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


def check_labels(imported, source):
    """DataError for the first label (class or head name) with a line break or path separator,
    naming it and where it came from; -> warnings for labels that differ only by case or
    Unicode normalisation."""
    warnings = []
    for scope, labels in _labels(imported).items():
        for label, origin in labels.items():
            _refuse(label, f"'{source}': {scope} {label!r} ({origin})")
        warnings += _lookalikes(scope, labels)
    return warnings


def _labels(imported):
    """{scope ("label", "head", "head 'x' label"): {label: where it was first seen}}."""
    found = defaultdict(dict)

    def add(scope, label, where):
        if label is not None and label != "":
            found[scope].setdefault(str(label), where)

    # Images first: the row to fix in the source is more use than the class list made from it.
    if imported.heads is None:
        for path, label, _ in imported.samples:
            add("label", label, f"image '{path}'")
        for c in imported.classes:
            add("label", c, "the class list")
        return found
    for name, spec in imported.heads.items():
        add("head", name, "the heads")
        for c in spec.get("classes") or ():
            add(f"head '{name}' label", c, "declared classes")
    for path, labels, _ in imported.samples:
        for name, value in (labels or {}).items():
            for v in value if isinstance(value, (list, tuple)) else [value]:
                add(f"head '{name}' label", v, f"image '{path}'")
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
