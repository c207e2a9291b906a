"""What a prototype model adds to `fashion eval`: rejection figures and the embedding picture."""
import torch

from ..classification.evaluate import fraction
from ..base import logits_of
from .openset import reject


def rejection_reports(meta, outputs, targets, score, present):
    """"rejection", for a model with a threshold: accuracy without and with `unknown` beyond it (a
    rejected image counts as wrong; "accepted_accuracy": over the images kept) and the fractions of
    known and unseen images rejected."""
    rejection = meta.get("rejection")
    if not rejection:
        return {}
    known = targets < len(meta["classes"])
    rejected = reject(score, rejection["threshold"])
    right = logits_of(outputs).argmax(1) == targets
    entry = {
        **rejection, "known_rejected": fraction(rejected[known]),
        "accuracy_without_rejection": fraction(right[known]),
        "accuracy_with_rejection": fraction((right & ~rejected)[known]),
        "accepted_accuracy": fraction(right[known & ~rejected]),
    }
    if present:
        entry.update(
            unseen_rejected=fraction(rejected[~known]),
            unseen_rejected_per_class={name: fraction(rejected[targets == i]) for name, i in present.items()},
            # known images right and kept, unseen images rejected, over all images
            open_set_accuracy=fraction(torch.where(known, right & ~rejected, rejected)),
        )
    return {"rejection": entry}


def embedding_plot(model, meta, outputs, targets, unseen, out):
    """embedding.png: the learned embedding and the prototypes, coloured by class (report 000,
    Figure 7) -> the files written."""
    from ...plots import plot_embedding

    if "embedding" not in outputs:
        return []
    classes = meta["classes"]
    prototypes = getattr(getattr(model, "head", None), "prototypes", None)
    plot_embedding(outputs["embedding"].numpy(), targets.numpy(), classes + unseen, len(classes),
                   out / "embedding.png", None if prototypes is None else prototypes.detach().cpu().numpy())
    return ["embedding.png"]
