"""Checkpoints: tensors in a .pt loaded with weights_only (no pickled code), metadata in JSON."""
import json
import zipfile
from pathlib import Path

import torch
import yaml

from . import __version__
from .errors import CheckpointError
from .io import atomic_path, write_json
from .model_meta import check_outputs, parse_metadata
from .tasks import task_of

FORMAT_VERSION = 1


def save_checkpoint(path, model, meta, **state):
    """Write ``path`` (.pt) and its ``.json`` metadata atomically.

    ``state`` holds what resume needs (optimizer, scheduler, scaler state dicts, epoch, ...).
    """
    path = Path(path)
    model = getattr(model, "module", model)  # unwrap DDP / compile
    model = getattr(model, "_orig_mod", model)
    meta = {"format_version": FORMAT_VERSION, "fashion_version": __version__, **meta}
    payload = {"model": model.state_dict(), "meta_json": json.dumps(meta, default=str), **state}
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(payload, f)  # a file object: a full disk is an OSError, not torch's RuntimeError
    write_json(path.with_suffix(".json"), meta)


def _preferred(run):
    """best or last: the run recipe's eval.checkpoint (a fixed schedule's last epoch can be the one meant)."""
    try:
        recipe = yaml.safe_load((run / "recipe.yaml").read_text(encoding="utf-8"))
        return recipe["eval"]["checkpoint"]
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return "best"


def resolve_path(path):
    """A run directory means the checkpoint its recipe's eval.checkpoint names (best by default)."""
    path = Path(path)
    if path.is_dir():
        first = path / "checkpoints" / f"{_preferred(path)}.pt"
        for candidate in (first, path / "checkpoints" / "best.pt", path / "best.pt", path / "checkpoints" / "last.pt"):
            if candidate.is_file():
                return candidate
        raise CheckpointError(f"no checkpoint in '{path}' (looked for checkpoints/best.pt and last.pt)")
    if not path.is_file():
        raise CheckpointError(f"checkpoint '{path}' does not exist")
    return path


def run_dir(checkpoint):
    """The run directory of <run>/checkpoints/X.pt; the folder of any other checkpoint file."""
    parent = Path(checkpoint).parent
    return parent.parent if parent.name == "checkpoints" else parent


def load_checkpoint(path):
    """-> (payload, meta). Refuses anything but tensors and plain containers."""
    path = resolve_path(path)
    if _is_program(path):  # torch.load would hand it to torch.jit.load without weights_only
        raise CheckpointError(f"'{path}' is not a fashion checkpoint: it is a TorchScript program, and loading it "
                              "would run its code; predict a TorchScript export under its own suffix (.torchscript) "
                              "with --trust-torchscript, and only if you trust its source")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"'{path}' is not a fashion checkpoint or holds unsafe objects: {exc}") from None
    if not isinstance(payload, dict) or "model" not in payload or "meta_json" not in payload:
        raise CheckpointError(f"'{path}' is not a fashion checkpoint (no model weights and metadata)")
    return payload, parse_metadata(payload["meta_json"], path, checkpoint=True)


def _is_program(path):
    """A TorchScript archive (a zip with the program's constants and code), whatever its name."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(n.endswith(("/constants.pkl", ".py")) or "/code/" in n for n in z.namelist())


def build_model(meta):
    """The model a checkpoint's metadata describes, without downloading pretrained weights."""
    from .plugins import get

    spec = meta["model"]
    args = {k: v for k, v in (spec.get("args") or {}).items() if k != "pretrained"}
    # What fashion passed besides the recipe's args (older checkpoints: a classifier's classes).
    injected = spec.get("injected") or {"num_classes": len(meta["classes"])}
    return get("models").create(spec["name"], **injected, **args)


def _build(meta, path):
    try:
        return build_model(meta)
    except Exception as exc:  # a factory given arguments it does not take raises anything
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise CheckpointError(f"'{path}': its metadata describes a model that cannot be built ({first})") from None


def _outputs(model, meta):
    """[(name, shape)] of what ``model`` returns for one image, as an engine of its task returns it."""
    size = meta["preprocessing"]["image_size"]
    return task_of(meta).output_shapes(model.eval()(torch.empty(1, 3, size, size, device="meta")))


def check_fits(weights, meta, path):
    """The model the metadata describes, built on the meta device (no memory), against the
    weights' shapes and the task and classes the metadata claims: a one-line error, not a
    size-mismatch traceback or an allocation as large as a tampered size asks for."""
    if not isinstance(weights, dict) or not all(torch.is_tensor(w) for w in weights.values()):
        raise CheckpointError(f"'{path}': its model weights are not a mapping of tensors")
    with torch.device("meta"):
        model = _build(meta, path)
    expected = model.state_dict()
    missing, unexpected = sorted(set(expected) - set(weights)), sorted(set(weights) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"'{path}': the weights do not fit model '{meta['model']['name']}' its metadata "
                              f"describes (missing: {', '.join(missing[:3]) or '-'}; unexpected: "
                              f"{', '.join(unexpected[:3]) or '-'})")
    for key, tensor in expected.items():
        if tuple(tensor.shape) != tuple(weights[key].shape):
            raise CheckpointError(
                f"'{path}': its weights do not fit the model its metadata describes: {key} is "
                f"{tuple(weights[key].shape)} in the file, {tuple(tensor.shape)} for the metadata's classes and model")
    try:
        with torch.no_grad():
            outputs = _outputs(model, meta)
    except Exception:  # an operation without a meta kernel, or an input size the model refuses: built for
        return  # real, the model meets the same input in predict and eval, which report it there
    check_outputs(meta, path, outputs)


def load_model(path, device="cpu"):
    """-> (model in eval mode, meta)."""
    payload, meta = load_checkpoint(path)
    check_fits(payload["model"], meta, path)
    model = _build(meta, path)
    try:
        model.load_state_dict(payload["model"])
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint weights do not fit model '{meta['model']['name']}': {exc}") from None
    return model.to(device).eval(), meta
