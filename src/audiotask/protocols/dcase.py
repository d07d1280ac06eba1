"""DCASE label TSV files: strong labels as annotations, weak labels as label sets.

Strong labels (``filename onset offset event_label``) say when each event happens; weak
labels (``filename event_labels``, labels comma-separated) only which classes occur in a
file. The header line tells them apart; without one, the number of columns does (4 or 2).

:class:`DCASELoader` is registered as the pyannote.database loader for ``.tsv`` files, so a
``database.yml`` can say ``annotation: path/to/labels.tsv`` for either kind. A file's
``uri`` is given by :func:`audiotask.protocols.uris.uri_of`.
"""

from __future__ import annotations

import csv
import functools
import os
from collections import Counter
from pathlib import Path
from typing import Iterable, Union

from pyannote.core import Annotation, Segment

from audiotask.io import Row, replaced_atomically, table_rows
from audiotask.protocols.uris import uri_of

__all__ = [
    "HEADER", "WEAK_HEADER", "WeakLabels", "DCASELoader",
    "read_dcase_tsv", "read_dcase_weak_tsv", "write_dcase_tsv", "uri_of",
]

#: header of a strong-label file (the one :func:`write_dcase_tsv` writes)
HEADER = ("filename", "onset", "offset", "event_label")
#: header of a weak-label file
WEAK_HEADER = ("filename", "event_labels")

_STRONG, _WEAK = "strong", "weak"


class WeakLabels(tuple):
    """The sorted, unique label names of one file: which classes occur in it, not when.

    A tuple, so that it is hashable and JSON writes it as a list of names.
    """

    __slots__ = ()

    def __new__(cls, labels: Iterable[str] = ()) -> "WeakLabels":
        return super().__new__(cls, sorted(set(labels)))

    def __repr__(self) -> str:
        return f"WeakLabels({tuple(self)!r})"


def read_dcase_tsv(path: Union[str, Path]) -> dict[str, Annotation]:
    """Read a DCASE strong-label TSV file into one ``Annotation`` per uri.

    A row with both onset and offset empty declares its file with no event; identical rows
    are kept as distinct tracks. Raises ``ValueError`` naming the file and line of a
    malformed row, and for a weak-label file (see :func:`read_dcase_weak_tsv`).
    """
    kind, labels = _read(path)
    if kind != _STRONG:
        raise ValueError(f"{path} holds weak labels (filename, event_labels): read it with read_dcase_weak_tsv")
    return labels


def read_dcase_weak_tsv(path: Union[str, Path]) -> dict[str, WeakLabels]:
    """Read a DCASE weak-label TSV file (``filename<TAB>Dog,Speech``) into ``{uri: WeakLabels}``.

    A file listed with an empty label field gets ``WeakLabels(())``; the labels of a file
    listed on several lines are united. Raises ``ValueError`` naming the file and line of a
    malformed row, and for a strong-label file (see :func:`read_dcase_tsv`).
    """
    kind, labels = _read(path)
    if kind != _WEAK:
        raise ValueError(f"{path} holds strong labels (filename, onset, offset, event_label): read it with read_dcase_tsv")
    return labels


def write_dcase_tsv(path: Union[str, Path], events: list[tuple[str, float, float, str]]) -> None:
    """Write ``(filename, onset, offset, event_label)`` rows with the DCASE header (whole: see
    ``audiotask.io``)."""
    with replaced_atomically(path) as partial, open(partial, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(HEADER)
        for filename, onset, offset, label in events:
            writer.writerow([filename, f"{onset:.3f}", f"{offset:.3f}", label])


class DCASELoader:
    """pyannote.database loader: ``loader(file)`` returns the labels of ``file["uri"]``.

    An ``Annotation`` for a strong-label file, a :class:`WeakLabels` for a weak-label one. A
    uri absent from the TSV file has no event: an empty annotation, or ``WeakLabels(())``.
    """

    def __init__(self, path: Union[str, Path]):
        self.path = Path(path)
        self.kind, self.labels = _read(self.path)

    def __call__(self, file) -> Union[Annotation, WeakLabels]:
        uri = file["uri"]
        if uri in self.labels:
            return self.labels[uri]
        return WeakLabels() if self.kind == _WEAK else Annotation(uri=uri)


def _read(path: Union[str, Path]) -> tuple[str, dict]:
    """``(kind, {uri: labels})`` of a DCASE TSV file, cached until the file changes."""
    path = Path(path)
    return _read_cached(str(path.resolve()), os.stat(path).st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _read_cached(path: str, mtime_ns: int) -> tuple[str, dict]:
    rows = table_rows(path, comment="#")
    kind = _detect_kind(path, rows)
    return kind, (_parse_strong(path, rows) if kind == _STRONG else _parse_weak(path, rows))


def _detect_kind(path: str, rows: list[Row]) -> str:
    """Strong or weak labels, from the header, else from the first row's number of columns."""
    if not rows:
        return _STRONG  # nothing to tell: no file has an event either way
    line_number, first = rows[0]
    if _is_header(first):
        if tuple(first[:4]) == HEADER:
            return _STRONG
        if tuple(first) == WEAK_HEADER:
            return _WEAK
        raise ValueError(f"{path}, line {line_number}: unknown header {first!r}, expected {HEADER} or {WEAK_HEADER}")
    if len(first) == 2:
        return _WEAK
    if len(first) >= 4:
        return _STRONG
    raise ValueError(
        f"{path}, line {line_number}: no header, and {len(first)} columns are neither weak labels "
        f"(2: filename, event_labels) nor strong labels (4: filename, onset, offset, event_label)"
    )


def _is_header(row: list[str]) -> bool:
    # headers may repeat where files were concatenated
    return row[0] == "filename"


def _uri(path: str, line_number: int, row: list[str]) -> str:
    if not row[0]:
        raise ValueError(f"{path}, line {line_number}: empty filename: {row!r}")
    return uri_of(row[0])


def _parse_strong(path: str, rows: list[Row]) -> dict[str, Annotation]:
    annotations: dict[str, Annotation] = {}
    # a per-file track counter: identical rows (same segment and label) stay distinct tracks
    tracks: Counter = Counter()
    for line_number, row in rows:
        if _is_header(row):
            continue
        uri = _uri(path, line_number, row)
        annotation = annotations.setdefault(uri, Annotation(uri=uri))
        event = _strong_event(path, line_number, row)
        if event is None:
            continue
        onset, offset, label = event
        annotation[Segment(onset, offset), tracks[uri]] = label
        tracks[uri] += 1
    return annotations


def _strong_event(path: str, line_number: int, row: list[str]) -> Union[tuple[float, float, str], None]:
    """``(onset, offset, label)`` of a strong-label row; None for a file declared with no event."""
    where = f"{path}, line {line_number}"
    if len(row) < 4:
        raise ValueError(f"{where}: expected 4 tab-separated columns {HEADER}, got {row!r}")
    if row[1] == "" and row[2] == "":
        return None
    try:
        onset, offset = float(row[1]), float(row[2])
    except ValueError:
        raise ValueError(f"{where}: onset/offset are not numbers: {row!r}") from None
    if not offset > onset >= 0:
        raise ValueError(f"{where}: expected 0 <= onset < offset, got {row!r}")
    if not row[3]:
        raise ValueError(f"{where}: empty event_label: {row!r}")
    return onset, offset, row[3]


def _parse_weak(path: str, rows: list[Row]) -> dict[str, WeakLabels]:
    labels: dict[str, set[str]] = {}
    for line_number, row in rows:
        if _is_header(row):
            continue
        if len(row) != 2:
            raise ValueError(f"{path}, line {line_number}: expected 2 tab-separated columns {WEAK_HEADER}, got {row!r}")
        labels.setdefault(_uri(path, line_number, row), set()).update(_split_labels(path, line_number, row[1]))
    return {uri: WeakLabels(names) for uri, names in labels.items()}


def _split_labels(path: str, line_number: int, field: str) -> list[str]:
    """The comma-separated label names of a weak-label field; none for an empty field."""
    if not field.strip():
        return []
    names = [name.strip() for name in field.split(",")]
    if "" in names:
        raise ValueError(f"{path}, line {line_number}: empty label name in {field!r}")
    return names
