"""Optimizers (timm's registry) and learning-rate schedules named in a recipe (warm-up applies to every schedule)."""
import inspect
import math

import torch

from .errors import RecipeError, did_you_mean


def optimizer_names():
    """Every optimizer timm's ``create_optimizer_v2`` builds (sgd, adamw, lamb, lion, ...)."""
    from timm.optim import list_optimizers

    return list_optimizers()


def check_optimizer_name(value, path):
    """Recipe validator for optimizer.name: unknown names list the known ones."""
    names = optimizer_names()
    if value not in names:
        raise RecipeError(f"{path}: '{value}' is not an optimizer timm knows{did_you_mean(value, names)}; "
                          f"known: {', '.join(names)}")
    return value


def build_optimizer(model, cfg):
    """timm's ``create_optimizer_v2``: no weight decay on biases and norm layers; ``layer_decay``
    scales each layer group's lr by layer_decay ** (depth from the head), so pretrained early layers
    move less than the new head. The scale is folded into each group's lr here, because our
    schedules (below) are torch's, which know nothing of timm's ``lr_scale``."""
    from timm.optim import create_optimizer_v2, get_optimizer_class

    name = cfg["name"]
    extra = {"betas": tuple(cfg["betas"])}  # timm drops betas for optimizers without them
    if "nesterov" in inspect.signature(get_optimizer_class(name, bind_defaults=False)).parameters:
        extra["nesterov"] = cfg["nesterov"]  # our sgd is plain momentum unless asked (timm's defaults to Nesterov)
    layer_decay = cfg.get("layer_decay")
    if layer_decay is not None and not callable(getattr(model, "group_matcher", None)):
        raise RecipeError(f"optimizer.layer_decay: needs a timm model (one with group_matcher()), "
                          f"not {type(model).__name__}; remove the key")
    optimizer = create_optimizer_v2(model, name, lr=cfg["lr"], weight_decay=cfg["weight_decay"],
                                    momentum=cfg["momentum"], layer_decay=layer_decay, **extra)
    for group in optimizer.param_groups:
        group["lr"] = group["lr"] * group.get("lr_scale", 1.0)
    return optimizer


def set_lr(optimizer, lr):
    """Give every group ``lr`` times its layer-decay scale (a stage of staged fine-tuning)."""
    for group in optimizer.param_groups:
        group["lr"] = group["initial_lr"] = lr * group.get("lr_scale", 1.0)


def current_lr(optimizer):
    """The largest group lr: the head's under layer decay, the only one otherwise."""
    return max(group["lr"] for group in optimizer.param_groups)


def build_scheduler(optimizer, cfg, epochs, steps_per_epoch, base_lr):
    """A per-step scheduler: call ``.step()`` after every optimizer step. Each parameter group
    follows the schedule from its own lr (layer decay keeps its ratios)."""
    total = max(1, epochs * steps_per_epoch)
    if cfg["name"] == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=[g["lr"] for g in optimizer.param_groups],
                                                   total_steps=total, pct_start=cfg["pct_start"])
    warmup = int(cfg["warmup_epochs"] * steps_per_epoch)
    min_ratio = cfg["min_lr"] / base_lr

    def factor(step):
        if step < warmup:
            return (step + 1) / warmup
        epoch = step // steps_per_epoch
        if cfg["name"] == "cosine":
            t = (step - warmup) / max(1, total - warmup)
            return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
        if cfg["name"] == "step":
            return cfg["gamma"] ** (epoch // cfg["step_size"])
        if cfg["name"] == "exponential":
            return cfg["gamma"] ** epoch
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
