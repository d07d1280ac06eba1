"""Files written whole or not at all, text tables read with line numbers, and where caches live.

Every file that another process (or a later run) may read while it is written, or after a
kill mid-write, goes through :func:`replaced_atomically`: it is written under a temporary
name of this writer (``NAME.HOST.PID.partial``), then renamed over its path (``os.replace``
is atomic on one file system), so a reader sees the previous file or the new one, never
half of one. A crash leaves the temporary file behind, named by its writer, for
``engine.locks.remove_leftovers`` to recognise. A write that fails (a full disk, a folder
without write permission, a read-only file system) is an ``OSError`` naming the file.

Every text table a user gives (DCASE TSV, clip tables, durations, score tables, RTTM, UEM)
is read through :func:`table_rows` or :func:`naming_bad_text`: a file that is not UTF-8 is
one ``ValueError`` naming the file and the line of its first bad byte.

Caches (prepared metadata, decoded audio, generated protocols) live below
:func:`default_cache_root` unless a task is given its own folder.
"""

from __future__ import annotations

import os
import socket
import csv
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional, Union

#: a numbered row of a text table: (line number, cells)
Row = tuple[int, list[str]]


def default_cache_root() -> Path:
    """``$AUDIOTASK_CACHE``, else ``~/.cache/audiotask``."""
    return Path(os.environ.get("AUDIOTASK_CACHE", Path.home() / ".cache" / "audiotask"))


def writer_tag() -> str:
    """``host.pid``: names a writer's temporary files uniquely, even on a file system that
    several machines (or containers with equal pids) share."""
    return f"{socket.gethostname()}.{os.getpid()}"


@contextmanager
def replaced_atomically(path: Union[str, Path], *, sync: bool = False) -> Iterator[Path]:
    """The temporary path to write ``path``'s new content into; renamed over ``path`` when the
    block ends without error (after an ``fsync`` with ``sync``: the rename must not reach the
    disk before the data), removed when it raises."""
    path = Path(path)
    partial = path.parent / f"{path.name}.{writer_tag()}.partial"
    try:
        yield partial
        if sync:
            with open(partial, "rb") as handle:
                os.fsync(handle.fileno())
        os.replace(partial, path)
    except OSError as error:
        partial.unlink(missing_ok=True)
        if error.filename not in (None, str(partial), partial):  # another file's error: it names that file
            raise
        raise naming_the_file(path, error) from error
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def naming_the_file(path: Union[str, Path], error: OSError) -> OSError:
    """``error`` (a write that failed: a full disk, a folder without write permission, a
    read-only file system) as the same ``OSError`` naming ``path``: a ``write()`` on a full
    disk names no file, and a temporary file's name is not the one the user knows."""
    if error.errno is None:
        return OSError(f"{path}: {error}")
    return OSError(error.errno, error.strerror or os.strerror(error.errno), str(path))


def write_text_atomically(path: Union[str, Path], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` whole (see :func:`replaced_atomically`)."""
    with replaced_atomically(path) as partial:
        partial.write_text(text, encoding="utf-8")
    return Path(path)


def not_utf8_error(path: Union[str, Path], error: UnicodeDecodeError) -> ValueError:
    """A ``ValueError`` naming ``path`` and the line of its first byte that is not UTF-8.

    ``error`` (raised while reading ``path``) only knows a position in the block being
    decoded, so the file is decoded once more to find the line.
    """
    data = Path(path).read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as whole:
        error = whole
    else:  # decoded this time (the file changed): say what is known
        return ValueError(f"{path}: not UTF-8 text ({error.reason})")
    line_number = data.count(b"\n", 0, error.start) + 1
    return ValueError(f"{path}, line {line_number}: not UTF-8 text (byte 0x{data[error.start]:02x}): "
                      "save the file as UTF-8")


@contextmanager
def naming_bad_text(path: Union[str, Path]) -> Iterator[None]:
    """Around a reader of ``path`` (pyannote's RTTM and UEM loaders, say): a
    ``UnicodeDecodeError`` becomes :func:`not_utf8_error`'s one line."""
    try:
        yield
    except UnicodeDecodeError as error:
        raise not_utf8_error(path, error) from None


def table_rows(
    path: Union[str, Path], *, delimiter: str = "\t", comment: Optional[str] = None, encoding: str = "utf-8",
) -> list[Row]:
    """The rows of a delimited text file, each with its line number (1-based, as an editor
    counts), rows without any cell left out, and rows whose first cell starts with
    ``comment`` too.

    ``encoding="utf-8-sig"`` also reads files that spreadsheet programs save with a BOM.
    """
    rows = []
    with naming_bad_text(path), open(path, newline="", encoding=encoding) as handle:
        reader = csv.reader(handle, delimiter=delimiter)
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            if comment is not None and row[0].startswith(comment):
                continue
            rows.append((reader.line_num, row))
    return rows


def read_json_object(path: Union[str, Path]) -> dict:
    """The JSON object in ``path``: ``ValueError`` naming it when it is not JSON, not UTF-8 or
    not an object."""
    import json

    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: invalid JSON: {error}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return data


def read_text(path: Union[str, Path]) -> str:
    """The UTF-8 text of ``path`` (see :func:`not_utf8_error`)."""
    with naming_bad_text(path):
        return Path(path).read_text(encoding="utf-8")
