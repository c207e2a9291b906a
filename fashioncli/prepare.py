"""`fashion prepare`: any supported source -> a prepared classification, multi-task or segmentation
dataset (see dataset.py).

import (plugin) -> clean (subset, duplicates, invalid boxes) -> split -> decode every image once
(cropped to its bounding box, when the importer gives boxes) into the cache, dropping unreadable
ones -> <split>.csv, report, dataset.json (written last: a
directory without it is not a prepared dataset, so an interrupted run is never mistaken for one).
"""
import inspect
import shutil
import statistics
import time
import zlib
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from .data.archives import extract, is_archive
from .data.cache import build_cache, default_workers, keep_rows, open_cache
from .data.dataset import FORMAT_VERSION
from .errors import DataError, PluginError, did_you_mean
from .data.images import ImageError, check_box, format_box
from .data.importing import SPLITS, Imported, normalize_split
from .io import is_temporary, make_dir, md_cell, remove_temporaries, write_csv, write_json, write_text
from .data.labels import check_labels
from .protect import inside

# What prepare itself writes into <out>; anything else there means OUT points at the wrong folder.
_LAYOUT = {"dataset.json", "report.json", "report.md", "cache", "images", "masks", "source", *(f"{s}.csv" for s in SPLITS)}


def prepare(source, out, importer=None, image_size=160, val_fraction=0.1, test_fraction=0.1, seed=0,
            classes=None, other_classes="background", workers=None, progress=True, **importer_args):
    """Import ``source`` into the prepared directory ``out``; returns a summary dict.

    source: a folder, table, ... or a .zip/.tar(.gz) of one, unpacked into ``out/source/`` first.
    importer: a registered dataset importer name; None picks one from the source (a folder of
        class folders, a .csv/.parquet table, Fashion-MNIST IDX files, 'synthetic', ...).
    val_fraction, test_fraction: share of images that get no split from the source, assigned by a
        seeded split stratified per class. Splits the source gives are kept; when it gives train
        but no val (or test), that split is carved out of train with its fraction.
    classes: keep only these classes (list, or comma-separated names). A segmentation source also
        takes "foreground" (background vs the rest) or the name of one of its class sets; the
        classes left out become background, or the ignore index with other_classes="ignore".
    importer_args: passed to the importer (e.g. image_col=..., download=True).
    """
    started = time.perf_counter()
    image_size = int(image_size)
    if image_size < 8:
        raise DataError(f"image_size must be at least 8, not {image_size}")
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise DataError("val_fraction and test_fraction must be >= 0 and add up to less than 1")
    workers = workers or default_workers()
    out = Path(out).absolute()
    source_str = str(Path(source).absolute()) if Path(str(source)).exists() else str(source)  # 'synthetic'
    archive = is_archive(source)
    if not archive:
        name, entry = _pick_importer(source, importer)
    _claim_out(out, source)
    if archive:
        source = _unpack(source, out / "source")
        name, entry = _pick_importer(source, importer)

    imported = _run_importer(entry, source, out, importer_args)
    warnings = check_labels(imported, source_str)  # before any image is decoded
    multitask, segmentation = imported.heads is not None, imported.masks is not None
    if multitask:
        if classes is not None:
            raise DataError("classes: a multi-task source keeps every class; choose its heads instead")
        heads, samples, problems, notes = _clean_heads(imported)
    elif segmentation:
        from .tasks.segmentation.prepare import cache_masks, class_mapping, dataset_meta

        class_names, lut = class_mapping(imported.classes, classes, other_classes, imported.class_sets)
        samples, problems, notes, readers = _clean_masks(imported)
    else:
        class_names, samples, problems, notes = _clean(imported, classes)
    notes = warnings + notes
    has_boxes = any(box is not None for *_, box in samples)
    if has_boxes and multitask and "box" in heads:
        raise DataError("heads.box: 'box' names the bounding-box column of a prepared dataset; rename the head")
    splits = _assign_splits(samples, val_fraction, test_fraction, seed)

    infos = _cache_splits(splits, out / "cache" / str(image_size), image_size, workers, progress, problems, has_boxes)
    if segmentation:
        pixels = cache_masks(splits, readers, infos, lut, imported, class_names, out, image_size, workers, progress,
                             problems)
    if "train" not in splits:
        raise DataError(f"no readable training images in '{source}' ({len(problems)} files could not be used)")

    if multitask:
        heads = _finish_heads(heads, [r[1] for rows in splits.values() for r in rows], notes)
        class_names = None
        header = ["path", *heads]
    elif segmentation:
        header = ["path", "mask"]
    else:
        present = {r[1] for rows in splits.values() for r in rows}
        notes += [f"class '{c}' has no readable images and was left out" for c in class_names if c not in present]
        class_names = [c for c in class_names if c in present]
        header = ["path", "label"]
    for split, rows in splits.items():
        lines = [(p, *labels) if multitask else (p, labels) for p, labels, _ in rows]
        if has_boxes:
            lines = [(*line, format_box(box)) for line, (_, _, box) in zip(lines, rows)]
        write_csv(out / f"{split}.csv", header + (["box"] if has_boxes else []), lines, lineterminator="\n")
    report = _report(splits, infos, class_names, problems, notes, name, source_str, image_size,
                     heads=heads if multitask else None, pixels=pixels if segmentation else None)
    write_json(out / "report.json", report)
    write_text(out / "report.md", _markdown(report))
    meta = {
        "format_version": FORMAT_VERSION,
        "task": "multitask" if multitask else "segmentation" if segmentation else "classification",
        "splits": {s: len(rows) for s, rows in splits.items()},
        "importer": name, "source": source_str, "image_size": image_size,
    }
    if multitask:
        meta["heads"] = {h: head.to_json() for h, head in heads.items()}
    else:
        meta["classes"] = class_names
    if segmentation:
        meta.update(dataset_meta(imported, class_names))
    if has_boxes:
        meta["boxes"] = True
    write_json(out / "dataset.json", meta)
    return {
        "out": str(out), "importer": name, "task": meta["task"],
        **({"heads": {h: len(head.classes) for h, head in heads.items()}} if multitask else {"classes": class_names}),
        "splits": meta["splits"],
        # Per-class counts of many heads would bury the summary: report.md has them.
        **({} if multitask or segmentation else {"counts": report["counts"]}), "problems": len(problems),
        "duplicates_across_splits": len(report["duplicates"]["across_splits"]),
        "image_size": image_size, "seconds": round(time.perf_counter() - started, 2),
        **({"warnings": warnings} if warnings else {}),
    }


def recipe_prepare_args(recipe):
    """A recipe's data.prepare (and data.root as the output) -> keyword arguments of ``prepare``."""
    spec = dict(recipe["data"].get("prepare") or {})
    if not spec.get("source"):
        raise DataError("data.prepare.source: the recipe does not say what to prepare; pass SOURCE and OUT")
    return {"out": recipe["data"]["root"], "image_size": recipe["data"]["image_size"],
            **{k: v for k, v in spec.items() if k != "args"}, **(spec.get("args") or {})}


def _cache_splits(splits, cache_dir, size, workers, progress, problems, has_boxes=False):
    """Decode (and crop) every split into its cache once; unreadable images leave ``splits`` (in
    place) for ``problems``. Returns {split: cache metadata} (source shape and SHA-1 of every kept row)."""
    infos = {}
    boxes_of = (lambda rows: [box for *_, box in rows]) if has_boxes else (lambda rows: None)  # noqa: E731
    for split, rows in list(splits.items()):
        errors = build_cache([p for p, *_ in rows], size, cache_dir, split, workers=workers, progress=progress,
                             boxes=boxes_of(rows))
        problems += [{"path": rows[i][0], "reason": e} for i, e in enumerate(errors) if e]
        keep = [i for i, e in enumerate(errors) if e is None]
        if not keep:
            del splits[split]
            for suffix in (".u8", ".json"):
                (cache_dir / f"{split}{suffix}").unlink()
            continue
        if len(keep) < len(rows):
            rows = splits[split] = [rows[i] for i in keep]
            keep_rows(cache_dir, split, keep, [p for p, *_ in rows], boxes=boxes_of(rows))
        infos[split] = open_cache(cache_dir, split)[1]
    return infos


def _unpack(archive, dest):
    """Extract an archive source into ``dest`` -> the folder to import: single wrapper folders
    (GitHub's <repo>-<branch>/) are stepped into, split folders (train/...) are not."""
    shutil.rmtree(dest, ignore_errors=True)
    root = extract(archive, dest)
    while True:
        entries = [p for p in root.iterdir() if not p.name.startswith(".") and p.name != "__MACOSX"]
        if len(entries) != 1 or not entries[0].is_dir() or normalize_split(entries[0].name):
            return root
        root = entries[0]


def _pick_importer(source, importer):
    from .plugins import get

    datasets = get("datasets")
    if importer is not None:
        return importer, datasets.get(importer)
    scores = []
    for entry in datasets:
        detect = entry.extra.get("detect")
        if detect is None:
            continue
        try:
            scores.append((detect(source) or 0, entry.name))
        except Exception as exc:  # a plugin's bug must name the plugin, not look like bad data
            raise PluginError(
                f"dataset importer '{entry.name}' (plugin '{entry.plugin}') failed to inspect '{source}': {exc}"
            ) from exc
    score, best = max(scores, default=(0, None))
    if score <= 0:
        if not Path(str(source)).exists():
            raise DataError(f"source '{source}' not found (a folder, a .csv/.parquet table, or 'synthetic')")
        raise DataError(f"cannot tell how to read '{source}'; pass an importer (known: {', '.join(datasets.names())})")
    return best, datasets.get(best)


def _claim_out(out, source):
    """Refuse to write into a folder prepare did not make; clear what a previous run left."""
    src = Path(str(source))
    if src.is_dir() and inside(out, src):  # after symlinks: a link into the source is the source
        raise DataError(f"OUT '{out}' is inside the source folder '{src}'; choose a folder outside it")
    # OUT's files are prepare's to rewrite; a source among them would be overwritten. The one
    # exception is an archive's unpacked copy, OUT/source/ (not the archive: unpacking clears it).
    if src.exists() and inside(src, out) and (is_archive(src) or not inside(src, out / "source")):
        raise DataError(f"source '{src}' is inside OUT '{out}', which prepare rewrites; move it or choose another OUT")
    if out.exists():
        if not out.is_dir():
            raise DataError(f"OUT '{out}' is a file; choose a folder")
        strangers = sorted(p.name for p in out.iterdir() if p.name not in _LAYOUT and not is_temporary(p.name))
        if strangers:
            raise DataError(
                f"OUT '{out}' already holds files prepare did not write ({', '.join(strangers[:3])}); "
                "choose a new or empty folder"
            )
    make_dir(out)
    (out / "dataset.json").unlink(missing_ok=True)  # first: the folder is not a dataset until done
    remove_temporaries(out)  # what a killed prepare was writing
    shutil.rmtree(out / "cache", ignore_errors=True)
    for split in SPLITS:
        (out / f"{split}.csv").unlink(missing_ok=True)


def _run_importer(entry, source, out, args):
    # Importers that write files (IDX -> PNG, drawn images) declare an `out` parameter.
    entry.check_args(args, injected=("source", "out"))
    if "out" in inspect.signature(entry.factory).parameters:
        args = {**args, "out": str(out)}
    imported = entry.factory(str(source), **args)
    if not isinstance(imported, Imported):
        raise PluginError(f"dataset importer '{entry.name}' returned {type(imported).__name__}, not Imported")
    if imported.boxes is not None and len(imported.boxes) != len(imported.samples):
        raise PluginError(f"dataset importer '{entry.name}' returned {len(imported.boxes)} boxes for "
                          f"{len(imported.samples)} samples; boxes must be aligned with samples")
    return imported


def _with_boxes(imported, problems):
    """(path, label, split, checked box or None) per sample; a sample with an invalid box becomes a
    problem. The same path with two boxes is two samples (two garments of one photo)."""
    boxes = imported.boxes if imported.boxes is not None else [None] * len(imported.samples)
    for (path, label, split), box in zip(imported.samples, boxes):
        try:
            yield path, label, split, check_box(box)
        except ImageError as exc:
            problems.append({"path": path, "reason": str(exc)})


def _twice(box):
    return "listed twice" + (f" with box {format_box(box)}" if box is not None else "")


def _clean(imported, classes):
    """Class subset, unknown labels, invalid boxes and repeated (path, box) pairs ->
    (classes, [(path, label, split, box)], problems, notes)."""
    problems = list(imported.problems)
    names = list(dict.fromkeys(imported.classes))
    if classes is not None:
        wanted = [c.strip() for c in classes.split(",")] if isinstance(classes, str) else [str(c) for c in classes]
        unknown = [c for c in wanted if c not in names]
        if unknown:
            raise DataError(
                f"class '{unknown[0]}' is not in the dataset{did_you_mean(unknown[0], names)}; "
                f"classes: {', '.join(names)}"
            )
        names = [c for c in names if c in set(wanted)]  # the importer's order, not the request's
    known = set(names)
    seen, samples, left_out = {}, [], Counter()
    for path, label, split, box in _with_boxes(imported, problems):
        if split and normalize_split(split) is None:
            problems.append({"path": path, "reason": f"unknown split '{split}' (use train/val/test)"})
            continue
        split = normalize_split(split) if split else None
        if label not in known:
            if classes is None:
                problems.append({"path": path, "reason": f"label '{label}' is not one of the importer's classes"})
            else:
                left_out[label] += 1  # left out on purpose: a note, not a problem
            continue
        if (path, box) in seen:  # a sample is an image, or one box of it
            first = seen[path, box]
            note = "" if first == label else f" with labels '{first}' and '{label}'"
            problems.append({"path": path, "reason": f"{_twice(box)}{note}; kept the first"})
            continue
        seen[path, box] = label
        samples.append((path, label, split, box))
    notes = []
    if left_out:
        counts = ", ".join(f"{label} ({n})" for label, n in left_out.most_common())
        notes.append(f"{sum(left_out.values())} images of classes not asked for were left out: {counts}")
    return names, samples, problems, notes


def _clean_heads(imported):
    """Multi-task counterpart of ``_clean`` -> (heads, [(path, (cell, ...), split, box)], problems, notes).

    Cells are the text a prepared <split>.csv holds: '' for a missing label, labels joined by
    LABEL_SEP for a multilabel head ('|' alone: known, with no label).
    """
    from .tasks.multitask.heads import LABEL_SEP

    heads = dict(imported.heads)
    problems, seen, samples = list(imported.problems), set(), []
    for path, labels, split, box in _with_boxes(imported, problems):
        if split and normalize_split(split) is None:
            problems.append({"path": path, "reason": f"unknown split '{split}' (use train/val/test)"})
            continue
        if (path, box) in seen:
            problems.append({"path": path, "reason": f"{_twice(box)}; kept the first"})
            continue
        seen.add((path, box))
        cells = []
        for name, spec in heads.items():
            value = labels.get(name)
            if value is None:
                cells.append("")
            elif spec["type"] == "multilabel":
                cells.append(LABEL_SEP.join(value) if value else LABEL_SEP)
            else:
                cells.append(str(value))
        samples.append((path, tuple(cells), normalize_split(split) if split else None, box))
    return heads, samples, problems, []


def _clean_masks(imported):
    """Segmentation counterpart of ``_clean`` -> ([(path, None, split, box)], problems, notes,
    {path: mask reader}); a path listed twice keeps its first mask."""
    if len(imported.masks) != len(imported.samples):
        raise PluginError(f"dataset importer returned {len(imported.masks)} masks for {len(imported.samples)} samples")
    problems, samples, readers = list(imported.problems), [], {}
    for (path, _, split), reader in zip(imported.samples, imported.masks):
        if split and normalize_split(split) is None:
            problems.append({"path": path, "reason": f"unknown split '{split}' (use train/val/test)"})
        elif path in readers:
            problems.append({"path": path, "reason": "listed twice; kept the first mask"})
        else:
            readers[path] = reader
            samples.append((path, None, normalize_split(split) if split else None, None))
    return samples, problems, [], readers


def _finish_heads(declared, rows, notes):
    """Heads with their classes (declared, else the values seen) and, for a head with a parent,
    each class's parent class (the most common one; disagreements become notes)."""
    from .tasks.multitask.heads import LABEL_SEP, Head

    names = list(declared)
    heads = {}
    for i, name in enumerate(names):
        spec = declared[name]
        cells = [r[i] for r in rows]
        if spec.get("classes"):
            classes = [str(c) for c in spec["classes"]]
        elif spec["type"] == "binary":
            classes = [name]
        elif spec["type"] == "multilabel":
            classes = sorted({label for c in cells for label in c.split(LABEL_SEP) if label})
        else:
            classes = sorted({c for c in cells if c})
        if spec["type"] != "binary":
            known = set(classes)
            values = {label for c in cells for label in (c.split(LABEL_SEP) if spec["type"] == "multilabel" else [c])}
            stray = sorted(v for v in values if v and v not in known)
            if stray:
                raise DataError(f"heads.{name}: values not among its declared classes: {', '.join(stray[:5])}")
        if not classes:
            raise DataError(f"heads.{name}: no labels at all in the readable images")
        heads[name] = Head(name, spec["type"], classes, spec.get("parent"))
    for i, name in enumerate(names):
        parent = heads[name].parent
        if not parent:
            continue
        if parent not in heads or heads[parent].type != "categorical" or heads[name].type != "categorical":
            raise DataError(f"heads.{name}.parent: '{parent}' must be another categorical head ({', '.join(names)})")
        j = names.index(parent)
        pairs = Counter((r[i], r[j]) for r in rows if r[i] and r[j])
        parent_of, disagree = {}, 0
        for (child, up), n in pairs.most_common():
            if child in parent_of:
                disagree += n
            else:
                parent_of[child] = up
        heads[name].parent_of = parent_of
        if disagree:
            notes.append(f"{disagree} images disagree with the {parent} of their {name}; the most common {parent} was kept")
    return heads


def _assign_splits(samples, val_fraction, test_fraction, seed):
    """[(path, label, split or None, box)] -> {split: [(path, label, box)]} in input order, empty
    splits left out."""
    given = defaultdict(list)
    for path, label, split, box in samples:
        given[split].append((path, label, box))
    free = given.pop(None, [])
    fractions = {"val": val_fraction, "test": test_fraction}
    if given:  # the source has splits: only those it lacks are made, from train
        fractions = {s: f for s, f in fractions.items() if s not in given}
        if fractions:
            free += given.pop("train", [])
    chosen = _stratified_split(free, fractions, seed)
    order = {(path, box): i for i, (path, _, _, box) in enumerate(samples)}
    for split, rows in chosen.items():
        given[split] = sorted(given[split] + rows, key=lambda r: order[r[0], r[2]])
    return {s: given[s] for s in SPLITS if given.get(s)}


def _stratified_split(rows, fractions, seed):
    """Seeded split of [(path, label, box)] into train + fractions' splits, the same share in every class.

    Each class is shuffled with its own generator (seed, class name): adding or removing a class
    leaves the other classes' splits unchanged. Every class keeps at least one training image.
    """
    by_class = defaultdict(list)
    for row in rows:
        # Multi-task rows (a tuple of cells) are stratified by their first head.
        by_class[row[1][0] if isinstance(row[1], tuple) else row[1]].append(row)
    out = defaultdict(list)
    for label, members in sorted(by_class.items()):
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


def _report(splits, infos, classes, problems, notes, importer, source, image_size, heads=None, pixels=None):
    if pixels is not None:  # segmentation: images that show each class
        counts = {s: dict(zip(classes, pixels[s][0])) for s in splits}
    elif heads is None:
        counts = {s: {c: 0 for c in classes} for s in splits}
        for split, rows in splits.items():
            counts[split].update(Counter(r[1] for r in rows))
    else:
        counts = _head_counts(splits, heads)
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
        **({"classes": classes} if heads is None else {"heads": {h: head.to_json() for h, head in heads.items()}}),
        "splits": {s: len(rows) for s, rows in splits.items()}, "counts": counts,
        **({"cropped_to_box": boxed} if boxed else {}),
        "image_sizes": stats,
        "duplicates": {"across_splits": across, "extra_copies_within_splits": within},
        "problems": problems, "notes": notes,
        **(_pixel_section(pixels, classes) if pixels is not None else {}),
    }


def _pixel_section(pixels, classes):
    """Segmentation: class pixel frequencies per split and training class weights."""
    from .tasks.segmentation.prepare import class_weights

    train = pixels.get("train", next(iter(pixels.values())))[1]
    total = max(1, sum(train))
    return {
        "pixels": {s: dict(zip(classes, p[1])) for s, p in pixels.items()},
        "pixel_frequency": {c: round(n / total, 6) for c, n in zip(classes, train)},
        "class_weights": dict(zip(classes, class_weights(train))),
    }


def _head_counts(splits, heads):
    """{head: {split: {class: images, "(missing)": images}}}."""
    from .tasks.multitask.heads import LABEL_SEP

    out = {}
    for i, (name, head) in enumerate(heads.items()):
        out[name] = {}
        for split, rows in splits.items():
            found = Counter()
            for _, cells, _ in rows:
                cell = cells[i]
                if not cell:
                    found["(missing)"] += 1
                else:
                    found.update(cell.split(LABEL_SEP) if head.type == "multilabel" else [cell])
            out[name][split] = {c: found.get(c, 0) for c in [*head.classes, "(missing)"]}
    return out


def _count_table(counts, classes, splits, totals=None):
    lines = ["| class | " + " | ".join(splits) + " | total |", "|---|" + "---:|" * (len(splits) + 1)]
    for c in classes:
        row = [counts[s][c] for s in splits]
        lines.append(f"| {md_cell(c)} | " + " | ".join(map(str, row)) + f" | {sum(row)} |")
    if totals:
        row = [totals[s] for s in splits]
        lines.append("| **total** | " + " | ".join(map(str, row)) + f" | {sum(row)} |")
    return lines + [""]


def _markdown(report, limit=50):
    splits = list(report["splits"])
    lines = [
        "# Prepared dataset report", "",
        f"Source: `{report['source']}` (importer `{report['importer']}`), cached at {report['image_size']} px.", "",
    ]
    if report.get("cropped_to_box"):
        lines += [f"{report['cropped_to_box']} images are cropped to their bounding box before resizing.", ""]
    if "heads" in report:  # one table per head
        for name, counts in report["counts"].items():
            spec = report["heads"][name]
            lines += [f"## Head `{name}` ({spec['type']}, {len(spec['classes'])} classes"
                      + (f", belongs to `{spec['parent']}`" if spec.get("parent") else "") + ")", ""]
            lines += _count_table(counts, list(next(iter(counts.values()))), splits)
    else:
        if "pixels" in report:
            lines += ["## Images that show each class", ""]
        lines += _count_table(report["counts"], report["classes"], splits, totals=report["splits"])
    if "pixels" in report:
        lines += ["## Pixels", "", f"Pixel counts at {report['image_size']} px; frequency and median-frequency class "
                  "weights from train (use them as `loss.args.weight`).", "",
                  "| class | " + " | ".join(splits) + " | frequency | weight |", "|---|" + "---:|" * (len(splits) + 2)]
        lines += [f"| {md_cell(c)} | " + " | ".join(str(report["pixels"][s][c]) for s in splits)
                  + f" | {report['pixel_frequency'][c]:.4%} | {report['class_weights'][c]:g} |" for c in report["classes"]]
        lines.append("")
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
    lines += ["", "## Problems", "", f"{len(report['problems'])} files were left out."]
    lines += [f"- `{p['path']}`: {p['reason']}" for p in report["problems"][:limit]]
    if len(report["problems"]) > limit:
        lines.append(f"- ... {len(report['problems']) - limit} more in report.json")
    lines += [f"- {note}" for note in report["notes"]]
    return "\n".join(lines) + "\n"
