"""Reproduction manifests: a report's results table as data.

A manifest names the report, its table's columns (metrics in eval's summary.json) and its rows
(one recipe per scale, and the report's figure for each cell). The bundled ones are in
``fashion_recipes/reproduce/`` (``000`` ... ``004``); a third-party report ships its own YAML
beside its recipes, and recipe paths in it are read relative to the manifest.

    report: "001"
    title: Clothing semantic segmentation, loss study (Table 1)
    columns:                       # id -> heading; the id is the summary.json metric by default
      fg_bg_miou: mIoU, 2 classes
    rows:
      - name: UNet, mIoU loss
        recipes: {cpu: report001_unet_miou_cpu, full: report001_unet_miou}
        reference: {fg_bg_miou: 0.8745}   # default: the recipe's eval.reference
        metrics: {fg_bg_miou: fg_bg_miou} # column -> dotted path in summary.json "metrics"
        minutes: {cpu: 13.6}             # recorded training time, for --dry-run's estimate
"""
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..errors import RecipeError, did_you_mean
from ..userfiles import UnreadableFile, read_bytes

SCALES = ("cpu", "full")
MAX_BYTES = 1 << 20


@dataclass(frozen=True)
class Row:
    name: str
    recipes: dict  # scale -> recipe spec (bundled name or path)
    reference: dict = field(default_factory=dict)  # column -> the report's figure
    metrics: dict = field(default_factory=dict)  # column -> dotted path in summary.json "metrics"
    minutes: dict = field(default_factory=dict)  # scale -> recorded training minutes
    overrides: tuple = ()  # --set style overrides the row applies to its recipe

    def metric_path(self, column):
        return self.metrics.get(column, column)


@dataclass(frozen=True)
class Manifest:
    report: str
    title: str
    columns: dict  # id -> heading, in table order
    rows: tuple
    location: str
    notes: str = ""


def bundled_dir():
    from ..recipe import bundled_dir as recipes_dir

    return recipes_dir() / "reproduce"


def bundled_reports():
    return sorted(p.stem for p in bundled_dir().glob("*.yaml"))


def locate(spec):
    """'001' (a bundled report) or a path to a manifest -> the manifest's path."""
    path = Path(str(spec))
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return path
    bundled = bundled_dir() / f"{spec}.yaml"
    if "/" not in str(spec) and bundled.is_file():
        return bundled
    known = bundled_reports()
    raise RecipeError(f"report '{spec}' is neither a manifest file nor a bundled report"
                      f"{did_you_mean(str(spec), known)}; bundled: {', '.join(known)}")


def load_manifest(spec):
    path = locate(spec)
    try:
        data = yaml.safe_load(read_bytes(path, MAX_BYTES).decode("utf-8"))
    except UnreadableFile as exc:
        raise RecipeError(f"cannot read manifest '{path}': {exc.reason}") from None
    except (yaml.YAMLError, UnicodeDecodeError, ValueError) as exc:
        raise RecipeError(f"manifest '{path}' is not valid YAML: {' '.join(str(exc).split())}") from None
    return parse(data, path)


def _mapping(value, where, of=None):
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RecipeError(f"{where}: expected a mapping, got {value!r}")
    if of is not None:
        for key, item in value.items():
            if not isinstance(item, of) or isinstance(item, bool):
                raise RecipeError(f"{where}.{key}: expected {of.__name__ if isinstance(of, type) else 'a number'}, "
                                  f"got {item!r}")
    return value


def _keys(value, allowed, where):
    for key in value:
        if key not in allowed:
            raise RecipeError(f"{where}.{key}: unknown key{did_you_mean(str(key), allowed)}; "
                              f"allowed here: {', '.join(allowed)}")


def parse(data, path):
    """The manifest mapping -> Manifest; errors name the key. Recipe paths are made relative to it."""
    where = f"manifest '{path}'"
    data = _mapping(data, where)
    _keys(data, ("report", "title", "columns", "rows", "notes"), where)
    for key in ("report", "columns", "rows"):
        if not data.get(key):
            raise RecipeError(f"{where}: '{key}' is required")
    columns = _mapping(data["columns"], f"{where} columns", str)
    if not isinstance(data["rows"], list):
        raise RecipeError(f"{where} rows: expected a list of rows")
    rows, names = [], set()
    for i, raw in enumerate(data["rows"]):
        at = f"{where} rows[{i}]"
        raw = _mapping(raw, at)
        _keys(raw, ("name", "recipes", "reference", "metrics", "minutes", "set"), at)
        name = raw.get("name")
        if not isinstance(name, str) or not name or name in names:
            raise RecipeError(f"{at}.name: a row needs a name of its own, got {name!r}")
        names.add(name)
        recipes = raw.get("recipes")
        recipes = {scale: recipes for scale in SCALES} if isinstance(recipes, str) else _mapping(recipes, f"{at}.recipes", str)
        if not recipes:
            raise RecipeError(f"{at}.recipes: give a recipe, or one per scale ({', '.join(SCALES)})")
        _keys(recipes, SCALES, f"{at}.recipes")
        recipes = {scale: _relative(spec, path) for scale, spec in recipes.items()}
        for key in ("reference", "metrics"):
            _keys(_mapping(raw.get(key), f"{at}.{key}"), tuple(columns), f"{at}.{key}")
        minutes = _mapping(raw.get("minutes"), f"{at}.minutes", (int, float))
        _keys(minutes, SCALES, f"{at}.minutes")
        overrides = raw.get("set") or []
        if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
            raise RecipeError(f"{at}.set: expected a list of KEY=VALUE overrides")
        rows.append(Row(name, recipes, _mapping(raw.get("reference"), f"{at}.reference", (int, float)),
                        _mapping(raw.get("metrics"), f"{at}.metrics", str), minutes, tuple(overrides)))
    return Manifest(str(data["report"]), str(data.get("title") or ""), dict(columns), tuple(rows), str(path),
                    str(data.get("notes") or "").strip())


def _relative(spec, manifest_path):
    """A recipe path beside a third-party manifest; bundled names stay names."""
    sibling = Path(manifest_path).parent / spec
    return str(sibling) if spec.endswith((".yaml", ".yml")) and sibling.is_file() else spec
