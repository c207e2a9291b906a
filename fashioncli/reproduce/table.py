"""The reproduction's table: table.json (everything), table.md (to read) and table.png (grouped
bars, the report's figure against ours), rewritten after every row."""
import time

from ..io import atomic_path, md_cell, write_json, write_text
from .runner import metric, reference


def build(manifest, steps, states, scale, hardware):
    """-> the table as data: per row, per column the report's figure, ours and the difference."""
    rows = []
    for step in steps:
        state = states.get(step.row.name)
        cells = {}
        for column in manifest.columns:
            ref = reference(step, column) if step.spec else step.row.reference.get(column)
            ours = metric(state["summary"], step.row.metric_path(column)) if state else None
            cells[column] = {"report": ref, "measured": ours,
                             "difference": None if ref is None or ours is None else round(ours - ref, 4)}
        rows.append({
            "name": step.row.name, "recipe": step.spec, "scale": scale,
            "status": "measured" if state else ("no recipe at this scale" if step.spec is None else "not run"),
            "train_minutes": round(state["train_seconds"] / 60, 2) if state else None,
            "eval_minutes": round(state["eval_seconds"] / 60, 2) if state else None,
            "resumed": state.get("resumed") if state else None,
            "hardware": state.get("hardware", hardware) if state else None,
            "split": state.get("split") if state else None,
            "cells": cells,
        })
    return {"report": manifest.report, "title": manifest.title, "scale": scale, "manifest": manifest.location,
            "columns": manifest.columns, "hardware": hardware,
            "generated": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "notes": manifest.notes, "rows": rows}


def _figure(value):
    return "—" if value is None else f"{value:.4f}"


def markdown(table):
    cols = table["columns"]
    head = ["row", "recipe"] + [f"{label}: report / ours (Δ)" for label in cols.values()] + ["train min", "hardware"]
    lines = [f"# Report {table['report']}: {table['title']}".rstrip(": "), "",
             f"Scale `{table['scale']}`, generated {table['generated']} by `fashion reproduce`; "
             f"figures from each row's eval split. Hardware: {table['hardware']}.", ""]
    if table["notes"]:
        lines += [table["notes"], ""]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in table["rows"]:
        cells = []
        for column in cols:
            cell = row["cells"][column]
            diff = "" if cell["difference"] is None else f" ({cell['difference']:+.4f})"
            cells.append(f"{_figure(cell['report'])} / {_figure(cell['measured'])}{diff}")
        minutes = "—" if row["train_minutes"] is None else f"{row['train_minutes']:.1f}" + (" (resumed)" if row["resumed"] else "")
        status = "" if row["status"] == "measured" else f" ({row['status']})"
        lines.append("| " + " | ".join(md_cell(c) for c in [row["name"] + status, row["recipe"] or "—", *cells, minutes,
                                                             row["hardware"] or "—"]) + " |")
    return "\n".join(lines) + "\n"


def plot(table, path):
    """Grouped bars, one panel per column: the report's figure (grey) beside ours for every row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    cols, rows = table["columns"], table["rows"]
    fig, axes = plt.subplots(len(cols), 1, figsize=(max(6, 0.9 * len(rows) + 2), 2.8 * len(cols)), squeeze=False)
    x = np.arange(len(rows))
    for ax, (column, label) in zip(axes[:, 0], cols.items()):
        ref = [r["cells"][column]["report"] for r in rows]
        ours = [r["cells"][column]["measured"] for r in rows]
        ax.bar(x - 0.2, [v or 0 for v in ref], 0.4, color="#9e9e9e", label="report")
        ax.bar(x + 0.2, [v or 0 for v in ours], 0.4, color="#1f77b4", label=f"measured ({table['scale']})")
        for i, (r, o) in enumerate(zip(ref, ours)):
            for dx, v in ((-0.2, r), (0.2, o)):
                ax.text(i + dx, (v or 0) + 0.01, "—" if v is None else f"{v:.2f}", ha="center", fontsize=7)
        ax.set_title(label, fontsize=10)
        ax.set_xticks(x, [r["name"] for r in rows], rotation=30, ha="right", fontsize=8)
        ax.set_ylim(0, max(1.0, *[v or 0 for v in ref + ours]) * 1.08)
        ax.legend(fontsize=8, loc="upper right")
    fig.suptitle(f"Report {table['report']}: report against `fashion reproduce`", fontsize=11)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def write(table, base):
    write_json(base / "table.json", table)
    write_text(base / "table.md", markdown(table))
    plot(table, base / "table.png")
    return [base / "table.md", base / "table.json", base / "table.png"]
