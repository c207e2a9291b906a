"""The multi-task loss: the heads' losses, weighted and summed."""
import torch

from .heads import present


class MultiTaskLoss(torch.nn.Module):
    """Weighted sum of the heads' losses, each over the rows where that head's label is known."""

    def __init__(self, heads, losses, weights):
        super().__init__()
        self.heads, self.weights = heads, weights
        self.losses = torch.nn.ModuleDict(losses)

    def forward(self, outputs, targets):
        total = 0.0
        for name, head in self.heads.items():
            t = targets[name]
            keep = present(head, t)
            if keep.any():  # a batch without this label teaches the head nothing (and 0/0 is NaN)
                total = total + self.weights[name] * self.losses[name](outputs[name][keep].float(), t[keep])
        if not torch.is_tensor(total):
            total = sum(o.sum() * 0.0 for o in outputs.values())  # keeps the graph for backward()
        return total
