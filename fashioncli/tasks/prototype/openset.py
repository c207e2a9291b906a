"""Open-set rejection for prototype models: an image far from every prototype is "none of these".

Distances are a prototype model's squared distances, (N, C, K) or (N, C), or already (N,) minima.
"""
import torch
from torchmetrics.functional.classification import binary_auroc


def min_distance(distances):
    """(N, ...) squared distances -> (N,) distance to the nearest prototype of any class."""
    if not torch.is_tensor(distances):  # (as_tensor on a tensor would be a constant in a traced export)
        distances = torch.as_tensor(distances)
    return distances if distances.ndim == 1 else distances.flatten(1).min(dim=1).values


def calibrate_threshold(distances_known, false_rejection_rate=0.05):
    """The distance above which ``false_rejection_rate`` of known (validation) images lie."""
    if not 0.0 <= false_rejection_rate <= 1.0:
        raise ValueError(f"false_rejection_rate must be in [0, 1], got {false_rejection_rate}")
    d = min_distance(distances_known).double()
    if d.numel() == 0:
        raise ValueError("calibrate_threshold needs at least one known image")
    return torch.quantile(d, 1.0 - false_rejection_rate).item()


def reject(distances, threshold):
    """Bool (N,): True where the nearest prototype is farther than ``threshold`` (unseen class)."""
    return min_distance(distances) > threshold


def open_set_metrics(min_dist_known, min_dist_unseen, threshold=None):
    """{"auroc": known-vs-unseen AUROC with -distance as the known score, and with a threshold
    "known_rejected" / "unseen_rejected": the fractions of each set rejected}."""
    known, unseen = min_distance(min_dist_known).double(), min_distance(min_dist_unseen).double()
    d = torch.cat([known, unseen])
    # torchmetrics squashes scores outside [0, 1] with a sigmoid, which ties large distances; a
    # min-max rescale in float64 keeps their order (and their ties) exactly.
    span = (d.max() - d.min()).clamp_min(torch.finfo(torch.float64).tiny)
    score = (d.max() - d) / span
    target = torch.cat([torch.ones_like(known), torch.zeros_like(unseen)]).long()
    out = {"auroc": binary_auroc(score, target).item()}
    if threshold is not None:
        out["known_rejected"] = reject(known, threshold).double().mean().item()
        out["unseen_rejected"] = reject(unseen, threshold).double().mean().item()
    return out
