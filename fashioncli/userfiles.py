"""Reading a file the user named without waiting or growing forever.

Only regular files are read: opening a FIFO named ``x.jpg`` blocks until something writes to it
(beyond Ctrl-C, in a decoding thread), and a link to ``/dev/zero`` never ends. Reads stop at a
bound, so a huge file is an error, not gigabytes of memory.
"""
import os
import stat

from .errors import DataError

MAX_BYTES = 256 << 20  # far above any photo or mask; a larger file is refused, never read whole
_CHUNK = 1 << 20
# O_NONBLOCK: should a FIFO replace the file between the check and the open, the open returns
# instead of waiting for a writer (it has no effect on regular files).
_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0)
_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))


class UnreadableFile(DataError):
    """A file cannot be read. ``reason``: why, for a message that names the file ('Permission
    denied', 'not a regular file (a FIFO)'); the message itself is the line of a report row."""

    def __init__(self, reason, system=False):
        super().__init__(f"cannot read file: {reason}" if system else reason)
        self.reason = reason


def size_text(n):
    """Bytes -> '256 MiB' (the unit the limits are set in)."""
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:g} {unit}"
        n /= 1024


def read_bytes(path, limit=MAX_BYTES):
    """The bytes of a regular file (symlinks followed) of at most ``limit`` bytes, or UnreadableFile
    with the reason: not found, a folder, not a regular file, larger than the limit, an OSError."""
    try:
        return _read(path, limit)
    except FileNotFoundError:
        raise UnreadableFile("file not found") from None
    except IsADirectoryError:
        raise UnreadableFile("is a folder, not a file") from None
    except OSError as exc:
        raise UnreadableFile(exc.strerror or str(exc), system=True) from None


def _check(info, limit):
    if stat.S_ISDIR(info.st_mode):
        raise UnreadableFile("is a folder, not a file")
    if not stat.S_ISREG(info.st_mode):
        kind = next((name for test, name in _KINDS if test(info.st_mode)), "a special file")
        raise UnreadableFile(f"not a regular file ({kind})")
    if info.st_size > limit:
        raise UnreadableFile(f"file larger than {size_text(limit)}")


def _read(path, limit):
    _check(os.stat(path), limit)  # before opening: a FIFO or a device is never opened at all
    fd = os.open(path, _FLAGS)
    with open(fd, "rb", buffering=0) as f:
        info = os.fstat(fd)
        _check(info, limit)  # what was opened, should the path have changed since the stat
        chunks, total, want = [], 0, info.st_size + 1  # one read for a file that does not grow
        while chunk := f.read(min(want, limit + 1 - total)):
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise UnreadableFile(f"file larger than {size_text(limit)}")
            want = _CHUNK
        return b"".join(chunks)
