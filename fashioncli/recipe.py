"""Recipes: YAML with `base:` inheritance, `--set a.b=c` overrides and strict validation.

Recipes are data only: YAML goes through ``yaml.safe_load`` and nothing in a recipe is executed.
"""
import copy
import difflib
import importlib.resources
import math
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import yaml

from .errors import DataError, DeviceError, RecipeError, did_you_mean
from .userfiles import UnreadableFile, read_bytes

MAX_BASE_DEPTH = 16
MAX_BYTES = 4 << 20  # a recipe file or URL; a larger one is refused, never cut
# YAML aliases repeat a piece without copying it: 500 bytes can stand for 400 MB once written as
# JSON metadata. The tree as written out (nodes plus characters) and its nesting are bounded.
MAX_EXPANDED = 2 * MAX_BYTES  # no recipe within MAX_BYTES reaches it without aliases
MAX_NESTING = 32
# What yaml.safe_load raises on hostile text: YAML syntax, impossible dates (2020-13-45 is a
# timestamp to YAML), nesting deeper than Python's stack.
_YAML_ERRORS = (yaml.YAMLError, ValueError, RecursionError)


# ---------------------------------------------------------------- loading

def bundled_dir():
    return Path(str(importlib.resources.files("fashion_recipes")))


def bundled_names():
    root = bundled_dir()
    return sorted(p.stem for p in root.glob("*.yaml"))


def _is_url(spec):
    return str(spec).startswith(("http://", "https://"))


def _is_file(path):
    try:
        return Path(path).is_file()
    except (OSError, ValueError):  # a name too long for the file system, or with a NUL in it
        return False


def _bundled(spec):
    """The bundled recipe called ``spec`` ('name', 'name.yaml', '_base/x.yaml'), or None; never a
    path outside the bundled folder (a remote recipe may name bundled bases, nothing else local)."""
    root = bundled_dir().resolve()
    try:
        path = (root / (spec if spec.endswith(".yaml") else f"{spec}.yaml")).resolve()
    except (OSError, ValueError):
        return None
    return str(path) if path.is_relative_to(root) and _is_file(path) else None


def is_recipe(spec):
    """Whether ``spec`` names a recipe: an http(s) URL, a file, or a bundled recipe."""
    return _is_url(spec) or _is_file(spec) or _bundled(spec) is not None


def _locate(spec, relative_to=None):
    """A URL, or an existing file, or a bundled recipe ('name', 'name.yaml', '_base/x.yaml')."""
    if relative_to is not None and _is_url(relative_to):
        return _locate_remote_base(spec, relative_to)
    if relative_to is not None and not _is_url(spec) and not Path(spec).is_absolute():
        sibling = Path(relative_to).parent / spec
        if _is_file(sibling):
            return str(sibling)
    if _is_url(spec) or _is_file(spec):
        return spec
    bundled = _bundled(spec)
    if bundled:
        return bundled
    names = bundled_names()
    raise RecipeError(
        f"recipe '{spec}' is neither a file nor a bundled recipe{did_you_mean(spec, names)}; bundled: {', '.join(names)}"
    )


def _locate_remote_base(spec, url):
    """A base named by a recipe from ``url``: a URL, a bundled recipe by name, or a path relative to
    ``url``. Never a local file: a server must not make `fashion` read (and echo) /etc/passwd."""
    if _is_url(spec):
        return spec
    bundled = _bundled(spec)
    if bundled:
        return bundled
    if urlsplit(spec).scheme or Path(spec).is_absolute() or spec.startswith(("/", "\\", "~")):
        raise RecipeError(f"base: '{spec}' in '{url}': a recipe from a URL may name URLs, bundled recipes "
                          f"or paths relative to itself, not local files")
    return urljoin(url, spec)


def _read(spec, relative_to=None, fetched=None):
    """-> (dict, location) for a bundled name, a path or an http(s) URL; ``fetched`` holds the
    text of each URL already fetched by this load, so each is fetched once."""
    location = _locate(str(spec), relative_to)
    fetched = {} if fetched is None else fetched
    if _is_url(location):
        from .download import fetch

        if location not in fetched:
            try:
                fetched[location] = fetch(location, MAX_BYTES)
            except DataError as exc:
                raise RecipeError(f"cannot fetch recipe '{location}': {exc}") from None
        raw = fetched[location]
    else:
        try:
            raw = read_bytes(location, MAX_BYTES)
        except UnreadableFile as exc:
            raise RecipeError(f"cannot read recipe '{location}': {exc.reason}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecipeError(f"cannot read recipe '{location}': not UTF-8 text "
                          f"({exc.reason} at byte {exc.start})") from None
    try:
        data = yaml.safe_load(text)
    except _YAML_ERRORS as exc:  # PyYAML's messages span lines: the CLI prints errors as one
        raise RecipeError(f"recipe '{location}' is not valid YAML: {' '.join(str(exc).split())}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RecipeError(f"recipe '{location}' must be a mapping of keys, not {type(data).__name__}")
    check_size(data, f"recipe '{location}'")
    return data, location


def check_size(data, what):
    """RecipeError when ``data``, written out in full (YAML aliases repeated), would exceed
    MAX_EXPANDED nodes plus characters or nest deeper than MAX_NESTING (a self-referring alias
    nests forever). Shared pieces are measured once, so this takes time in the size of the YAML."""
    sizes = {}

    def size(node, depth):
        if isinstance(node, str):
            return 1 + len(node)
        if not isinstance(node, (dict, list)):
            return 1
        if id(node) in sizes:
            return sizes[id(node)]
        if depth >= MAX_NESTING:
            raise RecipeError(f"{what} nests deeper than {MAX_NESTING} levels (or a YAML alias refers to itself)")
        items = [*node.keys(), *node.values()] if isinstance(node, dict) else node
        total = 1
        for item in items:
            total += size(item, depth + 1)
            if total > MAX_EXPANDED:
                raise RecipeError(f"{what} expands to more than {MAX_EXPANDED:,} values and characters "
                                  f"(YAML aliases repeating a large piece?)")
        sizes[id(node)] = total
        return total

    size(data, 0)


DELETE = "_delete_"


def merge(base, delta):
    """Deep merge: dicts merge, lists and scalars replace. What a recipe inherits can be removed:
    ``key: null`` deletes an inherited mapping (``heads: {garments: null}`` drops that head, and
    defaults then apply where there are any), and a mapping with ``_delete_: true`` replaces the
    inherited one instead of merging into it (mmengine's rule)."""
    out = copy.deepcopy(base)
    for key, value in delta.items():
        set_key(out, key, value)
    return out


def set_key(node, key, value):
    """``node[key] = value`` under ``merge``'s rules (null deletes an inherited mapping, _delete_ replaces)."""
    if value is None and isinstance(node.get(key), dict):
        del node[key]
    elif isinstance(value, dict) and value.get(DELETE) is True:
        node[key] = copy.deepcopy({k: v for k, v in value.items() if k != DELETE})
    elif isinstance(value, dict) and isinstance(node.get(key), dict):
        node[key] = merge(node[key], value)
    else:
        node[key] = copy.deepcopy(value)


def _resolve_bases(data, location, depth=0, seen=(), fetched=None):
    if depth > MAX_BASE_DEPTH or location in seen:
        raise RecipeError(f"base: recipe '{location}' inherits from itself or nests deeper than {MAX_BASE_DEPTH}")
    bases = data.pop("base", None)
    if bases is None:
        return stamp_reference(data, data)
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise RecipeError(f"base: in '{location}' must be a path or a list of paths")
    merged = {}
    for b in bases:
        bdata, bloc = _read(b, relative_to=location, fetched=fetched)
        merged = merge(merged, _resolve_bases(bdata, bloc, depth + 1, seen + (location,), fetched))
    return stamp_reference(merge(merged, data), data)


def stamp_reference(merged, own):
    """A recipe that gives eval.reference (a report's figures) records the dataset they were
    measured on, its data.root and data.prepare.source as they stand in that recipe: eval prints
    the reference only beside figures measured on that dataset."""
    evaluation = own.get("eval") if isinstance(own, dict) else None
    if isinstance(evaluation, dict) and evaluation.get("reference") and isinstance(merged.get("eval"), dict):
        data = merged.get("data") if isinstance(merged.get("data"), dict) else {}
        prepare = data.get("prepare") if isinstance(data.get("prepare"), dict) else {}
        merged["eval"]["reference_data"] = {"root": data.get("root"), "source": prepare.get("source")}
    return merged


def parse_override(text):
    """'a.b.c=value' -> (['a','b','c'], value parsed as YAML)."""
    if "=" not in text:
        raise RecipeError(f"'{text}': expected KEY=VALUE, e.g. train.epochs=3")
    key, raw = text.split("=", 1)
    parts = key.strip().split(".")
    if len(parts) > MAX_NESTING:
        raise RecipeError(f"--set '{key[:40]}...': the key has {len(parts)} levels; recipes nest at most {MAX_NESTING}")
    if not all(parts):
        raise RecipeError(f"--set '{text}': empty part in key '{key}'")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except _YAML_ERRORS:  # not YAML: the text itself (validation refuses it where text does not fit)
        value = raw
    return parts, value


def apply_overrides(data, overrides):
    """--set a.b=c values, under ``merge``'s rules: a.b=null deletes an inherited mapping."""
    for text in overrides or ():
        parts, value = parse_override(text)
        node = data
        for i, part in enumerate(parts[:-1]):
            if not isinstance(node.get(part), dict):
                if part in node and node[part] is not None:
                    raise RecipeError(f"--set {text}: '{'.'.join(parts[:i + 1])}' is not a mapping")
                node[part] = {}
            node = node[part]
        set_key(node, parts[-1], value)
        if parts[:2] == ["eval", "reference"]:  # figures given here belong to this recipe's dataset
            stamp_reference(data, {"eval": {"reference": True}})
    return data


def load_recipe(spec, overrides=(), validate_components=True):
    """Bundled name, path or URL -> the resolved, validated recipe dict."""
    fetched = {}
    data, location = _read(spec, fetched=fetched)
    data = _resolve_bases(data, location, fetched=fetched)
    if _is_url(location):  # before --set: the user's own command line may still choose any folder
        _check_remote_output(data, location)
    log = data.get("log")
    if isinstance(log, list) and all(isinstance(name, str) for name in log):  # so --set log.mlflow.x=y reaches it
        data["log"] = {name: {} for name in log}
    data = apply_overrides(data, overrides)
    check_size(data, "the recipe with its bases and --set values")
    return validate(data, check_components=validate_components)


def read_merged(spec):
    """A recipe with its bases merged, as written: no overrides, defaults or validation (for listing)."""
    fetched = {}
    data, location = _read(spec, fetched=fetched)
    return _resolve_bases(data, location, fetched=fetched)


def _check_remote_output(data, location):
    """A recipe fetched from a URL writes only inside the working tree, and logs only where the user says."""
    log = data.get("log")
    if isinstance(log, dict):  # where a logger sends the run (a tracking server) is the user's choice
        for name, options in log.items():
            if options:
                raise RecipeError(f"log.{name}: the remote recipe '{location}' sets logger options; a recipe from "
                                  f"a URL may name loggers only (give options with --set log.{name}.KEY=VALUE)")
    output = data.get("output")
    folder = output.get("dir", DEFAULTS["output"]["dir"]) if isinstance(output, dict) else None
    if not isinstance(folder, str):
        return  # validation names the key
    here = Path.cwd().resolve()
    target = (here / folder).resolve()
    if target != here and here not in target.parents:
        raise RecipeError(f"output.dir: '{folder}' from the remote recipe '{location}' is outside the working "
                          f"folder '{here}'; a recipe from a URL writes only inside it (override with --set output.dir=...)")


def dump(recipe):
    return yaml.safe_dump(recipe, sort_keys=False, default_flow_style=None)


# ---------------------------------------------------------------- validation
# Leaves are validators: (value, dotted_path) -> coerced value.

def _number(kind):
    def check(value, path):
        if isinstance(value, bool):
            raise RecipeError(f"{path}: expected a number, got {value!r}")
        try:
            # PyYAML reads 1e-3 as a string; accept it, refuse words.
            num = float(value)
        except (TypeError, ValueError, OverflowError):  # OverflowError: an int past float's range
            raise RecipeError(f"{path}: expected a number, got {value!r}") from None
        if not math.isfinite(num):
            raise RecipeError(f"{path}: expected a finite number, got {value!r}")
        if kind is int:
            if num != int(num):
                raise RecipeError(f"{path}: expected a whole number, got {value!r}")
            return int(num)
        return num
    return check


def _positive(check):
    def wrapped(value, path):
        value = check(value, path)
        if value <= 0:
            raise RecipeError(f"{path}: must be greater than 0, got {value!r}")
        return value
    return wrapped


def _nonneg(check):
    def wrapped(value, path):
        value = check(value, path)
        if value < 0:
            raise RecipeError(f"{path}: must be 0 or more, got {value!r}")
        return value
    return wrapped


INT, FLOAT = _number(int), _number(float)
POS_INT, POS_FLOAT = _positive(INT), _positive(FLOAT)
NONNEG_INT, NONNEG_FLOAT = _nonneg(INT), _nonneg(FLOAT)


def FRACTION(value, path):
    value = NONNEG_FLOAT(value, path)
    if value > 1:
        raise RecipeError(f"{path}: must be between 0 and 1, got {value!r}")
    return value


def STR(value, path):
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise RecipeError(f"{path}: expected text, got {value!r}")
    return str(value)


def DEVICE(value, path):
    """A device name (cuda:x, tpu refused by key); whether this machine has it is checked when a run starts."""
    from .devices import check_name

    try:
        return check_name(STR(value, path), what=path)
    except DeviceError as exc:
        raise RecipeError(str(exc)) from None


def BOOL(value, path):
    if not isinstance(value, bool):
        raise RecipeError(f"{path}: expected true or false, got {value!r}")
    return value


def RUN_NAME(value, path):
    from .runs import check_run_name

    return check_run_name(STR(value, path), path)


def ANY(value, path):
    return value


def choice(*options):
    def check(value, path):
        if value not in options:
            raise RecipeError(f"{path}: '{value}' is not one of {', '.join(map(str, options))}{did_you_mean(value, options)}")
        return value
    return check


def registered(kind):
    """A name registered by a plugin (the tasks, say): unknown names list the known ones."""
    def check(value, path):
        from .plugins import get

        names = get(kind).names()
        if value not in names:
            raise RecipeError(f"{path}: '{value}' is not one of {', '.join(names)}{did_you_mean(value, names)}")
        return value
    return check


def either(*checks):
    def check(value, path):
        errors = []
        for c in checks:
            try:
                return c(value, path)
            except RecipeError as exc:
                errors.append(str(exc).split(": ", 1)[-1])
        raise RecipeError(f"{path}: {' or '.join(errors)}")
    return check


def list_of(item, length=None):
    def check(value, path):
        if not isinstance(value, (list, tuple)):
            raise RecipeError(f"{path}: expected a list, got {value!r}")
        if length is not None and len(value) != length:
            raise RecipeError(f"{path}: expected {length} values, got {len(value)}")
        return [item(v, f"{path}[{i}]") for i, v in enumerate(value)]
    return check


def OPTIMIZER(value, path):
    """A name in timm's optimizer registry (sgd, adamw, lamb, lion, ...): unknown names list the known ones."""
    from .optim import check_optimizer_name

    return check_optimizer_name(STR(value, path), path)


def settings(schema, defaults, on=True):
    """A feature switched by one key: null or false (off, None), true (``defaults``), or a
    mapping of ``schema`` keys laid over ``defaults``; the value kept is None or the full mapping."""
    def check(value, path):
        if value is None or value is False:
            return None
        if value is True and on:
            return dict(defaults)
        if not isinstance(value, dict):
            raise RecipeError(f"{path}: expected true, false or a mapping of {', '.join(schema)}, got {value!r}")
        return {**defaults, **_validate(value, schema, path, check_components=False)}
    return check


def optional(check):
    def wrapped(value, path):
        return None if value is None else check(value, path)
    return wrapped


def LOGGERS(value, path):
    """``log``: a list of registered logger names, or {name: {option: value}} -> {name: {options}};
    options are checked against the logger factory's signature."""
    from .errors import UnknownNameError
    from .plugins import get

    if value is None:
        return {}
    if isinstance(value, str):
        value = [value]
    if isinstance(value, (list, tuple)):
        value = {STR(name, f"{path}[{i}]"): {} for i, name in enumerate(value)}
    if not isinstance(value, dict):
        raise RecipeError(f"{path}: expected a list of loggers (e.g. [tensorboard, mlflow]) or a mapping of "
                          f"logger: options, got {value!r}")
    out = {}
    for name, options in value.items():
        where = f"{path}.{name}"
        options = {} if options is None else options
        if not isinstance(options, dict):
            raise RecipeError(f"{where}: expected a mapping of options, got {options!r}")
        try:
            entry = get("loggers").get(name)
        except UnknownNameError as exc:
            raise RecipeError(f"{path}: {exc}") from None
        entry.check_args(options, where=where, key=None)
        out[name] = options
    return out


class Component:
    """{name, args}: name must be registered in ``kind``; args must fit the factory."""

    def __init__(self, kind, injected=()):
        self.kind, self.injected = kind, injected


class MappingOf:
    """{any name: schema}, e.g. the heads of a multi-task recipe."""

    def __init__(self, schema):
        self.schema = schema


def record(schema):
    """A mapping validated against ``schema`` inside a list (train.stages)."""
    def check(value, path):
        return _validate(value, schema, path, check_components=True)
    return check


COMPONENT_KEYS = ("name", "args")
# How one head of a multi-task model is built and learned ("head" sets them for every head).
HEAD_SCHEMA = {
    "weight": NONNEG_FLOAT,
    "loss": Component("losses"),
    "hidden": list_of(POS_INT),
    "batch_norm": BOOL,
    "dropout": NONNEG_FLOAT,
    # Against imbalance: per-class loss weights from the train split (tasks/class_weights.py).
    "class_weight": optional(either(choice("balanced", "sqrt"), record({"mode": choice("balanced", "sqrt"),
                                                                        "cap": POS_FLOAT}))),
}

SCHEMA = {
    "task": registered("tasks"),
    "head": HEAD_SCHEMA,
    "heads": MappingOf(HEAD_SCHEMA),
    "description": STR,
    "data": {
        "root": STR,
        "image_size": POS_INT,
        "batch_size": POS_INT,
        "eval_batch_size": POS_INT,
        "num_workers": optional(NONNEG_INT),
        "train_split": STR,
        "val_split": STR,
        "test_split": STR,
        # Train on these of the dataset's classes only; eval scores the others as unseen (open set).
        "classes": optional(list_of(STR)),
        # Train on this seeded share of the train split (per class where images have one label): a quick check.
        "fraction": _positive(FRACTION),
        # What `fashion prepare --recipe` makes data.root from.
        "prepare": {
            "source": STR, "importer": STR, "image_size": POS_INT, "val_fraction": NONNEG_FLOAT,
            "test_fraction": NONNEG_FLOAT, "seed": INT, "classes": either(list_of(STR), STR),
            "other_classes": choice("background", "ignore"), "near_duplicates": BOOL, "args": ANY,
        },
        # Augment whole batches on the training device instead of per image in the loader's workers.
        "gpu_augment": BOOL,
        "augment": {
            "hflip": BOOL,
            "scale": optional(list_of(POS_FLOAT, 2)),
            "ratio": list_of(POS_FLOAT, 2),
            "rotate": NONNEG_FLOAT,
            "color_jitter": NONNEG_FLOAT,
            # torchvision v2 policies on the image (not on masks): true takes torchvision's defaults.
            "randaugment": settings({"num_ops": POS_INT, "magnitude": NONNEG_INT}, {"num_ops": 2, "magnitude": 9}),
            "trivialaugment": BOOL,
            # Batch mixing (Beta alphas; 0 is off; both set: one of the two per batch), for single-label models.
            "mixup": NONNEG_FLOAT,
            "cutmix": NONNEG_FLOAT,
            "mix_prob": FRACTION,
        },
    },
    "model": Component("models", injected=("num_classes", "heads")),
    "loss": Component("losses"),
    # A single-label task's loss weights per class (balanced|sqrt|{mode, cap}); heads take theirs under head(s).
    "class_weight": HEAD_SCHEMA["class_weight"],
    "optimizer": {
        "name": OPTIMIZER,
        "lr": POS_FLOAT,
        "weight_decay": NONNEG_FLOAT,
        "momentum": NONNEG_FLOAT,
        "nesterov": BOOL,
        "betas": list_of(NONNEG_FLOAT, 2),
        # Layer-wise lr decay: each layer group's lr is lr * layer_decay ** (its depth from the head).
        "layer_decay": optional(POS_FLOAT),
    },
    "scheduler": {
        "name": choice("none", "cosine", "step", "exponential", "onecycle"),
        "warmup_epochs": NONNEG_FLOAT,
        "min_lr": NONNEG_FLOAT,
        "step_size": POS_INT,
        "gamma": POS_FLOAT,
        "pct_start": POS_FLOAT,
    },
    "train": {
        "epochs": POS_INT,
        # false: train without a validation split (no best epoch, no tuned thresholds).
        "validate": BOOL,
        "seed": INT,
        "device": DEVICE,
        "amp": either(BOOL, choice("auto")),
        "deterministic": BOOL,
        "channels_last": BOOL,
        "compile": BOOL,
        "sync_bn": BOOL,  # several processes: batch-norm statistics over the global batch
        "grad_clip": optional(POS_FLOAT),
        "grad_clip_mode": choice("norm", "value", "agc"),  # timm's dispatch_clip_grad
        "accumulate": POS_INT,  # micro-batches per optimizer step
        # Exponential moving average of the weights: what validation scores and checkpoints hold.
        "ema": settings({"decay": FRACTION, "warmup": BOOL}, {"decay": 0.9998, "warmup": True}),
        "early_stopping": {"patience": optional(POS_INT), "monitor": STR, "mode": choice("max", "min")},
        # Staged fine-tuning: each stage trains for its epochs with the backbone frozen ('none'),
        # whole ('all') or only its last K stages trainable, at its own learning rate.
        "stages": list_of(record({"epochs": POS_INT, "backbone": either(choice("all", "none"), POS_INT),
                                  "lr": POS_FLOAT})),
    },
    "eval": {"topk": POS_INT, "split": STR, "checkpoint": choice("best", "last"),
             "tta": {"hflip": BOOL, "shift": NONNEG_INT},
             # Prototype models: predict `unknown` beyond this distance to the nearest prototype; null
             # calibrates it on the validation split so that this fraction of known images is rejected.
             "reject": {"threshold": optional(NONNEG_FLOAT), "false_rejection_rate": FRACTION},
             # Published figures to print beside the measured ones: {metric name: value}.
             "reference": MappingOf(NONNEG_FLOAT),
             # The dataset the reference was measured on (set by the recipe that gives it): eval
             # leaves the reference out, with a note, when it scores another dataset.
             "reference_data": {"root": optional(STR), "source": optional(STR)},
             # Segmentation: more class subsets to report mIoU over (the dataset's own come too).
             "class_sets": MappingOf(list_of(STR))},
    # Experiment loggers (register_loggers): [tensorboard, mlflow] or {mlflow: {tracking_uri: ...}}.
    "log": LOGGERS,
    # exist_ok: read from older recipes and ignored; only the command line's --replace replaces a run.
    "output": {"dir": STR, "name": optional(RUN_NAME), "exist_ok": BOOL},
}

DEFAULTS = {
    "task": "classification",
    "data": {
        "image_size": 160, "batch_size": 32, "num_workers": None, "gpu_augment": False,
        "train_split": "train", "val_split": "val", "test_split": "test", "classes": None, "fraction": 1.0,
        "augment": {"hflip": True, "scale": [0.6, 1.0], "ratio": [0.75, 1.3333], "rotate": 0, "color_jitter": 0,
                    "randaugment": None, "trivialaugment": False, "mixup": 0, "cutmix": 0, "mix_prob": 1.0},
    },
    "loss": {"name": "cross_entropy", "args": {}},
    "optimizer": {"name": "adamw", "lr": 1e-3, "weight_decay": 1e-4, "momentum": 0.9, "nesterov": False, "betas": [0.9, 0.999],
                  "layer_decay": None},
    "scheduler": {"name": "cosine", "warmup_epochs": 0, "min_lr": 0, "step_size": 10, "gamma": 0.1, "pct_start": 0.3},
    "train": {
        "epochs": 10, "validate": True, "seed": 0, "device": "auto", "amp": "auto", "deterministic": False,
        "channels_last": True, "compile": False, "sync_bn": False, "grad_clip": None,
        "grad_clip_mode": "norm", "accumulate": 1, "ema": None,
        # auto: the task's main validation metric (val_accuracy, val_mean_accuracy, ...), maximised.
        "early_stopping": {"patience": None, "monitor": "auto", "mode": "max"},
    },
    "eval": {"topk": 5, "split": "test", "checkpoint": "best", "tta": {"hflip": False, "shift": 0},
             "reject": {"threshold": None, "false_rejection_rate": 0.05}, "reference": {},
             "class_sets": {}},
    "log": {},
    "output": {"dir": "runs", "name": None},
}
REQUIRED = ("data.root", "model")


def _validate(value, schema, path, check_components):
    if isinstance(schema, dict):
        if not isinstance(value, dict):
            raise RecipeError(f"{path or 'recipe'}: expected a mapping, got {value!r}")
        out = {}
        for key, sub in value.items():
            where = f"{path}.{key}" if path else str(key)
            if key not in schema:
                raise RecipeError(f"{where}: unknown key{_suggest(key, where, schema)}; allowed here: {', '.join(schema)}")
            out[key] = _validate(sub, schema[key], where, check_components)
        return out
    if isinstance(schema, Component):
        return _validate_component(value, schema, path, check_components)
    if isinstance(schema, MappingOf):
        if not isinstance(value, dict):
            raise RecipeError(f"{path}: expected a mapping of names, got {value!r}")
        # An entry of mappings given as null takes the defaults; null for a value (a reference's
        # figure) is no entry: nothing to delete it from was inherited.
        return {k: _validate({} if v is None else v, schema.schema, f"{path}.{k}", check_components)
                for k, v in value.items() if v is not None or isinstance(schema.schema, dict)}
    return schema(value, path)


def _schema_keys(schema=None, prefix=""):
    """Every dotted key the schema names (inside components and named mappings left out)."""
    for key, sub in (SCHEMA if schema is None else schema).items():
        yield f"{prefix}{key}"
        if isinstance(sub, dict):
            yield from _schema_keys(sub, f"{prefix}{key}.")


def _suggest(key, where, siblings):
    """' (did you mean ...?)' for an unknown key: a key of that name elsewhere first (`--set epochs=3`
    -> 'train.epochs'), then a close name beside it, then a close name elsewhere."""
    elsewhere = {}
    for dotted in _schema_keys():
        if dotted != where:
            elsewhere.setdefault(dotted.rsplit(".", 1)[-1], []).append(dotted)
    key = str(key)
    if key not in elsewhere:
        beside = did_you_mean(key, siblings)
        if beside:
            return beside
        close = difflib.get_close_matches(key, list(elsewhere), n=1)
        if not close:
            return ""
        key = close[0]
    nearest = sorted(elsewhere[key], key=lambda d: d.count("."))  # train.seed before data.prepare.seed
    return f" (did you mean {' or '.join(repr(d) for d in nearest)}?)"


def _validate_component(value, schema, path, check_components):
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, dict) or "name" not in value:
        raise RecipeError(f"{path}: expected {{name: ..., args: {{...}}}}")
    unknown = [k for k in value if k not in COMPONENT_KEYS]
    if unknown:
        raise RecipeError(f"{path}.{unknown[0]}: unknown key{did_you_mean(unknown[0], COMPONENT_KEYS)}; allowed: name, args")
    args = value.get("args") or {}
    if not isinstance(args, dict):
        raise RecipeError(f"{path}.args: expected a mapping, got {args!r}")
    out = {"name": STR(value["name"], f"{path}.name"), "args": args}
    if check_components:
        from .errors import UnknownNameError
        from .plugins import get

        try:
            entry = get(schema.kind).get(out["name"])
        except UnknownNameError as exc:
            raise RecipeError(f"{path}.name: {exc}") from None
        entry.check_args(args, injected=schema.injected, where=path)
    return out


def _strip_delete(data):
    """``_delete_`` markers left where nothing was inherited: the defaults still fill the mapping."""
    if not isinstance(data, dict):
        return data
    return {k: _strip_delete(v) for k, v in data.items() if k != DELETE}


def _drop_null_sections(data, schema):
    """Keys given as null where null is not a value (sections, components, lists such as
    train.stages): absent, so the inherited value is gone and the defaults apply."""
    if not isinstance(data, dict) or not isinstance(schema, dict):
        return data
    return {k: _drop_null_sections(v, schema.get(k)) for k, v in data.items()
            if not (v is None and _null_deletes(schema.get(k)))}


def _null_deletes(schema):
    if isinstance(schema, (dict, Component, MappingOf)):
        return True
    if not callable(schema):
        return False
    try:
        schema(None, "")
    except RecipeError:
        return True  # null is not a value here, so it can only mean "remove the inherited one"
    return False


def validate(data, check_components=True):
    """Defaults filled in, unknown keys refused by dotted path, numbers coerced, components checked."""
    recipe = merge(DEFAULTS, _drop_null_sections(_strip_delete(data), SCHEMA))
    recipe = _validate(recipe, SCHEMA, "", check_components)
    for dotted in REQUIRED:
        node = recipe
        for part in dotted.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            raise RecipeError(f"{dotted}: required key is missing")
    return recipe
