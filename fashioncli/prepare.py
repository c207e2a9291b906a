"""`fashion prepare`: any supported source -> a prepared dataset (see data/dataset.py).

import (plugin) -> the task that prepares what it returned cleans it (class subset, repeats,
invalid boxes) -> split -> decode every image once (cropped to its bounding box, when the importer
gives boxes) into the cache, dropping unreadable ones -> the task's own work (e.g. masks) ->
<split>.csv, report, dataset.json (written last: a directory without it is not a prepared
dataset, so an interrupted run is never mistaken for one).
"""
import shutil
import time
from pathlib import Path

import numpy as np

from .data.archives import is_archive
from .data.cache import cache_splits, default_decode_threads, keep_split_rows, open_cache
from .data.dataset import FORMAT_VERSION
from .data.images import format_box
from .data.importing import SPLITS
from .data.labels import check_labels
from .data.report import build_report, report_markdown
from .data.sources import check_source, pick_importer, run_importer, unpack
from .data.duplicates import conflicting_labels, copies_across_splits, dhash, file_digests, near_clusters
from .data.splits import assign_splits
from .errors import DataError, PluginError
from .io import is_temporary, make_dir, remove_temporaries, write_csv, write_json, write_text
from .protect import inside
from .tasks.preparation import PrepareOptions

# What prepare itself writes into <out> (tasks add theirs: ``Preparation.writes``); anything else
# there means OUT points at the wrong folder.
_LAYOUT = {"dataset.json", "report.json", "report.md", "cache", "images", "source", *(f"{s}.csv" for s in SPLITS)}


def prepare(source, out, importer=None, image_size=160, val_fraction=0.1, test_fraction=0.1, seed=0,
            classes=None, other_classes="background", workers=None, progress=True, near_duplicates=False,
            **importer_args):
    """Import ``source`` into the prepared directory ``out``; returns a summary dict.

    source: a folder, table, ... or a .zip/.tar(.gz) of one, unpacked into ``out/source/`` first.
    importer: a registered dataset importer name; None picks one from the source (a folder of
        class folders, a .csv/.parquet table, Fashion-MNIST IDX files, 'synthetic', ...).
    val_fraction, test_fraction: share of images that get no split from the source, assigned by a
        seeded split stratified per class (iteratively over every label of a multi-label or
        multi-head source). Splits the source gives are kept; when it gives train but no val (or
        test), that split is carved out of train with its fraction. Rows of one file (identical
        bytes) or of one group (the importer's ``group_col``) are drawn into one split; copies
        that the source's own splits scatter stay only in the first of test, val, train.
    near_duplicates: also keep near-identical images (re-encoded, resized; a perceptual hash)
        in one split.
    classes: keep only these classes (list, or comma-separated names). A source of masks also
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
    workers = workers or default_decode_threads()
    out = Path(out).absolute()
    source_str = str(Path(source).absolute()) if Path(str(source)).exists() else str(source)  # 'synthetic'
    archive = is_archive(source)
    if not archive:
        name, entry = pick_importer(source, importer)
        check_source(source, entry, importer_args)
    _claim_out(out, source)
    if archive:
        source = unpack(source, out / "source")
        name, entry = pick_importer(source, importer)

    imported = run_importer(entry, source, out, importer_args)
    task = _preparing_task(imported, name)
    options = PrepareOptions(out=out, image_size=image_size, workers=workers, progress=progress,
                             classes=classes, other_classes=other_classes)
    preparation = task.preparation()(imported, options)
    warnings = check_labels(preparation.labels(), source_str)  # before any image is decoded
    problems = list(imported.problems)
    samples, notes = preparation.clean(problems)
    notes = warnings + notes
    has_boxes = any(box is not None for *_, box in samples)
    digests = file_digests([path for path, *_ in samples], workers)
    groups = imported.groups or {}
    # One photo (every box of it, every copy of its file) and one group go to one split.
    links = [([("bytes", h)] if h else []) + ([("group", groups[path])] if path in groups else [])
             for (path, *_), h in zip(samples, digests)]
    splits = assign_splits(samples, val_fraction, test_fraction, seed, preparation.stratum, preparation.strata, links)

    cache_dir = out / "cache" / str(image_size)
    infos = cache_splits(splits, cache_dir, image_size, workers, progress, problems)
    duplicates = split_copies(splits, infos, cache_dir, near_duplicates)
    preparation.after_images(splits, infos, problems)
    if "train" not in splits:
        raise DataError(f"no readable training images in '{source}' ({len(problems)} files could not be used)")
    preparation.finish(splits, notes)

    header = ["path", *preparation.columns(), *(["box"] if has_boxes else [])]
    for split, rows in splits.items():
        lines = [(p, *preparation.cells(label), *([format_box(box)] if has_boxes else [])) for p, label, box in rows]
        write_csv(out / f"{split}.csv", header, lines, lineterminator="\n")
    unlisted = imported.unlisted or []
    report = build_report(splits, infos, preparation, problems, notes, name, source_str, image_size,
                          duplicates=duplicates, unused=imported.unused or [], unlisted=unlisted)
    write_json(out / "report.json", report)
    write_text(out / "report.md", report_markdown(report, preparation))
    meta = {
        "format_version": FORMAT_VERSION, "task": task.dataset_kind,
        "splits": {s: len(rows) for s, rows in splits.items()},
        "importer": name, "source": source_str, "image_size": image_size,
        **preparation.dataset_meta(),
        **({"boxes": True} if has_boxes else {}),
    }
    write_json(out / "dataset.json", meta)
    return {
        "out": str(out), "importer": name, "task": meta["task"], **preparation.summary(report),
        "splits": meta["splits"],
        **({"counts": report["counts"]} if preparation.summary_counts else {}), "problems": len(problems),
        **({"not_used": len(imported.unused)} if imported.unused else {}),
        **({"files_named_by_no_row": len(unlisted)} if unlisted else {}),
        "duplicates_across_splits": len(report["duplicates"]["across_splits"]),
        "copies_removed_across_splits": sum(len(g["dropped"]) for g in duplicates["removed_across_splits"]),
        **({"conflicting_labels": len(duplicates["conflicting_labels"])} if duplicates["conflicting_labels"] else {}),
        "image_size": image_size, "seconds": round(time.perf_counter() - started, 2),
        **({"warnings": warnings} if warnings else {}),
    }


def split_copies(splits, infos, cache_dir, near):
    """Copies left in several splits (identical bytes; near-identical images too when ``near``)
    stay only in the first of test, val, train; -> report.json's entries on them."""
    def text(label):
        return ", ".join(map(str, label)) if isinstance(label, tuple) else str(label)

    digests = {s: info["sha1"] for s, info in infos.items()}
    conflicts = conflicting_labels(splits, digests, text)
    removed = _drop_copies(splits, infos, cache_dir, {
        s: [(h, box) if h else None for h, (*_, box) in zip(digests[s], rows)] for s, rows in splits.items()
    }, "identical bytes", text)
    if near:
        names = list(splits)
        hashes = np.concatenate([dhash(open_cache(cache_dir, s)[0]) for s in names])
        cluster = iter(near_clusters(hashes))
        keys = {s: [next(cluster) for _ in splits[s]] for s in names}
        removed += _drop_copies(splits, infos, cache_dir, keys, "near-identical", text)
    return {"removed_across_splits": removed, "conflicting_labels": conflicts}


def _drop_copies(splits, infos, cache_dir, keys, why, text):
    drop, groups = copies_across_splits(keys)
    report = []
    for group in groups:
        kept_split, kept_rows = group["kept"]
        report.append({
            "why": why,
            "kept": [{"path": splits[kept_split][i][0], "split": kept_split} for i in kept_rows],
            "dropped": [{"path": splits[s][i][0], "split": s, "label": text(splits[s][i][1])}
                        for s, rows in group["dropped"].items() for i in rows],
        })
    for split, rows in drop.items():
        gone = set(rows)
        keep_split_rows(splits, infos, cache_dir, split, [i for i in range(len(splits[split])) if i not in gone])
    return report


def recipe_prepare_args(recipe):
    """A recipe's data.prepare (and data.root as the output) -> keyword arguments of ``prepare``."""
    spec = dict(recipe["data"].get("prepare") or {})
    if not spec.get("source"):
        raise DataError("data.prepare.source: the recipe does not say what to prepare; pass SOURCE and OUT")
    return {"out": recipe["data"]["root"], "image_size": recipe["data"]["image_size"],
            **{k: v for k, v in spec.items() if k != "args"}, **(spec.get("args") or {})}


def _preparing_task(imported, importer):
    """The registered task that prepares what ``importer`` returned: the highest ``prepares`` score
    (the first registered among equals)."""
    from .plugins import get

    tasks = list(get("tasks"))
    score, best = max(((entry.factory.prepares(imported), -i) for i, entry in enumerate(tasks)), default=(0, 0))
    if score <= 0:
        raise PluginError(f"dataset importer '{importer}' returned a {imported.kind or 'source'} dataset that no "
                          f"registered task prepares (tasks: {', '.join(e.name for e in tasks)})")
    return tasks[-best].factory


def _written_by_tasks():
    """What the registered tasks' prepare writes under OUT (``Preparation.writes``)."""
    from .plugins import get

    return {name for entry in get("tasks") for name in getattr(entry.factory.preparation(), "writes", ())}


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
        ours = _LAYOUT | _written_by_tasks()
        strangers = sorted(p.name for p in out.iterdir() if p.name not in ours and not is_temporary(p.name))
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
