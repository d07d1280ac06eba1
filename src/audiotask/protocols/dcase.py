"""DCASE strong-label TSV files (``filename onset offset event_label``) as annotations.

Registered as the pyannote.database loader for ``.tsv`` files, so a ``database.yml`` can say
``annotation: path/to/labels.tsv``. A file's ``uri`` is its ``filename`` without extension.
"""

from __future__ import annotations

import csv
import functools
import os
from pathlib import Path

from pyannote.core import Annotation, Segment

HEADER = ("filename", "onset", "offset", "event_label")


def uri_of(filename: str) -> str:
    """``uri`` of a DCASE ``filename``: its base name without extension."""
    return Path(filename).stem


def read_dcase_tsv(path: str | Path) -> dict[str, Annotation]:
    """Read a DCASE strong-label TSV file into one ``Annotation`` per uri.

    Rows with an empty onset/offset (weak labels, or files with no event) declare the file
    with no event. Raises ``ValueError`` naming the file and line of a malformed row.
    """
    path = Path(path)
    return _read_cached(str(path.resolve()), os.stat(path).st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _read_cached(path: str, mtime_ns: int) -> dict[str, Annotation]:
    annotations: dict[str, Annotation] = {}
    with open(path, newline="", encoding="utf-8") as handle:
        rows = csv.reader(handle, delimiter="\t")
        for line_number, row in enumerate(rows, start=1):
            if not row or row[0].startswith("#") or tuple(row[:4]) == HEADER or row[0] == "filename":
                continue
            annotations.setdefault(uri_of(row[0]), Annotation(uri=uri_of(row[0])))
            if len(row) < 4 or row[1] == "" or row[2] == "":
                continue
            try:
                onset, offset = float(row[1]), float(row[2])
            except ValueError:
                raise ValueError(f"{path}, line {line_number}: onset/offset are not numbers: {row!r}") from None
            if not offset > onset >= 0:
                raise ValueError(f"{path}, line {line_number}: expected 0 <= onset < offset, got {row!r}")
            annotation = annotations[uri_of(row[0])]
            annotation[Segment(onset, offset), len(annotation)] = row[3]
    return annotations


def write_dcase_tsv(path: str | Path, events: list[tuple[str, float, float, str]]) -> None:
    """Write ``(filename, onset, offset, event_label)`` rows with the DCASE header."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(HEADER)
        for filename, onset, offset, label in events:
            writer.writerow([filename, f"{onset:.3f}", f"{offset:.3f}", label])


class DCASELoader:
    """pyannote.database loader: ``loader(file)`` returns the ``Annotation`` of ``file["uri"]``.

    A uri absent from the TSV file gets an empty annotation (a clip with no event).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.annotations = read_dcase_tsv(self.path)

    def __call__(self, file) -> Annotation:
        uri = file["uri"]
        if uri in self.annotations:
            return self.annotations[uri]
        return Annotation(uri=uri)
