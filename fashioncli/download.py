"""Downloading public datasets: checksummed, resumable, and failing fast when offline."""
import hashlib
import os
import socket
import urllib.error
import urllib.request
import zipfile
from http.client import HTTPException
from pathlib import Path

from tqdm import tqdm

from .errors import DataError

TIMEOUT = 10  # seconds to connect, and the longest silence tolerated mid-transfer
_CHUNK = 1 << 20


def download(url, dest, sha256=None, md5=None, timeout=TIMEOUT, progress=True):
    """Fetch ``url`` to ``dest`` (kept if already there and matching); returns ``dest`` as a Path.

    Bytes land in ``dest.part`` first and a rerun resumes it with an HTTP Range request; the
    file is renamed into place only once its checksum matches. ``sha256``/``md5``: the digest
    the publisher gives (None only where the publisher gives none).
    """
    dest = Path(dest)
    if dest.exists() and _matches(dest, sha256, md5):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "fashion-cli"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            resumed = response.status == 206
            total = response.length
            total = None if total is None else total + (have if resumed else 0)
            with open(part, "ab" if resumed else "wb") as f, tqdm(
                total=total, initial=have if resumed else 0, unit="B", unit_scale=True,
                desc=dest.name, disable=not progress, leave=False,
            ) as bar:
                while chunk := response.read(_CHUNK):
                    f.write(chunk)
                    bar.update(len(chunk))
        got = part.stat().st_size
        if total is not None and got < total:  # the server hung up early: keep the bytes for a resume
            raise DataError(f"download of {url} stopped after {got} of {total} bytes; rerun to resume it")
    except urllib.error.HTTPError as exc:
        if exc.code != 416:  # 416: the .part already holds every byte
            raise DataError(f"cannot download {url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError, OSError, HTTPException) as exc:
        reason = getattr(exc, "reason", exc)
        raise DataError(
            f"cannot download {url} ({reason}); check the connection and rerun to resume, "
            f"or download it yourself to {dest}"
        ) from None
    if not _matches(part, sha256, md5):
        part.unlink()
        raise DataError(f"download of {url} is corrupt (checksum mismatch); it was deleted, rerun to fetch it again")
    os.replace(part, dest)
    return dest


def _matches(path, sha256, md5):
    if sha256:
        return _digest(path, "sha256") == sha256.lower()
    if md5:
        return _digest(path, "md5") == md5.lower()
    if zipfile.is_zipfile(path):  # no published digest: at least every member's CRC must hold
        with zipfile.ZipFile(path) as z:
            return z.testzip() is None
    return True


def _digest(path, algorithm):
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()
