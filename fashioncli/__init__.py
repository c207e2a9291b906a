"""fashion: a command-line toolkit for clothing computer vision."""
from .hookspecs import hookimpl
from .threads import passive_openmp

passive_openmp()  # before anything imports torch: OpenMP reads it once, when it loads (threads.py)

__version__ = "0.1.0"


def create_model(name, **args):
    """Build a registered model by name (timm-style factory)."""
    from .plugins import get

    return get("models").create(name, **args)


def model_preprocessing(name, **args):
    """The ``Preprocessing`` (mean, std, input size) registered model ``name`` declares for ``args``."""
    from .plugins import get
    from .preprocessing import model_preprocessing as resolve

    return resolve(get("models").get(name), args)


def create_loss(name, **args):
    from .plugins import get

    return get("losses").create(name, **args)


__all__ = ["hookimpl", "__version__", "create_model", "model_preprocessing", "create_loss"]
