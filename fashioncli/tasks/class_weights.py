"""Class weights against imbalance (``class_weight: balanced`` or ``sqrt``), from the prepared train split.

A softmax head or classification loss weighs class c by n / (K * n_c) (``balanced``: each class
weighs as much in total, sklearn's rule) or by its square root (``sqrt``: half-way, gentler on
rare classes' noise). A sigmoid head (binary, multi-label) weighs each label's positives by
n_negative / n_positive, or its square root: BCE's ``pos_weight``. Every weight is capped
(``cap``, default 10): a class seen twice must not drown the rest. The weights go into the loss's
own per-class argument (``weight`` of cross-entropy, ``alpha`` of focal, ``pos_weight`` of BCE)
and are written to the run (class_weights.json).
"""
import inspect

import numpy as np

from ..errors import RecipeError

MODES = ("balanced", "sqrt")
DEFAULT_CAP = 10.0
# The argument a loss takes its per-class weights in: softmax losses, then sigmoid ones.
SOFTMAX_ARGS, SIGMOID_ARGS = ("weight", "alpha"), ("pos_weight",)


def setting(value, where):
    """A recipe's class_weight (None, 'balanced', 'sqrt' or {mode, cap}) -> None or (mode, cap)."""
    if value is None:
        return None
    mode, cap = (value.get("mode"), value.get("cap", DEFAULT_CAP)) if isinstance(value, dict) else (value, DEFAULT_CAP)
    if mode not in MODES:
        raise RecipeError(f"{where}.class_weight: '{mode}' is not one of {', '.join(MODES)}")
    return mode, float(cap)


def softmax_weights(counts, mode, cap):
    """Images per class (K,) -> K weights: n / (K n_c) (or its square root), at most ``cap``;
    a class without images gets ``cap`` (it has nothing to weigh, and may appear later)."""
    counts = np.asarray(counts, dtype=np.float64)
    raw = np.where(counts > 0, counts.sum() / (len(counts) * np.maximum(counts, 1)), np.inf)
    return _finish(raw, mode, cap)


def sigmoid_weights(positives, known, mode, cap):
    """Positives per label (L,) among ``known`` labelled images -> L pos_weights n_neg / n_pos (or
    its square root), at most ``cap``."""
    positives = np.asarray(positives, dtype=np.float64)
    raw = np.where(positives > 0, (known - positives) / np.maximum(positives, 1), np.inf)
    return _finish(raw, mode, cap)


def _finish(raw, mode, cap):
    weights = np.sqrt(raw) if mode == "sqrt" else raw
    return [round(float(w), 6) for w in np.minimum(weights, cap)]


def loss_args(loss, args, weights, sigmoid, where):
    """{argument: weights} to create ``loss`` ({name, args}) with: its per-class weight argument,
    found in its signature; RecipeError when it takes none or the recipe set it already."""
    from ..plugins import get

    params = inspect.signature(get("losses").get(loss["name"]).factory).parameters
    names = SIGMOID_ARGS if sigmoid else SOFTMAX_ARGS
    name = next((n for n in names if n in params), None)
    if name is None:
        raise RecipeError(f"{where}.class_weight: loss '{loss['name']}' takes no per-class weight "
                          f"({' or '.join(names)})")
    if (args or {}).get(name) is not None:
        raise RecipeError(f"{where}.class_weight: the loss's '{name}' is set too; keep one of them")
    return {name: weights}
