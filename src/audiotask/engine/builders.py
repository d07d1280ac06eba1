"""Target builders: the parts a task picks to turn a batch of chunks into named arrays.

A builder declares the arrays it produces (``outputs``: name -> dtype) and builds them for
a whole batch at once from a :class:`ChunkSegments` (the chunks and the annotation
segments that fall in each). The engine checks every array against its declared dtype:
a value that does not fit (class 300 in uint8, -1 in an unsigned type, 0.7 in an integer
type) raises instead of wrapping around.

Keys the default training and validation steps know: ``y`` (the target), ``mask`` (which
entries count; broadcast against the loss, see ``core.objectives``) and ``weight`` (one per
sample).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from audiotask.core.frames import Frames
from audiotask.engine.metadata import SubsetMetadata
from audiotask.engine.preparation import STRONG, WEAK
from audiotask.engine.targets import chunk_targets_batch, frame_targets_batch, track_counts_batch


@dataclass
class ChunkSegments:
    """A batch of equally long chunks of one subset, with the segments that fall in each.

    Segment times are relative to their chunk's start and cut at the chunk's end and at
    the end of the annotated region the chunk starts in (past it, nothing is annotated).
    """

    subset: SubsetMetadata
    files: np.ndarray  # (chunks,) int64 file index
    starts: np.ndarray  # (chunks,) float64 seconds
    duration: float  # seconds, shared by the chunks
    chunk: np.ndarray  # (segments,) int64 chunk index of each segment
    segment_start: np.ndarray  # (segments,) float64, from the chunk's start
    segment_end: np.ndarray  # (segments,) float64
    segment_label: np.ndarray  # (segments,) int64 label index (the track: speaker, source)
    label_class: np.ndarray  # (labels,) int64 class index of each label, -1 for none
    classes: list  # the task's output classes
    frames: Optional[Frames] = None  # the model's output frames (FRAME resolution)
    num_frames: int = 0
    sampled_labels: Optional[np.ndarray] = None  # (chunks,) label a sampler drew each chunk for
    annotated: Optional[np.ndarray] = None  # (chunks,) seconds of each chunk inside its annotated region

    @property
    def num_chunks(self) -> int:
        return len(self.files)

    def class_segments(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(chunk, start, end, class)`` of the segments whose label is one of the classes."""
        segment_class = self.label_class[self.segment_label] if len(self.segment_label) else self.segment_label
        keep = segment_class >= 0
        return self.chunk[keep], self.segment_start[keep], self.segment_end[keep], segment_class[keep]

    def attribute(self, name: str) -> np.ndarray:
        """(chunks,) value of file attribute ``name`` for each chunk's file."""
        return self.subset.attribute(name)[self.files]


class TargetBuilder:
    """Base of target builders: ``outputs`` maps each produced key to its dtype."""

    outputs: dict[str, np.dtype] = {}

    def __call__(self, segments: ChunkSegments) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def check(self, subset: SubsetMetadata, classes: list, subset_name: str) -> None:
        """Raise, naming the file, when a subset holds something this builder cannot encode
        (run once per subset at set-up, not per batch)."""


class FrameClasses(TargetBuilder):
    """Multi-hot per frame: (chunks, frames, classes) uint8, 1 where a segment of the class
    covers the frame's centre."""

    def __init__(self, key: str = "y"):
        self.key, self.outputs = key, {key: np.dtype(np.uint8)}

    def __call__(self, segments: ChunkSegments) -> dict[str, np.ndarray]:
        chunk, starts, ends, classes = segments.class_segments()
        return {self.key: frame_targets_batch(
            chunk, starts, ends, classes, frames=segments.frames, num_chunks=segments.num_chunks,
            num_frames=segments.num_frames, num_classes=len(segments.classes),
        )}


class ChunkClasses(TargetBuilder):
    """Multi-hot per chunk: (chunks, classes) uint8, 1 for every class with a segment in the chunk."""

    def __init__(self, key: str = "y"):
        self.key, self.outputs = key, {key: np.dtype(np.uint8)}

    def __call__(self, segments: ChunkSegments) -> dict[str, np.ndarray]:
        chunk, starts, ends, classes = segments.class_segments()
        return {self.key: chunk_targets_batch(
            chunk, starts, ends, classes, num_chunks=segments.num_chunks, num_classes=len(segments.classes)
        )}


class FrameTrackCount(TargetBuilder):
    """Number of distinct tracks (speakers, sources) active per frame: (chunks, frames).

    Every labelled segment counts, whether or not its label maps to a class (speakers are
    labels; the task's class may be "speech" or "overlap").
    """

    def __init__(self, key: str = "count", dtype=np.uint8):
        self.key, self.outputs = key, {key: np.dtype(dtype)}

    def __call__(self, segments: ChunkSegments) -> dict[str, np.ndarray]:
        return {self.key: track_counts_batch(
            segments.chunk, segments.segment_start, segments.segment_end, segments.segment_label,
            frames=segments.frames, num_chunks=segments.num_chunks, num_frames=segments.num_frames,
        )}


class FrameOverlap(TargetBuilder):
    """(chunks, frames, 1) uint8: 1 where ``min_tracks`` or more distinct tracks are active."""

    def __init__(self, key: str = "y", min_tracks: int = 2):
        self.key, self.min_tracks, self.outputs = key, int(min_tracks), {key: np.dtype(np.uint8)}
        self._count = FrameTrackCount(key="count", dtype=np.int64)

    def __call__(self, segments: ChunkSegments) -> dict[str, np.ndarray]:
        counts = self._count(segments)["count"]
        return {self.key: (counts >= self.min_tracks)[:, :, None].view(np.uint8)}


def _parse_names(value: str) -> list[str]:
    return [name.strip() for name in str(value).split(",") if name.strip()]


class ChunkTags(TargetBuilder):
    """Clip-level multi-hot (chunks, classes) uint8 from a file's weak tags (DCASE weak
    labels) and, for strongly labelled files, from the segments inside the chunk."""

    def __init__(self, key: str = "y"):
        self.key, self.outputs = key, {key: np.dtype(np.uint8)}
        self._chunk_classes = ChunkClasses(key)

    def __call__(self, segments: ChunkSegments) -> dict[str, np.ndarray]:
        y = self._chunk_classes(segments)[self.key]
        position = {name: index for index, name in enumerate(segments.classes)}
        for row, tags in enumerate(segments.attribute("tags").tolist()):
            for tag in _parse_names(tags):
                if tag in position:
                    y[row, position[tag]] = 1
        return {self.key: y}


class ChunkClassIndex(TargetBuilder):
    """(chunks,) int64 class index read from a file attribute (a clip's label)."""

    def __init__(self, attribute: str = "label", key: str = "y"):
        self.attribute, self.key, self.outputs = attribute, key, {key: np.dtype(np.int64)}

    def __call__(self, segments: ChunkSegments) -> dict[str, np.ndarray]:
        position = {name: index for index, name in enumerate(segments.classes)}
        return {self.key: np.array([position[value] for value in segments.attribute(self.attribute).tolist()], dtype=np.int64)}

    def check(self, subset: SubsetMetadata, classes: list, subset_name: str) -> None:
        for uri, value in zip(subset.uri.tolist(), subset.attribute(self.attribute).tolist()):
            if value not in classes:
                raise ValueError(f"{subset_name} file {uri!r}: {self.attribute} {value!r} is not one of the classes {classes}.")


class ChunkValue(TargetBuilder):
    """(chunks,) float32 value read from a numeric file attribute (regression)."""

    def __init__(self, attribute: str = "value", key: str = "y"):
        self.attribute, self.key, self.outputs = attribute, key, {key: np.dtype(np.float32)}

    def __call__(self, segments: ChunkSegments) -> dict[str, np.ndarray]:
        return {self.key: segments.attribute(self.attribute).astype(np.float64)}

    def check(self, subset: SubsetMetadata, classes: list, subset_name: str) -> None:
        for uri, value in zip(subset.uri.tolist(), subset.attribute(self.attribute).tolist()):
            try:
                number = float(value)
            except ValueError:
                number = float("nan")
            if not np.isfinite(number):
                raise ValueError(f"{subset_name} file {uri!r}: {self.attribute} {value!r} is not a finite number.")


class AnnotatedFrameMask(TargetBuilder):
    """``mask`` (chunks, frames) uint8 of the frames whose centre lies inside the annotated
    region the chunk starts in: a chunk longer than its region learns nothing past its end
    (rather than "no event" on the silence the engine puts there)."""

    def __init__(self, key: str = "mask"):
        self.key, self.outputs = key, {key: np.dtype(np.uint8)}

    def __call__(self, segments: ChunkSegments) -> dict[str, np.ndarray]:
        centres = segments.frames.centers(segments.num_frames)
        return {self.key: (centres[None, :] < segments.annotated[:, None]).view(np.uint8)}


class AnnotatedClassMask(TargetBuilder):
    """``mask`` of the classes a file annotates, from a comma-separated file attribute.

    (chunks, 1, classes) uint8 for FRAME resolution (broadcast over frames), (chunks,
    classes) for CHUNK; a file whose attribute is empty annotates every class.
    """

    def __init__(self, attribute: str = "annotated_classes", key: str = "mask", frame: bool = True):
        self.attribute, self.key, self.frame, self.outputs = attribute, key, frame, {key: np.dtype(np.uint8)}

    def __call__(self, segments: ChunkSegments) -> dict[str, np.ndarray]:
        position = {name: index for index, name in enumerate(segments.classes)}
        mask = np.ones((segments.num_chunks, len(segments.classes)), dtype=np.uint8)
        for row, value in enumerate(segments.attribute(self.attribute).tolist()):
            names = _parse_names(value)
            if names:
                mask[row] = 0
                mask[row, [position[name] for name in names]] = 1
        return {self.key: mask[:, None, :] if self.frame else mask}

    def check(self, subset: SubsetMetadata, classes: list, subset_name: str) -> None:
        for uri, value in zip(subset.uri.tolist(), subset.attribute(self.attribute).tolist()):
            unknown = [name for name in _parse_names(value) if name not in classes]
            if unknown:
                raise ValueError(
                    f"{subset_name} file {uri!r}: {self.attribute} names {unknown}, not among the classes {classes}."
                )


class LabelKindMasks(TargetBuilder):
    """Which rows each output learns from, by the label kind of the chunk's file: ``frame_key``
    (chunks,) uint8 is 1 for strongly labelled files (their frames are known), ``clip_key``
    1 for strongly and weakly labelled ones (which classes occur is known); unlabelled files
    have 0 in both."""

    def __init__(self, frame_key: str = "mask", clip_key: str = "mask_clip"):
        self.frame_key, self.clip_key = frame_key, clip_key
        self.outputs = {frame_key: np.dtype(np.uint8), clip_key: np.dtype(np.uint8)}

    def __call__(self, segments: ChunkSegments) -> dict[str, np.ndarray]:
        kinds = segments.attribute("label_kind")
        return {self.frame_key: (kinds == STRONG).astype(np.uint8),
                self.clip_key: np.isin(kinds, (STRONG, WEAK)).astype(np.uint8)}


def fit_dtype(key: str, values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``values`` as ``dtype``; ValueError when a value would not survive the conversion."""
    values, dtype = np.asarray(values), np.dtype(dtype)
    if values.dtype == dtype:
        return values
    if np.issubdtype(dtype, np.integer) or dtype == np.bool_:
        if not (np.issubdtype(values.dtype, np.integer) or values.dtype == np.bool_):
            if values.size and not (np.all(np.isfinite(values)) and np.all(values == np.round(values))):
                raise ValueError(f"target {key!r}: non-integer values cannot be stored as {dtype}.")
        bounds = (0, 1) if dtype == np.bool_ else (np.iinfo(dtype).min, np.iinfo(dtype).max)
        if values.size and (values.min() < bounds[0] or values.max() > bounds[1]):
            raise ValueError(
                f"target {key!r}: values in [{values.min()}, {values.max()}] do not fit {dtype} "
                f"[{bounds[0]}, {bounds[1]}]: declare a wider dtype."
            )
        return values.astype(dtype)
    converted = values.astype(dtype)
    if values.size and np.issubdtype(values.dtype, np.number) and not np.array_equal(np.isfinite(converted), np.isfinite(values)):
        raise ValueError(f"target {key!r}: values overflow {dtype}.")
    return converted


def build_targets(builders: list[TargetBuilder], segments: ChunkSegments) -> dict[str, np.ndarray]:
    """Every builder's arrays, each checked against its declared dtype."""
    arrays: dict[str, np.ndarray] = {}
    for builder in builders:
        built = builder(segments)
        for key, dtype in builder.outputs.items():
            if key not in built:
                raise ValueError(f"{type(builder).__name__} declares {key!r} but did not build it.")
            if key in arrays:
                raise ValueError(f"two target builders produce {key!r}.")
            arrays[key] = fit_dtype(key, built[key], dtype)
    return arrays
