"""MixUp and CutMix (torchvision transforms v2) on a training batch: images blended, targets soft."""
import torch
from torchvision.transforms import v2

from ..errors import RecipeError


def build_mix(augment, task, criterion, loss_name, device):
    """-> ``mix(x, y) -> (x, soft y)`` from data.augment's mixup/cutmix alphas, or None when both are 0.

    Only a task with one class label per image mixes (``task.mixes``), and only with a loss that
    takes class probabilities as targets (cross_entropy does; label smoothing still applies).
    """
    alphas = {"mixup": augment.get("mixup") or 0, "cutmix": augment.get("cutmix") or 0}
    asked = [k for k, a in alphas.items() if a]
    if not asked:
        return None
    if not task.mixes:
        raise RecipeError(f"data.augment.{asked[0]}: a {task.name} model cannot be trained on mixed images "
                          f"(it needs one class label per image); remove the key")
    n = task.model_args()["num_classes"]
    try:  # a loss that wants class indices fails here, not at the first batch
        criterion(torch.zeros(2, n, device=device), torch.full((2, n), 1.0 / n, device=device))
    except (RuntimeError, ValueError, IndexError, TypeError):
        raise RecipeError(f"loss.name: '{loss_name}' does not take the soft targets data.augment.{asked[0]} "
                          f"makes; use cross_entropy") from None
    ops = [(v2.MixUp if k == "mixup" else v2.CutMix)(alpha=float(alphas[k]), num_classes=n) for k in asked]
    mix = ops[0] if len(ops) == 1 else v2.RandomChoice(ops)  # one of the two per batch, as timm switches
    prob = augment.get("mix_prob", 1.0)

    def apply(x, y):
        # The global RNG decides: a checkpoint saves its state, so a resumed run mixes alike.
        if prob < 1 and torch.rand(()).item() >= prob:
            return x, y
        return mix(x, y)

    return apply
