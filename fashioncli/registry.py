"""Named factories per component kind, filled by plugins through the register hooks."""
import inspect
from dataclasses import dataclass, field
from typing import Annotated, Callable, get_args, get_origin

from .errors import PluginError, RecipeError, UnknownNameError, did_you_mean
from .preprocessing import check_declared

KINDS = ("tasks", "models", "losses", "datasets", "metrics", "exporters", "loggers")
SINGULAR = {"tasks": "task", "models": "model", "losses": "loss", "datasets": "dataset", "metrics": "metric", "exporters": "exporter",
            "loggers": "logger"}


@dataclass
class Entry:
    name: str
    factory: Callable
    plugin: str
    kind: str
    description: str = ""
    extra: dict = field(default_factory=dict)

    def arguments(self, injected=()):
        """[{"name", "default", "meaning"}] of the factory's parameters (``default`` absent: required).

        The signature is the one declaration of a component's arguments: a parameter's meaning is
        the text of its ``Annotated`` type (``image_col: Annotated[str, "the column of image paths"]
        = None``, as Typer and FastAPI declare options); ``check_args`` validates against it too."""
        out = []
        try:  # a module with `from __future__ import annotations` keeps them as text
            params = inspect.signature(self.factory, eval_str=True).parameters
        except Exception:  # an annotation naming what its module cannot resolve: no meanings, still the names
            params = inspect.signature(self.factory).parameters
        for name, p in params.items():
            if name in injected or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            meta = get_args(p.annotation)[1:] if get_origin(p.annotation) is Annotated else ()
            out.append({"name": name, **({} if p.default is p.empty else {"default": p.default}),
                        "meaning": " ".join(str(m) for m in meta)})
        return out

    def check_args(self, args, injected=(), where=None, key="args"):
        """Fail before any work if ``args`` (at ``where``.``key``, or right under ``where`` when ``key``
        is None) do not fit the factory's signature."""
        where = where or f"{self.kind}.{self.name}"
        at = f"{where}.{key}" if key else where
        sig = inspect.signature(self.factory)
        params = sig.parameters
        takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in params.values())
        for arg in args:
            if arg in injected:
                raise RecipeError(f"{at}.{arg}: set by fashion itself, remove it from the recipe")
            if arg not in params and not takes_kwargs:
                known = [p for p in params if p not in injected and params[p].kind is not inspect.Parameter.VAR_POSITIONAL]
                raise RecipeError(
                    f"{at}.{arg}: unknown argument{did_you_mean(arg, known)}; "
                    f"'{self.name}' takes: {', '.join(known) or 'no arguments'}"
                )
        missing = [
            n for n, p in params.items()
            if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
            and n not in args and n not in injected
        ]
        if missing:
            raise RecipeError(f"{at}: '{self.name}' needs {', '.join(missing)}")


class Registry:
    """One kind of component: name -> Entry. Duplicates are errors naming both plugins."""

    def __init__(self, kind):
        self.kind = kind
        self._entries = {}

    def add(self, name, factory, plugin, description=None, **extra):
        if not callable(factory):
            raise PluginError(f"plugin '{plugin}' registered {SINGULAR[self.kind]} '{name}' with a non-callable factory")
        if name in self._entries:
            other = self._entries[name].plugin
            raise PluginError(
                f"{SINGULAR[self.kind]} '{name}' is registered twice: by plugin '{other}' and by plugin '{plugin}'"
            )
        if self.kind == "models":
            check_declared(extra.get("preprocessing"), plugin, name)
        doc = description or (inspect.getdoc(factory) or "").split("\n")[0]
        self._entries[name] = Entry(name, factory, plugin, self.kind, doc, extra)

    def get(self, name):
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            known = sorted(self._entries)
            raise UnknownNameError(
                f"unknown {SINGULAR[self.kind]} '{name}'{did_you_mean(name, known)}; known: {', '.join(known)}"
            ) from None

    def create(self, name, *args, **kwargs):
        return self.get(name).factory(*args, **kwargs)

    def names(self):
        return sorted(self._entries)

    def __contains__(self, name):
        return name in self._entries

    def __iter__(self):
        return iter(self._entries.values())
