"""The heads of a multi-task dataset and model: what each one predicts and how its labels are encoded.

A head is one label column of a table. Its type says how it is learned:

- ``categorical``: one class of ``classes`` per image (softmax over len(classes) outputs);
- ``binary``: yes/no for one label, ``classes == [label]`` (one sigmoid output);
- ``multilabel``: any subset of ``classes`` per image (one sigmoid output per class).

Batches carry targets as ``{head name: tensor}``. A missing label (empty cell, NaN or a declared
"unknown" value) is encoded as ``MISSING`` (-1): ``categorical`` targets are int64 (N,) class
indices, ``binary``/``multilabel`` targets are float32 (N, len(classes)) of 0/1, a missing row all
-1. Losses and metrics leave missing rows out of that head only; the image still counts for the others.
"""
from dataclasses import dataclass, field

import numpy as np

from ...errors import DataError

HEAD_TYPES = ("categorical", "binary", "multilabel")
MISSING = -1
# How a multi-label cell lists its labels in a prepared <split>.csv.
LABEL_SEP = "|"


@dataclass
class Head:
    name: str
    type: str
    classes: list = field(default_factory=list)
    # {child class: parent class} of the head this one belongs to (see ``parent``).
    parent: str = None
    parent_of: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.type not in HEAD_TYPES:
            raise DataError(f"head '{self.name}': type '{self.type}' is not one of {', '.join(HEAD_TYPES)}")

    @property
    def outputs(self):
        """Width of the head's logits."""
        return len(self.classes)

    @property
    def sigmoid(self):
        return self.type != "categorical"

    def to_json(self):
        out = {"type": self.type, "classes": list(self.classes)}
        if self.parent:
            out.update(parent=self.parent, parent_of=dict(self.parent_of))
        return out

    @classmethod
    def from_json(cls, name, data):
        return cls(name, data["type"], list(data["classes"]), data.get("parent"), dict(data.get("parent_of") or {}))

    # -- labels as text (a prepared <split>.csv) <-> encoded targets -----------
    def encode(self, cells):
        """Column of text cells ('' = missing) -> numpy targets in the encoding described above."""
        index = {c: i for i, c in enumerate(self.classes)}
        if self.type == "categorical":
            return np.array([index[c] if c else MISSING for c in cells], dtype=np.int64)
        out = np.zeros((len(cells), len(self.classes)), dtype=np.float32)
        for row, cell in enumerate(cells):
            if not cell:
                out[row] = MISSING
            elif self.type == "binary":
                out[row, 0] = float(cell in ("1", "true", "True", "yes", self.classes[0]))
            else:
                for label in cell.split(LABEL_SEP):
                    if label:
                        out[row, index[label]] = 1.0
        return out


def heads_from_json(data):
    return {name: Head.from_json(name, spec) for name, spec in data.items()}


def encode_split(data, split, heads):
    """The labels of ``heads`` in a prepared split -> {head: encoded targets}, row for row with its cache."""
    rows = data.rows(split)
    try:
        return {name: head.encode([row[name] for row in rows]) for name, head in heads.items()}
    except KeyError as exc:
        raise DataError(f"'{data.root / split}.csv' has a label {exc} that dataset.json does not list; "
                        "run fashion prepare again") from None


def present(head, target):
    """Boolean (N,) mask of the rows whose label for ``head`` is known."""
    return target >= 0 if target.ndim == 1 else (target >= 0).all(dim=1)


def parents_first(heads):
    """Head names ordered so that a parent comes before the heads that belong to it."""
    order, seen = [], set()

    def visit(name, trail=()):
        if name in seen:
            return
        if name in trail:
            raise DataError(f"heads: the parents of '{name}' form a cycle")
        parent = heads[name].parent
        if parent in heads:
            visit(parent, trail + (name,))
        seen.add(name)
        order.append(name)

    for name in heads:
        visit(name)
    return order


def decode(heads, probs, thresholds=None, hierarchy=True):
    """Per-head probabilities (numpy, N x outputs) -> predictions (numpy only, so ONNX predict needs no torch).

    -> {head: {"index": (N,) int, "score": (N,)}} for categorical heads and
    {head: {"mask": (N, L) bool}} for binary/multilabel ones (a label is on when its probability is
    above its threshold, 0.5 unless tuned). With ``hierarchy``, a head with a parent only predicts
    classes that belong to the parent's predicted class (classes of unknown parent stay allowed).
    """
    thresholds = thresholds or {}
    out = {}
    for name in parents_first(heads):
        head, p = heads[name], np.asarray(probs[name], dtype=np.float32)
        if head.sigmoid:
            t = np.asarray(thresholds.get(name, 0.5), dtype=np.float64)
            out[name] = {"mask": p.astype(np.float64) > t}
            continue
        allowed = p
        parent = heads.get(head.parent) if head.parent else None
        if hierarchy and parent is not None and head.parent in out and head.parent_of:
            index = {c: i for i, c in enumerate(parent.classes)}
            belongs = np.array([index.get(head.parent_of.get(c), -1) for c in head.classes])
            chosen = out[head.parent]["index"][:, None]
            allowed = np.where((belongs[None, :] == chosen) | (belongs[None, :] == -1), p, -1.0)
        index = allowed.argmax(1)
        out[name] = {"index": index, "score": p[np.arange(len(p)), index]}
    return {name: out[name] for name in heads}
