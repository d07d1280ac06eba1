"""Prepared protocol metadata: compact arrays, saved uncompressed so they memory-map.

Iterating a pyannote.database protocol and its ``Annotation`` objects is slow and costs
memory in every dataloader worker. A task does it once (on rank 0), stores the result as
``.npy`` arrays in a cache folder, and every worker and rank maps the same pages.

Segments keep their label as annotated (a speaker or source name: the track), an index into
the metadata's label vocabulary; which output class a label counts for is the task's business
(speakers are labels, "overlap" is a class), so the same prepared metadata serves every task.
Each file also has a row of string attributes (database, label kind, weak tags, fold...).

Per subset, files are indexed ``0..n-1``; their annotated regions and annotation segments
are stored flat, sorted by file then start, with ``*_offsets`` (n+1,) giving each file's
slice. Segments longer than a bound (the task's chunk duration) are stored as consecutive
pieces no longer than it, which changes no target (pieces of one class merge back) but
bounds how far before a chunk a segment overlapping it can start: looking up the segments
of a chunk is two binary searches on starts, O(log n) in the file's segments plus the few
found, even when a file-long segment overlaps everything.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

# writer_tag is part of this module's interface (temporary names), kept with the locks
from audiotask.core.frames import whole_steps
from audiotask.engine.locks import remove_leftovers, writer_tag

#: version of the arrays' layout, part of the cache key: a cache of another layout is never read
METADATA_FORMAT = 4


def audio_stamp(path: str) -> tuple[int, int]:
    """``(size, mtime in ns)`` of an audio file, ``(-1, -1)`` when it cannot be read."""
    try:
        stat = os.stat(path)
    except OSError:
        return -1, -1
    return stat.st_size, stat.st_mtime_ns

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
    segment_label: np.ndarray  # (segments,) int32, index into ProtocolMetadata.labels (the track)
    max_segment_length: np.ndarray  # () float64, longest segment (piece) of the subset
    audio_stamp: np.ndarray  # (files, 2) int64, size and mtime (ns) of each audio file
    #: per-file attribute table: name -> (files,) str array ("" where a file has no value)
    attributes: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.duration)

    def attribute(self, name: str) -> np.ndarray:
        """(files,) str values of attribute ``name``; KeyError naming the prepared ones."""
        if name not in self.attributes:
            raise KeyError(f"no file attribute {name!r} was prepared (prepared: {sorted(self.attributes)}).")
        return self.attributes[name]

    def changed_audio(self) -> list[str]:
        """Uris of the files whose audio changed (size or modification time) since preparation:
        durations read from their headers may be stale."""
        now = np.array([audio_stamp(path) for path in self.audio.tolist()], dtype=np.int64).reshape(-1, 2)
        return [str(uri) for uri in self.uri[np.any(now != np.asarray(self.audio_stamp), axis=1)]]

    def select(self, files) -> "SubsetMetadata":
        """A new subset holding only files ``files`` (indices into this one), in that order.

        Their annotated regions and segments are re-flattened with new offsets and every
        attribute is kept: e.g. the files of one fold of a training set, split off to
        validate on. The arrays are plain copies (never the memory map of this subset).
        """
        files = np.asarray(files, dtype=np.int64).reshape(-1)
        if len(files) and (files.min() < 0 or files.max() >= len(self)):
            raise IndexError(f"SubsetMetadata.select: file indices must lie in [0, {len(self)}), got {files.tolist()}.")
        annotated_offsets, annotated_rows = _gather_ragged(np.asarray(self.annotated_offsets), files)
        segment_offsets, segment_rows = _gather_ragged(np.asarray(self.segment_offsets), files)
        starts, ends = np.asarray(self.segment_start)[segment_rows], np.asarray(self.segment_end)[segment_rows]
        return SubsetMetadata(
            uri=np.asarray(self.uri)[files],
            audio=np.asarray(self.audio)[files],
            duration=np.asarray(self.duration)[files],
            annotated_offsets=annotated_offsets,
            annotated=np.asarray(self.annotated).reshape(-1, 2)[annotated_rows],
            segment_offsets=segment_offsets,
            segment_start=starts,
            segment_end=ends,
            segment_label=np.asarray(self.segment_label)[segment_rows],
            # the lookup bound of the kept pieces: no larger than it must be
            max_segment_length=np.array(float(np.max(ends - starts, initial=0.0))),
            audio_stamp=np.asarray(self.audio_stamp).reshape(-1, 2)[files],
            attributes={name: np.asarray(values)[files] for name, values in self.attributes.items()},
        )

    def regions_of(self, file_index: int) -> np.ndarray:
        """(regions, 2) annotated regions of file ``file_index``."""
        return self.annotated[self.annotated_offsets[file_index] : self.annotated_offsets[file_index + 1]]

    def __post_init__(self):
        # plain ndarray views for lookups: slicing an np.memmap costs Python calls per slice
        # (the arrays are never reassigned after construction, so the views stay current)
        self._lookup = tuple(
            np.asarray(array) for array in (self.segment_offsets, self.segment_start, self.segment_end, self.segment_label)
        )
        self._longest = float(self.max_segment_length)

    def segments_in(self, file_index: int, start: float, end: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(starts, ends, labels)`` of the segments of a file that overlap ``[start, end)``."""
        offsets, starts, ends, labels = self._lookup
        first, last = int(offsets[file_index]), int(offsets[file_index + 1])
        # segments starting before `end`: a prefix of the file's (start-sorted) segments
        stop = first + int(starts[first:last].searchsorted(end, side="left"))
        # no segment is longer than the longest: those ending after `start` start after this
        begin = first + int(starts[first:stop].searchsorted(start - self._longest, side="right"))
        keep = ends[begin:stop] > start
        return starts[begin:stop][keep], ends[begin:stop][keep], labels[begin:stop][keep]

    def region_ends(self, files: np.ndarray, starts: np.ndarray) -> np.ndarray:
        """End of the annotated region in which each chunk ``(files[i], starts[i])`` starts.

        Chunks are drawn inside annotated regions; one longer than its region runs past its
        end, where nothing is annotated. A chunk that starts outside every region of its file
        gets its own start (nothing of it is annotated). Vectorised: one binary search.
        """
        return self.region_bounds(files, starts)[1]

    def region_bounds(self, files: np.ndarray, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(starts, ends)`` of the annotated region containing each ``(files[i], times[i])``;
        both equal to the time itself when it lies outside every region of its file."""
        files, times = np.asarray(files, dtype=np.int64), np.asarray(times, dtype=np.float64)
        keys = self._region_keys()
        if not len(keys):
            return times.copy(), times.copy()
        index = np.searchsorted(keys, files * self._key_span + times, side="right") - 1
        found = np.maximum(index, 0)
        annotated = np.asarray(self.annotated)
        region_starts, region_ends = annotated[found, 0], annotated[found, 1]
        inside = (index >= 0) & (self._region_file[found] == files) & (times < region_ends)
        return np.where(inside, region_starts, times), np.where(inside, region_ends, times)

    def _region_keys(self) -> np.ndarray:
        # (file, region start) as one sortable float: file * span + start, span > any time
        if not hasattr(self, "_keys"):
            annotated = np.asarray(self.annotated)
            self._key_span = float(np.max(self.duration, initial=0.0)) + 1.0
            self._region_file = np.repeat(np.arange(len(self)), np.diff(self.annotated_offsets))
            self._keys = self._region_file * self._key_span + annotated[:, 0]
        return self._keys

    def save(self, folder: Path) -> None:
        (folder / "attributes").mkdir(parents=True, exist_ok=True)
        for array in fields(self):
            if array.name != "attributes":
                np.save(folder / f"{array.name}.npy", getattr(self, array.name), allow_pickle=False)
        for name, values in self.attributes.items():
            np.save(folder / "attributes" / f"{name}.npy", np.asarray(values, dtype=str), allow_pickle=False)

    @classmethod
    def load(cls, folder: Path, mmap: bool = True) -> "SubsetMetadata":
        mode = "r" if mmap else None
        arrays = {f.name: np.load(folder / f"{f.name}.npy", mmap_mode=mode) for f in fields(cls) if f.name != "attributes"}
        # attributes are small and read as whole columns: plain arrays
        attributes = {path.stem: np.load(path) for path in sorted((folder / "attributes").glob("*.npy"))}
        return cls(**arrays, attributes=attributes)


@dataclass
class ProtocolMetadata:
    """Prepared metadata of a protocol's subsets, with the vocabulary of their labels."""

    labels: list[str]
    subsets: dict[str, SubsetMetadata]
    #: annotated segments of each label over all subsets, as annotated (before any cut)
    segments_per_label: dict[str, int] = field(default_factory=dict)

    def save(self, folder: str | Path, *, replace: bool = False) -> None:
        """Write the arrays into ``folder`` atomically: a reader sees all of them or none.

        With ``replace``, an existing (stale) copy is replaced; otherwise a copy another
        process finished first is kept. Safe against concurrent writers (whichever finishes
        last leaves a whole copy); to prepare a folder once, hold ``engine.locks.file_lock``
        from the check that it is missing to the end of ``save``. Temporary copies of
        crashed writers of ``folder`` are removed (see ``engine.locks.remove_leftovers``).
        """
        folder = Path(folder)
        remove_leftovers(folder.parent, f"{folder.name}.")
        partial = folder.parent / f"{folder.name}.{writer_tag()}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        for name, subset in self.subsets.items():
            subset.save(partial / name)
        (partial / "metadata.json").write_text(json.dumps({"labels": self.labels, "subsets": list(self.subsets), "segments_per_label": self.segments_per_label}))
        if replace:
            stale = folder.parent / f"{folder.name}.{writer_tag()}.stale"
            shutil.rmtree(stale, ignore_errors=True)
            try:
                os.replace(folder, stale)
            except FileNotFoundError:  # nothing to replace, or another writer moved it first
                pass
            # mapped by a reader: its pages stay valid on POSIX; elsewhere removed as a leftover later
            shutil.rmtree(stale, ignore_errors=True)
        try:
            os.replace(partial, folder)
        except OSError:  # another process prepared the same metadata first: keep its copy
            if not self.exists(folder):
                raise
            shutil.rmtree(partial, ignore_errors=True)

    @classmethod
    def load(cls, folder: str | Path, mmap: bool = True) -> "ProtocolMetadata":
        folder = Path(folder)
        identity = _identity(folder)  # before reading: a copy replaced meanwhile is then refused by workers
        info = json.loads((folder / "metadata.json").read_text())
        subsets = {name: SubsetMetadata.load(folder / name, mmap) for name in info["subsets"]}
        metadata = cls(info["labels"], subsets, info["segments_per_label"])
        if mmap:
            metadata._mapped = (str(folder), identity)
        return metadata

    def __reduce_ex__(self, protocol):
        # a dataloader worker started by spawn maps the same files rather than receiving
        # a copy of every array (fork shares them without pickling)
        mapped = getattr(self, "_mapped", None)
        if mapped is None:
            return super().__reduce_ex__(protocol)
        return _load_mapped, mapped

    def changed_audio(self) -> list[str]:
        """Uris of the files (of every subset) whose audio changed since preparation."""
        return [uri for subset in self.subsets.values() for uri in subset.changed_audio()]

    @staticmethod
    def exists(folder: str | Path) -> bool:
        return (Path(folder) / "metadata.json").is_file()


def _gather_ragged(offsets: np.ndarray, files: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(new offsets (len(files) + 1,), rows)``: the rows of a flat ragged array that belong
    to ``files``, file after file, and each selected file's slice of them (vectorised)."""
    counts = (offsets[files + 1] - offsets[files]).astype(np.int64)
    new_offsets = np.zeros(len(files) + 1, dtype=np.int64)
    new_offsets[1:] = np.cumsum(counts)
    # row k of file i: its first row plus k, k restarting at 0 for every selected file
    rank = np.arange(new_offsets[-1]) - np.repeat(new_offsets[:-1], counts)
    return new_offsets, np.repeat(offsets[files], counts) + rank


def _identity(folder: Path) -> tuple[int, int]:
    """Which copy of prepared metadata ``folder`` holds (a copy is replaced whole, never edited)."""
    stat = os.stat(folder / "metadata.json")
    return stat.st_ino, stat.st_mtime_ns


def _load_mapped(folder: str, identity: tuple[int, int]) -> ProtocolMetadata:
    """The metadata mapped from ``folder`` by a process that pickled it, checked to be the
    same copy (it would be replaced if its audio files changed meanwhile)."""
    if _identity(Path(folder)) != tuple(identity):
        raise RuntimeError(f"the prepared metadata in {folder} was replaced while in use (its audio files changed?): start again.")
    return ProtocolMetadata.load(folder)


def split_segments(
    starts: np.ndarray, ends: np.ndarray, labels: np.ndarray, offsets: np.ndarray, max_length: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Segments cut into consecutive pieces of at most ``max_length`` seconds (vectorised).

    ``offsets`` (files + 1,) give each file's slice of the segments; the result is sorted by
    file then start again, with its own offsets.
    """
    if not max_length > 0:
        raise ValueError(f"split_segments: max_length must be positive, got {max_length}.")
    pieces = np.maximum(1, whole_steps(ends - starts, max_length, up=True))
    owner = np.repeat(np.arange(len(starts)), pieces)
    # index of each piece within its segment: 0, 1, ... restarting at every segment
    rank = np.arange(len(owner)) - np.repeat(np.cumsum(pieces) - pieces, pieces)
    piece_starts = starts[owner] + rank * max_length
    # the same expression as the next piece's start, so that consecutive pieces touch exactly
    piece_ends = np.minimum(starts[owner] + (rank + 1) * max_length, ends[owner])
    file_of = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))[owner]
    order = np.lexsort((piece_ends, piece_starts, file_of))
    new_offsets = np.zeros_like(offsets)
    new_offsets[1:] = np.cumsum(np.bincount(file_of, minlength=len(offsets) - 1))
    return piece_starts[order], piece_ends[order], labels[owner][order], new_offsets


