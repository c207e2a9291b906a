"""The `fashion` command line: parse, load the recipe, call one function, print."""
import json
import os
import sys

import click

from . import __version__
from .errors import FashionError, PluginError

SET_HELP = "Override a recipe value, e.g. --set train.epochs=3 (repeatable; values are YAML)."


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


@click.group(cls=FashionGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="fashion")
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
@click.option("--recipe", "-r", help="Take SOURCE, OUT (data.root) and the options below from the recipe's data.prepare.")
@click.option("--importer", "-i", help="Dataset importer (see `fashion plugins`); detected when omitted.")
@click.option("--image-size", type=int, help="Size of the decoded-once image cache.  [default: 160]")
@click.option("--val-fraction", type=float, help="Used only when the data has no val split.  [default: 0.1]")
@click.option("--test-fraction", type=float, help="Used only when the data has no test split.  [default: 0.1]")
@click.option("--seed", type=int, help="Seed of the stratified split.  [default: 0]")
@click.option("--classes", help="Keep only these comma-separated classes (segmentation: also `foreground`, or a "
              "class set such as `evaluated`).")
@click.option("--other-classes", type=click.Choice(["background", "ignore"]),
              help="Segmentation: what the classes left out by --classes become.  [default: background]")
@click.option("--arg", "args", multiple=True, metavar="KEY=VALUE", help="Importer argument, e.g. --arg label_col=category.")
def prepare(source, out, recipe, importer, image_size, val_fraction, test_fraction, seed, classes, other_classes, args):
    """Import a dataset into the layout train/eval/predict read, with a report and an image cache.

    SOURCE is a folder of class folders (optionally under train/val/test), a CSV or parquet table,
    a public dataset's local copy, a .zip or .tar(.gz) of one (unpacked into OUT/source/), or
    `synthetic` for the embedded quickstart set. A multi-task table names its label columns as
    heads (--arg heads=[a,b]); images with mask files (labels/, clabels/ + class_dict.csv) make a
    segmentation dataset. A recipe can declare all of it in data.prepare.

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
             "classes": [c.strip() for c in classes.split(",")] if classes else None, "other_classes": other_classes}
    for text in args:
        parts, value = parse_override(text)
        given[".".join(parts)] = value
    kwargs = recipe_prepare_args(load_recipe(recipe)) if recipe else {}
    kwargs.update({k: v for k, v in given.items() if v is not None})
    if "source" not in kwargs or "out" not in kwargs:
        raise click.UsageError("give SOURCE and OUT, or a --recipe whose data.prepare names the source")
    _echo_json(run(**kwargs))


@cli.command()
@click.argument("recipe")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=SET_HELP)
@click.option("--resume", is_flag=True, help="Continue the run from its last checkpoint (epochs may be raised with --set).")
@click.option("--replace", is_flag=True,
              help="Replace the run folder of the same name (only a folder fashion train made), instead of writing NAME-2.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@click.option("--devices", type=int, default=1, show_default=True,
              help="Processes for data-parallel training (GPUs, or CPU processes with gloo); data.batch_size is the global batch.")
def train(recipe, overrides, resume, replace, quiet, devices):
    """Train a model from a RECIPE: a bundled name, a YAML file or an http(s) URL.

    Several GPUs: --devices N, or launch `fashion train` under torchrun (several nodes too).

    \b
    Examples:
      fashion train quickstart
      fashion train quickstart --replace          # runs/quickstart again, not runs/quickstart-2
      fashion train efficientnet_lite0_finetune_clothing-small --set train.epochs=3
      fashion train runs/quickstart/recipe.yaml --resume --set train.epochs=20
      fashion train report003_seresnet50_fc2 --devices 4 --set train.sync_bn=true
    """
    from .recipe import load_recipe
    from .train import train as run

    resolved = load_recipe(recipe, overrides)  # checked once, before any process starts
    if resume and replace:
        raise click.UsageError("--resume continues a run, --replace starts it again: give one of them")
    if resolved["output"].get("exist_ok"):
        click.echo("Note: output.exist_ok no longer replaces a run; pass --replace to do that.", err=True)
    if devices > 1 and "WORLD_SIZE" not in os.environ:
        from .distributed import launch

        argv = ["train", recipe, *(f"--set={o}" for o in overrides), *(["--resume"] if resume else []),
                *(["--replace"] if replace else []), *(["--quiet"] if quiet else [])]
        sys.exit(launch(argv, devices))
    summary = run(resolved, spec=recipe, resume=resume, progress=not quiet, replace=replace)
    if int(os.environ.get("RANK", "0")) == 0:  # one summary, not one per process
        _echo_json(summary)


@cli.command("eval")
@click.argument("model", type=click.Path(exists=True))
@click.option("--data", help="Prepared dataset or folder of class folders (default: the run's dataset; "
                             "required for an exported MODEL).")
@click.option("--split", default="test", show_default=True)
@click.option("--out", "-o", type=click.Path(file_okay=False),
              help="Output folder (default: RUN/eval-SPLIT; beside an exported model.onnx, eval-model-onnx-SPLIT).")
@click.option("--batch-size", default=64, show_default=True)
@click.option("--topk", type=int, help="k of top-k accuracy (default: the recipe's eval.topk).")
@click.option("--device", default="auto", show_default=True)
@click.option("--tta", help="Test-time augmentation: none, hflip, shift=PIXELS or hflip,shift=4 (default: the recipe's eval.tta).")
@click.option("--trust-torchscript", is_flag=True,
              help="Allow a TorchScript MODEL (.torchscript, .ts): it is a program, and loading it runs its code.")
def eval_cmd(model, data, split, out, batch_size, topk, device, tta, trust_torchscript):
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
                        tta=parse(tta) if tta else None, trust_torchscript=trust_torchscript))


@cli.command()
@click.argument("model", type=click.Path(exists=True))
@click.argument("inputs", nargs=-1, required=True)
@click.option("--out", "-o", required=True, type=click.Path(dir_okay=False), help="Output .csv or .jsonl.")
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl"]), help="Default: from the --out suffix.")
@click.option("--topk", default=5, show_default=True)
@click.option("--batch-size", default=64, show_default=True)
@click.option("--resume", is_flag=True, help="Skip images already in --out.")
@click.option("--workers", type=click.IntRange(min=0), metavar="N",
              help="Decoding threads (0: one, decoding in turn with the model). Default: on a GPU every core, "
                   "decoding ahead; on the CPU the cores the model leaves free, else the model's between batches.")
@click.option("--threads", type=click.IntRange(min=1), metavar="N",
              help="The model's intra-op threads on the CPU (torch or onnxruntime).  [default: one per core]")
@click.option("--device", default="auto", show_default=True)
@click.option("--tta", help="Test-time augmentation: none, hflip, shift=PIXELS or hflip,shift=4 (default: the recipe's eval.tta).")
@click.option("--hierarchy/--no-hierarchy", default=True, show_default=True,
              help="Multi-task: a head with a parent predicts only classes of the parent's predicted class.")
@click.option("--overlay", type=click.Choice(["jpg", "png", "none"]), default="jpg", show_default=True,
              help="Segmentation: format of the colour overlays written beside the masks (none: masks only).")
@click.option("--trust-torchscript", is_flag=True,
              help="Allow a TorchScript MODEL (.torchscript, .ts): it is a program, and loading it runs its code.")
def predict(model, inputs, out, fmt, topk, batch_size, resume, workers, threads, device, tta, hierarchy, overlay,
            trust_torchscript):
    """Predict labels for images with MODEL (checkpoint, run directory, exported .onnx, or a TorchScript
    export with --trust-torchscript).

    INPUTS are files, folders (recursive), glob patterns, or .txt files listing paths. A multi-task
    model writes every head's label and score (a multilabel head: the labels above their thresholds).
    A segmentation model writes OUT's folder/masks/<name>.png (class index per pixel, at the
    image's size), overlays/<name>.jpg, and a row per image with each class's area.

    \b
    Examples:
      fashion predict runs/quickstart photos/ -o preds.csv
      fashion predict model.onnx 'shop/**/*.jpg' -o preds.jsonl --topk 3
    """
    from .predict import predict as run
    from .tta import parse

    _echo_json(run(model, list(inputs), out, topk=topk, batch_size=batch_size, fmt=fmt, resume=resume,
                   num_workers=workers, device=device, threads=threads, tta=parse(tta) if tta else None,
                   hierarchy=hierarchy, overlay=overlay, trust_torchscript=trust_torchscript))


@cli.command()
@click.argument("checkpoint", type=click.Path(exists=True))
@click.option("--format", "fmt", default="onnx", show_default=True, help="Exporter: onnx, torchscript, or a plugin's.")
@click.option("--out", "-o", type=click.Path(dir_okay=False), help="Default: RUN/export/model.<ext>.")
@click.option("--check-images", help="Folder or file of images for the parity check (default: the test split).")
def export(checkpoint, fmt, out, check_images):
    """Export a CHECKPOINT for deployment, with a parity check against PyTorch.

    \b
    Examples:
      fashion export runs/quickstart --format onnx
      fashion export runs/quickstart/checkpoints/best.pt --format torchscript -o model.ts
    """
    from .export import export as run

    _echo_json(run(checkpoint, format=fmt, out=out, check_images=check_images))


@cli.command()
@click.option("--third-party", is_flag=True, help="Only the installed plugins, not the built-in ones.")
@click.option("--all", "all_plugins", is_flag=True, hidden=True)  # the default now; kept for old scripts
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def plugins(third_party, all_plugins, as_json):
    """List the plugins (built-in ones too) and what each registered: tasks, models, losses,
    datasets, metrics, exporters, commands.

    \b
    Examples:
      fashion plugins
      fashion plugins --third-party --json
    """
    from .plugins import list_plugins

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
@click.argument("name", required=False)
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=SET_HELP)
def recipes(name, overrides):
    """List the bundled recipes, or print one fully resolved (bases merged, defaults filled).

    \b
    Examples:
      fashion recipes
      fashion recipes quickstart --set train.epochs=1
    """
    from . import recipe

    if name is None:
        for n in recipe.bundled_names():
            click.echo(n)
        return
    click.echo(recipe.dump(recipe.load_recipe(name, overrides)), nl=False)


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
