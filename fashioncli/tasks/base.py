"""The parts every task supplies, one section per verb; the verbs call them and never name a task.

A task is a class registered through ``register_tasks`` (see ``fashioncli.tasks``). Its class
attributes and classmethods serve the verbs that start from a model file's metadata (eval,
predict, export); an instance, built from a recipe and a prepared dataset, serves training.
torch is imported inside the methods that need it: an onnxruntime-only deployment imports tasks.
"""
from dataclasses import dataclass


@dataclass
class EvalOptions:
    """How `fashion eval` runs a model: batches, device, loader workers, test-time views, top-k."""

    batch_size: int = 64
    device: object = "cpu"
    num_workers: int = None
    tta: dict = None
    topk: int = 5


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

    def model_args(self):
        """Arguments fashion passes to the model factory (class counts, heads)."""
        raise NotImplementedError

    def rows(self, data, split):
        """Which of the split's images training sees (None: all)."""
        return None

    def targets(self, data, split):
        """The split's targets, row for row with its cached images."""
        raise NotImplementedError

    def dataset(self, images, targets, transform=None):
        """The torch dataset pairing cached images with targets."""
        from ..data.loaders import CachedImages

        return CachedImages(images, targets, transform)

    def criterion(self):
        """The loss module, from the recipe."""
        raise NotImplementedError

    def correct(self, outputs, targets):
        """(right, counted) of a training batch, for the progress bar."""
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

    # -- eval
    @classmethod
    def evaluate(cls, model, meta, root, split, out, options):
        """Score ``model`` on a split of ``root`` and write reports into ``out`` -> the summary."""
        raise NotImplementedError(f"`fashion eval` cannot score a {cls.name} model")

    # -- predict and export
