"""`fashion predict`'s engines, its distance to the forward-only ceiling per task, its speed on a busy
machine, int8 against float ONNX, and peak memory, on the benchmark's model (the one classification.py
trains) or --model.

    python benchmarks/predict.py --data ../shared/datasets/clothing-small
    python benchmarks/predict.py --model runs/x --threads 0 1 2 --measures engines
    python benchmarks/task_models.py --workdir /tmp/m   # small multi-task and segmentation models
    python benchmarks/predict.py --model runs/x --measures ceiling busy int8 \
        --task-model multitask=/tmp/m/runs/multitask segmentation=/tmp/m/runs/segmentation

Prints a markdown table per measure:
  engines  img/s of `fashion predict model.onnx` (onnxruntime) vs `fashion predict CHECKPOINT` (PyTorch)
           over the same --predict-images files of --data (decode, resize, batch, CSV in both); the
           .onnx is exported from the checkpoint by fashioncli.export.export; a row per --threads
           setting, given to both engines (0: each library's default); median of --repeats runs
  memory   peak memory of `fashion predict` over ALL images of --memory-data (the folder) vs over its
           first --memory-first (a .txt list of paths), each in a fresh process, per engine:
           max RSS of its largest process (getrusage(RUSAGE_CHILDREN) of a small launcher once the
           command has exited: what /usr/bin/time -v reports) and, on Linux, the peak of the summed
           PSS of the command's whole process tree (DataLoader workers included), sampled every 0.2 s
  ceiling  img/s of `fashion predict CHECKPOINT` (decode, resize, batch, rows and the task's files) vs a
           forward-only loop (the same checkpoint's model, normalised and in its memory format as the
           engine runs it, on the same images already decoded and batched in memory: no decode, no
           output), per task: --model (classification) and each --task-model, on images of its
           own data (clothing-small, fashion-product-small, imat-fashion-seg test); median of --repeats
  busy     img/s of `fashion predict` (checkpoint and .onnx) idle vs while one competing CPU-bound
           process runs (a Python busy loop, pinned to no core, started by this script); median
  int8     img/s of `fashion predict` on the float .onnx vs the int8 one (`fashion export --quantize
           int8`, calibrated on the model's train split), with the test-split metric of both as the
           export's check reports it (the model's recipe's data.root, relative to the current folder)
Without --model, the model is trained first exactly as classification.py trains it (about 1 minute).
"""
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import common

MEMORY_DATA = common.DATASETS / "fashion-product-small" / "images"
ENGINES = ("onnx", "checkpoint")
# Where each task's ceiling measure finds its images.
TASK_IMAGES = {"multitask": common.DATASETS / "fashion-product-small" / "images",
               "segmentation": common.DATASETS / "imat-fashion-seg" / "test" / "images"}
MEASURES = ("engines", "memory", "ceiling", "busy", "int8")


def parse():
    p = common.parser(__doc__)
    p.add_argument("--model", help="run directory or .pt checkpoint to use (default: train the benchmark's model)")
    p.add_argument("--measures", nargs="+", choices=MEASURES, default=["engines", "memory"])
    p.add_argument("--task-model", nargs="+", default=[], metavar="TASK=RUN",
                   help="more models for the ceiling measure: multitask=RUN, segmentation=RUN")
    p.add_argument("--segmentation-images", type=int, default=400,
                   help="images for a segmentation model's ceiling measure (default: %(default)s)")
    p.add_argument("--threads", nargs="+", type=int, default=[0], metavar="N",
                   help="intra-op threads for both engines, a table row each; 0 = the libraries' defaults. "
                        "The memory runs use the first (default: 0)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per engine and setting (median; default 3)")
    p.add_argument("--memory-data", default=str(MEMORY_DATA), help="folder of images (default: %(default)s)")
    p.add_argument("--memory-first", type=int, default=2000,
                   help="the small run's images: the folder's first N, as a .txt list (default: %(default)s)")
    p.add_argument("--memory-engines", nargs="+", choices=ENGINES, default=list(ENGINES))
    return p.parse_args()


def engines(model, onnx, files, args, work):
    """-> table rows (threads, onnx img/s, checkpoint img/s, ratio), both engines through fashion's predict()."""
    import torch

    from fashioncli.predict import predict

    default = torch.get_num_threads()
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads or default)  # a checkpoint engine's setting outlives its run
        runs = {"onnx": [], "checkpoint": []}
        for path in (model, onnx):  # warm-up: first-run costs of the process (allocator, kernels)
            predict(path, files[:64], work / "warm.csv", batch_size=args.batch_size, num_workers=args.decode_workers,
                    threads=threads or None)
        for _ in range(args.repeats):  # interleaved, so that a noisy moment hits both engines
            for name, path in (("checkpoint", model), ("onnx", onnx)):
                summary = predict(path, files, work / f"{name}.csv", batch_size=args.batch_size,
                                  num_workers=args.decode_workers, threads=threads or None)
                runs[name].append(summary["images_per_second"])
        setting = str(threads) if threads else f"0: torch {default}, onnxruntime its default (physical cores)"
        ort, pt = statistics.median(runs["onnx"]), statistics.median(runs["checkpoint"])
        rows.append((setting, ort, pt, ort / pt))
    torch.set_num_threads(default)
    return rows


def forward_only(model_path, files, batch_size):
    """The ceiling: the checkpoint's model over ``files`` decoded and batched in memory beforehand,
    normalised and in its recipe's memory format, as the checkpoint engine runs it -> a timed function."""
    import torch

    from fashioncli.checkpoint import load_model
    from fashioncli.data.preprocess import normalize
    from fashioncli.engines import decode

    model, meta = load_model(model_path)
    model.eval()
    train = (meta.get("recipe") or {}).get("train") or {}
    layout = torch.channels_last if train.get("channels_last", True) else torch.contiguous_format
    model = model.to(memory_format=layout)
    pre = meta["preprocessing"]
    size = int(pre["image_size"])
    images = [torch.from_numpy(decode(f, size)[0]).permute(2, 0, 1) for f in files]
    batches = [torch.stack(images[i:i + batch_size]) for i in range(0, len(images), batch_size)]

    def run():
        with torch.inference_mode():
            for b in batches:
                model(normalize(b, pre["mean"], pre["std"]).contiguous(memory_format=layout))
        return len(images)

    return run


def ceiling(models, args, work):
    """-> table rows (task, images, fashion predict, forward-only, ratio) per (task, model, files)."""
    from fashioncli.predict import predict

    rows = []
    for task, model, files in models:
        common.warm_page_cache(files)
        run = forward_only(model, files, args.batch_size)
        run()  # warm-up, as predict's below
        out = work / f"ceiling-{task}" / "rows.csv"  # a folder each: segmentation writes masks beside it
        predict(model, files[:64], out, batch_size=args.batch_size, num_workers=args.decode_workers)
        ours, ceil = [], []
        for _ in range(args.repeats):  # interleaved, so that a noisy moment hits both
            ceil.append(common.timed(run))
            ours.append(predict(model, files, out, batch_size=args.batch_size,
                                num_workers=args.decode_workers)["images_per_second"])
        # The ratio of each run to the ceiling measured just before it: this machine's speed drifts
        # by 10-15% over minutes, which a ratio of two medians would take in.
        ratio = statistics.median(o / c for o, c in zip(ours, ceil))
        rows.append((task, len(files), statistics.median(ours), statistics.median(ceil), ratio))
    return rows


def busy(model, onnx, files, args, work):
    """-> table rows (engine, idle img/s, busy img/s, ratio): `fashion predict` alone, then beside a busy loop."""
    from fashioncli.predict import predict

    rows = []
    for name, path in (("checkpoint", model), ("onnx", onnx)):
        predict(path, files[:64], work / "warm.csv", batch_size=args.batch_size, num_workers=args.decode_workers)
        idle, loaded = [], []
        for _ in range(args.repeats):
            idle.append(predict(path, files, work / "idle.csv", batch_size=args.batch_size,
                                num_workers=args.decode_workers)["images_per_second"])
            with common.busy_machine():
                loaded.append(predict(path, files, work / "busy.csv", batch_size=args.batch_size,
                                      num_workers=args.decode_workers)["images_per_second"])
        a, b = statistics.median(idle), statistics.median(loaded)
        rows.append((name, a, b, b / a))
    return rows


def int8(model, onnx, files, args, work):
    """-> (table row, the int8 export's summary): float vs int8 .onnx img/s and the test-split metric."""
    from fashioncli.errors import ExportError
    from fashioncli.export import export
    from fashioncli.predict import predict

    try:
        summary = export(model, "onnx", out=work / "model.int8.onnx", precision="int8")
        summary["check"] = "passed"
    except ExportError as exc:  # measured anyway, and the table says the check failed
        summary = export(model, "onnx", out=work / "model.int8.onnx", precision="int8", min_agreement=0,
                         max_metric_drop=1)
        summary["check"] = f"FAILED: {exc}"
    quantized, reduced = summary["path"], summary["reduced"]
    speeds = {"float": [], "int8": []}
    for path in (onnx, quantized):
        predict(path, files[:64], work / "warm.csv", batch_size=args.batch_size, num_workers=args.decode_workers)
    for _ in range(args.repeats):
        for name, path in (("float", onnx), ("int8", quantized)):
            speeds[name].append(predict(path, files, work / f"{name}.csv", batch_size=args.batch_size,
                                        num_workers=args.decode_workers)["images_per_second"])
    f, q = statistics.median(speeds["float"]), statistics.median(speeds["int8"])
    kernels = {name: common.timed(onnx_only(path, files, args.batch_size)) for name, path in
               (("float", onnx), ("int8", quantized))}
    metric = reduced["metric"]
    if "drop" in metric:
        figures = (metric["name"], 100 * metric["float"], 100 * metric["reduced"], -100 * metric["drop"])
    else:
        figures = (metric["why"], "n/a", "n/a", "n/a")
    return (f, q, q / f, kernels["float"], kernels["int8"], kernels["int8"] / kernels["float"], *figures,
            reduced["agreement"], reduced["images"]), summary


def onnx_only(path, files, batch_size):
    """The .onnx file in onnxruntime over ``files`` decoded and batched in memory beforehand: what its
    kernels alone give, the bound on any `fashion predict` speed-up from the file (a timed function,
    run once to warm up)."""
    from fashioncli.engines import OnnxEngine, decode

    engine = OnnxEngine(path)
    images = np.stack([decode(f, engine.image_size)[0] for f in files]).transpose(0, 3, 1, 2)
    batches = [images[i:i + batch_size] for i in range(0, len(images), batch_size)]

    def run():
        for b in batches:
            engine.run(b)
        return len(images)

    run()
    return run


def memory(model, onnx, args, work):
    """-> table rows: per engine, the first --memory-first images (.txt list) then the whole folder."""
    from fashioncli.data.images import iter_image_files

    folder = Path(args.memory_data)
    files = list(iter_image_files(folder))
    common.warm_page_cache(files)
    first = work / f"first-{args.memory_first}.txt"
    first.write_text("".join(f"{f}\n" for f in files[:args.memory_first]), encoding="utf-8")
    options = ["--batch-size", str(args.batch_size)]
    options += ["--workers", str(args.decode_workers)] if args.decode_workers else []
    options += ["--threads", str(args.threads[0])] if args.threads[0] else []
    rows, commands = [], []
    for engine in args.memory_engines:
        path = onnx if engine == "onnx" else model
        base = None
        for source, what in ((first, f"{first.name} (.txt list)"), (folder, "the folder")):
            cmd = ["predict", str(path), str(source), "-o", str(work / f"memory-{engine}.csv"), *options]
            commands.append("fashion " + " ".join(cmd))
            rss, pss, summary = peak_memory([sys.executable, "-m", "fashioncli", *cmd], work)
            base = base or (rss, pss)
            rows.append((engine, summary["rows"], what, rss, rss / base[0], pss if pss else "n/a",
                         pss / base[1] if pss else "n/a", summary["images_per_second"], summary["seconds"]))
    return rows, commands


# Runs the command and writes its max RSS to argv[1]. A child's ru_maxrss starts from what its
# parent held when it forked (Linux records the old address space's peak at exec), so the command
# is started from this small process, never from the benchmark's own (torch, a model, data).
LAUNCHER = ("import resource, subprocess, sys; rc = subprocess.call(sys.argv[2:]); "
            "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)); sys.exit(rc)")


def peak_memory(cmd, work):
    """Run ``cmd`` in a fresh process -> (max RSS of its largest process in MiB, peak summed PSS of its
    process tree in MiB or None off Linux, the JSON it printed)."""
    maxrss = work / "maxrss.txt"
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([sys.executable, "-c", LAUNCHER, str(maxrss), *cmd], stdout=out, stderr=err)
        pss = 0
        while proc.poll() is None:  # sample the command's processes (not the launcher's) until it exits
            pss = max(pss, sum(filter(None, (tree_pss(child) for child in children(proc.pid)))))
            time.sleep(0.2)
        out.seek(0)
        err.seek(0)
        text, errors = out.read().decode(), err.read().decode(errors="replace")
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed with exit code {proc.returncode}:\n{errors[-2000:]}")
    # ru_maxrss: KiB on Linux, bytes on macOS
    rss = int(maxrss.read_text()) / (2**20 if sys.platform == "darwin" else 2**10)
    return rss, pss / 2**10 or None, json.loads(text)


def tree_pss(pid):
    """Summed PSS (KiB) of ``pid`` and its descendants, from /proc; None where /proc has no smaps_rollup."""
    total = 0
    for p in descendants(pid):
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith("Pss:"))
        except (OSError, StopIteration):  # gone in between, or not Linux
            if p == pid:
                return None
    return total


def children(pid):
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found += [int(c) for c in task.read_text().split()]
        except OSError:  # exited in between
            pass
    return found


def descendants(pid):
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo += children(p)
    return found


def main():
    args = parse()
    import onnxruntime

    from fashioncli.export import export

    print(common.machine(f", onnxruntime {onnxruntime.__version__}"))
    with common.workdir(args.workdir) as work:
        if args.model:
            model, src = args.model, common.source_images(args, work)
        else:  # the benchmark's model, trained as classification.py trains it
            src, _, prepared = common.prepared_subset(args, work)
            model = common.fashion_train(args, prepared, work)[1]
        onnx = export(model, "onnx", out=work / "model.onnx")["path"]
        tables = []
        if "ceiling" in args.measures:
            models = [("classification", model, common.predict_files(src, args.predict_images))]
            for spec in args.task_model:
                task, _, path = spec.partition("=")
                n = args.segmentation_images if task == "segmentation" else args.predict_images
                models.append((task, path, common.spread(sorted(map(str, TASK_IMAGES[task].glob("*.jpg"))), n)))
            tables.append(common.table(
                f"Predict img/s per task: `fashion predict CHECKPOINT` (decode, resize, batch, rows, the task's "
                f"files) vs forward-only on the same images decoded in memory (medians of {args.repeats} interleaved "
                f"runs; the ratio is the median of each run's over the ceiling's just before it; "
                f"target >= 0.95)", ["task", "images", "fashion predict", "forward-only", "ratio"],
                ceiling(models, args, work)))
        if "busy" in args.measures or "int8" in args.measures:
            files = common.predict_files(src, args.predict_images)
            common.warm_page_cache(files)
        if "busy" in args.measures:
            tables.append(common.table(
                f"Busy machine: `fashion predict` img/s alone vs beside one CPU-bound busy loop ({len(files):,} "
                f"images, median of {args.repeats}; target ratio >= 0.4)",
                ["engine", "idle", "busy", "ratio"], busy(model, onnx, files, args, work)))
        if "int8" in args.measures:
            row, summary = int8(model, onnx, files, args, work)
            tables.append(common.table(
                f"int8 vs float ONNX: `fashion predict` img/s ({len(files):,} images, median of {args.repeats}), "
                f"onnxruntime alone on the same images decoded in memory (one run each), "
                f"and the test-split metric the export's check reports (target >= 1.8x, at most 1 point lost)",
                ["float img/s", "int8 img/s", "speed ratio", "onnxruntime alone: float", "int8", "ratio",
                 "metric", "float", "int8", "change (points)",
                 "label agreement (ratio)", "agreement images"], [row]) + f"\nexport check: {summary['check']}\n"
                + json.dumps(summary["reduced"]) + "\n")
        if "engines" in args.measures:
            files = common.predict_files(src, args.predict_images)
            common.warm_page_cache(files)
            tables.append(common.table(
                f"Predict img/s: onnxruntime vs PyTorch, `fashion predict model.onnx` vs `fashion predict CHECKPOINT` "
                f"({len(files):,} images, median of {args.repeats}; target >= 1.3x)",
                ["threads", "onnx", "checkpoint", "ratio"], engines(model, onnx, files, args, work)))
        if "memory" in args.measures:
            rows, commands = memory(model, onnx, args, work)
            threads = args.threads[0] or "default"
            tables.append(common.table(
                f"Peak memory of `fashion predict`, all images vs the first {args.memory_first:,} "
                f"(fresh process each, threads {threads}; target ratio <= 1.2x)",
                ["engine", "images", "input", "max RSS (MiB)", "RSS ratio", "peak PSS, all processes (MiB)",
                 "PSS ratio", "img/s", "seconds"], rows) + "\n" + "\n".join(commands) + "\n")

    print()
    print(common.machine(f", onnxruntime {onnxruntime.__version__}"))
    print(common.command())
    trained = "" if args.model else f" ({args.backbone} @ {args.image_size}px, trained on {args.limit} images)"
    print(f"model {model}{trained}, batch {args.batch_size}, decoding threads {args.decode_workers or 'default'}, "
          f"data {args.data}, "
          f"memory data {args.memory_data}\n")
    print("\n".join(tables))


if __name__ == "__main__":
    main()
