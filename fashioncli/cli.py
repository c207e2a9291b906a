"""The `fashion` command line: parse, load the recipe, call one function, print."""
import json
import os
import sys

import click

from .errors import FashionError, PluginError

SET_HELP = "Override a recipe value, e.g. --set train.epochs=3 (repeatable; values are YAML); same as a bare KEY=VALUE."
ASSIGNMENTS = "[KEY=VALUE]..."  # bare overrides after the recipe, as `yolo` takes them
QUIET_HELP = "No progress bars or status lines on stderr."


class FashionGroup(click.Group):
    """Turns FashionError and refusals of the system (OSError: a path under a file, a full disk)
    into a one-line message and exit code 1, not a traceback; adds the plugins' sub-commands.

    Plugins are loaded only for a name that is not built in, or to list the commands: loading
    them imports torch, which `fashion predict` on an ONNX file must not need.
    """

    def get_command(self, ctx, name):
        if name in self.commands:
            return self.commands[name]
        found = _plugin_commands(self).get(name)
        return found and found[0]

    def list_commands(self, ctx):
        try:
            return sorted({*self.commands, *_plugin_commands(self)})
        except FashionError as exc:  # --help still lists the built-in commands
            click.secho(f"Error: {exc}", err=True, fg="red")
            return sorted(self.commands)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except FashionError as exc:
            click.secho(f"Error: {exc}", err=True, fg="red")
            sys.exit(1)
        except BrokenPipeError:  # `fashion plugins | head`: the reader left, nothing to report
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
            sys.exit(1)
        except OSError as exc:  # write sites raise OutputError; this catches the rest
            if exc.errno is None:
                raise
            where = f"'{exc.filename}': " if exc.filename else ""
            click.secho(f"Error: {where}{exc.strerror}", err=True, fg="red")
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            sys.exit(130)


def _plugin_commands(group):
    """The sub-commands plugins add; one named like a built-in command is refused, naming the plugin."""
    from .plugins import plugin_commands

    commands = plugin_commands()
    for name, (_, plugin) in commands.items():
        if name in group.commands:
            raise PluginError(f"plugin '{plugin}' adds the command '{name}', which fashion has built in")
    return commands


def _echo_json(data):
    click.echo(json.dumps(data, indent=2, default=str))


def _complete_recipe(ctx, param, incomplete):
    """Shell completion of a recipe argument: the bundled names, else file paths."""
    from click.shell_completion import CompletionItem

    from .listing import recipe_names

    names = recipe_names(incomplete)
    return [CompletionItem(n) for n in names] or [CompletionItem(incomplete, type="file")]


def _print_version(ctx, param, value):
    if not value or ctx.resilient_parsing:
        return
    from .listing import version_text, versions

    click.echo(version_text(versions()))
    ctx.exit()


@click.group(cls=FashionGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_print_version,
              help="Show the versions of fashion, torch, CUDA and onnxruntime, the plugin count, and exit.")
def cli():
    """fashion: prepare, train, evaluate, predict and export clothing vision models.

    \b
    Example, end to end on the embedded synthetic dataset:
      fashion prepare synthetic data/synthetic
      fashion train quickstart
      fashion eval runs/quickstart
      fashion predict runs/quickstart data/synthetic/images -o preds.csv
      fashion export runs/quickstart --format onnx
    """


@cli.command()
@click.argument("source", required=False)
@click.argument("out", required=False, type=click.Path(file_okay=False))
@click.option("--recipe", "-r", shell_complete=_complete_recipe, help="Take SOURCE, OUT (data.root) and the options below from the recipe's data.prepare.")
@click.option("--importer", "-i", help="Dataset importer (see `fashion plugins`); detected when omitted.")
@click.option("--image-size", type=int, help="Size of the decoded-once image cache.  [default: 160]")
@click.option("--val-fraction", type=float, help="Used only when the data has no val split (0: none; train then "
              "needs train.validate: false).  [default: 0.1]")
@click.option("--test-fraction", type=float, help="Used only when the data has no test split.  [default: 0.1]")
@click.option("--seed", type=int, help="Seed of the stratified split.  [default: 0]")
@click.option("--classes", help="Keep only these comma-separated classes (segmentation: also `foreground`, or a "
              "class set such as `evaluated`).")
@click.option("--other-classes", type=click.Choice(["background", "ignore"]),
              help="Segmentation: what the classes left out by --classes become.  [default: background]")
@click.option("--near-duplicates", is_flag=True, default=None,
              help="Also keep near-identical images (re-encoded, resized) in one split, by a perceptual hash.")
@click.option("--arg", "args", multiple=True, metavar="KEY=VALUE",
              help="Importer argument, e.g. --arg label_col=category (`fashion plugins IMPORTER` lists them).")
def prepare(source, out, recipe, importer, image_size, val_fraction, test_fraction, seed, classes, other_classes,
            near_duplicates, args):
    """Import a dataset into the layout train/eval/predict read, with a report and an image cache.

    SOURCE is a folder of class folders (optionally under train/val/test), a CSV or parquet table,
    a public dataset's local copy, a .zip or .tar(.gz) of one (unpacked into OUT/source/), or
    `synthetic` for the embedded quickstart set. A multi-task table names its label columns as
    heads (--arg heads=[a,b]); images with mask files (labels/, clabels/ + class_dict.csv) make a
    segmentation dataset. A recipe can declare all of it in data.prepare. Drawn splits keep copies
    of one file (and the rows of one --arg group_col=COLUMN group) in one split; multi-label and
    multi-head tables are split so that each label reaches train, val and test.

    \b
    Examples:
      fashion prepare ../shared/datasets/clothing-small data/clothing-small
      fashion prepare styles.csv data/styles --arg image_col=path --arg label_col=category
      fashion prepare products.csv data/products --arg 'heads=[category, colour]'
      fashion prepare --recipe multitask_efficientnet_lite0_fashion-product-small
      fashion prepare ../shared/datasets/imat-fashion-seg data/imat-seg --image-size 128
      fashion prepare synthetic data/synthetic
      fashion prepare photos.zip data/photos
    """
    from .prepare import prepare as run, recipe_prepare_args
    from .recipe import load_recipe, parse_override

    given = {"source": source, "out": out, "importer": importer, "image_size": image_size,
             "val_fraction": val_fraction, "test_fraction": test_fraction, "seed": seed,
             "classes": [c.strip() for c in classes.split(",")] if classes else None, "other_classes": other_classes,
             "near_duplicates": near_duplicates}
    for text in args:
        parts, value = parse_override(text)
        given[".".join(parts)] = value
    kwargs = recipe_prepare_args(load_recipe(recipe)) if recipe else {}
    kwargs.update({k: v for k, v in given.items() if v is not None})
    if "source" not in kwargs or "out" not in kwargs:
        raise click.UsageError("give SOURCE and OUT, or a --recipe whose data.prepare names the source")
    _echo_json(run(**kwargs))


@cli.command()
@click.argument("recipe", shell_complete=_complete_recipe)
@click.argument("assignments", nargs=-1, metavar=ASSIGNMENTS)
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=SET_HELP)
@click.option("--fraction", type=click.FloatRange(0, 1, min_open=True), metavar="F",
              help="Train on this seeded share of the train split, per class (sets data.fraction): a quick check.")
@click.option("--resume", is_flag=True, help="Continue the run from its last checkpoint (epochs may be raised with --set).")
@click.option("--replace", is_flag=True,
              help="Replace the run folder of the same name (only a folder fashion train made), instead of writing NAME-2.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars (epoch lines still go to stderr; stdout is the JSON summary).")
@click.option("--device", help="Device: auto, cpu, cuda, cuda:N, mps, or GPU indices 0 or 0,1 (a process per GPU) "
                                "(default: the recipe's train.device).")
@click.option("--devices", type=click.IntRange(min=1),
              help="Processes for data-parallel training (GPUs, or CPU processes with gloo); data.batch_size is the "
                   "global batch.  [default: 1, or one per GPU --device lists]")
def train(recipe, assignments, overrides, fraction, resume, replace, quiet, device, devices):
    """Train a model from a RECIPE: a bundled name, a YAML file or an http(s) URL; KEY=VALUE
    after it overrides a recipe value, as --set does.

    Several GPUs: --device 0,1 (those GPUs), --devices N, or launch `fashion train` under torchrun
    (several nodes too).

    \b
    Examples:
      fashion train quickstart
      fashion train quickstart --replace          # runs/quickstart again, not runs/quickstart-2
      fashion train efficientnet_lite0_finetune_clothing-small train.epochs=3 data.batch_size=16
      fashion train efficientnet_lite0_finetune_clothing-small --fraction 0.1 --set train.epochs=1
      fashion train runs/quickstart/recipe.yaml --resume --set train.epochs=20
      fashion train report003_seresnet50_fc2 --devices 4 --set train.sync_bn=true
      fashion train quickstart --device 0,1       # GPUs 0 and 1, a process each
    """
    from .distributed import launch, processes
    from .recipe import load_recipe
    from .train import train as run

    overrides = (*assignments, *overrides, *([f"data.fraction={fraction}"] if fraction else []))
    if device is not None:
        overrides = (*overrides, f"train.device={json.dumps(device)}")
    resolved = load_recipe(recipe, overrides)  # checked once, before any process starts
    if resume and replace:
        raise click.UsageError("--resume continues a run, --replace starts it again: give one of them")
    if resolved["output"].get("exist_ok"):
        click.echo("Note: output.exist_ok no longer replaces a run; pass --replace to do that.", err=True)
    count = processes(devices, resolved["train"]["device"])
    if count > 1 and "WORLD_SIZE" not in os.environ:
        argv = ["train", recipe, *(f"--set={o}" for o in overrides), *(["--resume"] if resume else []),
                *(["--replace"] if replace else []), *(["--quiet"] if quiet else [])]
        sys.exit(launch(argv, count, resolved["train"]["device"]))
    summary = run(resolved, spec=recipe, resume=resume, progress=not quiet, replace=replace)
    if int(os.environ.get("RANK", "0")) == 0:  # one summary, not one per process
        _echo_json(summary)


@cli.command("eval")
@click.argument("model", type=click.Path(exists=True))
@click.option("--data", help="Prepared dataset or folder of class folders (default: the run's dataset; "
                             "required for an exported MODEL).")
@click.option("--split", default="test", show_default=True, help="Split of the prepared dataset to score.")
@click.option("--out", "-o", type=click.Path(file_okay=False),
              help="Output folder (default: RUN/eval-SPLIT; beside an exported model.onnx, eval-model-onnx-SPLIT).")
@click.option("--batch-size", default=64, show_default=True, help="Images per batch.")
@click.option("--topk", type=int, help="k of top-k accuracy (default: the recipe's eval.topk).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--tta", help="Test-time augmentation: none, hflip, shift=PIXELS or hflip,shift=4 (default: the recipe's eval.tta).")
@click.option("--trust-torchscript", is_flag=True,
              help="Allow a TorchScript MODEL (.torchscript, .ts): it is a program, and loading it runs its code.")
@click.option("--quiet", "-q", is_flag=True, help=QUIET_HELP)
def eval_cmd(model, data, split, out, batch_size, topk, device, tta, trust_torchscript, quiet):
    """Evaluate MODEL (checkpoint, run directory, exported .onnx, or a TorchScript export with
    --trust-torchscript) on a split or a folder.

    \b
    Examples:
      fashion eval runs/quickstart
      fashion eval runs/quickstart/checkpoints/best.pt --data photos/ -o eval-photos
      fashion eval runs/quickstart/export/model.onnx --data data/synthetic
    """
    from .evaluate import evaluate
    from .tta import parse

    _echo_json(evaluate(model, data=data, split=split, out=out, batch_size=batch_size, topk=topk, device=device,
                        tta=parse(tta) if tta else None, trust_torchscript=trust_torchscript, progress=not quiet))


@cli.command()
@click.argument("model", type=click.Path(exists=True))
@click.argument("inputs", nargs=-1, required=True)
@click.option("--out", "-o", required=True, type=click.Path(dir_okay=False), help="Output .csv or .jsonl.")
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl"]), help="Default: from the --out suffix.")
@click.option("--topk", default=5, show_default=True, help="Labels (with scores) written per image.")
@click.option("--batch-size", default=64, show_default=True, help="Images per batch.")
@click.option("--resume", is_flag=True, help="Skip images already in --out.")
@click.option("--workers", type=click.IntRange(min=0), metavar="N",
              help="Decoding threads (0: one, decoding in turn with the model). Default: on a GPU every core, "
                   "decoding ahead; on the CPU the cores the model leaves free, else the model's between batches.")
@click.option("--threads", type=click.IntRange(min=1), metavar="N",
              help="The model's intra-op threads on the CPU (torch or onnxruntime).  [default: one per core]")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--tta", help="Test-time augmentation: none, hflip, shift=PIXELS or hflip,shift=4 (default: the recipe's eval.tta).")
@click.option("--hierarchy/--no-hierarchy", default=True, show_default=True,
              help="Multi-task: a head with a parent predicts only classes of the parent's predicted class.")
@click.option("--overlay", type=click.Choice(["jpg", "png", "none"]), default="jpg", show_default=True,
              help="Segmentation: format of the colour overlays written beside the masks (none: masks only).")
@click.option("--save-dir", type=click.Path(file_okay=False),
              help="Segmentation: write masks/ and overlays/ into this folder (default: OUT_masks/ and "
                   "OUT_overlays/ beside --out, e.g. preds_masks/ for preds.csv).")
@click.option("--trust-torchscript", is_flag=True,
              help="Allow a TorchScript MODEL (.torchscript, .ts): it is a program, and loading it runs its code.")
@click.option("--devices", type=click.IntRange(min=1), default=1, show_default=True,
              help="Processes, each predicting its share of INPUTS into a shard of OUT (one GPU each, or CPU "
                   "processes sharing the cores); the shards are merged into OUT in input order.")
@click.pass_context
def predict(ctx, model, inputs, out, fmt, topk, batch_size, resume, workers, threads, device, tta, hierarchy, overlay,
            save_dir, trust_torchscript, devices):
    """Predict labels for images with MODEL (checkpoint, run directory, exported .onnx, or a TorchScript
    export with --trust-torchscript).

    INPUTS are files, folders (recursive), glob patterns, or .txt files listing paths. A multi-task
    model writes every head's label and score (a multilabel head: the labels above their thresholds).
    A segmentation model writes <OUT stem>_masks/<name>.png beside OUT (a palette PNG: the class
    index per pixel at the image's size, shown in the class colours), <OUT stem>_overlays/<name>.jpg,
    and a row per image with each class's area.
    Several processes: --devices N, or launch `fashion predict` under torchrun (several nodes too).

    \b
    Examples:
      fashion predict runs/quickstart photos/ -o preds.csv
      fashion predict model.onnx 'shop/**/*.jpg' -o preds.jsonl --topk 3
      fashion predict runs/report001_unet_miou_cpu photos/ -o preds.csv --save-dir preds/
      fashion predict runs/quickstart photos/ -o preds.csv --devices 4 --resume
    """
    from .predict import predict as run
    from .tta import parse

    if devices > 1 and "WORLD_SIZE" not in os.environ:
        from .distributed import launch

        sys.exit(launch(_relaunch_argv(ctx, skip=("devices",)), devices))
    summary = run(model, list(inputs), out, topk=topk, batch_size=batch_size, fmt=fmt, resume=resume,
                  num_workers=workers, device=device, threads=threads, tta=parse(tta) if tta else None,
                  hierarchy=hierarchy, overlay=overlay, trust_torchscript=trust_torchscript, save_dir=save_dir)
    if int(os.environ.get("RANK", "0")) == 0:  # one summary, not one per process
        _echo_json(summary)


def _relaunch_argv(ctx, skip=()):
    """The command line that reruns this command with the options given (those in ``skip`` left out)."""
    options, arguments = [], []
    for param in ctx.command.params:
        value = ctx.params[param.name]
        if param.name in skip or (isinstance(param, click.Option) and value == param.get_default(ctx)):
            continue
        if isinstance(param, click.Argument):
            arguments += list(value) if param.nargs != 1 else [value]
        elif param.is_flag and param.secondary_opts:  # --x/--no-x
            options.append(param.opts[0] if value else param.secondary_opts[0])
        elif param.is_flag:
            options += [param.opts[0]] if value else []
        elif value is not None:
            options += [f"{param.opts[0]}={v}" for v in (value if param.multiple else [value])]
    return [ctx.command.name, *options, "--", *arguments]


@cli.command()
@click.argument("checkpoint", type=click.Path(exists=True))
@click.option("--format", "fmt", default="onnx", show_default=True, help="Exporter: onnx, torchscript, or a plugin's.")
@click.option("--out", "-o", type=click.Path(dir_okay=False), help="Default: RUN/export/model.<ext>.")
@click.option("--check-images", help="Folder or file of images for the parity check (default: the test split).")
@click.option("--opset", type=click.IntRange(min=7), help="ONNX opset to write (default: the exporter's own).")
@click.option("--atol", type=click.FloatRange(min=0), default=1e-3, show_default=True,
              help="Parity check: the largest difference from PyTorch's outputs accepted.")
@click.option("--quantize", type=click.Choice(["int8"]),
              help="Write an int8 model (static quantization calibrated on the train split; dynamic without one). "
                   "Default --out: RUN/export/model.int8.onnx.")
@click.option("--half", is_flag=True, help="Write a float16 model, for GPUs (default --out: RUN/export/model.fp16.onnx).")
@click.option("--min-agreement", type=click.FloatRange(0, 1), default=0.98, show_default=True,
              help="With --quantize/--half: the share of test-split images whose labels must match the float model's.")
@click.option("--quiet", "-q", is_flag=True, help=QUIET_HELP)
def export(checkpoint, fmt, out, check_images, opset, atol, quantize, half, min_agreement, quiet):
    """Export a CHECKPOINT for deployment, with a parity check against PyTorch.

    With --quantize int8 or --half the reduced-precision file is also checked against the float
    export: label agreement on the test split (--min-agreement) and the test split's metric (at most
    1 point lower); both are printed, and a file that falls short is not written.

    \b
    Examples:
      fashion export runs/quickstart --format onnx
      fashion export runs/quickstart/checkpoints/best.pt --format torchscript -o model.ts
      fashion export runs/quickstart --opset 17 --atol 1e-2
      fashion export runs/quickstart --quantize int8
    """
    from .export import export as run

    if quantize and half:
        raise click.UsageError("--quantize and --half are two different files: pass one")
    _echo_json(run(checkpoint, format=fmt, out=out, check_images=check_images, opset=opset, atol=atol,
                   precision=quantize or ("fp16" if half else None), min_agreement=min_agreement, progress=not quiet))


@cli.command()
@click.argument("name", required=False)
@click.option("--third-party", is_flag=True, help="Only the installed plugins, not the built-in ones.")
@click.option("--all", "all_plugins", is_flag=True, hidden=True)  # the default now; kept for old scripts
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def plugins(name, third_party, all_plugins, as_json):
    """List the plugins (built-in ones too) and what each registered: tasks, models, losses,
    datasets, metrics, exporters, commands. With NAME (an importer, a model, a loss, ...): its
    arguments, their defaults and what they mean (what --arg and a recipe's args take).

    \b
    Examples:
      fashion plugins
      fashion plugins table
      fashion plugins --third-party --json
    """
    from .plugins import describe, list_plugins

    if name is not None:
        found = describe(name)
        if as_json:
            return _echo_json(found)
        for entry in found:
            click.echo(f"{entry['kind']} '{entry['name']}' (plugin {entry['plugin']}): {entry['description']}")
            for arg in entry["arguments"]:
                default = f"default: {arg['default']!r}" if "default" in arg else "required"
                click.echo(f"  {arg['name']} ({default})" + (f": {arg['meaning']}" if arg["meaning"] else ""))
        return
    items = list_plugins(all_plugins=not third_party)
    if as_json:
        return _echo_json(items)
    if not items:
        click.echo("No third-party plugins installed.")
    for p in items:
        click.echo(f"{p['name']} {p.get('version', '')}{' (built-in)' if p['builtin'] else ''}")
        for kind, names in p["registered"].items():
            click.echo(f"  {kind}: {', '.join(names)}")


@cli.command()
@click.argument("name", required=False, shell_complete=_complete_recipe)
@click.argument("assignments", nargs=-1, metavar=ASSIGNMENTS)
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=SET_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def recipes(name, assignments, overrides, as_json):
    """List the bundled recipes with their descriptions, those whose name fits NAME (a substring or a
    glob), or print the recipe NAME fully resolved (bases merged, defaults filled).

    \b
    Examples:
      fashion recipes
      fashion recipes unet
      fashion recipes 'report00[12]*' --json
      fashion recipes quickstart train.epochs=1
    """
    from . import listing, recipe

    if name is not None and recipe.is_recipe(name):
        resolved = recipe.load_recipe(name, (*assignments, *overrides))
        return _echo_json(resolved) if as_json else click.echo(recipe.dump(resolved), nl=False)
    if assignments or overrides:
        raise click.UsageError(f"KEY=VALUE overrides apply to one recipe, and '{name}' names none")
    items = listing.recipes(name)
    if not items:
        raise FashionError(f"no bundled recipe name fits '{name}'; list them all with: fashion recipes")
    if as_json:
        return _echo_json(items)
    width = max(len(r["name"]) for r in items)
    for r in items:
        click.echo(f"{r['name']:<{width}}  {r['description']}".rstrip())


@cli.command()
@click.argument("pattern", required=False)
@click.option("--pretrained", is_flag=True, help="Only timm backbones timm has pretrained weights for (named with their tag).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def models(pattern, pretrained, as_json):
    """List the registered models (a recipe's model.name) and the timm backbones (the timm model's
    args.backbone) whose name fits PATTERN: a substring or a glob.

    \b
    Examples:
      fashion models
      fashion models 'efficientnet*'
      fashion models convnext --pretrained --json
    """
    from .listing import models as listed

    found = listed(pattern, pretrained=pretrained)
    if as_json:
        return _echo_json(found)
    registered, backbones = found["registered"], found["timm"]
    if registered:
        click.echo("Registered models (a recipe's model.name; plugin, description):")
        width, plugin = (max(len(e[k]) for e in registered) for k in ("name", "plugin"))
        for e in registered:
            click.echo(f"  {e['name']:<{width}}  {e['plugin']:<{plugin}}  {e['description']}".rstrip())
    if pattern is None:
        click.echo(f"timm backbones: {len(backbones)}; list some with a PATTERN, e.g. fashion models 'efficientnet*'")
        return
    click.echo(f"timm backbones fitting '{pattern}' (model: {{name: timm, args: {{backbone: NAME}}}}): {len(backbones)}")
    for b in backbones:
        click.echo(f"  {b}")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def version(as_json):
    """Show the versions of fashion, Python, torch, CUDA, onnxruntime and timm, and the plugin count.

    \b
    Examples:
      fashion version
      fashion version --json
    """
    from .listing import version_text, versions

    info = versions()
    click.echo(json.dumps(info, indent=2) if as_json else version_text(info))


RUNS_DIR_HELP = "The folder of run folders (a recipe's output.dir)."


@cli.group(invoke_without_command=True)
@click.option("--runs-dir", default="runs", show_default=True, help=RUNS_DIR_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def runs(ctx, runs_dir, as_json):
    """List the runs in --runs-dir: recipe, dataset, task, best metric, epochs, time and status;
    `fashion runs compare A B` sets runs side by side.

    \b
    Examples:
      fashion runs
      fashion runs --runs-dir experiments --json
      fashion runs compare quickstart quickstart-2
    """
    if ctx.invoked_subcommand is not None:
        return
    from .runs import list_runs, runs_table

    found = list_runs(runs_dir)
    if as_json:
        return _echo_json(found)
    click.echo(runs_table(found) if found else f"No runs in '{runs_dir}'.")


@runs.command("compare")
@click.argument("names", nargs=-1, required=True)
@click.option("--runs-dir", help=RUNS_DIR_HELP + "  [default: runs]")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def runs_compare(ctx, names, runs_dir, as_json):
    """Set runs side by side: the keys where their resolved recipes differ, their best epoch's
    metrics and their eval summaries. NAMES are run folders, or run names in --runs-dir.

    \b
    Examples:
      fashion runs compare quickstart quickstart-2
      fashion runs compare runs/a runs/b runs/c --json
    """
    from .runs import compare, compare_table

    result = compare(names, runs_dir or ctx.parent.params["runs_dir"])  # `fashion runs --runs-dir X compare`
    if as_json or ctx.parent.params["as_json"]:
        return _echo_json(result)
    click.echo(compare_table(result))


@cli.command()
@click.argument("report")
@click.option("--scale", type=click.Choice(["cpu", "full"]), default="cpu", show_default=True,
              help="Each row's CPU-sized recipe, or the report's full settings (a GPU).")
@click.option("--only", metavar="PATTERN", help="Only the rows whose name or recipe matches (glob; comma-separated).")
@click.option("--dry-run", is_flag=True, help="Print the plan with estimated times; run nothing.")
@click.option("--devices", type=int, default=1, show_default=True, help="Processes for data-parallel training of each row.")
@click.option("--replace", is_flag=True, help="Train again the rows whose run was made from another recipe.")
@click.option("--out", default="reproductions", show_default=True, type=click.Path(file_okay=False),
              help="Where reproductions/REPORT/ (runs, table.md, table.json, table.png) goes.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
def reproduce(report, scale, only, dry_run, devices, replace, out, quiet):
    """Run a REPORT's results table (000 ... 004, or a manifest YAML) and write it beside the
    report's own figures: OUT/REPORT/table.md, table.json and table.png.

    Rows that finished with the same recipe are skipped; an interrupted one resumes.

    \b
    Examples:
      fashion reproduce 001 --scale cpu --dry-run
      fashion reproduce 000
      fashion reproduce 001 --only 'UNet*'
      fashion reproduce my-report/manifest.yaml
    """
    from .reproduce import reproduce as run

    result = run(report, scale=scale, only=only, dry_run=dry_run, devices=devices, replace=replace, root=out,
                 progress=not quiet, log=lambda line: click.echo(line, err=True))
    if dry_run:
        click.echo(result.pop("plan"), err=True)
    _echo_json(result)
