"""The parts every task supplies, one section per verb; the verbs call them and never name a task.

A task is a class registered through ``register_tasks`` (see ``fashioncli.tasks``). Its class
attributes and classmethods serve the verbs that start from a model file's metadata (eval,
predict, export); an instance, built from a recipe and a prepared dataset, serves training.
torch is imported inside the methods that need it: an onnxruntime-only deployment imports tasks.
"""
from dataclasses import dataclass


@dataclass
class EvalOptions:
    """How `fashion eval` runs a model: batches, device, loader workers, test-time views, top-k, the
    label of the progress bar over its batches (None: no bar; ``inference.iter_outputs``'s ``progress``)
    and the ``report.Report`` (report.html) the task adds its sections to (None: no report)."""

    batch_size: int = 64
    device: object = "cpu"
    num_workers: int = None
    tta: dict = None
    topk: int = 5
    progress: str = None
    report: object = None


@dataclass
class PredictOptions:
    """How `fashion predict` writes rows: top-k labels, a multi-task model's hierarchy, a segmentation
    model's overlay format, the threads that write its files and the folder they go to (None: beside
    the rows' file)."""

    topk: int = 5
    hierarchy: bool = True
    overlay: str = "jpg"
    num_workers: int = None
    save_dir: str = None


def logits_of(outputs):
    """A model's class scores: the tensor itself, or the "logits" of a model returning a dict."""
    return outputs["logits"] if isinstance(outputs, dict) else outputs


def concat(chunks):
    """Batches of tensors or of {name: tensor} -> one tensor or {name: tensor}, on the CPU."""
    import torch

    if not chunks:
        return torch.empty(0)
    if isinstance(chunks[0], dict):
        return {k: torch.cat([c[k] for c in chunks]).cpu() for k in chunks[0]}
    return torch.cat(chunks).cpu()


def rows_of(batch, index):
    """Rows ``index`` of a tensor or of every tensor of a {name: tensor}."""
    if isinstance(batch, dict):
        return {k: v[index] for k, v in batch.items()}
    return batch[index]


class Task:
    """One task's part in prepare, train, eval, predict and export."""

    name = ""
    dataset_kind = ""  # the "task" a prepared dataset.json must record for this task to train on it
    exportable = True  # `fashion export` writes it to ONNX and TorchScript
    holds_classes_out = False  # the recipe's data.classes may train on some of the dataset's classes
    mixes = False  # MixUp/CutMix may blend its training batches (one class label per image, model_args' num_classes)

    # -- prepare: classmethods; one source's work is a ``Preparation`` (see ``preparation.py``)
    @classmethod
    def preparation(cls):
        """The ``Preparation`` class that makes this task's datasets; None: the task prepares none of its own."""
        return None

    @classmethod
    def prepares(cls, imported):
        """How well this task prepares an importer's ``Imported``: 0 not at all; the highest-scoring task does.

        The source becomes a dataset of that task's ``dataset_kind``. By default a task claims
        the sources whose ``Imported.kind`` is its ``dataset_kind``.
        """
        from .preparation import CLAIMS

        return CLAIMS if cls.preparation() and imported.kind == cls.dataset_kind else 0

    # -- train: an instance per run, from the recipe and the prepared dataset
    def __init__(self, recipe, data):
        self.recipe, self.data = recipe, data
        # The class weights ``criterion`` used (class_weight: balanced|sqrt), written to the run's class_weights.json.
        self.class_weights = {}

    def model_args(self):
        """Arguments fashion passes to the model factory (class counts, heads)."""
        raise NotImplementedError

    def rows(self, data, split):
        """Which of the split's images training sees (None: all)."""
        return None

    def strata(self, data, split):
        """Each row's class, for a subset of the split with every class's share (data.fraction);
        None (the default: no single label per image): the subset is a random draw."""
        return None

    def targets(self, data, split):
        """The split's targets, row for row with its cached images."""
        raise NotImplementedError

    # Whether a target is an image of its own (a mask) that moves with the image under augmentation.
    spatial_targets = False

    def dataset(self, images, targets, transform=None):
        """The torch dataset pairing cached images with targets."""
        from ..data.loaders import CachedImages

        return CachedImages(images, targets, transform)

    def criterion(self):
        """The loss module, from the recipe."""
        raise NotImplementedError

    def correct(self, outputs, targets):
        """(right, counted) of a training batch, for the progress bar: tensors on the device (or numbers).
        Training sums them and reads them every few steps, so returning tensors keeps the step from
        waiting on the device."""
        raise NotImplementedError

    def reduce(self, outputs, targets):
        """Shrink one validation batch before it is kept (default: keep it as it is)."""
        return outputs, targets

    def validate(self, outputs, targets):
        """A whole validation split's outputs and targets -> {"val_loss", "val_<metric>": float}."""
        raise NotImplementedError

    def monitor(self):
        """The validation metric that picks the best checkpoint (maximised)."""
        raise NotImplementedError

    def meta(self):
        """What the checkpoint records for eval, predict and export (classes, heads, thresholds)."""
        raise NotImplementedError

    def preview_tile(self, image, target):
        """One augmented training image (H, W, 3 uint8 RGB) and its target -> (picture, caption) for
        train_batch.jpg, the preview of what training sees."""
        return image, str(target)

    def curve_panel(self, column):
        """The curves.png panel of a metrics.csv column (a head's name); None: its metric family."""
        return None

    # -- eval
    @classmethod
    def evaluate(cls, model, meta, root, split, out, options):
        """Score ``model`` on a split of ``root`` and write reports into ``out`` -> the summary.

        Sections of report.html go into ``options.report`` when it is set (see ``fashioncli.report``):
        the verb adds the summary's headline metrics; the task its tables, matrices and pictures."""
        raise NotImplementedError(f"`fashion eval` cannot score a {cls.name} model")

    # -- predict and export
    # The verbs start from a model file's metadata here (a checkpoint's or an export's), so these are
    # classmethods. Engines return numpy; ``activation`` alone runs in torch (the checkpoint engine and
    # the exported module), and an onnxruntime-only deployment calls the others without torch.
    @classmethod
    def activation(cls, meta):
        """-> a function: the model's raw output (torch) -> what an engine and an exported file return
        (a tensor, or a tuple of them, in the order of the export metadata's ``outputs``); by default
        softmax over the classes."""
        return _softmax

    @classmethod
    def engine_outputs(cls, meta, results):
        """An engine's list of outputs (numpy, in ``activation``'s order) -> what ``row_layout`` and
        ``parity`` read."""
        return results[0]

    @classmethod
    def raw_outputs(cls, meta, outputs):
        """An engine's outputs (``engine_outputs``, numpy) -> tensors standing for what the model itself
        returns, as far as this task's ``evaluate`` reads it: so eval scores an exported file with the
        code that scores a checkpoint. ``activation`` inverted where eval needs it (``log_probabilities``
        for a softmax); a task without it has its exported files refused by eval."""
        from ..errors import CheckpointError

        raise CheckpointError(f"`fashion eval` cannot score an exported {cls.name} model; evaluate its checkpoint")

    @classmethod
    def output_shapes(cls, outputs):
        """[(name, shape)] of a model's raw ``outputs`` as an engine would return them, to compare with
        ``expected_outputs`` when a checkpoint loads: whatever the model returns, claims are checked."""
        return [("probabilities", getattr(logits_of(outputs), "shape", None))]

    @classmethod
    def expected_outputs(cls, meta):
        """[(name, rank, classes or None)] the outputs of a model of this task have."""
        return [("probabilities", 2, len(meta["classes"]))]

    # A multi-task model's outputs are its heads, named after them: names must match, not only counts.
    output_noun = "output"
    named_outputs = False

    @classmethod
    def check_labels(cls, meta, source):
        """Check what the metadata says the outputs mean -> {output: number of classes} (model_meta)."""
        from ..model_meta import check_class_names, metadata_error

        if meta.get("heads"):  # an engine with heads would read the outputs as a multi-task model's
            raise metadata_error(source, f"it has 'heads' but claims a {cls.name} model")
        return {"classes": len(check_class_names(meta.get("classes"), "classes", source))}

    @classmethod
    def check_model_args(cls, injected, widths, source):
        """The class counts fashion passed to a checkpoint's model factory against ``check_labels``' widths."""
        from ..model_meta import metadata_error, show

        if "num_classes" in injected and injected["num_classes"] != widths["classes"]:
            raise metadata_error(source, f"the model is built with num_classes {show(injected['num_classes'])}, "
                                         f"but 'classes' lists {widths['classes']}")

    @classmethod
    def labels(cls, meta):
        """What a model's outputs mean: an export must read back with the checkpoint's."""
        return {"classes": list(meta.get("classes") or [])}

    @classmethod
    def row_layout(cls, meta, out, fmt, options):
        """The rows (and files) `fashion predict` writes for this task: an object with ``columns``,
        ``folders`` (written beside ``out``, never read as inputs), ``summary`` and ``counts`` (entries
        of predict's summary), ``rows(paths, outputs, errors)`` and ``csv_values(row)``; optionally
        ``ranked = True`` when ``rows`` reads only the order of the scores along the class axis (an
        argmax), so that an engine may skip the activation (``Engine.ranks``)."""
        raise NotImplementedError(f"`fashion predict` cannot run a {cls.name} model")

    @classmethod
    def check_tta(cls, tta):
        """Refuse test-time views this task's outputs cannot be averaged over (before any row is written)."""

    @classmethod
    def export_metadata(cls, meta, size):
        """The task's part of an exported file's metadata: classes or heads, the outputs."""
        raise NotImplementedError(f"`fashion export` cannot write a {cls.name} model")

    @classmethod
    def export_summary(cls, meta):
        """What export's summary says about the model's labels."""
        return {"classes": len(meta["classes"])}

    @classmethod
    def parity(cls, meta, want, got, atol):
        """The checkpoint's and the export's ``engine_outputs`` on the same images -> {..., "ok": bool}."""
        raise NotImplementedError

    @classmethod
    def parity_text(cls, parity):
        """How ``parity``'s agreement reads in export's error message."""
        raise NotImplementedError

    @classmethod
    def agreement(cls, parity):
        """The share of images (or pixels) whose labels two models agree on, read from ``parity``: a
        reduced-precision export (int8, fp16) must keep at least export's --min-agreement of it."""
        return parity["top1_agreement"]

    @classmethod
    def headline(cls, summary):
        """(name, value in [0, 1]) of the metric a `fashion eval` ``summary`` of this task leads with:
        a reduced-precision export may lose at most export's --max-metric-drop of it."""
        return "accuracy", summary["metrics"]["accuracy"]


def _softmax(outputs):
    import torch

    if outputs.dim() == 4 and not outputs.is_contiguous() and outputs.is_contiguous(memory_format=torch.channels_last):
        # A channels_last score map's classes are innermost in memory: softmax over its (N, H, W, C)
        # view, a free one, runs about 3x faster than over dim 1 (BENCHMARKS.md, issue 15).
        return outputs.permute(0, 2, 3, 1).softmax(-1).permute(0, 3, 1, 2)
    return outputs.softmax(1)


# Probabilities of 0 (float32 underflow) would give -inf, which the metrics cannot rank or average.
_TINIEST = 1e-30


def log_probabilities(probabilities):
    """Softmax probabilities (numpy) -> their logs, logits standing for the model's: softmax gives the
    probabilities back, and argmax, top-k and rankings are unchanged."""
    import torch

    return torch.as_tensor(probabilities).float().clamp_min(_TINIEST).log()


def logits_of_sigmoid(probabilities):
    """Sigmoid probabilities (numpy) -> logits: sigmoid gives the probabilities back (ends clamped)."""
    import torch

    p = torch.as_tensor(probabilities).double()
    return torch.logit(p, eps=1e-12).float()
