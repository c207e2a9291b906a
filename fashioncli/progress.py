"""What a verb shows while it works, always on stderr (stdout carries the JSON summary alone):
progress bars over batches, and one-line status messages."""
import sys

from tqdm import tqdm


def bar(iterable, desc, enabled=True, **kwargs):
    """``iterable`` with a tqdm bar on stderr; none when not ``enabled`` (-q) or stderr is not a terminal."""
    return tqdm(iterable, desc=desc, disable=None if enabled else True, leave=False, dynamic_ncols=True,
                file=sys.stderr, **kwargs)


def status(text, enabled=True):
    """One line on stderr (between the lines of any bar), unless ``enabled`` is false (-q)."""
    if enabled:
        tqdm.write(text, file=sys.stderr)
