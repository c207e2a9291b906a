"""Hook specifications: every plugin, built-in or third-party, registers through these."""
import pluggy

hookspec = pluggy.HookspecMarker("fashion")
hookimpl = pluggy.HookimplMarker("fashion")


@hookspec
def register_tasks(register):
    """Register tasks (a ``fashioncli.tasks.base.Task`` subclass): ``register(name, task_class)``."""


@hookspec
def register_models(register):
    """Register model factories: ``register(name, factory)``."""


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
    """Register model exporters used by ``fashion export``, and how their files open in ``fashion predict``:
    ``register(name, factory, suffixes=(".ext",), open=engine_class, runs_code=False)``."""
