"""Copies of one image in a prepared dataset: byte-identical files (SHA-1) and, when asked,
near-identical ones (re-encoded or resized: a 64-bit difference hash, dHash).

prepare hashes every file before drawing splits, so copies are drawn into one split together;
copies that still sit in several splits (the source's own splits put them there, or near copies
found only once images are decoded) are kept in one split only, the first of test, val, train.
"""
import hashlib
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np

from .importing import KEEP_ORDER
from .images import ImageError, read_file

# Two images are near copies when their dHashes differ in at most this many of 64 bits.
NEAR_BITS = 4


def file_digests(paths, workers):
    """SHA-1 of each file's bytes (None where it cannot be read: the cache reports why)."""
    def digest(path):
        try:
            return hashlib.sha1(read_file(path)).hexdigest()
        except ImageError:
            return None

    with ThreadPoolExecutor(max(1, workers)) as pool:
        return list(pool.map(digest, paths))


def dhash(images):
    """(N, H, W, 3) uint8 -> (N,) uint64 difference hashes: a 9x8 grey thumbnail, one bit per
    horizontal neighbour pair (brighter to the right). Robust to re-encoding and resizing."""
    out = np.zeros(len(images), dtype=np.uint64)
    weights = (1 << np.arange(64, dtype=np.uint64)).astype(np.uint64)
    for i, image in enumerate(images):
        grey = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
        small = cv2.resize(grey, (9, 8), interpolation=cv2.INTER_AREA).astype(np.int16)
        bits = (small[:, 1:] > small[:, :-1]).reshape(-1).astype(np.uint64)
        out[i] = (bits * weights).sum()
    return out


def near_clusters(hashes, bits=NEAR_BITS):
    """(N,) uint64 -> a cluster id per hash: hashes within ``bits`` differing bits (transitively)
    share one. Pairs are found through ``bits + 1`` bands: two hashes that close agree exactly on
    at least one band (pigeonhole), so only hashes sharing a band are compared."""
    n = len(hashes)
    parent = list(range(n))

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    edges = np.linspace(0, 64, bits + 2).astype(int)
    for lo, hi in zip(edges[:-1], edges[1:]):
        mask = np.uint64(((1 << int(hi - lo)) - 1) << int(lo))
        buckets = defaultdict(list)
        for i, band in enumerate((hashes & mask).tolist()):
            buckets[band].append(i)
        for members in buckets.values():
            members = np.array(members)
            for a, i in enumerate(members[:-1]):
                close = members[a + 1:][_popcount(hashes[members[a + 1:]] ^ hashes[i]) <= bits]
                for j in close.tolist():
                    parent[root(int(i))] = root(j)
    return [root(i) for i in range(n)]


def _popcount(values):
    """Set bits of each uint64 (numpy < 2 has no bitwise_count)."""
    return np.unpackbits(np.ascontiguousarray(values).view(np.uint8)).reshape(-1, 64).sum(1)


def copies_across_splits(keys):
    """{split: [key or None per row]} -> ({split: [row indices to drop]}, [{kept, dropped}]): every
    key found in more than one split stays only in the first of KEEP_ORDER (test stays whole)."""
    where = defaultdict(lambda: defaultdict(list))
    for split, row_keys in keys.items():
        for i, key in enumerate(row_keys):
            if key is not None:
                where[key][split].append(i)
    drop, groups = defaultdict(list), []
    for key, by_split in where.items():
        if len(by_split) < 2:
            continue
        keep = min(by_split, key=KEEP_ORDER.index)
        groups.append({"kept": (keep, by_split[keep]), "dropped": {s: rows for s, rows in by_split.items() if s != keep}})
        for split, rows in by_split.items():
            if split != keep:
                drop[split] += rows
    return drop, groups


def conflicting_labels(splits, digests, text):
    """Byte-identical files with different labels: [{"sha1", "files": [{path, split, label}]}].
    digests: {split: [sha1 per row]}; text(label) -> the label as shown."""
    files = defaultdict(list)
    for split, rows in splits.items():
        for (path, label, _), sha1 in zip(rows, digests[split]):
            if sha1 is not None:
                files[sha1].append({"path": path, "split": split, "label": text(label)})
    return [{"sha1": h, "files": found} for h, found in files.items()
            if len({f["label"] for f in found}) > 1]
