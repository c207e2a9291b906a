"""`fashion predict`: top-k labels (or every head's labels) for any number of images, from a
checkpoint or an exported model.

Engines read a model and turn uint8 NCHW batches into class probabilities (N x C, or
{head: N x C} for a multi-task model, or {"probabilities", "distance"} for a prototype model,
whose rows read `unknown` beyond its rejection threshold):
``CheckpointEngine`` (.pt or run dir, weights only) and ``TorchScriptEngine`` (.torchscript, .ts, a
program: only when trusted) run in PyTorch,
``OnnxEngine`` (.onnx) needs only numpy, OpenCV and onnxruntime; torch is imported inside the
torch engines only, so a deployment with onnxruntime alone can run this module.
"""
import glob
import json
import os
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .devices import check as check_device, check_name as check_device_name
from .errors import CheckpointError, DataError
from .tasks.multitask.heads import LABEL_SEP, decode as decode_heads, heads_from_json
from .data.images import is_image_file, iter_image_files, read_resized
from .io import ENCODING, CsvReader, csv_text_of, dumps, output_error
from .locks import holding
from .model_meta import check_outputs, parse_metadata
from .data.preprocess import normalize
from .protect import check_output, model_files

# Where exported models carry their classes and preprocessing (written by fashioncli.export).
METADATA_KEY = "fashion"  # ONNX metadata_props key, JSON string
METADATA_FILE = "fashion.json"  # TorchScript _extra_files name

COLUMNS = ("path", "label", "score", "top_labels", "top_scores", "error")
FORMATS = ("csv", "jsonl")
UNKNOWN = "unknown"  # the label of an image farther than a prototype model's threshold from every prototype
PROTOTYPE_OUTPUTS = ("probabilities", "distance")  # a prototype model's outputs, in this order


# -- engines -----------------------------------------------------------------
class Engine:
    """A model for inference: ``meta`` (classes or heads, preprocessing) and ``run`` on uint8 NCHW batches."""

    kind = ""
    cpu_threads = None  # the model's intra-op threads when it runs on the CPU; None on a GPU

    def __init__(self, meta, source):
        self.meta, self.source = meta, str(source)
        self.heads = heads_from_json(meta["heads"]) if meta.get("heads") else None
        self.classes = list(meta.get("classes") or [])
        self.image_size = int(meta["preprocessing"]["image_size"])
        # A prototype model's distance (squared) to its nearest prototype beyond which it says `unknown`.
        self.threshold = (meta.get("rejection") or {}).get("threshold")

    def run(self, images):
        """uint8 N x 3 x S x S (numpy, or a tensor for torch engines) -> float32 N x C probabilities,
        {head: probabilities} for a multi-task model, or for a prototype model {"probabilities",
        "distance": (N,) squared distance to the nearest prototype}."""
        raise NotImplementedError

    def outputs(self, results):
        """The model's output list -> probabilities, {head: probabilities} in the heads' order, or a
        prototype model's {"probabilities", "distance"}."""
        if self.heads is not None:
            return dict(zip(self.heads, results))
        return results[0] if len(results) == 1 else dict(zip(PROTOTYPE_OUTPUTS, results))

    def run_tta(self, images, tta):
        """``run`` averaged over the test-time views of ``images`` (tta.py), in probability space."""
        from .tta import augmented_views, enabled, unflip

        if not enabled(tta):
            return self.run(images)
        views = unflip([self.run(v) for v in augmented_views(np.asarray(images), tta)], tta)
        if isinstance(views[0], dict):
            return {k: np.mean([v[k] for v in views], axis=0) for k in views[0]}
        return np.mean(views, axis=0)

    def decode_plan(self, num_workers=None):
        """-> (decoding threads, batches decoded ahead of the one the model is running).

        On a GPU, decoding runs ahead on every core. On the CPU the model's intra-op threads
        and the decoders share the cores: decoding runs ahead only on cores the model leaves
        free; otherwise each batch is decoded on the model's threads' cores, then run, never
        both at once. An OpenMP pool that loses a core to another thread stalls at every
        barrier (on 2 cores, training fell from 44 to 2 img/s), which costs far more than the
        few ms a batch takes to decode (BENCHMARKS.md).
        """
        cores = os.cpu_count() or 1
        if num_workers == 0:  # one thread, each batch decoded in turn with the model
            return 1, 0
        if self.cpu_threads is None:
            return (cores if num_workers is None else num_workers), 2
        spare = cores - self.cpu_threads
        workers = (spare if spare > 0 else self.cpu_threads) if num_workers is None else num_workers
        return workers, (2 if workers <= spare else 0)

    def batches(self, paths, batch_size, num_workers=None):
        """Decode ``paths`` (an iterator) -> (paths, uint8 N x 3 x S x S, errors) per batch.

        A thread pool decodes each batch (OpenCV releases the GIL, so threads decode in
        parallel) and, where ``decode_plan`` allows, the next ones while the caller runs it.
        """
        workers, lookahead = self.decode_plan(num_workers)
        with ThreadPoolExecutor(workers) as pool:
            pending = deque()
            for chunk in _chunks(paths, batch_size):
                pending.append((chunk, [pool.submit(decode, p, self.image_size) for p in chunk]))
                if len(pending) > lookahead:
                    yield _collect(*pending.popleft())
            while pending:
                yield _collect(*pending.popleft())


class OnnxEngine(Engine):
    """An exported .onnx model in onnxruntime; ``threads`` sets its intra-op thread count."""

    kind = "onnx"

    def __init__(self, path, device="auto", threads=None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
        try:
            self.session = ort.InferenceSession(str(path), options, providers=_ort_providers(ort, device))
        except Exception as exc:  # onnxruntime raises its own types for unreadable graphs
            raise CheckpointError(f"cannot load ONNX model '{path}': {exc}") from None
        meta = _parse_metadata(self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY), path)
        check_outputs(meta, path, [(o.name, o.shape) for o in self.session.get_outputs()],
                      self.session.get_inputs()[0].shape)
        super().__init__(meta, path)
        self.input_name = self.session.get_inputs()[0].name
        if self.session.get_providers()[0] == "CPUExecutionProvider":  # its default: one per core
            self.cpu_threads = int(threads) if threads else os.cpu_count() or 1

    def run(self, images):
        return self.outputs(self.session.run(None, {self.input_name: np.ascontiguousarray(images, dtype=np.uint8)}))


def _ort_providers(ort, device):
    available = ort.get_available_providers()
    device = "auto" if device is None else check_device_name(device)
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device != "auto":
        check_device(device)  # this machine has it, before asking onnxruntime
    if device.startswith("cuda"):
        if "CUDAExecutionProvider" not in available:
            raise CheckpointError(f"device '{device}': this onnxruntime has no CUDA provider (has: {', '.join(available)})")
        index = int(device.partition(":")[2] or 0)
        return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
    if device != "auto":
        raise CheckpointError(f"device '{device}' is not usable with an ONNX model; use auto, cpu or cuda[:N]")
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


def _parse_metadata(text, path):
    if not text:
        raise CheckpointError(f"'{path}' has no fashion metadata (classes, preprocessing); export it with `fashion export`")
    return parse_metadata(text, path)


class _TorchEngine(Engine):
    """Shared by the torch engines: the device, torch's intra-op threads, batches in and out."""

    def _device(self, device, threads):
        import torch

        from .devices import resolve_device

        if threads:
            torch.set_num_threads(int(threads))
        device = resolve_device(device)
        if device.type == "cpu":
            self.cpu_threads = torch.get_num_threads()
        return device

    def _forward(self, x):
        raise NotImplementedError

    def run(self, images):
        import torch

        with torch.inference_mode():
            x = torch.as_tensor(images).to(self.device, non_blocking=True)
            out = self._forward(x)
            out = [out] if torch.is_tensor(out) else list(out)  # several outputs come as a tuple
            return self.outputs([o.float().cpu().numpy() for o in out])


class CheckpointEngine(_TorchEngine):
    """A training checkpoint (.pt or run dir): softmax(model(normalize(x))), as evaluation does."""

    kind = "checkpoint"

    def __init__(self, path, device="auto", threads=None):
        import torch

        from .checkpoint import load_model, resolve_path

        path = resolve_path(path)
        self.device = self._device(device, threads)
        self.model, meta = load_model(path, self.device)
        super().__init__(meta, path)
        self.mean, self.std = meta["preprocessing"]["mean"], meta["preprocessing"]["std"]
        # The layout the model trained in (train.channels_last): on CPU too, oneDNN's convolutions
        # run a channels_last batch about 1.5x faster than an NCHW one (BENCHMARKS.md).
        train = (meta.get("recipe") or {}).get("train") or {}
        self.memory_format = torch.channels_last if train.get("channels_last", True) else torch.contiguous_format
        self.model.to(memory_format=self.memory_format)

    def _forward(self, x):
        x = normalize(x, self.mean, self.std).contiguous(memory_format=self.memory_format)
        return probabilities(self.model(x), self.heads)


class TorchScriptEngine(_TorchEngine):
    """A .torchscript file from `fashion export`: normalisation and softmax are inside it."""

    kind = "torchscript"

    def __init__(self, path, device="auto", threads=None):
        import warnings

        import torch

        self.device = self._device(device, threads)
        files = {METADATA_FILE: ""}
        try:
            with warnings.catch_warnings():  # torch.jit is deprecated upstream; the format is still wanted
                warnings.simplefilter("ignore", FutureWarning)
                self.module = torch.jit.load(str(path), map_location=self.device, _extra_files=files)
        except Exception as exc:
            raise CheckpointError(f"cannot load TorchScript model '{path}': {exc}") from None
        super().__init__(_parse_metadata(files[METADATA_FILE], path), path)

    def _forward(self, x):
        return self.module(x)


def probabilities(out, heads=None):
    """A model's raw output -> what the checkpoint engine and an exported file return: softmax
    probabilities; a tuple of each head's softmax or sigmoid (in the heads' order) for a multi-task
    model; (probabilities, (N,) distance to the nearest prototype) for a prototype model."""
    if isinstance(out, dict) and "distances" in out:
        from .tasks.prototype.openset import min_distance

        return out["logits"].softmax(1), min_distance(out["distances"])
    if heads is None:
        return out.softmax(1)
    return tuple(out[n].sigmoid() if h.sigmoid else out[n].softmax(1) for n, h in heads.items())


TORCHSCRIPT_SUFFIXES = (".torchscript", ".ts")
TRUST_HINT = ("pass --trust-torchscript only for a file from a source you trust, or predict with its "
              ".onnx export (data, not code)")


def open_engine(model, device="auto", threads=None, trust_torchscript=False):
    """The engine for ``model``, chosen by its name, never guessed from its contents: an .onnx export;
    a TorchScript export (.torchscript, .ts) only with ``trust_torchscript``, since loading one runs
    the program inside it; anything else is a checkpoint or run dir, read as weights only."""
    path = Path(model)
    if not path.exists():
        raise CheckpointError(f"model '{model}' does not exist")
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return OnnxEngine(path, device, threads)
    if suffix in TORCHSCRIPT_SUFFIXES:
        if not trust_torchscript:
            raise CheckpointError(f"'{path}' is a TorchScript program: loading it runs its code; {TRUST_HINT}")
        return TorchScriptEngine(path, device, threads)
    return CheckpointEngine(path, device, threads)


# -- images ------------------------------------------------------------------
def decode(path, size):
    """-> (size x size x 3 uint8, error string); an unreadable file gives a blank image and its reason."""
    try:
        return read_resized(path, size), ""
    except Exception as exc:  # reported in the row, never fatal
        return np.zeros((size, size, 3), np.uint8), str(exc) or type(exc).__name__


def _collect(paths, futures):
    images, errors = zip(*(f.result() for f in futures))
    return paths, np.stack(images).transpose(0, 3, 1, 2), list(errors)


def _chunks(iterable, n):
    it = iter(iterable)
    while chunk := list(islice(it, n)):
        yield chunk


def _is_pattern(arg):
    return any(c in arg for c in "*?[")


def check_inputs(inputs):
    """-> the inputs as a list of strings; fails before any work when one is neither an existing
    path nor a glob pattern."""
    inputs = [str(inputs)] if isinstance(inputs, (str, os.PathLike)) else [str(a) for a in inputs]
    if not inputs:
        raise DataError("no inputs: pass image files, folders, glob patterns or a .txt list of paths")
    for arg in inputs:
        if not os.path.exists(arg) and not _is_pattern(arg):
            raise DataError(f"input '{arg}' does not exist (pass files, folders, glob patterns or a .txt list)")
    return inputs


def iter_inputs(inputs, skip=()):
    """Image paths from files, folders (recursive), glob patterns and .txt lists, lazily.

    Files named explicitly (or listed in a .txt, one path a line, relative to the current
    directory) are kept whatever their type, so an unreadable one gets an error row;
    folders and patterns yield image files only, outside the folders in ``skip``.
    """
    for arg in check_inputs(inputs):
        if os.path.isdir(arg):
            yield from map(str, iter_image_files(arg, skip=skip))
        elif arg.lower().endswith(".txt") and os.path.isfile(arg):
            with open(arg, **ENCODING) as f:
                yield from (line.strip() for line in f if line.strip())
        elif os.path.exists(arg):
            yield arg
        else:
            for match in glob.iglob(arg, recursive=True):
                if os.path.isdir(match):
                    yield from map(str, iter_image_files(match, skip=skip))
                elif is_image_file(match):
                    yield match


def check_out(out, inputs, model):
    """-o may not be the model, an input file, an entry of a .txt list, or an image in an input folder."""
    files, folders = model_files(model), []
    for arg in inputs:
        for match in glob.glob(arg, recursive=True) if _is_pattern(arg) and not os.path.exists(arg) else [arg]:
            (folders if os.path.isdir(match) else files).append(match)
            if match.lower().endswith(".txt") and os.path.isfile(match):
                with open(match, **ENCODING) as f:
                    files += [line.strip() for line in f if line.strip()]
    check_output(out, files=files, image_folders=folders, what="-o")


def _key(path):
    return os.path.abspath(path)


def _unique(paths, done, stats):
    """Drop repeated paths and, when resuming, paths whose rows are already written."""
    seen = set()
    for path in paths:
        key = _key(path)
        if key in done:
            stats["skipped"] += 1
        elif key in seen:
            stats["duplicates"] += 1
        else:
            seen.add(key)
            yield path


# -- output ------------------------------------------------------------------
def output_format(out, fmt=None):
    fmt = (fmt or Path(out).suffix.lstrip(".") or "csv").lower()
    fmt = {"json": "jsonl", "ndjson": "jsonl"}.get(fmt, fmt)
    if fmt not in FORMATS:
        raise DataError(f"unknown output format '{fmt}' for '{out}'; use .csv or .jsonl (or --format csv|jsonl)")
    return fmt


def _truncate_partial(path, block=1 << 16):
    """Cut a line a crash left half-written: keep everything up to the last newline -> new size."""
    with open(path, "rb+") as f:
        end = f.seek(0, os.SEEK_END)
        pos = end
        while pos > 0:  # scan back from the end: the file may be far larger than memory wants
            start = max(0, pos - block)
            f.seek(start)
            newline = f.read(pos - start).rfind(b"\n")
            if newline >= 0:
                pos = start + newline + 1
                break
            pos = start
        if pos < end:
            f.truncate(pos)
        return pos


def read_done(out, fmt, columns=COLUMNS):
    """Paths already in ``out`` (after cutting a partial last line) -> set of keys."""
    if not os.path.exists(out) or _truncate_partial(out) == 0:
        return set()
    done = set()
    with open(out, newline="", **ENCODING) as f:
        if fmt == "csv":
            reader = CsvReader(f)
            if tuple(reader.fieldnames or ()) != tuple(columns):
                raise DataError(
                    f"cannot resume '{out}': its columns are {','.join(reader.fieldnames or [])}, "
                    f"expected {','.join(columns)}; write to a new file or drop --resume"
                )
            done.update(_key(row["path"]) for row in reader)
        else:
            for line_no, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    done.add(_key(json.loads(line)["path"]))
                except (ValueError, KeyError, TypeError):
                    raise DataError(f"cannot resume '{out}': line {line_no} is not a prediction row") from None
    return done


class RowWriter:
    """Appends rows to CSV or JSONL and flushes each batch, so a crash loses at most one batch.

    A kill leaves whole rows and at most one partial last line, which --resume cuts off
    (``_truncate_partial``); an output that cannot be written is an OutputError naming it.
    """

    def __init__(self, out, fmt, append, layout):
        self.out, self.fmt, self.layout = out, fmt, layout
        try:
            Path(out).parent.mkdir(parents=True, exist_ok=True)
            # Not an atomic write: rows must reach the file as they are made, for --resume.
            self.file = open(out, "a" if append else "w", newline="", **ENCODING)
            if fmt == "csv" and self.file.tell() == 0:
                self._write(_csv_line(layout.columns))
        except OSError as exc:
            raise output_error(out, exc) from None

    def _write(self, text):
        try:
            self.file.write(text)
            self.file.flush()
        except OSError as exc:
            raise output_error(self.out, exc) from None

    def write(self, rows):
        if self.fmt == "csv":
            lines = (_csv_line(self.layout.csv_values(row)) for row in rows)
        else:
            lines = (dumps(row) + "\n" for row in rows)
        self._write("".join(lines))

    def close(self):
        try:
            self.file.close()
        except OSError:  # the failed flush was already reported
            pass


def _csv_line(values):
    return csv_text_of([values])


def _error_text(error):
    return " ".join(error.split())  # one line: rows are line-based


class TopK:
    """Single-label rows: path, label, score (top-1 probability), top_labels, top_scores, error.

    With a prototype model's ``threshold``, the label is `unknown` where the distance to the
    nearest prototype exceeds it (score and top lists stay the nearest classes'), and a last
    column ``distance`` gives that distance.
    """

    folders = ()  # written beside out: none

    def __init__(self, classes, k, threshold=None):
        self.classes, self.k, self.threshold = classes, k, threshold
        self.columns = COLUMNS if threshold is None else (*COLUMNS, "distance")

    def rows(self, paths, probs, errors):
        distance = None
        if isinstance(probs, dict):  # a prototype model's {"probabilities", "distance"}
            probs, distance = probs["probabilities"], probs["distance"]
        top = np.argsort(-probs, axis=1, kind="stable")[:, :self.k]
        for i, (path, p, idx, error) in enumerate(zip(paths, probs, top, errors)):
            if error:
                row = {"path": path, "label": None, "score": None, "top_labels": [], "top_scores": [],
                       "error": _error_text(error)}
            else:
                scores = [round(float(p[j]), 6) for j in idx]
                labels = [self.classes[j] for j in idx]
                far = self.threshold is not None and distance[i] > self.threshold
                row = {"path": path, "label": UNKNOWN if far else labels[0], "score": scores[0],
                       "top_labels": labels, "top_scores": scores, "error": None}
            if self.threshold is not None:
                row["distance"] = None if error else round(float(distance[i]), 6)
            yield row

    def csv_values(self, row):
        values = [
            row["path"], row["label"] or "", "" if row["score"] is None else row["score"],
            json.dumps(row["top_labels"], ensure_ascii=False, separators=(",", ":")),
            json.dumps(row["top_scores"], separators=(",", ":")),
            row["error"] or "",
        ]
        if self.threshold is not None:
            values.append("" if row["distance"] is None else row["distance"])
        return values


class PerHead:
    """Multi-task rows: path, then <head> and <head>_score for every head, then error.

    A categorical head gives its class and probability; a binary or multilabel head the labels
    above their thresholds and their probabilities (lists in JSONL, joined by '|' in CSV).
    ``hierarchy``: a head with a parent predicts only classes of the parent's predicted class.
    """

    folders = ()

    def __init__(self, heads, thresholds=None, hierarchy=True):
        self.heads, self.thresholds, self.hierarchy = heads, thresholds or {}, hierarchy
        self.columns = ("path", *(c for h in heads for c in (h, f"{h}_score")), "error")

    def rows(self, paths, probs, errors):
        decoded = decode_heads(self.heads, probs, self.thresholds, self.hierarchy)
        for i, (path, error) in enumerate(zip(paths, errors)):
            row = {"path": path}
            for name, head in self.heads.items():
                d = decoded[name]
                if error:
                    row[name], row[f"{name}_score"] = None, None
                elif head.sigmoid:
                    on = np.flatnonzero(d["mask"][i])
                    row[name] = [head.classes[j] for j in on]
                    row[f"{name}_score"] = [round(float(probs[name][i, j]), 6) for j in on]
                else:
                    row[name], row[f"{name}_score"] = head.classes[d["index"][i]], round(float(d["score"][i]), 6)
            row["error"] = _error_text(error) if error else None
            yield row

    def csv_values(self, row):
        def cell(value):
            if value is None:
                return ""
            return LABEL_SEP.join(map(str, value)) if isinstance(value, list) else value
        return [cell(row[c]) for c in self.columns]


# -- entry -------------------------------------------------------------------
@holding("out")  # two commands writing one file would interleave their rows
def predict(model, inputs, out, topk=5, batch_size=64, fmt=None, resume=False, num_workers=None,
            device="auto", threads=None, tta=None, hierarchy=True, overlay="jpg", trust_torchscript=False):
    """Write one row per input image to ``out`` (CSV or JSONL) and return a summary.

    Rows: path, label, score (top-1 probability), top_labels, top_scores (top-k lists; JSON
    text in CSV), error (why a file could not be read; such rows have no label); a prototype
    model with a rejection threshold labels far images `unknown` and adds their distance
    (``TopK``); a multi-task model writes every head instead (``PerHead``). Paths are de-duplicated in order; ``resume``
    keeps the rows already in ``out`` and skips their paths. ``tta`` ({"hflip", "shift"}) averages
    the probabilities of flipped and shifted copies; None uses the model's recipe's eval.tta.
    A segmentation model writes mask PNGs, ``overlay`` images (jpg, png or none) and per-class
    areas instead (segmentation/predict.py's ``MaskRows``).
    """
    if topk < 1 or batch_size < 1:
        raise DataError(f"topk and batch_size must be at least 1 (got {topk}, {batch_size})")
    fmt = output_format(out, fmt)
    inputs = check_inputs(inputs)
    check_out(out, inputs, model)  # before the model loads and long before out is opened
    engine = open_engine(model, device=device, threads=threads, trust_torchscript=trust_torchscript)
    segmentation = engine.meta.get("task") == "segmentation"
    if tta is None:
        tta = ((engine.meta.get("recipe") or {}).get("eval") or {}).get("tta")
    if segmentation:  # masks, overlays and class areas: segmentation/predict.py
        from .tasks.segmentation.predict import MaskRows
        from .tta import check_per_pixel

        layout, k = MaskRows(engine.meta, out, fmt, overlay, num_workers), None
        check_per_pixel(tta)  # before any row is written
    elif engine.heads is not None:
        layout, k = PerHead(engine.heads, engine.meta.get("thresholds"), hierarchy), None
    else:
        k = min(topk, len(engine.classes))
        layout = TopK(engine.classes, k, engine.threshold)
    done = read_done(out, fmt, layout.columns) if resume else set()
    stats = {"rows": 0, "errors": 0, "duplicates": 0, "skipped": 0,
             **({} if engine.threshold is None else {"unknown": 0})}
    paths = _unique(iter_inputs(inputs, skip=layout.folders), done, stats)
    start = time.perf_counter()
    writer = RowWriter(out, fmt, append=resume, layout=layout)
    try:
        with tqdm(desc="predict", unit="img", disable=None) as bar:
            for batch_paths, images, errors in engine.batches(paths, batch_size, num_workers):
                rows = list(layout.rows(batch_paths, engine.run_tta(images, tta), errors))
                writer.write(rows)
                stats["rows"] += len(rows)
                stats["errors"] += sum(1 for r in rows if r["error"])
                if engine.threshold is not None:
                    stats["unknown"] += sum(r["label"] == UNKNOWN for r in rows)
                bar.update(len(rows))
    finally:
        writer.close()
    seconds = time.perf_counter() - start
    if stats["rows"] == 0 and not done:
        raise DataError(f"no images found in: {', '.join(inputs)}")
    return {
        "out": str(out), "format": fmt, "model": engine.source, "engine": engine.kind,
        **(layout.summary if segmentation else {"topk": k} if k else {"heads": list(engine.heads)}),
        **({} if engine.threshold is None else {"threshold": engine.threshold}), **stats, "seconds": round(seconds, 3),
        "images_per_second": round(stats["rows"] / seconds, 1) if seconds > 0 else None,
    }
