"""A multi-task source's label columns: which table columns are heads, and each row's labels.

Importers of tables call ``normalize_heads`` on the heads a user names and ``head_labels`` on the
table; ``Imported.heads`` and the {head: value} labels they return make it a multi-task source.
"""
from ...errors import DataError
from ...data.importing import pick_column
from .heads import HEAD_TYPES

# Cells that mean "no label" in published tables, compared lower-cased.
MISSING_VALUES = frozenset({"", "nan", "none", "null", "na", "n/a", "-"})


def normalize_heads(heads):
    """Recipe/argument form -> {name: {"column", "type", "sep", "missing", "columns", "parent"}}.

    ``heads`` is a list of column names (categorical heads) or a mapping of head name to None or
    {column, type (categorical|binary|multilabel), sep (multilabel list separator, default '|'),
    columns (multilabel from several 0/1 columns), missing (extra values meaning "unknown"), parent}.
    """
    if isinstance(heads, str):
        heads = [h.strip() for h in heads.split(",") if h.strip()]
    if isinstance(heads, (list, tuple)):
        heads = {h: None for h in heads}
    if not isinstance(heads, dict) or not heads:
        raise DataError("heads: expected a list of columns or a mapping {head: {column, type, ...}}")
    out = {}
    for name, spec in heads.items():
        spec = dict(spec or {})
        unknown = set(spec) - {"column", "type", "sep", "missing", "columns", "parent", "classes"}
        if unknown:
            raise DataError(f"heads.{name}.{sorted(unknown)[0]}: unknown key; allowed: column, type, sep, columns, "
                            "missing, parent, classes")
        spec.setdefault("type", "multilabel" if spec.get("columns") else "categorical")
        if spec["type"] not in HEAD_TYPES:
            raise DataError(f"heads.{name}.type: '{spec['type']}' is not one of {', '.join(HEAD_TYPES)}")
        spec.setdefault("column", name)
        spec.setdefault("sep", "|")
        spec["missing"] = {str(v).lower() for v in spec.get("missing") or ()} | MISSING_VALUES
        out[name] = spec
    return out


def _cell(value, spec):
    if value is None:
        return None
    value = str(value).strip()
    return None if value.lower() in spec["missing"] else value


def head_labels(columns, heads, table):
    """Table columns + normalised heads -> ({head: {"type", "classes"?, "parent"?}}, [{head: value}] per row).

    Values are text for categorical and binary heads, a list of texts for multilabel heads, and
    None where the label is missing.
    """
    names, n = list(columns), len(next(iter(columns.values()), []))
    per_head = {}
    for name, spec in heads.items():
        if spec.get("columns"):  # multi-label as several 0/1 columns: the label is the column's name
            cols = [pick_column(names, c, (), f"heads.{name}", table) for c in spec["columns"]]
            flags = [[_cell(v, spec) for v in columns[c]] for c in cols]
            per_head[name] = [
                None if any(f[r] is None for f in flags)
                else [c for c, f in zip(cols, flags) if f[r] not in ("0", "0.0", "false", "False", "no")]
                for r in range(n)
            ]
            spec.setdefault("classes", cols)
            continue
        column = pick_column(names, spec["column"], (), f"heads.{name}", table)
        cells = [_cell(v, spec) for v in columns[column]]
        if spec["type"] == "multilabel":
            cells = [None if c is None else [p.strip() for p in c.split(spec["sep"]) if p.strip()] for c in cells]
        per_head[name] = cells
    declared = {
        name: {k: spec[k] for k in ("type", "classes", "parent") if spec.get(k) is not None}
        for name, spec in heads.items()
    }
    rows = [{name: per_head[name][r] for name in heads} for r in range(n)]
    return declared, rows
