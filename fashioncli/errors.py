"""The exception types the CLI turns into one-line messages instead of tracebacks."""


class FashionError(Exception):
    """Base class: a problem the user can act on."""


class RecipeError(FashionError):
    """A recipe is malformed; the message names the dotted key."""


class PluginError(FashionError):
    """A plugin failed to load or registered a clashing name."""


class UnknownNameError(FashionError):
    """A component name is not registered; the message lists the known ones."""


class DataError(FashionError):
    """A dataset cannot be read or prepared."""


class CheckpointError(FashionError):
    """A checkpoint or exported model cannot be loaded."""


class DeviceError(FashionError):
    """A device name is malformed or names a device this machine lacks; lists the devices present."""


class ExportError(FashionError):
    """An export failed, or its parity check disagreed with PyTorch."""


class OutputError(FashionError):
    """An output cannot be written (read-only folder, disk full, a path under a file); names the file."""


def did_you_mean(name, known):
    """' (did you mean 'x'?)' for the closest known name, or ''."""
    import difflib

    close = difflib.get_close_matches(str(name), [str(k) for k in known], n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""
