"""`fashion predict`: a row per image (and any files its task writes beside them, such as masks) from a
checkpoint or an exported model.

The engine (engines.py) turns decoded batches into the model's outputs, the model's task
(``Task.row_layout``) turns those into rows, and rows.py appends them to a CSV or JSONL that
--resume can continue; inputs.py finds the images. Under torchrun (or --devices N) every process
writes its share of the inputs to a shard file, merged into ``out`` at the end (shards.py).
"""
import time
from types import SimpleNamespace

from tqdm import tqdm

from .engines import open_engine
from .errors import DataError
from .inputs import check_inputs, check_out, iter_inputs, unique
from .locks import Lock
from .rows import RowWriter, output_format, read_done
from .tasks.base import PredictOptions


def predict(model, inputs, out, topk=5, batch_size=64, fmt=None, resume=False, num_workers=None,
            device="auto", threads=None, tta=None, hierarchy=True, overlay="jpg", trust_torchscript=False,
            save_dir=None):
    """Write one row per input image to ``out`` (CSV or JSONL) and return a summary.

    The rows are the model's task's (``Task.row_layout``, tasks/<task>/predict.py): a classifier's
    path, label, score (top-1 probability), top_labels, top_scores (top-k lists; JSON text in CSV)
    and error (why a file could not be read; such rows have no label); other tasks write other
    columns, and files beside ``out`` or in ``save_dir`` (``topk``, ``hierarchy``, ``overlay`` and
    ``save_dir`` are their options, ``PredictOptions``). Paths are de-duplicated in order; ``resume`` keeps the rows already in
    ``out`` and skips their paths. ``tta`` ({"hflip", "shift"}) averages
    the outputs of flipped and shifted copies; None uses the model's recipe's eval.tta.
    In a process launched by torchrun, this process predicts its shard only (shards.py).
    """
    from . import shards

    if topk < 1 or batch_size < 1:
        raise DataError(f"topk and batch_size must be at least 1 (got {topk}, {batch_size})")
    fmt = output_format(out, fmt)
    inputs = check_inputs(inputs)
    check_out(out, inputs, model)  # before the model loads and long before out is opened
    job = SimpleNamespace(model=model, inputs=inputs, out=out, fmt=fmt, topk=topk, batch_size=batch_size,
                          resume=resume, num_workers=num_workers, device=device, threads=threads, tta=tta,
                          hierarchy=hierarchy, overlay=overlay, trust_torchscript=trust_torchscript, save_dir=save_dir)
    if shards.launched():
        return shards.predict_shard(job)
    with Lock(out):  # two commands writing one file would interleave their rows
        engine, layout, tta = open_job(job)
        done = read_done(out, fmt, layout.columns) if resume else set()
        stats = {"rows": 0, "errors": 0, "duplicates": 0, "skipped": 0}
        paths = unique(iter_inputs(inputs, skip=layout.folders), done, stats)
        seconds = write_rows(job, engine, layout, tta, paths, out, stats)
    if stats["rows"] == 0 and not done:
        raise DataError(f"no images found in: {', '.join(inputs)}")
    return summary(job, engine, layout, stats, seconds)


def open_job(job):
    """The engine, the task's row layout and the test-time views of a predict job (its options)."""
    engine = open_engine(job.model, device=job.device, threads=job.threads, trust_torchscript=job.trust_torchscript)
    tta = job.tta
    if tta is None:
        tta = ((engine.meta.get("recipe") or {}).get("eval") or {}).get("tta")
    options = PredictOptions(topk=job.topk, hierarchy=job.hierarchy, overlay=job.overlay, num_workers=job.num_workers,
                             save_dir=job.save_dir)
    layout = engine.task.row_layout(engine.meta, job.out, job.fmt, options)
    engine.task.check_tta(tta)  # before any row is written
    return engine, layout, tta


def write_rows(job, engine, layout, tta, paths, rows_file, stats, progress=True):
    """Predict ``paths`` batch by batch and append their rows to ``rows_file`` (a new file unless
    ``job.resume``), counting rows and errors in ``stats`` -> seconds taken."""
    start = time.perf_counter()
    writer = RowWriter(rows_file, job.fmt, append=job.resume, layout=layout)
    try:
        with tqdm(desc="predict", unit="img", disable=None if progress else True) as bar:
            for batch_paths, images, errors in engine.batches(paths, job.batch_size, job.num_workers):
                outputs = engine.run_tta(images, tta, ranked=getattr(layout, "ranked", False))
                rows = list(layout.rows(batch_paths, outputs, errors))
                writer.write(rows)
                stats["rows"] += len(rows)
                stats["errors"] += sum(1 for r in rows if r["error"])
                bar.update(len(rows))
    finally:
        writer.close()
    return time.perf_counter() - start


def summary(job, engine, layout, stats, seconds):
    return {
        "out": str(job.out), "format": job.fmt, "model": engine.source, "engine": engine.kind,
        **layout.summary, **stats, **layout.counts, "seconds": round(seconds, 3),
        "images_per_second": round(stats["rows"] / seconds, 1) if seconds > 0 else None,
    }
