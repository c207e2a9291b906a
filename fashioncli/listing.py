"""What `fashion recipes`, `fashion models` and `fashion version` list: plain data, printed by cli.py."""
import fnmatch
import platform

from . import __version__

GLOB = set("*?[")


def matches(name, pattern):
    """Whether ``name`` fits ``pattern``: a glob when it has * ? or [, else a substring; any case."""
    if pattern is None:
        return True
    name, pattern = name.lower(), pattern.lower()
    return fnmatch.fnmatchcase(name, pattern) if GLOB & set(pattern) else pattern in name


def as_glob(pattern):
    """The glob ``matches`` applies: a bare word matches anywhere in a name."""
    return pattern if GLOB & set(pattern) else f"*{pattern}*"


def recipe_names(prefix=""):
    """The bundled recipe names starting with ``prefix`` (shell completion)."""
    from .recipe import bundled_names

    return [n for n in bundled_names() if n.startswith(prefix)]


def recipes(pattern=None):
    """[{name, description, task, model}] of the bundled recipes whose name fits ``pattern``.

    Read with their bases merged but not validated: listing imports no plugin (nor torch).
    """
    from . import recipe

    out = []
    for name in recipe.bundled_names():
        if not matches(name, pattern):
            continue
        data = recipe.read_merged(name)
        model = data.get("model")
        out.append({"name": name, "description": str(data.get("description") or ""),
                    "task": data.get("task", recipe.DEFAULTS["task"]),
                    "model": model.get("name") if isinstance(model, dict) else model})
    return out


def models(pattern=None, pretrained=False):
    """{"registered": [{name, plugin, description}], "timm": [backbone names]} fitting ``pattern``.

    Registered models are what a recipe's model.name takes (the plugins'); timm backbones are what
    the `timm` model's args.backbone takes (``pretrained``: only those timm has weights for).
    """
    import timm

    from .plugins import get

    registered = [{"name": e.name, "plugin": e.plugin, "description": e.description}
                  for e in get("models") if matches(e.name, pattern)]
    backbones = timm.list_models(as_glob(pattern) if pattern else "", pretrained=pretrained)
    return {"registered": sorted(registered, key=lambda e: e["name"]), "timm": backbones}


def versions():
    """fashion's version and what it runs on: Python, torch, CUDA, onnxruntime, timm, the plugins."""
    import torch

    from .plugins import list_plugins

    try:
        import onnxruntime

        ort = onnxruntime.__version__
    except ImportError:
        ort = None
    import timm

    plugins = list_plugins(all_plugins=True)
    cuda = torch.cuda.is_available()
    return {
        "fashion": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": {"available": cuda, "version": torch.version.cuda,
                 "devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else []},
        "onnxruntime": ort,
        "timm": timm.__version__,
        "plugins": {"total": len(plugins), "third_party": sum(not p["builtin"] for p in plugins)},
    }


def version_text(info):
    """``versions()`` as the lines `fashion --version` prints."""
    cuda = info["cuda"]
    if cuda["available"]:
        gpu = f"CUDA {cuda['version']}, {len(cuda['devices'])} GPU(s): {', '.join(cuda['devices'])}"
    else:
        gpu = f"CUDA not available (torch built {'with CUDA ' + cuda['version'] if cuda['version'] else 'for CPU only'})"
    plugins = info["plugins"]
    return "\n".join([
        f"fashion {info['fashion']}",
        f"python {info['python']}",
        f"torch {info['torch']}, {gpu}",
        f"onnxruntime {info['onnxruntime'] or 'not installed'}",
        f"timm {info['timm']}",
        f"plugins {plugins['total']} ({plugins['third_party']} third-party)",
    ])
