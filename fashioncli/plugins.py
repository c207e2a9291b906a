"""The plugin manager: built-ins and entry-point plugins, loaded once, through the same hooks."""
import importlib
import importlib.metadata
import os
from contextlib import contextmanager

import pluggy

from . import hookspecs
from .errors import PluginError
from .registry import KINDS, SINGULAR, Registry

# Built-in plugins register exactly like third-party ones; only their origin differs.
BUILTIN_PLUGINS = (
    "fashioncli.tasks",
    "fashion_plugins.models.timm_models",
    "fashion_plugins.models.multihead",
    "fashion_plugins.models.prototype",
    "fashion_plugins.models.segmentation",
    "fashion_plugins.losses.classification",
    "fashion_plugins.losses.prototype",
    "fashion_plugins.losses.segmentation",
    "fashion_plugins.datasets.folder",
    "fashion_plugins.datasets.table",
    "fashion_plugins.datasets.synthetic_clothing",
    "fashion_plugins.datasets.synthetic_segmentation",
    "fashion_plugins.datasets.clothing_dataset",
    "fashion_plugins.datasets.fashion_mnist",
    "fashion_plugins.datasets.fashion_product",
    "fashion_plugins.datasets.deepfashion",
    "fashion_plugins.datasets.imat_tags",
    "fashion_plugins.datasets.coco_seg",
    "fashion_plugins.datasets.imaterialist_csv",
    "fashion_plugins.datasets.mat_seg",
    "fashion_plugins.datasets.segmentation_folder",
    "fashion_plugins.metrics.classification",
    "fashion_plugins.exporters.standard",
    "fashion_plugins.loggers.tensorboard_logger",
    "fashion_plugins.loggers.mlflow_logger",
)

pm = pluggy.PluginManager("fashion")
pm.add_hookspecs(hookspecs)
_registries = None
_commands = None  # name -> (click command, plugin), from register_commands
_versions = {}  # entry-point plugin name -> its distribution version


def _plugin_name(plugin):
    return pm.get_name(plugin) or getattr(plugin, "__name__", repr(plugin))


def load_plugins():
    """Register built-ins and every ``fashion`` entry point once.

    ``FASHION_LOAD_PLUGINS=a,b`` limits third-party plugins to those names ('' loads none).
    """
    if getattr(pm, "_fashion_loaded", False):
        return
    pm._fashion_loaded = True
    for mod_name in BUILTIN_PLUGINS:
        pm.register(importlib.import_module(mod_name), name=mod_name)
    allowed = os.environ.get("FASHION_LOAD_PLUGINS")
    allowed = None if allowed is None else {n.strip() for n in allowed.split(",") if n.strip()}
    for ep in importlib.metadata.entry_points(group="fashion"):
        if allowed is not None and ep.name not in allowed:
            continue
        if pm.get_plugin(ep.name) is not None:
            continue
        try:
            module = ep.load()
        except Exception as exc:  # a broken third-party plugin must say who it is
            raise PluginError(f"plugin '{ep.name}' failed to import: {exc}") from exc
        pm.register(module, name=ep.name)
        dist = getattr(ep, "dist", None)
        if dist is not None:
            _versions[ep.name] = dist.version
    _check_hooks()



def _check_hooks():
    """A misspelled hook (``register_model`` for ``register_models``) is an error, not a silent no-op."""
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin '{_plugin_name(exc.plugin)}': {exc}") from exc


def registries():
    """kind -> Registry, filled by calling every plugin's register hooks."""
    global _registries
    if _registries is None:
        load_plugins()
        _registries = _collect()
    return _registries


def _collect():
    regs = {kind: Registry(kind) for kind in KINDS}
    for kind in KINDS:
        hook = getattr(pm.hook, f"register_{kind}")
        for impl in hook.get_hookimpls():
            plugin = impl.plugin_name

            def register(name, factory, description=None, _reg=regs[kind], _plugin=plugin, **extra):
                _reg.add(name, factory, _plugin, description, **extra)

            impl.function(**{name: register for name in impl.argnames})
    return regs


def get(kind):
    return registries()[kind]


def plugin_commands():
    """{name: (click command, plugin name)} of the sub-commands plugins add through ``register_commands``."""
    global _commands
    if _commands is None:
        import click

        load_plugins()
        found = {}
        for impl in pm.hook.register_commands.get_hookimpls():
            group = click.Group()
            impl.function(**{name: group for name in impl.argnames})
            for name, command in group.commands.items():
                if name in found:
                    raise PluginError(f"command '{name}' is added twice: by plugin '{found[name][1]}' "
                                      f"and by plugin '{impl.plugin_name}'")
                found[name] = (command, impl.plugin_name)
        _commands = found
    return _commands


def register_plugin(plugin, name=None):
    """Register a plugin object at run time (tests, notebooks) and refresh the registries."""
    load_plugins()
    pm.register(plugin, name=name)
    _check_hooks()
    _forget()
    try:
        registries()
    except Exception:
        unregister_plugin(plugin)
        raise


@contextmanager
def plugin_registered(plugin, name=None):
    """Register ``plugin`` for the duration of a with-block (tests, notebooks)."""
    register_plugin(plugin, name=name)
    try:
        yield plugin
    finally:
        unregister_plugin(plugin)


def unregister_plugin(plugin):
    pm.unregister(plugin)
    _forget()


def _forget():
    """The plugins changed: collect registries and commands again when next asked."""
    global _registries, _commands
    _registries = _commands = None


def list_plugins(all_plugins=False):
    """[{name, version, builtin, hooks, registered: {kind: [names]}}] for ``fashion plugins``."""
    regs = registries()
    out = []
    for plugin in pm.get_plugins():
        name = _plugin_name(plugin)
        builtin = name in BUILTIN_PLUGINS
        if builtin and not all_plugins:
            continue
        registered = {
            kind: [e.name for e in regs[kind] if e.plugin == name] for kind in KINDS
        }
        info = {
            "name": name,
            "builtin": builtin,
            "hooks": sorted(h.name for h in pm.get_hookcallers(plugin) or []),
            "registered": {k: v for k, v in registered.items() if v},
        }
        if name in _versions:
            info["version"] = _versions[name]
        elif builtin:
            from . import __version__

            info["version"] = __version__
        out.append(info)
    return sorted(out, key=lambda p: (p["builtin"], p["name"]))


# Parameters fashion passes itself, never a user: not shown as arguments.
INJECTED = {"datasets": ("source", "out"), "models": ("num_classes", "heads"), "metrics": ("num_classes",)}


def describe(name):
    """What ``fashion plugins NAME`` shows: every component registered as ``name`` (an importer, a
    model, a loss, ...) with its arguments' defaults and meanings -> [{kind, name, plugin,
    description, arguments}]; UnknownNameError listing the registered names when none is."""
    from .errors import UnknownNameError, did_you_mean

    regs = registries()
    found = [{"kind": SINGULAR[kind], "name": name, "plugin": e.plugin, "description": e.description,
              "arguments": e.arguments(INJECTED.get(kind, ()))}
             for kind in KINDS for e in regs[kind] if e.name == name]
    if not found:
        known = sorted({e.name for kind in KINDS for e in regs[kind]})
        raise UnknownNameError(f"nothing is registered as '{name}'{did_you_mean(name, known)}; "
                               f"see `fashion plugins` for the names")
    return found
