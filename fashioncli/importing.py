"""What a dataset importer returns, and helpers importers share.

An importer is registered through ``register_datasets``::

    register("my-set", factory, detect=score)

``factory(source, **args) -> Imported``; it may also take an ``out`` argument (the prepared
directory) when it must write image files, e.g. decoding IDX arrays to PNGs under
``<out>/images/``. ``detect(source) -> int`` is optional: ``fashion prepare`` without
``--importer`` picks the importer with the highest score above 0 (generic ones score low).
"""
import csv
from dataclasses import dataclass, field
from pathlib import Path

from .errors import DataError

SPLITS = ("train", "val", "test")
# Publishers name their splits many ways; prepared datasets always use SPLITS.
SPLIT_ALIASES = {
    "train": "train", "training": "train",
    "val": "val", "valid": "val", "validation": "val", "dev": "val",
    "test": "test", "testing": "test",
}
TABLE_SUFFIXES = (".csv", ".tsv", ".parquet", ".pq")


@dataclass
class Imported:
    """A source dataset, as listed by an importer (nothing decoded yet).

    classes: class names in the order label indices should follow.
    samples: (image path, class name, split or None); split is one of SPLITS or an alias
        ('validation', 'valid', ...), None = let ``prepare`` assign it.
    problems: [{"path", "reason"}] for entries the importer already had to drop.
    """

    classes: list
    samples: list
    problems: list = field(default_factory=list)


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
