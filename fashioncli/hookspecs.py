"""Hook specifications: every plugin, built-in or third-party, registers through these."""
import pluggy

hookspec = pluggy.HookspecMarker("fashion")
hookimpl = pluggy.HookimplMarker("fashion")


@hookspec
def register_tasks(register):
    """Register tasks (a ``fashioncli.api.Task`` subclass): ``register(name, task_class)``."""


@hookspec
def register_models(register):
    """Register model factories and their input preprocessing: ``register(name, factory, preprocessing=...)``."""


@hookspec
def register_losses(register):
    """Register loss factories: ``register(name, factory)``."""


@hookspec
def register_datasets(register):
    """Register dataset importers used by ``fashion prepare``: ``register(name, factory)``."""


@hookspec
def register_metrics(register):
    """Register metric factories: ``register(name, factory)``."""


@hookspec
def register_exporters(register):
    """Register exporters and how predict opens their files: ``register(name, factory, suffixes, open, runs_code)``."""


@hookspec
def register_loggers(register):
    """Register experiment loggers chosen by the recipe's ``log`` key: ``register(name, factory)``."""


@hookspec
def register_commands(cli):
    """Add ``fashion`` sub-commands: ``cli`` is a click group, e.g. ``@cli.command()``."""
