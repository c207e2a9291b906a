"""Exclusive locks on outputs: two commands never write one run folder or one output file at once.

The lock is ``fcntl.flock`` on a hidden file beside the path (``runs/.x.lock``, ``.preds.csv.lock``).
The kernel drops it when its process ends, however it ends, so a lock left by a killed process is
simply taken over. The file records who holds it (pid, host, since when) for the refusal message.
"""
import errno
import json
import os
import socket
import time
from pathlib import Path

from .errors import OutputError
from .io import make_dir, output_error

try:
    import fcntl
except ImportError:  # not POSIX: commands run unlocked, as before
    fcntl = None

# Filesystems without flock (some Lustre or NFS mounts) say so with these: run unlocked there.
_UNSUPPORTED = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}
_HELD = set()  # descriptors of the locks this process holds


def _close_in_child():
    """A forked child (a DataLoader worker) closes its copies of the lock descriptors: the lock is
    the parent's, and must not outlive a killed parent in a worker that is still winding down."""
    for fd in _HELD:
        os.close(fd)
    _HELD.clear()


if fcntl is not None:
    os.register_at_fork(after_in_child=_close_in_child)


class Lock:
    """``with Lock(path):`` holds ``path`` (a file or folder, existing or not) or raises OutputError
    at once, naming the command that holds it."""

    def __init__(self, path):
        self.path = Path(path).resolve()  # two spellings of one output (a symlink, '..') share one lock
        self.file = self.path.parent / f".{self.path.name}.lock"
        self.fd = self.pid = None

    def acquire(self):
        if fcntl is None or (self.path.exists() and not (self.path.is_file() or self.path.is_dir())):
            return self  # nothing to lock with, or a device or pipe (-o /dev/stdout)
        make_dir(self.file.parent)
        while self.fd is None:
            try:
                fd = os.open(self.file, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)  # no link planted there
            except OSError as exc:
                raise output_error(self.path, exc) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(os.pread(fd, 4096, 0))
                os.close(fd)
                raise OutputError(f"'{self.path}' is in use by {holder}; wait for it or stop it") from None
            except OSError as exc:
                os.close(fd)
                if exc.errno in _UNSUPPORTED:
                    return self
                raise output_error(self.path, exc) from None
            # The holder we waited on removes its file when done: lock the one at the path, not that.
            if _same_file(fd, self.file):
                self.fd, self.pid = fd, os.getpid()
            else:
                os.close(fd)
        _HELD.add(self.fd)
        record = {"pid": self.pid, "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, json.dumps(record).encode(), 0)
        return self

    def release(self):
        if self.fd is None or self.pid != os.getpid():  # a forked child closed its copy already
            return
        try:
            os.unlink(self.file)  # before unlocking, so the next holder locks a fresh file
        except FileNotFoundError:
            pass
        _HELD.discard(self.fd)
        os.close(self.fd)
        self.fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def _same_file(fd, path):
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


def _holder(data):
    """The lock file's record -> 'fashion (pid N on HOST) since TIME'."""
    try:
        record = json.loads(data)
        return f"fashion (pid {record['pid']} on {record['host']}) since {record['since']}"
    except (ValueError, TypeError, KeyError):  # the holder has locked but not yet written its record
        return "another fashion command"


def holder(path):
    """{'pid', 'host', 'since'} of the live command on this host that holds ``path``'s Lock, else None.

    Reads the holder's record only: taking even a shared lock could make a command starting at
    that moment refuse. A record left by a killed command names a pid that is gone.
    """
    try:
        record = json.loads(Lock(path).file.read_text())
        pid = int(record["pid"])
    except (OSError, ValueError, TypeError, KeyError):
        return None
    if record.get("host") != socket.gethostname():
        return record  # another machine's: cannot tell, so trust the record
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except OSError:  # alive, someone else's
        pass
    return record
