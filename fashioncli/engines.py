"""Engines: a model file opened for inference, turning uint8 NCHW batches into what its task's rows read.

`fashion predict` runs them, export's parity check compares them, and `fashion eval` scores an
exported file through one (engine_model.py).

Which engine opens a file is decided by its suffix, never guessed from its contents: an exporter
registers, beside how it writes a file, its suffixes, the engine that opens it (for predict and
eval) and whether loading runs code (``register_exporters``); anything else is a training checkpoint
or a run dir.
``CheckpointEngine`` (.pt or run dir, weights only) and ``TorchScriptEngine`` (.torchscript, .ts,
a program: only when trusted) run in PyTorch; ``OnnxEngine`` (.onnx) needs only numpy, OpenCV and
onnxruntime. torch is imported inside the torch engines only, so a deployment with onnxruntime
alone can run predict on an ONNX file.
"""
import importlib
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from pathlib import Path

import numpy as np

from .data.images import read_resized
from .devices import check as check_device, check_name as check_device_name
from .errors import CheckpointError
from .model_meta import check_outputs, parse_metadata
from .tasks import task_of

# Where exported models carry their classes and preprocessing (written by fashioncli.export).
METADATA_KEY = "fashion"  # ONNX metadata_props key, JSON string
METADATA_FILE = "fashion.json"  # TorchScript _extra_files name

# The built-in exporters' plugin, read without loading every plugin: the model plugins import
# torch, and an onnxruntime-only deployment opens an .onnx file without it (as tasks' BUILTIN_TASKS).
BUILTIN_EXPORTERS = "fashion_plugins.exporters.standard"
TRUST_HINT = ("pass --trust-torchscript only for a file from a source you trust, or use its "
              ".onnx export (data, not code)")


# -- engines -----------------------------------------------------------------
class Engine:
    """A model for inference: ``meta`` (its task, classes, preprocessing) and ``run`` on uint8 NCHW batches."""

    kind = ""
    cpu_threads = None  # the model's intra-op threads when it runs on the CPU; None on a GPU
    # Whether ``run`` takes ``ranked=True``: the scores before the task's activation, for a caller that
    # reads only their order along the class axis (an argmax). A softmax keeps that order, and over a
    # segmentation map it costs a tenth of the forward pass; an exported file has it inside.
    ranks = False

    def __init__(self, meta, source):
        self.meta, self.source = meta, str(source)
        self.task = task_of(meta)
        self.classes = list(meta.get("classes") or [])  # none for a model whose task has heads instead
        self.image_size = int(meta["preprocessing"]["image_size"])

    def run(self, images):
        """uint8 N x 3 x S x S (numpy, or a tensor for torch engines) -> what the task's row layout
        reads (``Task.engine_outputs``): N x C probabilities for a classifier."""
        raise NotImplementedError

    def device_name(self):
        """Where the model runs, as summaries report it."""
        return str(getattr(self, "device", "cpu"))

    def outputs(self, results):
        """The model's output list, in its task's order (``Task.activation``) -> what ``run`` returns."""
        return self.task.engine_outputs(self.meta, results)

    def run_tta(self, images, tta, ranked=False):
        """``run`` averaged over the test-time views of ``images`` (tta.py), in probability space
        (so ``ranked`` applies only without views)."""
        from .tta import augmented_views, enabled, unflip

        if not enabled(tta):
            return self.run(images, ranked=True) if ranked and self.ranks else self.run(images)
        views = unflip([self.run(v) for v in augmented_views(np.asarray(images), tta)], tta)
        if isinstance(views[0], dict):
            return {k: np.mean([v[k] for v in views], axis=0) for k in views[0]}
        return np.mean(views, axis=0)

    def decode_plan(self, num_workers=None):
        """-> (decoding threads, batches decoded ahead of the one the model is running, whether the
        decoding threads run in the background).

        On a GPU, decoding runs ahead on every core. On the CPU the model's intra-op threads
        and the decoders share the cores: decoding runs ahead on cores the model leaves free.
        Where it leaves none, one decoding thread runs ahead in the background, at the lowest
        priority (threads.background_thread): it decodes on the time the model's threads leave
        idle (between operators, where the OpenMP threads sleep: threads.passive_openmp) and never
        takes a core from them, since an OpenMP pool that loses a core stalls at every barrier
        (on 2 cores, training fell from 44 to 2 img/s; BENCHMARKS.md). What it has not started
        when its batch is due, the caller decodes (``_collect``), so it never waits on a starved
        thread.
        """
        cores = os.cpu_count() or 1
        if num_workers == 0:  # one thread, each batch decoded in turn with the model
            return 1, 0, False
        if self.cpu_threads is None:
            return (cores if num_workers is None else num_workers), 2, False
        spare = cores - self.cpu_threads
        if num_workers is None:
            return (spare, 2, False) if spare > 0 else (1, 2, True)
        return num_workers, 2, num_workers > spare

    def batches(self, paths, batch_size, num_workers=None):
        """Decode ``paths`` (an iterator) -> (paths, uint8 N x 3 x S x S, errors) per batch.

        A thread pool decodes each batch (OpenCV releases the GIL, so threads decode in
        parallel, one image each: OpenCV's own thread pool is off meanwhile) and the next ones
        while the caller runs it, as ``decode_plan`` says.
        """
        import cv2

        from .threads import background_thread

        workers, lookahead, background = self.decode_plan(num_workers)
        cv_threads = cv2.getNumThreads()
        cv2.setNumThreads(1)
        try:
            with ThreadPoolExecutor(workers, initializer=background_thread if background else None) as pool:
                pending = deque()
                for chunk in _chunks(paths, batch_size):
                    pending.append((chunk, [pool.submit(decode, p, self.image_size) for p in chunk], self.image_size))
                    if len(pending) > lookahead:
                        yield _collect(*pending.popleft())
                while pending:
                    yield _collect(*pending.popleft())
        finally:
            cv2.setNumThreads(cv_threads)


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
        meta = read_metadata(self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY), path)
        check_outputs(meta, path, [(o.name, o.shape) for o in self.session.get_outputs()],
                      self.session.get_inputs()[0].shape)
        super().__init__(meta, path)
        self.input_name = self.session.get_inputs()[0].name
        if self.session.get_providers()[0] == "CPUExecutionProvider":  # its default: one per core
            self.cpu_threads = int(threads) if threads else os.cpu_count() or 1

    def device_name(self):
        return "cuda" if self.session.get_providers()[0] == "CUDAExecutionProvider" else "cpu"

    def run(self, images):
        return self.outputs(self.session.run(None, {self.input_name: np.ascontiguousarray(images, dtype=np.uint8)}))


def _ort_providers(ort, device):
    available = ort.get_available_providers()
    device = "auto" if device is None else check_device_name(device)
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device != "auto":
        device = check_device(device)  # this machine has it, before asking onnxruntime; '0' -> 'cuda:0'
    if device.startswith("cuda"):
        if "CUDAExecutionProvider" not in available:
            raise CheckpointError(f"device '{device}': this onnxruntime has no CUDA provider (has: {', '.join(available)})")
        index = int(device.partition(":")[2] or 0)
        return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
    if device != "auto":
        raise CheckpointError(f"device '{device}' is not usable with an ONNX model; use auto, cpu or cuda[:N]")
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


def read_metadata(text, path):
    """An exported file's fashion metadata (JSON text, or None when it has none) -> the checked mapping."""
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

    def _forward(self, x, ranked=False):
        raise NotImplementedError

    def run(self, images, ranked=False):
        import torch

        with torch.inference_mode():
            x = torch.as_tensor(images).to(self.device, non_blocking=True)
            out = self._forward(x, ranked)
            out = [out] if torch.is_tensor(out) else list(out)  # several outputs come as a tuple
            return self.outputs([o.float().cpu().numpy() for o in out])


class CheckpointEngine(_TorchEngine):
    """A training checkpoint (.pt or run dir): the task's activation of model(normalize(x)), as an
    exported file computes it."""

    kind = "checkpoint"
    ranks = True

    def __init__(self, path, device="auto", threads=None):
        import torch

        from .checkpoint import load_model, resolve_path

        path = resolve_path(path)
        self.device = self._device(device, threads)
        self.model, meta = load_model(path, self.device)
        super().__init__(meta, path)
        self.mean, self.std = meta["preprocessing"]["mean"], meta["preprocessing"]["std"]
        self.activate = self.task.activation(meta)
        # The layout the model trained in (train.channels_last): on CPU too, oneDNN's convolutions
        # run a channels_last batch about 1.5x faster than an NCHW one (BENCHMARKS.md).
        train = (meta.get("recipe") or {}).get("train") or {}
        self.memory_format = torch.channels_last if train.get("channels_last", True) else torch.contiguous_format
        self.model.to(memory_format=self.memory_format)

    def _forward(self, x, ranked=False):
        from .data.preprocess import normalize

        x = normalize(x, self.mean, self.std).contiguous(memory_format=self.memory_format)
        out = self.model(x)
        return out if ranked else self.activate(out)


class TorchScriptEngine(_TorchEngine):
    """A .torchscript file from `fashion export`: normalisation and activation are inside it."""

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
        super().__init__(read_metadata(files[METADATA_FILE], path), path)

    def _forward(self, x, ranked=False):
        return self.module(x)  # its activation is inside (ranks is False)


# -- which engine opens a file ---------------------------------------------------
class FileFormat:
    """An exported file format as its exporter registered it: its suffixes, the engine that opens
    it (``open(path, device, threads)``) and whether loading it runs code the file carries."""

    def __init__(self, name, plugin, suffixes=(), open=None, runs_code=False, **_):
        self.name, self.plugin, self.open, self.runs_code = name, plugin, open, runs_code
        self.suffixes = tuple(s.lower() for s in suffixes)


def builtin_formats():
    """The built-in exporters' formats, from their registration hook, without the plugin registry."""
    formats = []

    def register(name, factory, description=None, **extra):
        formats.append(FileFormat(name, BUILTIN_EXPORTERS, **extra))

    importlib.import_module(BUILTIN_EXPORTERS).register_exporters(register)
    return formats


def registered_formats():
    """Every registered exporter's format (loading the plugins: torch and the models come with them)."""
    from .plugins import get

    return [FileFormat(e.name, e.plugin, **e.extra) for e in get("exporters")]


def file_format(path):
    """The registered format whose suffix ``path`` has -> FileFormat; None for a checkpoint or run dir."""
    path = Path(path)
    if path.is_dir():
        return None
    suffix = path.suffix.lower()
    for formats in (builtin_formats, registered_formats):  # the built-ins first: no torch for an .onnx
        found = [f for f in formats() if suffix in f.suffixes]
        if found:
            return found[0]
    return None


def open_engine(model, device="auto", threads=None, trust_torchscript=False):
    """The engine for ``model``, chosen by its suffix, never guessed from its contents: a file of a
    registered export format (.onnx, ...); one whose loading runs code (TorchScript: .torchscript,
    .ts) only with ``trust_torchscript``; anything else is a checkpoint or run dir, read as weights only."""
    path = Path(model)
    if not path.exists():
        raise CheckpointError(f"model '{model}' does not exist")
    fmt = file_format(path)
    if fmt is None:
        return CheckpointEngine(path, device, threads)
    if fmt.open is None:
        raise CheckpointError(f"'{path}' is a {fmt.name} file, which plugin '{fmt.plugin}' registers no engine "
                              f"to open; use the checkpoint or another export format")
    if fmt.runs_code and not trust_torchscript:
        raise CheckpointError(f"'{path}' is a {fmt.name} program: loading it runs its code; {TRUST_HINT}")
    return fmt.open(path, device=device, threads=threads)


# -- images ------------------------------------------------------------------
def decode(path, size):
    """-> (size x size x 3 uint8, error string); an unreadable file gives a blank image and its reason."""
    try:
        return read_resized(path, size), ""
    except Exception as exc:  # reported in the row, never fatal
        return np.zeros((size, size, 3), np.uint8), str(exc) or type(exc).__name__


def _collect(paths, futures, size):
    """A batch's decoded images; the caller decodes those no thread has started (``Future.cancel``)."""
    images, errors = zip(*(decode(p, size) if f.cancel() else f.result() for p, f in zip(paths, futures)))
    return paths, np.stack(images).transpose(0, 3, 1, 2), list(errors)


def _chunks(iterable, n):
    it = iter(iterable)
    while chunk := list(islice(it, n)):
        yield chunk
