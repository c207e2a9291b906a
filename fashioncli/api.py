"""Everything a plugin may import: ``from fashioncli.api import hookimpl, Preprocessing, ...``.

The hooks, their signatures and an example of each are in docs/plugins.md. Names outside this
module are fashion's internals and may change without notice; the built-in plugins (the
``fashion_plugins`` package) import from here only.
"""
from .data.archives import extract
from .data.images import (
    IMAGE_EXTENSIONS, ImageError, check_box, decode_image, is_image_file, iter_image_files, read_image,
)
from .data.importing import (
    SPLIT_ALIASES, SPLITS, TABLE_SUFFIXES, Imported, derive_columns, drop_copies, normalize_split, pick_column, read_table, split_folders,
)
from .data.masks import (
    COLOUR_DIR, INDEX_DIR, MASK_SUFFIXES, PALETTE_FILE, MaskError, class_pixels, describe_unknown, find_mask,
    mask_for, read_colour_mask, read_index_mask, read_palette,
)
from .data.preprocess import IMAGENET_MEAN, IMAGENET_STD
from .download import download
from .errors import (
    CheckpointError, DataError, ExportError, FashionError, PluginError, RecipeError, UnknownNameError, did_you_mean,
)
from .hookspecs import hookimpl
from .loggers import LoggedRun, Logger
from .engines import METADATA_FILE, METADATA_KEY, Engine, OnnxEngine, TorchScriptEngine
from .preprocessing import IMAGENET, Preprocessing
from .data.clean import checked_samples
from .data.dataset import PreparedDataset
from .tasks.base import EvalOptions, PredictOptions, Task, concat, logits_of, rows_of
from .tasks.multitask.importing import head_labels, normalize_heads
from .tasks.preparation import Preparation, PrepareOptions

__all__ = [
    # hooks
    "hookimpl",
    # errors the CLI prints as one line
    "FashionError", "RecipeError", "PluginError", "UnknownNameError", "DataError", "CheckpointError", "ExportError",
    "did_you_mean",
    # models: what a registration declares
    "Preprocessing", "IMAGENET", "IMAGENET_MEAN", "IMAGENET_STD",
    # tasks
    "Task", "EvalOptions", "PredictOptions", "Preparation", "PrepareOptions", "checked_samples",
    "concat", "logits_of", "rows_of",
    # what a task's training and eval read: the prepared dataset, loaders, a model run over a loader
    "PreparedDataset", "CachedImages", "make_loader", "run_model", "iter_outputs",
    # dataset importers
    "Imported", "SPLITS", "SPLIT_ALIASES", "TABLE_SUFFIXES", "normalize_split", "read_table", "pick_column",
    "derive_columns", "normalize_heads", "head_labels", "split_folders", "drop_copies",
    "IMAGE_EXTENSIONS", "ImageError", "read_image", "decode_image", "is_image_file", "iter_image_files", "check_box",
    "MaskError", "PALETTE_FILE", "INDEX_DIR", "COLOUR_DIR", "MASK_SUFFIXES", "read_palette", "read_index_mask",
    "read_colour_mask", "find_mask", "mask_for", "class_pixels", "describe_unknown",
    "download", "extract",
    # experiment loggers
    "Logger", "LoggedRun",
    # exporters: where exported files carry fashion's metadata, and the engines that run them
    "METADATA_KEY", "METADATA_FILE", "Engine", "OnnxEngine", "TorchScriptEngine",
]


# Names whose modules import torch load on first use: the ONNX exporter imports this module, and an
# onnxruntime-only deployment runs predict on an .onnx file without torch installed.
_TORCH_NAMES = {"CachedImages": "fashioncli.data.loaders", "make_loader": "fashioncli.data.loaders",
                "run_model": "fashioncli.inference", "iter_outputs": "fashioncli.inference"}


def __getattr__(name):
    if name in _TORCH_NAMES:
        import importlib

        return getattr(importlib.import_module(_TORCH_NAMES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
