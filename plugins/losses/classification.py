"""Classification losses."""
import torch.nn as nn

from fashioncli import hookimpl


def cross_entropy(label_smoothing=0.0, ignore_index=-100):
    """Cross-entropy with optional label smoothing."""
    return nn.CrossEntropyLoss(label_smoothing=label_smoothing, ignore_index=ignore_index)


@hookimpl
def register_losses(register):
    register("cross_entropy", cross_entropy)
