"""What the benchmark scripts share: their common options, the benchmark's model and data, timing,
the machine line and markdown tables. Not a script; `classification.py` and `predict.py` import it."""
import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import fashioncli  # before torch, as the `fashion` command does (fashioncli/threads.py)

ROOT = Path(__file__).resolve().parents[1]
# ../shared/datasets beside the checkout (or beside the folder of worktrees it sits in)
DATASETS = next((p / "shared" / "datasets" for p in (ROOT.parent, ROOT.parent.parent)
                 if (p / "shared" / "datasets").is_dir()), ROOT.parent / "shared" / "datasets")
SHARED = DATASETS / "clothing-small"
RECIPE = "efficientnet_lite0_finetune_clothing-small"  # the settings of the real recipe, on the subset


def parser(doc):
    """The options every benchmark takes: one model, one data set, one batch size for all its measures."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(SHARED) if SHARED.is_dir() else "synthetic",
                   help="folder of class folders (train/ split inside) or 'synthetic' (default: %(default)s)")
    p.add_argument("--backbone", default="efficientnet_lite0")
    p.add_argument("--image-size", type=int, default=160)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--limit", type=int, default=960, help="training images per epoch (default: %(default)s)")
    p.add_argument("--predict-images", type=int, default=2000,
                   help="images of --data for the predict throughput measures (default: %(default)s)")
    p.add_argument("--workers", type=int, default=max(0, (os.cpu_count() or 1) - 1),
                   help="loader workers for training (default: %(default)s)")
    p.add_argument("--decode-workers", type=int,
                   help="decoding threads for predict (default: fashion predict's own choice, see its --workers)")
    p.add_argument("--workdir", help="a new (or empty) folder to keep the prepared subset, the trained run and the "
                                     "outputs in (default: a temporary folder, removed at the end)")
    return p


@contextmanager
def workdir(path):
    """``path`` (created, kept; it must be new or empty) or a temporary folder removed on exit."""
    if path:
        path = Path(path).resolve()
        path.mkdir(parents=True, exist_ok=True)
        if any(path.iterdir()):
            sys.exit(f"--workdir {path} is not empty: name a new folder")
        yield path
        return
    tmp = tempfile.mkdtemp(prefix="fashion-bench-")
    try:
        yield Path(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def timed(fn):
    """``fn()`` returns a number of images -> images per second."""
    start = time.perf_counter()
    n = fn()
    return n / (time.perf_counter() - start)


@contextmanager
def busy_machine():
    """One competing CPU-bound process (a Python busy loop, pinned to no core) for the ``with`` block:
    the busy-machine measures run with a core's worth of other work, as on a shared server."""
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)  # running before the measure starts
        yield proc
    finally:
        proc.kill()
        proc.wait()


def warm_page_cache(files):
    """Read every file once, so that no measure pays for the disk and the first one is not penalised."""
    for f in files:
        Path(f).read_bytes()


# -- the benchmark's data and model ---------------------------------------------
def source_images(args, work):
    """The folder of class folders the benchmark reads (--data, or the synthetic set drawn into ``work``)."""
    if args.data != "synthetic":
        return Path(args.data)
    from fashioncli.prepare import prepare

    prepare("synthetic", str(work / "synthetic"), image_size=args.image_size, progress=False)
    return work / "synthetic" / "images"


def prepared_subset(args, work):
    """-> (source folder, linked subset, prepared subset): the very files both training loops read."""
    from fashioncli.prepare import prepare

    src = source_images(args, work)
    subset, prepared = work / "subset", work / "prepared"
    link_subset(src, subset, args.limit)
    prepare(str(subset), str(prepared), image_size=args.image_size, progress=False)
    return src, subset, prepared


def bench_recipe(args, prepared, work):
    """The bundled recipe's settings on the benchmark's subset, model, size, batch and workers."""
    from fashioncli.recipe import load_recipe

    return load_recipe(RECIPE, [f"data.root={prepared}", f"data.image_size={args.image_size}",
                                f"data.batch_size={args.batch_size}", f"data.num_workers={args.workers}",
                                f"model.args.backbone={args.backbone}",
                                "train.epochs=2", f"output.dir={work}/runs"])


def fashion_train(args, prepared, work):
    """`fashion train` on the subset for 2 epochs -> (second epoch's img/s, run directory)."""
    from fashioncli.train import train

    summary = train(bench_recipe(args, prepared, work), spec="bench", progress=False)
    return summary["last"]["train_img_per_s"], summary["run_dir"]


def predict_files(src, n):
    """The predict measures' images: ``n`` files evenly spaced over --data (every class represented)."""
    from fashioncli.data.images import iter_image_files

    return spread(list(iter_image_files(src)), n)


def spread(items, n):
    """n items evenly spaced over the list (every class of a sorted folder tree is represented)."""
    step = max(1, len(items) // n)
    return [str(p) for p in items[::step][:n]]


def link_subset(src, dst, limit):
    """dst/{train,val,test}/<class>/ symlinks: about ``limit`` train images spread over the classes."""
    splits = {"train": src / "train", "val": src / "validation", "test": src / "test"}
    if not splits["train"].is_dir():  # a flat folder of class folders (the synthetic set)
        splits = {"train": src, "val": src, "test": src}
    if not splits["val"].is_dir():
        splits["val"] = src / "val"
    classes = sorted(p.name for p in splits["train"].iterdir() if p.is_dir())
    budget = {"train": limit, "val": 10 * len(classes), "test": 10 * len(classes)}
    for split, root in splits.items():
        per_class = max(1, budget[split] // len(classes))
        for c in classes:
            files = sorted(p for p in (root / c).iterdir() if p.is_file())
            if root == src:  # one folder serves all splits: disjoint slices
                third = len(files) // 3
                files = {"train": files[:third], "val": files[third:2 * third], "test": files[2 * third:]}[split]
            step = max(1, len(files) // per_class)
            (dst / split / c).mkdir(parents=True, exist_ok=True)
            for f in files[::step][:per_class]:
                (dst / split / c / f.name).symlink_to(f.resolve())
    return dst


# -- what a run prints ------------------------------------------------------------
def machine(extra=""):
    """One line naming the machine, the libraries and the load it was under."""
    import torch

    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30 if hasattr(os, "sysconf") else 0
    load = "load average %.2f %.2f %.2f" % os.getloadavg() if hasattr(os, "getloadavg") else ""
    return (f"machine: {os.cpu_count()} cores ({platform.machine()}), {mem:.0f} GiB, python {platform.python_version()}, "
            f"fashion {fashioncli.__version__}, torch {torch.__version__} ({torch.get_num_threads()} threads, "
            f"OMP_WAIT_POLICY {os.environ.get('OMP_WAIT_POLICY', 'unset')}){extra}; {load}; {time.strftime('%Y-%m-%d %H:%M')}")


def command():
    return "command: python " + " ".join([os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:])


def table(title, columns, rows):
    """A markdown table under a ### title; numbers right-aligned, floats with one decimal
    (two for ratios, whose column name says 'ratio')."""
    def cell(value, column):
        if isinstance(value, float):
            return f"{value:.2f}" if "ratio" in column else f"{value:.1f}"
        return f"{value:,}" if isinstance(value, int) else str(value)

    align = ["---" if isinstance(rows[0][i], str) else "---:" for i in range(len(columns))]
    lines = [f"### {title}", "", "| " + " | ".join(columns) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(cell(v, c) for v, c in zip(row, columns)) + " |" for row in rows]
    return "\n".join(lines) + "\n"
