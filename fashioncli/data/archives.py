"""Unpacking dataset archives (zip, tar, tar.gz/bz2/xz) so that nothing lands outside the target.

Every member is checked before anything is written: an absolute name, a '..' in a name, or a link
whose target leaves the folder refuses the whole archive with a DataError naming the member
(tar members also pass Python's 'data' extraction filter: no devices, no absolute links). Links
are checked again once unpacked, by where they lead, and removed if any leads out.
"""
import os
import posixpath
import re
import shutil
import stat
import tarfile
import zipfile
import zlib
from pathlib import Path

from ..errors import DataError

SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
_DRIVE = re.compile(r"^[A-Za-z]:")


def is_archive(path):
    return str(path).lower().endswith(SUFFIXES) and Path(path).is_file()


def extract(archive, dest):
    """Unpack ``archive`` into the folder ``dest`` (created); returns ``dest`` as a Path."""
    archive, dest = Path(archive), Path(dest)
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as z:
                _extract_zip(z, archive, dest)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as t:
                _extract_tar(t, archive, dest)
        else:
            raise DataError(f"'{archive}' is not a zip or tar archive")
    except tarfile.FilterError as exc:
        raise _escapes(archive, exc.tarinfo.name, dest) from None
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error) as exc:
        raise DataError(f"cannot unpack '{archive}' ({exc}); is it damaged or incomplete?") from None
    except OSError as exc:
        raise DataError(f"cannot unpack '{archive}' into '{dest}': {exc.strerror or exc}") from None
    _check_links(archive, dest)
    return dest


def _escapes(archive, name, dest):
    return DataError(f"'{archive}' holds '{name}', which points outside '{dest}'; refusing to unpack it")


def _inside(name):
    """A relative member name without '..' (backslashes count as separators, as on Windows)."""
    name = name.replace("\\", "/")
    return not (name.startswith("/") or _DRIVE.match(name) or ".." in name.split("/"))


def _link_inside(name, target):
    return _inside(target) and _inside(posixpath.normpath(posixpath.join(posixpath.dirname(name), target)))


def _check_links(archive, dest):
    """Links are checked by name first; this catches chains (a -> b/.., b -> .) by where they lead."""
    root = Path(os.path.realpath(dest))
    links = [Path(d) / n for d, dirs, files in os.walk(dest) for n in dirs + files if os.path.islink(Path(d) / n)]
    bad = [p for p in links if not Path(os.path.realpath(p)).is_relative_to(root)]
    if bad:
        for link in links:  # no link of a refused archive stays behind
            link.unlink()
        raise _escapes(archive, bad[0].relative_to(dest).as_posix(), dest)


def _check_space(total, dest):
    free = shutil.disk_usage(dest).free
    if total > free:  # a zip bomb, or a disk too small: fail before filling it
        raise DataError(f"unpacking needs {total / 1e9:.1f} GB but '{dest}' has {free / 1e9:.1f} GB free")


def _extract_zip(z, archive, dest):
    members, links = [], {}
    for info in z.infolist():
        if not _inside(info.filename):
            raise _escapes(archive, info.filename, dest)
        if stat.S_ISLNK(info.external_attr >> 16):  # zipfile itself would write the link as a text file
            links[info.filename] = z.read(info).decode("utf-8", "surrogateescape")
            if not _link_inside(info.filename, links[info.filename]):
                raise _escapes(archive, info.filename, dest)
        else:
            members.append(info)
    dest.mkdir(parents=True, exist_ok=True)
    _check_space(sum(i.file_size for i in members), dest)
    z.extractall(dest, members)
    for name, target in links.items():
        link = dest / name.rstrip("/")
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, link)


def _extract_tar(t, archive, dest):
    if not hasattr(tarfile, "data_filter"):  # added in Python 3.10.12 and 3.11.4
        raise DataError(f"unpacking '{archive}' safely needs Python 3.10.12 or 3.11.4 or later; unpack it yourself")
    members = t.getmembers()
    for m in members:
        if not _inside(m.name) or (m.issym() and not _link_inside(m.name, m.linkname)):
            raise _escapes(archive, m.name, dest)
    dest.mkdir(parents=True, exist_ok=True)
    for m in members:  # the 'data' filter's own checks, before any member is written
        tarfile.data_filter(m, str(dest))
    _check_space(sum(m.size for m in members), dest)
    t.extractall(dest, filter="data")
