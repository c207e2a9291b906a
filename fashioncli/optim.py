"""Optimizers and learning-rate schedules named in a recipe (warm-up applies to every schedule)."""
import math

import torch


def build_optimizer(params, cfg):
    name, lr, wd = cfg["name"], cfg["lr"], cfg["weight_decay"]
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=cfg["momentum"], weight_decay=wd, nesterov=cfg["nesterov"])
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd, betas=tuple(cfg["betas"]))
    return torch.optim.AdamW(params, lr=lr, weight_decay=wd, betas=tuple(cfg["betas"]))


def build_scheduler(optimizer, cfg, epochs, steps_per_epoch, base_lr):
    """A per-step scheduler: call ``.step()`` after every optimizer step."""
    total = max(1, epochs * steps_per_epoch)
    if cfg["name"] == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=base_lr, total_steps=total, pct_start=cfg["pct_start"])
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
