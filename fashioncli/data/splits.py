"""Which split each prepared sample goes to: the source's splits kept, the missing ones drawn from
train by a seeded split stratified per class."""
import zlib
from collections import defaultdict

import numpy as np

from .importing import SPLITS


def assign_splits(samples, val_fraction, test_fraction, seed, stratum=lambda label: label):
    """[(path, label, split or None, box)] -> {split: [(path, label, box)]} in input order, empty
    splits left out. ``stratum(label)``: what the drawn splits are stratified by (a class name)."""
    given = defaultdict(list)
    for path, label, split, box in samples:
        given[split].append((path, label, box))
    free = given.pop(None, [])
    fractions = {"val": val_fraction, "test": test_fraction}
    if given:  # the source has splits: only those it lacks are made, from train
        fractions = {s: f for s, f in fractions.items() if s not in given}
        if fractions:
            free += given.pop("train", [])
    chosen = stratified_split(free, fractions, seed, stratum)
    order = {(path, box): i for i, (path, _, _, box) in enumerate(samples)}
    for split, rows in chosen.items():
        given[split] = sorted(given[split] + rows, key=lambda r: order[r[0], r[2]])
    return {s: given[s] for s in SPLITS if given.get(s)}


def stratified_split(rows, fractions, seed, stratum=lambda label: label):
    """Seeded split of [(path, label, box)] into train + fractions' splits, the same share in every
    class (``stratum(label)``).

    Each class is shuffled with its own generator (seed, class name): adding or removing a class
    leaves the other classes' splits unchanged. Every class keeps at least one training image.
    """
    by_class = defaultdict(list)
    for row in rows:
        by_class[stratum(row[1])].append(row)
    out = defaultdict(list)
    for label, members in sorted(by_class.items(), key=lambda item: str(item[0])):
        members.sort(key=lambda r: (r[0], r[2] or ()))  # (path, box) is unique
        rng = np.random.default_rng([seed, zlib.crc32(str(label).encode("utf-8"))])
        members = [members[i] for i in rng.permutation(len(members))]
        n = len(members)
        counts = {s: int(n * f + 0.5) for s, f in fractions.items()}
        while n - sum(counts.values()) < 1 and any(counts.values()):
            counts[max(counts, key=counts.get)] -= 1
        start = 0
        for split, k in counts.items():
            out[split] += members[start:start + k]
            start += k
        out["train"] += members[start:]
    return out


def seeded_subset(rows, labels, fraction, seed):
    """A seeded ``fraction`` of ``rows`` (a split's row indices), sorted: the same share of every
    class (``labels[row]``), each class keeping at least one row; ``labels`` None: a random draw.

    It is ``stratified_split``'s train part, so a class's draw depends on (seed, class) alone.
    """
    rows = [int(r) for r in rows]
    stratum = (lambda row: 0) if labels is None else (lambda row: labels[row])
    kept = stratified_split([(row, row, None) for row in rows], {"left_out": 1 - fraction}, seed, stratum)["train"]
    return np.array(sorted(row for row, _, _ in kept), dtype=np.int64)
