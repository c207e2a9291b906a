"""Writing outputs: atomically (a crash leaves the old file or the new one, never half of one),
and failing with OutputError naming the file (read-only folder, disk full), never a traceback.

A file name that is not valid UTF-8 arrives as a str with lone surrogates (Python's
``surrogateescape``); outputs keep it exact, so a path in a CSV or JSON file still opens the file
it names: text files store its original bytes (``ENCODING``), JSON \\u-escapes it (``dumps``).

Text that names things the user chose (classes, file names, labels, errors) is escaped where a
reader would take it as markup: a CSV cell a spreadsheet would run as a formula (``csv_cell``,
undone by ``CsvReader``), a Markdown table cell (``md_cell``).
"""
import csv
import errno
import io
import json
import math
import os
import re
import secrets
import stat
from contextlib import contextmanager
from pathlib import Path

from .errors import OutputError

ENCODING = {"encoding": "utf-8", "errors": "surrogateescape"}  # for open() and Path.read/write_text
_TMP_SUFFIX = ".tmp"
_SURROGATE = re.compile("[\ud800-\udfff]")  # never part of valid text: always a lone one here
# A spreadsheet runs a cell starting with one of these as a formula (OWASP, "CSV injection"); a
# leading ' makes it text. A cell that starts with ' gets one more, so CsvReader undoes it exactly.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_ESCAPED_START = (*_FORMULA_START, "'")
_LINE_BREAK = re.compile(r"\r\n|[\n\r\v\f\x1c-\x1e\x85\u2028\u2029]")


def output_error(path, exc):
    """OSError while writing ``path`` -> OutputError with a message the user can act on."""
    reason = exc.strerror or str(exc)
    culprit = Path(exc.filename) if exc.filename else None
    if culprit and isinstance(exc, (FileExistsError, NotADirectoryError)):  # mkdir met a file
        blocker = next((p for p in (culprit, *culprit.parents) if p.is_file()), None)
        reason = f"'{blocker}' is a file, not a folder" if blocker else reason
    elif culprit and culprit != Path(path) and not is_temporary(culprit.name):
        reason += f" ('{culprit}')"
    return OutputError(f"cannot write '{path}': {reason}")


def make_dir(path):
    """``path`` and its parents as folders, or OutputError (e.g. a file stands in the way)."""
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise output_error(path, exc) from None


@contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; it replaces ``path`` only if the block succeeds.

    The file gets the permissions a plain ``open()`` would give it: those of the file it replaces,
    else 0666 less the umask (and any default ACL). mkstemp's private 0600 would keep a checkpoint
    or model.onnx from a teammate or a serving container.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _create_beside(path)
    except OSError as exc:
        raise output_error(path, exc) from None
    try:
        yield tmp
        try:
            os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode))
        except FileNotFoundError:
            pass
        os.replace(tmp, path)
    except OSError as exc:
        raise output_error(path, exc) from None
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def _create_beside(path):
    """A new empty file ``.<name>.<random>.tmp`` beside ``path``, created as open() creates files
    (mode 0666 through the umask; mkstemp has no mode argument) -> its Path."""
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}{_TMP_SUFFIX}")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary name", str(path))


def is_temporary(name):
    """Whether a file name is one atomic_path makes (a killed process may leave it behind)."""
    return name.startswith(".") and name.endswith(_TMP_SUFFIX)


def remove_temporaries(folder):
    """Delete what atomic_path left in ``folder`` when its process was killed mid-write."""
    for stale in Path(folder).iterdir():
        if is_temporary(stale.name) and stale.is_file():
            stale.unlink(missing_ok=True)


def write_text(path, text):
    with atomic_path(path) as tmp:
        tmp.write_text(text, **ENCODING)


def dumps(data, indent=None):
    """JSON that keeps non-ASCII text readable and stays valid UTF-8 whatever the file names."""
    text = json.dumps(data, indent=indent, ensure_ascii=False, default=str)
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def write_json(path, data):
    write_text(path, dumps(data, indent=2) + "\n")


def json_number(value):
    """A float (or 0-d tensor) for a JSON report: rounded past float32 noise, None where undefined
    (NaN: JSON has no NaN)."""
    value = float(value)
    return None if math.isnan(value) else round(value, 6)


def csv_cell(value):
    """A CSV cell a spreadsheet shows as text: text that starts like a formula gets a leading '.
    Numbers stay numbers (a negative score is not a formula)."""
    if isinstance(value, str) and value.startswith(_ESCAPED_START):
        return "'" + value
    return value


def csv_text(cell):
    """The text ``csv_cell`` escaped."""
    return cell[1:] if cell.startswith("'") and cell[1:].startswith(_ESCAPED_START) else cell


def csv_text_of(rows, lineterminator="\r\n"):
    """Rows (header first) as CSV text, every cell through ``csv_cell``."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator=lineterminator).writerows([csv_cell(v) for v in row] for row in rows)
    return buf.getvalue()


def write_csv(path, header, rows, lineterminator="\r\n"):
    """A CSV file (``csv_text_of``), atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="", **ENCODING) as f:
        f.write(csv_text_of([header, *rows], lineterminator))


class CsvReader(csv.DictReader):
    """``csv.DictReader`` of a CSV that ``csv_text_of`` wrote: column names and cells unescaped."""

    @property
    def fieldnames(self):
        if not hasattr(self, "_unescaped"):
            names = csv.DictReader.fieldnames.fget(self)  # reads the header line
            if names is None:
                return None
            self._unescaped = [csv_text(c) for c in names]
        return self._unescaped

    def __next__(self):
        row = super().__next__()
        return {k: csv_text(v) if isinstance(v, str) else v for k, v in row.items()}


def md_cell(value):
    """Text for one cell of a Markdown table: a | would end the cell, a line break the row."""
    return _LINE_BREAK.sub(" ", str(value)).replace("|", "\\|")
