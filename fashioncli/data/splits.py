"""Which split each prepared sample goes to: the source's splits kept, the missing ones drawn from
train by a seeded split.

A drawn split moves *units*, not rows: rows that share a link (the same file bytes, the same
``group_col`` value) form one unit and land in one split together. A sample with one label (a
class, one categorical head) is stratified per class as before; samples with several labels (a
multi-label head, several heads) are split by iterative stratification (Sechidis, Tsoumakas and
Vlahavas, "On the stratification of multi-label data", ECML-PKDD 2011), so that each label's
positives are spread over the splits. The maintained implementations (iterative-stratification,
scikit-multilearn) split rows of a 0/1 matrix and need scikit-learn: they cannot keep a unit of
several rows whole, so the algorithm's few lines live here, working on units.
"""
import zlib
from collections import Counter, defaultdict

import numpy as np

from .importing import SPLITS


def assign_splits(samples, val_fraction, test_fraction, seed, stratum=lambda label: label,
                  strata=None, links=None):
    """[(path, label, split or None, box)] -> {split: [(path, label, box)]} in input order, empty
    splits left out.

    stratum(label): what a single-label split is stratified by (a class name). strata(label): the
    labels a sample carries (default ``[stratum(label)]``); when any sample has other than one, the
    drawn splits are stratified iteratively over all of them. links: None or, per sample, keys
    (hashable); samples sharing a key are drawn into one split.
    """
    strata = strata or (lambda label: [stratum(label)])
    given = defaultdict(list)
    for i, (_, _, split, _) in enumerate(samples):
        given[split].append(i)
    free = given.pop(None, [])
    fractions = {"val": val_fraction, "test": test_fraction}
    if given:  # the source has splits: only those it lacks are made, from train
        fractions = {s: f for s, f in fractions.items() if s not in given}
        if fractions:
            free += given.pop("train", [])
    fractions = {s: f for s, f in fractions.items() if f > 0}
    units = linked_units(sorted(free), links)
    rows = [(path, label, box) for path, label, _, box in samples]
    carried = {i: strata(samples[i][1]) for unit in units for i in unit}
    if all(len(found) == 1 for found in carried.values()) or not fractions:
        chosen = stratified_split(units, rows, fractions, seed, stratum)
    else:
        counts = [Counter(label for i in unit for label in carried[i]) for unit in units]
        chosen = iterative_split(units, rows, counts, fractions, seed)
    for split, members in chosen.items():
        given[split] = sorted(given[split] + members)
    return {s: [rows[i] for i in given[s]] for s in SPLITS if given.get(s)}


def linked_units(indices, links):
    """Sample indices -> [[index, ...]]: the samples that share any link key (transitively) in one unit."""
    if links is None:
        return [[i] for i in indices]
    parent = {i: i for i in indices}

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first = {}
    for i in indices:
        for key in links[i]:
            j = first.setdefault(key, i)
            if j != i:
                parent[root(i)] = root(j)
    units = defaultdict(list)
    for i in indices:
        units[root(i)].append(i)
    return sorted(units.values())


def _sort_key(rows):
    return lambda unit: (rows[unit[0]][0], rows[unit[0]][2] or ())  # (path, box) is unique


def stratified_split(units, rows, fractions, seed, stratum=lambda label: label):
    """Seeded split of units (lists of indices into ``rows`` [(path, label, box)]) into train +
    fractions' splits, the same share of units in every class (``stratum`` of a unit's first label).

    Each class is shuffled with its own generator (seed, class name): adding or removing a class
    leaves the other classes' splits unchanged. Every class keeps at least one training unit.
    -> {split: [row index]}.
    """
    by_class = defaultdict(list)
    for unit in units:
        by_class[stratum(rows[unit[0]][1])].append(unit)
    out = defaultdict(list)
    for label, members in sorted(by_class.items(), key=lambda item: str(item[0])):
        members.sort(key=_sort_key(rows))
        rng = np.random.default_rng([seed, zlib.crc32(str(label).encode("utf-8"))])
        members = [members[i] for i in rng.permutation(len(members))]
        n = len(members)
        counts = {s: int(n * f + 0.5) for s, f in fractions.items()}
        while n - sum(counts.values()) < 1 and any(counts.values()):
            counts[max(counts, key=counts.get)] -= 1
        start = 0
        for split, k in counts.items():
            out[split] += [i for unit in members[start:start + k] for i in unit]
            start += k
        out["train"] += [i for unit in members[start:] for i in unit]
    return out


def iterative_split(units, rows, counts, fractions, seed):
    """Iterative stratification of units (Sechidis et al. 2011): the label with the fewest positives
    left is placed first, each of its units into the split that still wants most of that label
    (then most rows, then at random). A label with at least one positive per split puts its first
    positives where it has none yet, so every split sees it. counts: per unit a Counter of labels.
    -> {split: [row index]}.
    """
    names = ["train", *fractions]
    ratios = np.array([1.0 - sum(fractions.values()), *fractions.values()])
    order = sorted(range(len(units)), key=lambda u: _sort_key(rows)(units[u]))
    rng = np.random.default_rng(seed)
    order = [order[i] for i in rng.permutation(len(order))]
    totals = Counter()
    for c in counts:
        totals.update(c)
    want = {label: n * ratios for label, n in totals.items()}
    have = {label: np.zeros(len(names)) for label in totals}
    rows_wanted = sum(len(u) for u in units) * ratios
    left, placed = Counter(totals), [None] * len(units)
    holding = defaultdict(list)
    for u in order:
        for label in counts[u]:
            holding[label].append(u)

    def place(u, j):
        placed[u] = j
        rows_wanted[j] -= len(units[u])
        for label, n in counts[u].items():
            want[label][j] -= n
            have[label][j] += n
            left[label] -= n

    while any(n > 0 for n in left.values()):
        label = min((n, str(lab), lab) for lab, n in left.items() if n > 0)[2]
        spread = totals[label] >= len(names)
        for u in holding[label]:
            if placed[u] is not None:
                continue
            key = [((spread and have[label][j] == 0), want[label][j], rows_wanted[j], rng.random())
                   for j in range(len(names))]
            place(u, max(range(len(names)), key=key.__getitem__))
    for u in order:  # units without labels: where rows are still wanted
        if placed[u] is None:
            place(u, int(np.argmax(rows_wanted)))
    out = defaultdict(list)
    for u, j in enumerate(placed):
        out[names[j]] += units[u]
    return out


def seeded_subset(rows, labels, fraction, seed):
    """A seeded ``fraction`` of ``rows`` (a split's row indices), sorted: the same share of every
    class (``labels[row]``), each class keeping at least one row; ``labels`` None: a random draw.

    It is ``stratified_split``'s train part, so a class's draw depends on (seed, class) alone.
    """
    rows = [int(r) for r in rows]
    # stratified_split's (path, label, box) rows: the path only orders a class before its shuffle
    table = [(f"{row:012d}", 0 if labels is None else labels[row], None) for row in rows]
    kept = stratified_split([[i] for i in range(len(rows))], table, {"left_out": 1 - fraction}, seed)["train"]
    return np.array(sorted(rows[i] for i in kept), dtype=np.int64)
