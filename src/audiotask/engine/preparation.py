"""Preparing a protocol's metadata: one pass over its files, a cache key from what matters.

A ``Preparation`` says what the prepared arrays depend on besides the protocol (which
subsets, how long a stored segment piece may be, which file attributes are kept); the
cache key is computed from its fields and the protocol's fingerprint, so nothing a new task
adds can be forgotten in a hand-kept list. Classes, resolution and task type are NOT in it:
prepared metadata holds labels as annotated, and every task maps them to its classes.

The protocol is iterated once per preparation: its files are kept (``ProtocolFiles``) and
both the fingerprint and the builder read their entries from them.
"""

from __future__ import annotations

import gc
import warnings
from collections import Counter
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Callable, Iterable, Iterator, Optional, Sequence

import numpy as np

from audiotask.engine.metadata import METADATA_FORMAT, ProtocolMetadata, SubsetMetadata, audio_stamp, split_segments
from audiotask.core.protocol_files import check_audio, entry, file_attribute

#: attributes every file gets, computed from its annotation and database
BUILT_IN_ATTRIBUTES = ("database", "label_kind", "tags")
#: ``label_kind`` values: time-stamped segments, clip-level tags only, or nothing
STRONG, WEAK, UNLABELLED = "strong", "weak", "none"
LABEL_KINDS = (STRONG, WEAK, UNLABELLED)


@dataclass(frozen=True)
class Preparation:
    """What prepared metadata depends on besides the protocol's content.

    Parameters
    ----------
    subsets : names of the protocol subsets to prepare, e.g. ("train", "development")
    max_segment_length : segments are stored as pieces at most this long (seconds; see
        ``engine.metadata``): a task passes its chunk duration
    attributes : protocol keys stored per file (besides the built-in ``database``,
        ``label_kind`` and ``tags``), e.g. a balance key, a fold, a clip label
    """

    subsets: tuple[str, ...]
    max_segment_length: float
    attributes: tuple[str, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "subsets", tuple(self.subsets))
        object.__setattr__(self, "attributes", tuple(sorted(set(self.attributes) - set(BUILT_IN_ATTRIBUTES))))

    def parameters(self) -> dict:
        """Everything this preparation depends on besides the protocol: the cache key's input."""
        return {**asdict(self), "format": METADATA_FORMAT}

    def stored_keys(self) -> tuple[str, ...]:
        """Protocol file keys whose values end up in the prepared arrays."""
        return ("audio", "duration", "annotated", "annotation", "database", *self.attributes)


@contextmanager
def paused_gc() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while many long-lived objects are made.

    Reading a protocol keeps one object per file (and their values) alive: every few
    hundred allocations the collector would walk all of them again, which made finding
    prepared metadata for 100,000 files 2.5x slower. Protocol files make no reference
    cycles worth collecting in the meantime; the collector resumes afterwards.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class ProtocolFiles:
    """The files of a protocol's subsets, read once (a pass per subset) and kept.

    ``passes`` counts the subset iterations, so that tests can check that preparing
    metadata reads the protocol once.
    """

    def __init__(self, protocol, iterate: Optional[Callable] = None):
        self.protocol = protocol
        self._iterate = iterate or (lambda protocol, subset: getattr(protocol, subset)())
        self._files: dict[str, list] = {}
        self.passes = 0

    def __call__(self, subset: str) -> list:
        if subset not in self._files:
            self._files[subset] = list(self._iterate(self.protocol, subset))
            self.passes += 1
        return self._files[subset]

    def consume(self, subset: str) -> Iterator:
        """The files of ``subset``, each let go once used: the values a file computes
        (its annotation, cropped) are freed file by file, not held for the whole subset."""
        files = self(subset)
        del self._files[subset]
        for index in range(len(files)):
            file, files[index] = files[index], None
            yield file


def label_kind_and_tags(annotation) -> tuple[str, tuple[str, ...], list]:
    """``(label kind, weak tags, [(start, end, label)...])`` of a file's "annotation" entry.

    A pyannote ``Annotation`` is strong; a tuple of label names (``protocols.dcase.WeakLabels``,
    from a DCASE weak-label TSV) is weak; no entry at all means an unlabelled file.
    """
    if annotation is None:
        return UNLABELLED, (), []
    if isinstance(annotation, (tuple, list, set, frozenset)):
        return WEAK, tuple(sorted({str(label) for label in annotation})), []
    segments = [(s.start, s.end, str(label)) for s, _, label in annotation.itertracks(yield_label=True)]
    return STRONG, (), segments


def _regions(file, duration: float) -> np.ndarray:
    # support(): overlapping or touching UEM regions are one region to draw chunks from
    annotated = file["annotated"].support()
    return np.array([[s.start, min(s.end, duration)] for s in annotated if s.start < duration]).reshape(-1, 2)


def _flatten(per_file: list[np.ndarray], width: int, dtype) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.zeros(len(per_file) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(rows) for rows in per_file])
    flat = np.concatenate(per_file) if per_file and offsets[-1] else np.zeros((0, width), dtype=dtype)
    return flat.astype(dtype).reshape(-1, width), offsets


def attribute_value(value) -> str:
    """A protocol entry as the string stored in the attribute table ("" when absent)."""
    if value is None:
        return ""
    if isinstance(value, (tuple, list, set, frozenset)):
        return ",".join(sorted(str(item) for item in value))
    return str(value)


def build_subset(
    files: Iterable, vocabulary: dict[str, int], *, max_segment_length: float, attributes: Sequence[str] = (),
    counts: Optional[Counter] = None,
) -> SubsetMetadata:
    """Prepare one subset; ``vocabulary`` (label -> index) grows with the labels met, and
    ``counts`` (label -> number of segments) with their segments."""
    counts = Counter() if counts is None else counts
    uris, audios, durations, regions, segments = [], [], [], [], []
    table: dict[str, list[str]] = {name: [] for name in (*BUILT_IN_ATTRIBUTES, *attributes)}
    for file in files:
        check_audio(file)
        uri, duration = str(file["uri"]), float(file["duration"])
        kind, tags, rows = label_kind_and_tags(entry(file, "annotation"))
        uris.append(uri)
        audios.append(str(file["audio"]))
        durations.append(duration)
        regions.append(_regions(file, duration))
        # clipped to the file's end (``core.protocol_files`` has already reported overruns)
        rows = [(start, min(end, duration), label) for start, end, label in rows if start < min(end, duration)]
        counts.update(label for _, _, label in rows)
        rows = sorted((start, end, vocabulary.setdefault(label, len(vocabulary))) for start, end, label in rows)
        for tag in tags:
            vocabulary.setdefault(tag, len(vocabulary))
        segments.append(np.array(rows, dtype=np.float64).reshape(-1, 3))
        table["database"].append(attribute_value(entry(file, "database")))
        table["label_kind"].append(kind)
        table["tags"].append(attribute_value(tags))
        for name in attributes:
            table[name].append(attribute_value(file_attribute(file, name)))
    annotated, annotated_offsets = _flatten(regions, 2, np.float64)
    flat, segment_offsets = _flatten(segments, 3, np.float64)
    starts, ends, labels, segment_offsets = split_segments(
        flat[:, 0], flat[:, 1], flat[:, 2].astype(np.int32), segment_offsets, max_segment_length
    )
    return SubsetMetadata(
        uri=np.array(uris, dtype=str),
        audio=np.array(audios, dtype=str),
        duration=np.array(durations, dtype=np.float64),
        annotated_offsets=annotated_offsets,
        annotated=annotated,
        segment_offsets=segment_offsets,
        segment_start=np.ascontiguousarray(starts),
        segment_end=np.ascontiguousarray(ends),
        segment_label=labels,
        max_segment_length=np.array(float(np.max(ends - starts, initial=0.0))),
        audio_stamp=np.array([audio_stamp(path) for path in audios], dtype=np.int64).reshape(-1, 2),
        attributes={name: np.array(values, dtype=str) for name, values in table.items()},
    )


def build_metadata(files: ProtocolFiles, preparation: Preparation) -> ProtocolMetadata:
    """Prepared metadata of ``preparation.subsets``, labels indexed in sorted order."""
    vocabulary: dict[str, int] = {}
    counts: Counter = Counter()
    subsets = {
        name: build_subset(files.consume(name), vocabulary, max_segment_length=preparation.max_segment_length,
                           attributes=preparation.attributes, counts=counts)
        for name in preparation.subsets
    }
    # sorted label order: the same labels give the same indices whatever the file order
    labels = sorted(vocabulary)
    remap = np.zeros(len(vocabulary), dtype=np.int32)
    remap[[vocabulary[label] for label in labels]] = np.arange(len(labels), dtype=np.int32)
    for subset in subsets.values():
        subset.segment_label = remap[subset.segment_label] if len(subset.segment_label) else subset.segment_label
        subset.__post_init__()  # its lookup views follow the remapped labels
    return ProtocolMetadata(labels, subsets, segments_per_label={label: counts[label] for label in labels})


def warn_unannotated(task_name: str, name: str, subset: SubsetMetadata) -> None:
    """Name the files that have no annotated region: they are never used, and a uri spelt
    differently in the file list and in the UEM looks exactly like this."""
    empty = subset.uri[np.diff(subset.annotated_offsets) == 0]
    if len(empty):
        warnings.warn(
            f"{task_name}: {len(empty)} {name} file(s) have no annotated region (UEM) "
            f"and are left out: {', '.join(map(repr, empty[:5].tolist()))}{', ...' if len(empty) > 5 else ''} "
            "(`audiotask check` names the uri the annotation and UEM spell differently)"
        )
