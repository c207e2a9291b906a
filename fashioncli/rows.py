"""Row files of `fashion predict`: CSV or JSONL, appended batch by batch so that --resume can go on
after a crash or a kill. What a row holds is the task's row layout (``Task.row_layout``)."""
import json
import os
from pathlib import Path

from .errors import DataError
from .inputs import path_key
from .io import ENCODING, CsvReader, csv_text_of, dumps, output_error

FORMATS = ("csv", "jsonl")


def one_line(error):
    """An error message as one line: rows are line-based."""
    return " ".join(error.split())


def output_format(out, fmt=None):
    fmt = (fmt or Path(out).suffix.lstrip(".") or "csv").lower()
    fmt = {"json": "jsonl", "ndjson": "jsonl"}.get(fmt, fmt)
    if fmt not in FORMATS:
        raise DataError(f"unknown output format '{fmt}' for '{out}'; use .csv or .jsonl (or --format csv|jsonl)")
    return fmt


def _truncate_partial(path, block=1 << 16):
    """Cut a line a crash left half-written: keep everything up to the last newline -> new size."""
    with open(path, "rb+") as f:
        end = f.seek(0, os.SEEK_END)
        pos = end
        while pos > 0:  # scan back from the end: the file may be far larger than memory wants
            start = max(0, pos - block)
            f.seek(start)
            newline = f.read(pos - start).rfind(b"\n")
            if newline >= 0:
                pos = start + newline + 1
                break
            pos = start
        if pos < end:
            f.truncate(pos)
        return pos


def read_done(out, fmt, columns):
    """Paths already in ``out`` (after cutting a partial last line) -> set of keys."""
    if not os.path.exists(out) or _truncate_partial(out) == 0:
        return set()
    done = set()
    with open(out, newline="", **ENCODING) as f:
        if fmt == "csv":
            reader = CsvReader(f)
            if tuple(reader.fieldnames or ()) != tuple(columns):
                raise DataError(
                    f"cannot resume '{out}': its columns are {','.join(reader.fieldnames or [])}, "
                    f"expected {','.join(columns)}; write to a new file or drop --resume"
                )
            done.update(path_key(row["path"]) for row in reader)
        else:
            for line_no, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    done.add(path_key(json.loads(line)["path"]))
                except (ValueError, KeyError, TypeError):
                    raise DataError(f"cannot resume '{out}': line {line_no} is not a prediction row") from None
    return done


class RowWriter:
    """Appends rows to CSV or JSONL and flushes each batch, so a crash loses at most one batch.

    A kill leaves whole rows and at most one partial last line, which --resume cuts off
    (``_truncate_partial``); an output that cannot be written is an OutputError naming it.
    """

    def __init__(self, out, fmt, append, layout):
        self.out, self.fmt, self.layout = out, fmt, layout
        try:
            Path(out).parent.mkdir(parents=True, exist_ok=True)
            # Not an atomic write: rows must reach the file as they are made, for --resume.
            self.file = open(out, "a" if append else "w", newline="", **ENCODING)
            if fmt == "csv" and self.file.tell() == 0:
                self._write(_csv_line(layout.columns))
        except OSError as exc:
            raise output_error(out, exc) from None

    def _write(self, text):
        try:
            self.file.write(text)
            self.file.flush()
        except OSError as exc:
            raise output_error(self.out, exc) from None

    def write(self, rows):
        if self.fmt == "csv":
            lines = (_csv_line(self.layout.csv_values(row)) for row in rows)
        else:
            lines = (dumps(row) + "\n" for row in rows)
        self._write("".join(lines))

    def close(self):
        try:
            self.file.close()
        except OSError:  # the failed flush was already reported
            pass


def _csv_line(values):
    return csv_text_of([values])
