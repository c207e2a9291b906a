"""What a dataset importer returns, and helpers importers share.

An importer is registered through ``register_datasets``::

    register("my-set", factory, detect=score)

``factory(source, **args) -> Imported``; it may also take an ``out`` argument (the prepared
directory) when it must write image files, e.g. decoding IDX arrays to PNGs under
``<out>/images/``. ``detect(source) -> int`` is optional: ``fashion prepare`` without
``--importer`` picks the importer with the highest score above 0 (generic ones score low).
"""
import csv
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError
from ..userfiles import UnreadableFile, read_bytes

SPLITS = ("train", "val", "test")
# Publishers name their splits many ways; prepared datasets always use SPLITS.
SPLIT_ALIASES = {
    "train": "train", "training": "train",
    "val": "val", "valid": "val", "validation": "val", "dev": "val",
    "test": "test", "testing": "test",
}
TABLE_SUFFIXES = (".csv", ".tsv", ".parquet", ".pq")
# When one image sits in several splits, the copy in the first of these is kept: test stays whole.
KEEP_ORDER = ("test", "val", "train")


@dataclass
class Imported:
    """A source dataset, as listed by an importer (nothing decoded yet).

    classes: class names in the order label indices should follow.
    samples: (image path, label, split or None); split is one of SPLITS or an alias
        ('validation', 'valid', ...), None = let ``prepare`` assign it. The label is what the
        task preparing the source reads (see ``kind``): a class name; for a multi-task source
        (``heads`` set) a {head: value} dict, ``classes`` unused; for a segmentation source
        (``masks`` set) None; for a plugin task's kind, whatever that task defines (e.g. a number
        per image for a regression task).
    kind: the kind of dataset the source holds: the ``dataset_kind`` of the registered task that
        prepares it (e.g. "regression" for a plugin's regression task). None: the built-in kinds,
        told apart by the fields set (``heads``: multitask, ``masks``: segmentation, else
        classification).
    problems: [{"path", "reason"}] for entries the importer already had to drop.
    masks: None, or (segmentation) one mask reader per sample, see the field below.
    boxes: None (every image whole), or a list aligned with ``samples``: per sample None or a
        bounding box (x1, y1, x2, y2): numbers (or numeric text) in source pixels, x2, y2 exclusive (see
        ``fashioncli.data.images.check_box``). ``prepare`` crops each image to its box (clamped to the
        image) before resizing; the same path listed with two boxes (two garments of one photo) is
        two samples. An invalid or empty box is a reported problem for that sample.
    """

    classes: list
    samples: list
    problems: list = field(default_factory=list)
    # A multi-task source: {head name: {"type", "classes" (optional: else the values seen),
    # "parent" (optional: the head this one's classes belong to)}}; each sample's label is then
    # {head name: value}, a value being text, a list of texts (multilabel) or None (missing).
    heads: dict = None
    boxes: list = None
    # A segmentation source: one entry per sample, a zero-argument callable returning that image's
    # (H, W) integer class-index mask (indices into ``classes``; ``ignore_index`` where unlabelled),
    # or raising MaskError. Reading is deferred so that prepare decodes each mask once, in its
    # worker threads. The sample's label is then None.
    masks: list = None
    ignore_index: int = 255
    # Segmentation extras: one (r, g, b) per class for drawing masks (None: fashion picks colours),
    # and named class subsets that eval reports mIoU over, e.g. {"evaluated": [17 names]}.
    palette: list = None
    class_sets: dict = None
    kind: str = None
    # {image path: group}: the rows of one group (a product, a sender, one photo's garments) are
    # drawn into one split (an importer's ``group_col``).
    groups: dict = None
    # [{"path", "reason"}] of source files left out on purpose (an image without a mask in a
    # segmentation source): reported as not used, not as problems.
    unused: list = None
    # Image files in the source folder that no row of its table names (paths; the report counts them).
    unlisted: list = None


def normalize_split(name):
    """'Validation' -> 'val'; None for a name that is not a split."""
    return SPLIT_ALIASES.get(str(name).strip().lower())


def read_table(path):
    """A CSV/TSV/parquet file as {column: [str or None, ...]} (every value as text, so ids like
    00123 and labels like 3 keep their spelling)."""
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            table = pq.read_table(path)
        elif suffix in (".csv", ".tsv"):
            import pyarrow.csv as pacsv

            with open(path, newline="", encoding="utf-8-sig") as f:
                names = next(csv.reader(f, delimiter="\t" if suffix == ".tsv" else ","), [])
            import pyarrow as pa

            table = pacsv.read_csv(
                path,
                parse_options=pacsv.ParseOptions(delimiter="\t" if suffix == ".tsv" else ","),
                convert_options=pacsv.ConvertOptions(column_types={n: pa.string() for n in names}),
            )
        else:
            raise DataError(f"'{path}': a table must be .csv, .tsv or .parquet, not '{suffix or path.name}'")
    except DataError:
        raise
    except Exception as exc:  # pyarrow raises several types for malformed files
        raise DataError(f"cannot read table '{path}': {str(exc).splitlines()[0]}") from None
    return {name: [None if v is None else str(v) for v in table.column(name).to_pylist()]
            for name in table.column_names}


def pick_column(columns, wanted, candidates, what, table):
    """The column named ``wanted``, else the first of ``candidates`` present; DataError otherwise."""
    if wanted is not None:
        if wanted not in columns:
            raise DataError(f"table '{table}' has no column '{wanted}' (columns: {', '.join(columns)})")
        return wanted
    lowered = {c.lower(): c for c in columns}
    for cand in candidates:
        if cand in lowered:
            return lowered[cand]
    raise DataError(
        f"table '{table}': cannot tell which column holds the {what}; pass {what}_col=NAME "
        f"(columns: {', '.join(columns)})"
    )


# -- composite columns -------------------------------------------------------
def derive_columns(columns, derive, table):
    """Split composite columns in place: {"description": {"sep": " - ", "into": [a, b, ...]}}.

    A row with another number of parts gets missing labels in the derived columns (not a guess).
    """
    for source, spec in (derive or {}).items():
        pick_column(list(columns), source, (), "derived", table)
        if not isinstance(spec, dict) or not spec.get("into"):
            raise DataError(f"derive.{source}: expected {{sep: ' - ', into: [name, ...]}}")
        sep, into = spec.get("sep", " - "), list(spec["into"])
        parts = [(v or "").split(sep) for v in columns[source]]
        for i, name in enumerate(into):
            columns[name] = [p[i].strip() if len(p) == len(into) else None for p in parts]
    return columns


# -- split folders (<root>/<split>/images/...) -------------------------------
def split_folders(root, inner="images"):
    """[(split, folder)] for every train/val/test-like folder of ``root`` that holds ``inner``, in KEEP_ORDER."""
    found = [(normalize_split(d.name), d) for d in sorted(root.iterdir())
             if d.is_dir() and normalize_split(d.name) and (d / inner).is_dir()]
    return sorted(found, key=lambda t: KEEP_ORDER.index(t[0]))


def drop_copies(listed, problems):
    """[(image path, split, folder name)] -> the same, keeping only the first copy (test before val
    before train) of byte-identical images across splits; copies within one split stay (prepare's
    report counts them). The copies left out become ``problems``."""
    first, kept = {}, []
    for path, split, folder in listed:
        try:
            digest = hashlib.sha1(read_bytes(path)).hexdigest()
        except UnreadableFile as exc:
            problems.append({"path": str(path), "reason": str(exc)})
            continue
        other = first.setdefault(digest, (path, split))
        if other[1] != split:
            problems.append({"path": str(path), "reason": f"same bytes as {other[1]} image "
                                                          f"'{other[0].parent.parent.name}/{other[0].parent.name}/{other[0].name}'; "
                                                          f"left out of {split} so {other[1]} stays whole"})
            continue
        kept.append((path, split, folder))
    order = {s: i for i, s in enumerate(SPLITS)}
    return sorted(kept, key=lambda t: (order[t[1]], str(t[0])))


# The multi-task table helpers moved to the multitask task; importers that import them from here
# keep working until they import them from the plugin API.
