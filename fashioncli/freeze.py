"""Staged fine-tuning: which parts of a timm-based model train, by timm's own grouping of its layers.

Stages are the groups of ``backbone.group_matcher(coarse=True)``, in order: the stem first, then one
per block stage (EfficientNet: ``blocks.0`` .. ``blocks.6``; ResNet: ``layer1`` .. ``layer4``; ViT:
each block). The head is what a model adds to its pretrained backbone: the classifier of
``get_classifier()`` and, for a model with a ``backbone`` attribute (``multihead``), every module
outside that backbone (its ``heads``). The pretrained layers between the last block and the head
(EfficientNet's ``conv_head``/``bn2``, MobileNetV3's ``conv_head``, ConvNeXt's ``head.norm``, ViT's
``norm``/``fc_norm``) make the features, so they belong to the last stage: ``backbone: none`` trains
exactly the newly initialised layers, whatever the timm family.

Frozen BatchNorm layers are put in eval mode so their running statistics do not drift; but
``model.train()`` turns them back to train mode, so call ``freeze_bn_of_frozen(model)`` after every
``model.train()``.
"""
from timm.models._manipulate import group_with_matcher
from torch import nn

from .errors import RecipeError

# A name no timm matcher knows: it lands in the group of the layers timm leaves unmatched.
_UNMATCHED_PROBE = "\0fashion-unmatched"


def _split(model):
    """-> (timm backbone, prefix of its names inside ``model``)."""
    backbone = getattr(model, "backbone", model)
    if not callable(getattr(backbone, "group_matcher", None)):
        raise RecipeError(
            f"freezing needs a timm backbone (one with group_matcher()), not {type(backbone).__name__}; "
            "leave the whole model trainable ('all')"
        )
    return backbone, "backbone." if backbone is not model else ""


def _trainable_names(model, stages):
    """-> predicate: parameter or buffer name of ``model`` -> whether it trains."""
    backbone, prefix = _split(model)
    names = [n for n, _ in backbone.named_parameters()] + [n for n, _ in backbone.named_buffers()]
    group = group_with_matcher(
        ((n, None) for n in names + [_UNMATCHED_PROBE]), backbone.group_matcher(coarse=True), reverse=True
    )
    unmatched = group.pop(_UNMATCHED_PROBE)
    order = sorted({g for g in group.values() if g != unmatched}) or [unmatched]
    if stages == "all":
        stages = len(order)
    elif stages == "none":
        stages = 0
    elif isinstance(stages, bool) or not isinstance(stages, int) or not 0 <= stages <= len(order):
        raise RecipeError(
            f"backbone: expected 'all', 'none' or a number of last stages to train (0 to {len(order)} "
            f"for {type(backbone).__name__}), got {stages!r}"
        )
    train = set(order[len(order) - stages:])
    if order[-1] in train:
        train.add(unmatched)  # the pre-logits layers go with the last stage
    classifier = backbone.get_classifier()
    head = {f"{n}.{k}" for n, m in backbone.named_modules() if m is classifier for k in m.state_dict()}

    def trainable(name):
        if not name.startswith(prefix):
            return True  # outside the backbone: the heads
        name = name[len(prefix):]
        return name in head or group[name] in train

    return trainable


def set_trainable(model, backbone="all"):
    """Make the head and the last ``backbone`` stages ('all', 'none' or K) trainable; -> trainable parameter count.

    Also puts the BatchNorm layers of frozen stages in eval mode (see ``freeze_bn_of_frozen``) and
    the others back in the model's mode, so it can be called again to unfreeze more.
    """
    trainable = _trainable_names(model, backbone)
    for name, param in model.named_parameters():
        param.requires_grad_(trainable(name))
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._NormBase) and module.track_running_stats:
            module.fashion_frozen = not trainable(f"{name}.running_mean")
            module.train(model.training and not module.fashion_frozen)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def freeze_bn_of_frozen(model):
    """Put the BatchNorm layers that ``set_trainable`` froze back in eval mode; call after ``model.train()``."""
    for module in model.modules():
        if getattr(module, "fashion_frozen", False):
            module.eval()
    return model
