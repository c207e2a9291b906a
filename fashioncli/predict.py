"""`fashion predict`: a row per image (and any files its task writes beside them, such as masks) from a
checkpoint or an exported model.

The engine (engines.py) turns decoded batches into the model's outputs, the model's task
(``Task.row_layout``) turns those into rows, and rows.py appends them to a CSV or JSONL that
--resume can continue; inputs.py finds the images.
"""
import time

from tqdm import tqdm

from .engines import open_engine
from .errors import DataError
from .inputs import check_inputs, check_out, iter_inputs, unique
from .locks import holding
from .rows import RowWriter, output_format, read_done
from .tasks.base import PredictOptions


@holding("out")  # two commands writing one file would interleave their rows
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
    """
    if topk < 1 or batch_size < 1:
        raise DataError(f"topk and batch_size must be at least 1 (got {topk}, {batch_size})")
    fmt = output_format(out, fmt)
    inputs = check_inputs(inputs)
    check_out(out, inputs, model)  # before the model loads and long before out is opened
    engine = open_engine(model, device=device, threads=threads, trust_torchscript=trust_torchscript)
    if tta is None:
        tta = ((engine.meta.get("recipe") or {}).get("eval") or {}).get("tta")
    options = PredictOptions(topk=topk, hierarchy=hierarchy, overlay=overlay, num_workers=num_workers,
                             save_dir=save_dir)
    layout = engine.task.row_layout(engine.meta, out, fmt, options)
    engine.task.check_tta(tta)  # before any row is written
    done = read_done(out, fmt, layout.columns) if resume else set()
    stats = {"rows": 0, "errors": 0, "duplicates": 0, "skipped": 0}
    paths = unique(iter_inputs(inputs, skip=layout.folders), done, stats)
    start = time.perf_counter()
    writer = RowWriter(out, fmt, append=resume, layout=layout)
    try:
        with tqdm(desc="predict", unit="img", disable=None) as bar:
            for batch_paths, images, errors in engine.batches(paths, batch_size, num_workers):
                rows = list(layout.rows(batch_paths, engine.run_tta(images, tta), errors))
                writer.write(rows)
                stats["rows"] += len(rows)
                stats["errors"] += sum(1 for r in rows if r["error"])
                bar.update(len(rows))
    finally:
        writer.close()
    seconds = time.perf_counter() - start
    if stats["rows"] == 0 and not done:
        raise DataError(f"no images found in: {', '.join(inputs)}")
    return {
        "out": str(out), "format": fmt, "model": engine.source, "engine": engine.kind,
        **layout.summary, **stats, **layout.counts, "seconds": round(seconds, 3),
        "images_per_second": round(stats["rows"] / seconds, 1) if seconds > 0 else None,
    }
