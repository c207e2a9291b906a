"""prepare's report: report.json (counts, image sizes, duplicates, problems) and report.md.

The task that prepares the source supplies what it says about labels (``Preparation.describe``,
``counts``, ``report_extras``, ``markdown``); the rest is the same for every task.
"""
import statistics
from collections import Counter, defaultdict

import numpy as np

from ..io import md_cell
from .images import format_box


def build_report(splits, infos, preparation, problems, notes, importer, source, image_size, duplicates=None,
                 unused=(), unlisted=()):
    """report.json's content. splits: {split: [(path, label, box)]}; infos: each split's cache
    metadata; duplicates: prepare's copies removed across splits and copies with conflicting
    labels; unused: files left out on purpose (no mask); unlisted: image files no table row names."""
    shapes = np.array([shape for meta in infos.values() for shape in meta["shapes"]]).reshape(-1, 2)
    stats = {
        axis: {"min": int(col.min()), "median": float(statistics.median(col.tolist())), "max": int(col.max())}
        for axis, col in (("height", shapes[:, 0]), ("width", shapes[:, 1]))
    }
    copies = defaultdict(list)  # identical bytes (and the same box: two garments of a photo are not copies)
    for split, rows in splits.items():
        for (path, label, box), sha1 in zip(rows, infos[split]["sha1"]):
            entry = {"path": path, "split": split, "label": label}
            if box is not None:
                entry["box"] = format_box(box)
            copies[sha1, box].append(entry)
    across = [{"sha1": h, "files": files} for (h, _), files in copies.items() if len({f["split"] for f in files}) > 1]
    within = sum(len(files) - len({f["split"] for f in files}) for files in copies.values())
    boxed = sum(box is not None for rows in splits.values() for *_, box in rows)
    return {
        "source": source, "importer": importer, "image_size": image_size,
        **preparation.describe(),
        "splits": {s: len(rows) for s, rows in splits.items()}, "counts": preparation.counts(splits),
        **({"cropped_to_box": boxed} if boxed else {}),
        "image_sizes": stats,
        "duplicates": {"across_splits": across, "extra_copies_within_splits": within,
                       "removed_across_splits": [], "conflicting_labels": [], **(duplicates or {})},
        "problems": problems, "problem_kinds": dict(Counter(p.get("kind", "other") for p in problems)),
        "not_used": list(unused),
        "files_named_by_no_row": {"count": len(unlisted), "examples": list(unlisted)[:20]},
        "notes": notes,
        **preparation.report_extras(splits),
    }


def count_table(counts, classes, splits, totals=None):
    """Markdown lines: one row per class of {split: {class: n}}, a total column, and a total row
    when ``totals`` ({split: n}) is given."""
    lines = ["| class | " + " | ".join(splits) + " | total |", "|---|" + "---:|" * (len(splits) + 1)]
    for c in classes:
        row = [counts[s][c] for s in splits]
        lines.append(f"| {md_cell(c)} | " + " | ".join(map(str, row)) + f" | {sum(row)} |")
    if totals:
        row = [totals[s] for s in splits]
        lines.append("| **total** | " + " | ".join(map(str, row)) + f" | {sum(row)} |")
    return lines + [""]


def report_markdown(report, preparation, limit=50):
    """report.md from report.json's content; lists are cut at ``limit`` entries (report.json has them all)."""
    lines = [
        "# Prepared dataset report", "",
        f"Source: `{report['source']}` (importer `{report['importer']}`), cached at {report['image_size']} px.", "",
    ]
    if report.get("cropped_to_box"):
        lines += [f"{report['cropped_to_box']} images are cropped to their bounding box before resizing.", ""]
    lines += preparation.markdown(report)
    sizes = report["image_sizes"]
    sizes_title = "## Image sizes (pixels" + (", before cropping)" if report.get("cropped_to_box") else ")")
    lines += ["", sizes_title, "", "| | min | median | max |", "|---|---:|---:|---:|"]
    lines += [f"| {axis} | {s['min']} | {s['median']:g} | {s['max']} |" for axis, s in sizes.items()]
    dup = report["duplicates"]
    lines += ["", "## Duplicates", "",
              f"{len(dup['across_splits'])} images appear in more than one split (identical bytes); "
              f"{dup['extra_copies_within_splits']} extra copies within a split."]
    for group in dup["across_splits"][:limit]:
        lines.append("- " + ", ".join(f"`{f['path']}` ({f['split']}, {f['label']})" for f in group["files"]))
    removed = dup["removed_across_splits"]
    if removed:
        lines += ["", f"{sum(len(g['dropped']) for g in removed)} copies were left out of a split so that each image "
                      "sits in one split only (the first of test, val, train keeps it):"]
        lines += [f"- {g['why']}: kept " + ", ".join(f"`{f['path']}` ({f['split']})" for f in g["kept"])
                  + "; left out " + ", ".join(f"`{f['path']}` ({f['split']}, {f['label']})" for f in g["dropped"])
                  for g in removed[:limit]]
    conflicts = dup["conflicting_labels"]
    if conflicts:
        lines += ["", f"{len(conflicts)} images have copies with conflicting labels:"]
        lines += ["- " + ", ".join(f"`{f['path']}` ({f['split']}, {f['label']})" for f in g["files"])
                  for g in conflicts[:limit]]
    kinds = report.get("problem_kinds") or {}
    lines += ["", "## Problems", "", f"{len(report['problems'])} files were left out"
              + (" (" + ", ".join(f"{kind}: {n}" for kind, n in kinds.items()) + ")." if kinds else ".")]
    lines += [f"- `{p['path']}`: {p.get('kind', 'other')}: {p['reason']}" for p in report["problems"][:limit]]
    if len(report["problems"]) > limit:
        lines.append(f"- ... {len(report['problems']) - limit} more in report.json")
    lines += [f"- {note}" for note in report["notes"]]
    unused = report.get("not_used") or []
    if unused:
        lines += ["", "## Not used", "", f"{len(unused)} images have no mask (not used)."]
        lines += [f"- `{p['path']}`: {p['reason']}" for p in unused[:limit]]
    unlisted = report.get("files_named_by_no_row") or {}
    if unlisted.get("count"):
        lines += ["", f"{unlisted['count']} image files in the source folder are named by no row of the table "
                      "(first: " + ", ".join(f"`{p}`" for p in unlisted["examples"][:5]) + ")."]
    return "\n".join(lines) + "\n"
