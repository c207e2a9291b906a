"""report.html: what `fashion eval` measured, on one page that opens anywhere, offline.

The page is self-contained: CSS inline, every picture a base64 data URI, no script, no font or
file fetched. The verb (evaluate.py) makes a ``Report`` and hands it to the task in
``EvalOptions.report``; the task's evaluate adds its sections while it holds the outputs (metrics,
tables, confusion matrices, galleries, charts); ``write_report`` renders it with jinja2, whose
autoescaping keeps class names and paths text, never markup.
"""
import base64
import math
from pathlib import Path

import numpy as np

from .io import write_text

THUMB_SIDE = 112  # pixels: a gallery tile's longer side
GALLERY_SIZE = 4  # pictures per class in each of a gallery's two rows
GALLERY_CLASSES = 40  # past this many classes a gallery shows those with the most mistakes, and says so
SCROLL_AFTER = 20  # classes: a larger confusion matrix scrolls inside its box, headers kept in view


class Report:
    """Sections in the order they are added; each holds blocks that the template draws by kind."""

    def __init__(self, title, facts=None):
        self.title, self.facts, self.sections = title, dict(facts or {}), []
        # {"reference": {metric: {"report": value}}} or {"reference_left_out": why}: the recipe's
        # eval.reference as it applies to the data scored, for a task to draw beside its figures
        self.reference = {}

    def section(self, title, note=""):
        section = Section(title, note, f"s{len(self.sections) + 1}")
        self.sections.append(section)
        return section


class Section:
    def __init__(self, title, note, anchor):
        self.title, self.note, self.anchor, self.blocks = title, note, anchor, []

    def _add(self, kind, **block):
        self.blocks.append({"kind": kind, **block})
        return self

    def metrics(self, values, title=""):
        """Headline figures as cards: {name: number}; nested dicts are flattened (a.b), lists left out."""
        cards = [(k, v) for k, v in flatten(values).items() if v is None or isinstance(v, (int, float, str))]
        return self._add("metrics", title=title, cards=[(k, number(v)) for k, v in cards]) if cards else self

    def table(self, header, rows, title="", bars=()):
        """A table; cells are formatted (floats to 3 decimals, None as a dash). Columns named in
        ``bars`` (values in [0, 1]) get a bar behind the number, so a column reads at a glance."""
        bar_columns = {i for i, h in enumerate(header) if h in bars}
        body = [[{"text": number(v), "numeric": isinstance(v, (int, float)) or v is None,
                  "bar": _share(v) if i in bar_columns else None} for i, v in enumerate(row)] for row in rows]
        return self._add("table", title=title, header=list(header), rows=body)

    def matrix(self, classes, counts, title="confusion matrix", parent_of=None):
        """A confusion matrix (rows true, columns predicted) with every count shown, each row's total
        as (n=...) and cells shaded by their share of the row. ``parent_of`` ({class: parent}) orders
        the classes by parent and labels the groups. A large matrix scrolls; it is never left out."""
        counts = np.asarray(counts, dtype=np.int64)
        order = list(range(len(classes)))
        groups = None
        if parent_of:
            parents = list(dict.fromkeys(parent_of.get(c, "") for c in classes))
            order.sort(key=lambda i: (parents.index(parent_of.get(classes[i], "")), i))
            groups = [parent_of.get(classes[i], "") for i in order]
        counts = counts[np.ix_(order, order)]
        totals = counts.sum(1)
        rows = []
        for r, i in enumerate(order):
            group = None
            if groups and (r == 0 or groups[r] != groups[r - 1]):
                group = {"name": groups[r] or "(none)", "span": groups.count(groups[r])}  # sorted: one run
            cells = []
            for c, j in enumerate(order):
                share = counts[r, c] / totals[r] if totals[r] else 0.0
                cells.append({"text": compact(counts[r, c]), "share": share, "diagonal": r == c,
                              "title": f"true {classes[i]}, predicted {classes[j]}: {counts[r, c]:,} "
                                       f"({share:.1%} of the row)",
                              "starts_group": bool(groups) and c > 0 and groups[c] != groups[c - 1]})
            rows.append({"label": classes[i], "n": f"{totals[r]:,}", "cells": cells, "group": group,
                         "starts_group": bool(groups) and r > 0 and groups[r] != groups[r - 1]})
        columns = [{"label": classes[j], "starts_group": bool(groups) and c > 0 and groups[c] != groups[c - 1]}
                   for c, j in enumerate(order)]
        note = (f"{len(classes)} classes, ordered by parent class" if groups else f"{len(classes)} classes")
        if len(classes) > SCROLL_AFTER:
            note += "; scroll inside the box to see every row and column"
        return self._add("matrix", title=title, rows=rows, columns=columns, grouped=bool(groups),
                         scroll=len(classes) > SCROLL_AFTER, note=note)

    def figure(self, picture, caption="", width=None):
        """A picture: PNG bytes or a PNG file eval wrote (a missing file is named, not skipped)."""
        if isinstance(picture, (str, Path)):
            path = Path(picture)
            if not path.is_file():
                return self._add("text", text=f"{path.name} was not written")
            picture = path.read_bytes()
        return self._add("figure", src=data_uri(picture, "image/png"), caption=caption, width=width)

    def side_by_side(self, *sections):
        """Blocks of other (unlisted) sections next to each other: a chart beside its table."""
        return self._add("columns", columns=[s.blocks for s in sections])

    def gallery(self, groups, title="", note=""):
        """Rows of thumbnails: [{"title", "rows": [{"title", "items": [{src, lines, wrong}]}]}]."""
        return self._add("gallery", title=title, note=note, groups=groups)

    def image_rows(self, header, rows, legend=()):
        """Pictures shown at their own size (no scaling), a row per sample: [{"cells": [src],
        "text": str}] with ``legend`` [(name, (r, g, b))] under them."""
        legend = [(name, "#%02x%02x%02x" % tuple(int(v) for v in rgb)) for name, rgb in legend]
        return self._add("image_rows", header=list(header), rows=rows, legend=legend)

    def text(self, text):
        return self._add("text", text=text)


def loose(title=""):
    """A section that belongs to no report: its blocks go into ``Section.side_by_side``."""
    return Section(title, "", "")


def _share(value):
    if isinstance(value, (int, float)) and not (isinstance(value, float) and math.isnan(value)):
        return max(0.0, min(1.0, float(value)))
    return None


def flatten(values, prefix=""):
    out = {}
    for key, value in (values or {}).items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        elif not isinstance(value, list):
            out[name] = value
    return out


def number(value):
    """A cell's text: floats to 3 decimals, ints with thousands separators, None or NaN as a dash."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def compact(count):
    """A count in at most 4 characters (pixel counts reach millions): 987, 12.3k, 4.5M."""
    count = int(count)
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if count >= limit:
            value = count / limit
            return f"{value:.1f}{suffix}" if value < 10 else f"{value:.0f}{suffix}"
    return str(count)


def data_uri(data, mime):
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def picture_uri(rgb, fmt="png", max_side=None):
    """An (H, W, 3) uint8 RGB array -> a data URI (PNG keeps masks exact; JPEG keeps photos small)."""
    import cv2

    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    h, w = rgb.shape[:2]
    if max_side and max(h, w) > max_side:
        scale = max_side / max(h, w)
        rgb = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    params = [cv2.IMWRITE_JPEG_QUALITY, 85] if fmt == "jpeg" else []
    ok, data = cv2.imencode(f".{'jpg' if fmt == 'jpeg' else 'png'}", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    return data_uri(data.tobytes(), f"image/{fmt}")


def thumbnail(path, fallback=None):
    """A gallery tile from an image file (its own aspect), else from ``fallback`` (an RGB array,
    e.g. the cached copy eval scored), else a grey tile: a moved photo never breaks the page."""
    from .data.images import read_image

    try:
        image = read_image(path)
    except Exception:  # a moved or unreadable source: the tile still shows something
        image = fallback if fallback is not None else np.full((THUMB_SIDE, THUMB_SIDE, 3), 200, np.uint8)
    return picture_uri(image, "jpeg", THUMB_SIDE)


def confidence_gallery(classes, true, predicted, score, picture, k=GALLERY_SIZE):
    """Per class: its images the model got wrong most confidently, and those it got right least
    confidently -> ``Section.gallery`` groups. ``picture(i)`` makes row i's tile (only chosen rows
    are read). Past ``GALLERY_CLASSES`` classes, those with the most mistakes are shown."""
    true, predicted, score = np.asarray(true), np.asarray(predicted), np.asarray(score, dtype=float)
    wrong = true != predicted
    mistakes = np.bincount(true[wrong], minlength=len(classes))
    present = [c for c in range(len(classes)) if (true == c).any()]
    shown = sorted(present, key=lambda c: -mistakes[c])[:GALLERY_CLASSES] if len(present) > GALLERY_CLASSES else present
    groups = []
    for c in sorted(shown):
        mine = np.flatnonzero(true == c)
        worst = mine[wrong[mine]][np.argsort(-score[mine[wrong[mine]]], kind="stable")][:k]
        unsure = mine[~wrong[mine]][np.argsort(score[mine[~wrong[mine]]], kind="stable")][:k]
        rows = []
        for name, picked, bad in (("most confident mistakes", worst, True), ("least confident correct", unsure, False)):
            items = [{"src": picture(i), "wrong": bad, "lines": [
                f"true: {classes[true[i]]}", f"predicted: {classes[predicted[i]]}", f"confidence {score[i]:.2f}"]}
                for i in picked.tolist()]
            rows.append({"title": name, "items": items, "empty": "none" if not items else ""})
        groups.append({"title": f"{classes[c]}  ({int(mistakes[c])} wrong of {len(mine)})", "rows": rows})
    note = ""
    if len(shown) < len(present):
        note = f"the {len(shown)} of {len(present)} classes with the most mistakes"
    return groups, note


def render(report):
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
                             autoescape=True, trim_blocks=True, lstrip_blocks=True)
    return env.get_template("report.html").render(report=report)


def write_report(path, report):
    """Render ``report`` into ``path`` (atomically) -> the path."""
    write_text(path, render(report))
    return path
