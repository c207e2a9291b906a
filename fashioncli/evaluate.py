"""`fashion eval`: score a checkpoint on a prepared split or a folder of images, writing the reports
its task makes (fashioncli/tasks/<task>/evaluate.py) into one folder with a summary.json."""
import time
from pathlib import Path

from .checkpoint import load_model, resolve_path, run_dir
from .devices import resolve_device
from .errors import DataError
from .io import write_json
from .protect import check_output, model_files
from .tasks import task_of
from .tasks.base import EvalOptions


def _data_root(meta, data):
    if data is not None:
        root = Path(data)
    else:
        root = (meta.get("recipe") or {}).get("data", {}).get("root")
        if not root:
            raise DataError("the checkpoint does not record its dataset; pass the data to evaluate on (--data)")
        root = Path(root)
    if not root.is_dir():
        where = "" if data is not None else "the checkpoint's dataset "
        raise DataError(
            f"{where}'{root}' is not a folder; pass a prepared dataset or a folder of class folders (--data)"
        )
    return root



def _default_out(checkpoint, data, split):
    """<run>/eval-<split> for the run's own dataset, <run>/eval-<data name>-<split> for any other."""
    return run_dir(checkpoint) / (f"eval-{split}" if data is None else f"eval-{Path(data).resolve().name}-{split}")


def evaluate(checkpoint, data=None, split="test", out=None, batch_size=64, device="auto", topk=None, num_workers=None,
             tta=None):
    """Evaluate a ``checkpoint`` (.pt or run directory) and write reports into ``out``.

    ``data``: None (the dataset the checkpoint was trained on), a prepared dataset directory
    or a folder the task can read (class folders for classification); ``topk`` defaults to the
    recipe's eval.topk (else 5), so eval and validation report the same k; ``tta`` ({"hflip",
    "shift"}, see tta.py) to the recipe's eval.tta. Returns the summary, also written to
    ``out``/summary.json.
    """
    start = time.perf_counter()
    checkpoint = resolve_path(checkpoint)
    device = resolve_device(device)
    model, meta = load_model(checkpoint, device)
    recipe_eval = (meta.get("recipe") or {}).get("eval", {})
    options = EvalOptions(batch_size=batch_size, device=device, num_workers=num_workers,
                          tta=recipe_eval.get("tta") if tta is None else tta,
                          topk=recipe_eval.get("topk", 5) if topk is None else topk)
    root = _data_root(meta, data)
    if out is not None:  # reports and pictures never land among the images or checkpoints they come from
        checkpoints = checkpoint.parent if checkpoint.parent.name == "checkpoints" else None
        check_output(out, files=model_files(checkpoint), folders=[root, checkpoints], what="--out")
    out = Path(out) if out is not None else _default_out(checkpoint, data, split)
    summary = {"checkpoint": str(checkpoint),
               **task_of(meta).evaluate(model, meta, root, split, out, options),
               "device": str(device), "seconds": round(time.perf_counter() - start, 2)}
    write_json(out / "summary.json", summary)
    return summary
