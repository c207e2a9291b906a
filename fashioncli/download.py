"""Downloading public datasets (checksummed, resumable, failing fast when offline) and small files
such as recipes (bounded in size and in time)."""
import hashlib
import os
import socket
import threading
import time
import urllib.error
import urllib.request
import zipfile
from http.client import HTTPException
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from tqdm import tqdm

from .errors import DataError
from .userfiles import size_text

TIMEOUT = 10  # seconds to connect, and the longest silence tolerated mid-transfer
_CHUNK = 1 << 20
# The whole of a small fetch (a recipe): a server that trickles a byte every few seconds never
# trips TIMEOUT, so the fetch as a whole has a deadline too. The variable is for tests and slow links.
DEADLINE_ENV, DEADLINE = "FASHION_FETCH_DEADLINE", 30.0


class _HttpRedirects(urllib.request.HTTPRedirectHandler):
    """Redirects to http(s) only: urllib would also follow one to ftp:, which has no place here."""

    def http_error_302(self, req, fp, code, msg, headers):
        newurl = urljoin(req.full_url, headers.get("location") or headers.get("uri") or "")
        if urlsplit(newurl).scheme.lower() not in ("http", "https"):
            fp.close()
            raise urllib.error.URLError(f"redirect to '{newurl}' refused: only http(s) is followed")
        return super().http_error_302(req, fp, code, msg, headers)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302


_OPENER = urllib.request.build_opener(_HttpRedirects)


def _open(url, timeout):
    request = url if isinstance(url, urllib.request.Request) else urllib.request.Request(url)
    request.add_header("User-Agent", "fashion-cli")
    return _OPENER.open(request, timeout=timeout)


def fetch_deadline():
    """Seconds a whole ``fetch`` may take: $FASHION_FETCH_DEADLINE, else DEADLINE."""
    raw = os.environ.get(DEADLINE_ENV)
    if raw is None:
        return DEADLINE
    try:
        seconds = float(raw)
    except ValueError:
        seconds = 0
    if not 0 < seconds < float("inf"):
        raise DataError(f"{DEADLINE_ENV}={raw!r}: expected a number of seconds greater than 0")
    return seconds


def fetch(url, limit):
    """The body of an http(s) ``url`` -> bytes, or DataError with the reason: more than ``limit``
    bytes (refused, never cut), no whole answer within ``fetch_deadline()`` seconds, HTTP errors.

    The request runs in a daemon thread that this one waits for until the deadline, so nothing a
    server does (headers a byte at a time included) keeps the command waiting longer.
    """
    deadline = fetch_deadline()
    late = f"no complete answer within {deadline:g} s (${DEADLINE_ENV})"
    outcome = {}

    def work():
        try:
            outcome["data"] = _fetch(url, limit, time.monotonic() + deadline, late)
        except Exception as exc:  # handed to the waiting thread
            outcome["error"] = exc

    worker = threading.Thread(target=work, name=f"fetch {url}", daemon=True)
    worker.start()
    worker.join(deadline)
    if worker.is_alive():
        raise DataError(late)
    error = outcome.get("error")
    if isinstance(error, DataError):
        raise error
    if isinstance(error, urllib.error.HTTPError):
        raise DataError(f"HTTP {error.code} {error.reason}") from None
    if error is not None:
        raise DataError(str(getattr(error, "reason", None) or error)) from None
    return outcome["data"]


def _fetch(url, limit, end, late):
    too_large = DataError(f"larger than {size_text(limit)} (refused, not cut)")
    with _open(url, timeout=min(TIMEOUT, max(end - time.monotonic(), 0.01))) as response:
        if (response.length or 0) > limit:
            raise too_large
        chunks, total = [], 0
        while chunk := response.read1(_CHUNK):
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise too_large
            # The waiting thread gives up at the same moment; whichever notices first says the
            # same thing, so the message does not depend on which thread won the race.
            if time.monotonic() > end:
                raise DataError(late)
        return b"".join(chunks)


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
    request = urllib.request.Request(url)
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        with _open(request, timeout) as response:
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
