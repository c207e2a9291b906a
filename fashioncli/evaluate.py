"""`fashion eval`: score a checkpoint, or a file exported from one, on a prepared split or a folder of
images, writing the reports its task makes (fashioncli/tasks/<task>/evaluate.py) into one folder with
a summary.json.

An exported file (.onnx, TorchScript, a plugin's format) opens through the engine its exporter
registered, as in predict, and is scored as a model by the same task code (engine_model.py).
"""
import time
from pathlib import Path

from .checkpoint import load_model, resolve_path, run_dir
from .devices import resolve_device
from .engines import file_format, open_engine
from .errors import DataError
from .io import write_json
from .protect import check_output, model_files
from .report import Report, write_report
from .tasks import task_of
from .tasks.base import EvalOptions


def _data_root(meta, data, model):
    if data is not None:
        root = Path(data)
    else:
        root = (meta.get("recipe") or {}).get("data", {}).get("root")
        if not root:
            raise DataError(f"{model} does not record its dataset; pass the data to evaluate on (--data)")
        root = Path(root)
    if not root.is_dir():
        where = "" if data is not None else "the checkpoint's dataset "
        raise DataError(
            f"{where}'{root}' is not a folder; pass a prepared dataset or a folder of class folders (--data)"
        )
    return root


def reference_figures(recipe, root, metrics):
    """eval.reference (a report's figures) beside the measured ones -> {"reference": ...}, only
    when ``root`` is the dataset the reference was measured on (eval.reference_data, recorded by
    the recipe that gives it); else {"reference_left_out": why}. A recipe from before the
    record keeps its reference."""
    evaluation = recipe.get("eval") or {}
    reference, measured_on = evaluation.get("reference") or {}, evaluation.get("reference_data") or {}
    if not reference:
        return {}
    prepare = (recipe.get("data") or {}).get("prepare") or {}
    same_root = not measured_on.get("root") or Path(measured_on["root"]).resolve() == Path(root).resolve()
    same_source = not measured_on.get("source") or measured_on["source"] == prepare.get("source", measured_on["source"])
    if not (same_root and same_source):
        where = measured_on.get("source") or measured_on.get("root")
        return {"reference_left_out": f"eval.reference was measured on '{where}', not on the data scored here "
                                      f"('{prepare.get('source') or root}')"}
    return {"reference": {k: {"measured": metrics.get(k), "report": v} for k, v in reference.items()}}


def _default_out(model, data, split, exported):
    """<run>/eval-<split> for the run's own dataset, <run>/eval-<data name>-<split> for any other; an
    exported file's beside it, named after it: eval-model-onnx-<split> for model.onnx."""
    name = f"eval-{split}" if data is None else f"eval-{Path(data).resolve().name}-{split}"
    if exported:
        return model.parent / name.replace("eval-", f"eval-{model.stem}-{model.suffix.lstrip('.')}-", 1)
    return run_dir(model) / name


def evaluate(checkpoint, data=None, split="test", out=None, batch_size=64, device="auto", topk=None, num_workers=None,
             tta=None, trust_torchscript=False, progress=False):
    """Evaluate a ``checkpoint`` (.pt or run directory) or an exported model file and write reports
    into ``out``.

    ``data``: None (the dataset the checkpoint was trained on; an exported file records none), a
    prepared dataset directory or a folder the task can read (class folders for classification);
    ``topk`` defaults to the recipe's eval.topk (else 5), so eval and validation report the same k;
    ``tta`` ({"hflip", "shift"}, see tta.py) to the recipe's eval.tta. A file whose loading runs code
    (TorchScript) opens only with ``trust_torchscript``. Returns the summary, also written to
    ``out``/summary.json. ``progress``: a bar over the batches on stderr (a terminal's only).
    """
    start = time.perf_counter()
    exported = file_format(checkpoint) is not None
    if exported:  # through the engine its exporter registered, as predict opens it, seen as a model
        from .engine_model import EngineModel

        engine = open_engine(checkpoint, device=device, trust_torchscript=trust_torchscript)
        path, model, meta = Path(checkpoint), EngineModel(engine), engine.meta
        named, device, runs_on = {"model": str(path), "engine": engine.kind}, "cpu", engine.device_name()
    else:
        path, device = resolve_path(checkpoint), resolve_device(device)
        model, meta = load_model(path, device)
        named, runs_on = {"checkpoint": str(path)}, str(device)
    recipe_eval = (meta.get("recipe") or {}).get("eval", {})
    options = EvalOptions(batch_size=batch_size, device=device, num_workers=num_workers,
                          tta=recipe_eval.get("tta") if tta is None else tta,
                          topk=recipe_eval.get("topk", 5) if topk is None else topk,
                          progress=f"eval {split}" if progress else None)
    root = _data_root(meta, data, f"the exported file '{path}'" if exported else "the checkpoint")
    if out is not None:  # reports and pictures never land among the images or checkpoints they come from
        checkpoints = path.parent if path.parent.name == "checkpoints" else None
        check_output(out, files=model_files(path), folders=[root, checkpoints], what="--out")
    out = Path(out) if out is not None else _default_out(path, data, split, exported)
    options.report = Report(f"fashion eval · {path.parent.parent.name if path.parent.name == 'checkpoints' else path.name}")
    # the report's figures this data may be compared with, for a task to draw beside its own
    options.report.reference = reference_figures(meta.get("recipe") or {}, root, {})
    headline = options.report.section("Summary")  # first, filled in once the task has measured
    summary = {**named, **task_of(meta).evaluate(model, meta, root, split, out, options)}
    summary.update(reference_figures(meta.get("recipe") or {}, root, summary.get("metrics") or {}),
                   device=runs_on, seconds=round(time.perf_counter() - start, 2))
    summary["files"] = [*summary.get("files", []), "report.html"]
    _summarise(options.report, headline, summary, meta)
    write_report(out / "report.html", options.report)
    write_json(out / "summary.json", summary)
    if not exported:  # to the experiment loggers that logged the run's training, if any
        from .loggers import log_eval

        log_eval(run_dir(path), meta.get("recipe"), summary, out, step=meta.get("epoch") or 0)
    return summary


def _summarise(report, section, summary, meta):
    """The page's header facts and the headline metrics (the summary's scalars; a task's sections
    hold the rest)."""
    model = summary.get("checkpoint") or summary.get("model")
    report.facts = {"model": model, "task": meta.get("task", "classification"), "data": summary.get("data"),
                    "split": summary.get("split"), "images": summary.get("num_samples"),
                    "device": summary.get("device"), "seconds": summary.get("seconds"),
                    "test-time views": ", ".join(f"{k}={v}" for k, v in (summary.get("tta") or {}).items() if v) or None}
    report.facts = {k: v for k, v in report.facts.items() if v is not None}
    metrics = {k: v for k, v in (summary.get("metrics") or {}).items() if not isinstance(v, (dict, list))}
    section.metrics(metrics)
