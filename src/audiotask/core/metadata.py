"""Prepared protocol metadata: compact arrays, saved uncompressed so they memory-map.

Iterating a pyannote.database protocol and its ``Annotation`` objects is slow and costs
memory in every dataloader worker. A task does it once (on rank 0), stores the result as
``.npy`` arrays in a cache folder, and every worker and rank maps the same pages.

Per subset, files are indexed ``0..n-1``; their annotated regions and annotation segments
are stored flat, sorted by file then start, with ``*_offsets`` (n+1,) giving each file's
slice. Segment lookup for a chunk is a binary search on starts, plus a binary search on
the running maximum of ends, so it costs O(log n) in the file's segments.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

logger = logging.getLogger(__name__)

@dataclass
class SubsetMetadata:
    """Arrays describing the files of one protocol subset."""

    uri: np.ndarray  # (files,) str
    audio: np.ndarray  # (files,) str, path of each audio file
    duration: np.ndarray  # (files,) float64, seconds
    annotated_offsets: np.ndarray  # (files + 1,) int64
    annotated: np.ndarray  # (regions, 2) float64, [start, end) seconds
    segment_offsets: np.ndarray  # (files + 1,) int64
    segment_start: np.ndarray  # (segments,) float64, sorted within each file
    segment_end: np.ndarray  # (segments,) float64
    segment_end_max: np.ndarray  # (segments,) float64, running max of ends within each file
    segment_class: np.ndarray  # (segments,) int16, index into the task's classes

    def __len__(self) -> int:
        return len(self.duration)

    def regions_of(self, file_index: int) -> np.ndarray:
        """(regions, 2) annotated regions of file ``file_index``."""
        return self.annotated[self.annotated_offsets[file_index] : self.annotated_offsets[file_index + 1]]

    def __post_init__(self):
        # plain ndarray views for lookups: slicing an np.memmap costs Python calls per slice
        # (the arrays are never reassigned after construction, so the views stay current)
        self._lookup = tuple(
            np.asarray(array)
            for array in (self.segment_offsets, self.segment_start, self.segment_end, self.segment_end_max, self.segment_class)
        )

    def segments_in(self, file_index: int, start: float, end: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(starts, ends, classes)`` of the segments of a file that overlap ``[start, end)``."""
        offsets, starts, ends, ends_max, classes = self._lookup
        first, last = int(offsets[file_index]), int(offsets[file_index + 1])
        # segments starting before `end`: a prefix of the file's (start-sorted) segments
        stop = first + int(starts[first:last].searchsorted(end, side="left"))
        # segments whose running max end exceeds `start`: a suffix; only those can overlap
        begin = first + int(ends_max[first:stop].searchsorted(start, side="right"))
        keep = ends[begin:stop] > start
        return starts[begin:stop][keep], ends[begin:stop][keep], classes[begin:stop][keep]

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        for field in fields(self):
            np.save(folder / f"{field.name}.npy", getattr(self, field.name), allow_pickle=False)

    @classmethod
    def load(cls, folder: Path, mmap: bool = True) -> "SubsetMetadata":
        mode = "r" if mmap else None
        return cls(**{f.name: np.load(folder / f"{f.name}.npy", mmap_mode=mode) for f in fields(cls)})


@dataclass
class ProtocolMetadata:
    """Prepared metadata of the subsets a task uses, with the class names of its targets."""

    classes: list[str]
    subsets: dict[str, SubsetMetadata]

    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        for name, subset in self.subsets.items():
            subset.save(folder / name)
        # written last: its presence marks a complete cache
        (folder / "metadata.json").write_text(json.dumps({"classes": self.classes, "subsets": list(self.subsets)}))

    @classmethod
    def load(cls, folder: str | Path, mmap: bool = True) -> "ProtocolMetadata":
        folder = Path(folder)
        info = json.loads((folder / "metadata.json").read_text())
        return cls(info["classes"], {name: SubsetMetadata.load(folder / name, mmap) for name in info["subsets"]})

    @staticmethod
    def exists(folder: str | Path) -> bool:
        return (Path(folder) / "metadata.json").is_file()


def _segments_of(file) -> Iterable[tuple[float, float, str]]:
    annotation = file["annotation"]
    for segment, _, label in annotation.itertracks(yield_label=True):
        yield segment.start, segment.end, str(label)


def _clip_to_duration(rows: Iterable[tuple[float, float, str]], duration: float) -> list:
    """Clip segments to the file's end (``protocols.files`` has already reported overruns)."""
    return [(start, min(end, duration), label) for start, end, label in rows if start < min(end, duration)]


def _flatten(per_file: list[np.ndarray], width: int, dtype) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.zeros(len(per_file) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(rows) for rows in per_file])
    flat = np.concatenate(per_file) if per_file and offsets[-1] else np.zeros((0, width), dtype=dtype)
    return flat.astype(dtype).reshape(-1, width), offsets


def _running_max_per_file(ends: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Running maximum of ``ends`` restarting at every file boundary (vectorised)."""
    if len(ends) == 0:
        return ends.copy()
    # shift each file by a constant larger than any previous value, so one global
    # cumulative max never leaks across files, then remove the shift
    file_of = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    shift = file_of * (float(ends.max()) + 1.0)
    return np.maximum.accumulate(ends + shift) - shift


def build_subset(files: Iterable, label_index: Callable[[str], int]) -> tuple[SubsetMetadata, Counter]:
    """Prepare one subset. ``label_index(label)`` gives a class index, or -1 for an unknown label.

    Returns the metadata and a count of unknown labels (by label), which callers report.
    """
    uris, audios, durations, regions, segments = [], [], [], [], []
    unknown: Counter = Counter()
    unknown_files: dict[str, str] = {}
    for file in files:
        uri, duration = str(file["uri"]), float(file["duration"])
        uris.append(uri)
        audios.append(str(file["audio"]))
        durations.append(duration)
        regions.append(np.array([[s.start, min(s.end, duration)] for s in file["annotated"] if s.start < duration]).reshape(-1, 2))
        rows = []
        for start, end, label in _clip_to_duration(_segments_of(file), duration):
            index = label_index(label)
            if index < 0:
                unknown[label] += 1
                unknown_files.setdefault(label, uri)
                continue
            rows.append((start, end, index))
        rows.sort()
        segments.append(np.array(rows, dtype=np.float64).reshape(-1, 3))
    annotated, annotated_offsets = _flatten(regions, 2, np.float64)
    flat, segment_offsets = _flatten(segments, 3, np.float64)
    metadata = SubsetMetadata(
        uri=np.array(uris, dtype=str),
        audio=np.array(audios, dtype=str),
        duration=np.array(durations, dtype=np.float64),
        annotated_offsets=annotated_offsets,
        annotated=annotated,
        segment_offsets=segment_offsets,
        segment_start=np.ascontiguousarray(flat[:, 0]),
        segment_end=np.ascontiguousarray(flat[:, 1]),
        segment_end_max=_running_max_per_file(np.ascontiguousarray(flat[:, 1]), segment_offsets),
        segment_class=flat[:, 2].astype(np.int16),
    )
    for label, count in unknown.items():
        logger.warning("label %r (%d segments, e.g. in %r) is not one of the task's classes", label, count, unknown_files[label])
    return metadata, unknown
