"""One timm backbone shared by several heads: a multi-task model for multi-head datasets."""
from torch import nn

from fashioncli.api import RecipeError, did_you_mean, hookimpl

from fashion_plugins.models.timm_models import create_timm, timm_preprocessing, zero_init_

HEAD_KEYS = ("outputs", "hidden", "batch_norm", "dropout")


def _check_head(name, spec):
    if not isinstance(spec, dict):
        raise RecipeError(f"head '{name}': expected a mapping of {', '.join(HEAD_KEYS)}, got {spec!r}")
    for key in spec:
        if key not in HEAD_KEYS:
            raise RecipeError(f"head '{name}': unknown key '{key}'{did_you_mean(key, HEAD_KEYS)}; a head takes {', '.join(HEAD_KEYS)}")
    outputs, hidden = spec.get("outputs"), spec.get("hidden") or []
    if isinstance(outputs, bool) or not isinstance(outputs, int) or outputs < 1:
        raise RecipeError(f"head '{name}': outputs must be a positive integer, got {outputs!r}")
    if not isinstance(hidden, (list, tuple)) or any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in hidden):
        raise RecipeError(f"head '{name}': hidden must be a list of positive integers (layer widths), got {hidden!r}")
    dropout = spec.get("dropout") or 0.0
    if not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise RecipeError(f"head '{name}': dropout must be a number in [0, 1), got {dropout!r}")
    return outputs, list(hidden), bool(spec.get("batch_norm", False)), float(dropout)


def head_mlp(in_features, outputs, hidden=(), batch_norm=False, dropout=0.0):
    """Linear -> [BatchNorm1d] -> ReLU -> [Dropout] per hidden width, then [Dropout] and the output Linear.

    The dropout before the output Linear is the last hidden layer's own; it is added on its own only
    when there are no hidden layers, so dropout is never applied twice in a row.
    """
    layers, width = [], in_features
    for h in hidden:
        layers += [nn.Linear(width, h)] + ([nn.BatchNorm1d(h)] if batch_norm else []) + [nn.ReLU(inplace=True)]
        layers += [nn.Dropout(dropout)] if dropout else []
        width = h
    if dropout and not hidden:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(width, outputs))
    return nn.Sequential(*layers)


class MultiHead(nn.Module):
    """timm backbone (pooled features) -> shared dropout -> one MLP per head; forward returns {head: logits}."""

    def __init__(self, backbone, heads, drop_rate=0.0):
        super().__init__()
        self.backbone = backbone
        self.drop = nn.Dropout(drop_rate) if drop_rate else nn.Identity()
        # head_hidden_size: the width after timm's pre-logits layers (e.g. MobileNetV3's conv_head).
        width = getattr(backbone, "head_hidden_size", None) or backbone.num_features
        self.heads = nn.ModuleDict({name: head_mlp(width, *_check_head(name, spec)) for name, spec in heads.items()})

    def forward(self, x):
        features = self.drop(self.backbone(x))
        return {name: head(features) for name, head in self.heads.items()}


def multihead(backbone, heads, pretrained=False, drop_rate=0.0, drop_path_rate=None, pool="avg"):
    """One timm backbone shared by one MLP head per task; returns {head: logits}."""
    if not isinstance(heads, dict) or not heads:
        raise RecipeError(f"multihead needs at least one head as {{name: {{outputs: N, ...}}}}, got {heads!r}")
    # The backbone's own drop_rate is left at 0: the shared dropout lives here, so that it is the
    # same for every timm family (each applies its own drop_rate at a different place).
    kwargs = {"global_pool": pool}
    if drop_path_rate is not None:
        kwargs["drop_path_rate"] = drop_path_rate
    model, loaded = create_timm(backbone, pretrained, num_classes=0, **kwargs)
    multi = MultiHead(model, heads, drop_rate)
    if loaded:
        for head in multi.heads.values():
            zero_init_(head[-1])
    return multi


@hookimpl
def register_models(register):
    register("multihead", multihead, tasks=("multitask",), preprocessing=timm_preprocessing)
