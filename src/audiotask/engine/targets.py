"""Target arrays from annotation segments: pure functions over a batch of chunks.

Segment times are in seconds relative to their chunk's start. The batch functions take
the segments of many chunks at once (``chunk`` says which chunk each segment belongs to),
so a training batch costs a few vectorised calls, not a Python loop per chunk; the
single-chunk functions are their one-chunk case. The builders that tasks pick
(``engine.builders``) are thin wrappers around these.
"""

from __future__ import annotations

import numpy as np

from audiotask.core.frames import Frames


def frame_targets_batch(
    chunk: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    classes: np.ndarray,
    *,
    frames: Frames,
    num_chunks: int,
    num_frames: int,
    num_classes: int,
) -> np.ndarray:
    """(num_chunks, num_frames, num_classes) {0, 1} uint8 array.

    Frame i of chunk b and class k is 1 when its centre lies inside a segment of class k
    of chunk b (see ``Frames.index_ceil``). Overlapping segments merge.

    Parameters
    ----------
    chunk : (segments,) int array
        Index in ``[0, num_chunks)`` of the chunk of each segment.
    starts, ends : (segments,) float arrays
        Segment bounds, in seconds from the start of their chunk.
    classes : (segments,) int array
        Class index of each segment.
    """
    rows = num_frames + 1
    onsets = np.minimum(np.maximum(frames.index_ceil(starts), 0), num_frames)
    offsets = np.minimum(np.maximum(frames.index_ceil(ends), 0), num_frames)
    base = np.asarray(chunk, dtype=np.int64) * (rows * num_classes) + np.asarray(classes, dtype=np.int64)
    # difference array: +1 where a segment starts, -1 where it stops, then count
    size = num_chunks * rows * num_classes
    change = np.bincount(base + onsets * num_classes, minlength=size) - np.bincount(base + offsets * num_classes, minlength=size)
    active = change.reshape(num_chunks, rows, num_classes)[:, :-1].cumsum(axis=1) > 0
    return active.view(np.uint8)


def chunk_targets_batch(
    chunk: np.ndarray, starts: np.ndarray, ends: np.ndarray, classes: np.ndarray, *, num_chunks: int, num_classes: int
) -> np.ndarray:
    """(num_chunks, num_classes) {0, 1} uint8 array: 1 for every class with a segment
    overlapping the chunk (arguments as in :func:`frame_targets_batch`)."""
    y = np.zeros((num_chunks, num_classes), dtype=np.uint8)
    real = np.asarray(ends) > np.asarray(starts)
    y[np.asarray(chunk, dtype=np.int64)[real], np.asarray(classes, dtype=np.int64)[real]] = 1
    return y


def frame_targets(
    starts: np.ndarray, ends: np.ndarray, classes: np.ndarray, *, frames: Frames, num_frames: int, num_classes: int
) -> np.ndarray:
    """(num_frames, num_classes) {0, 1} uint8 array: frame i of class k is 1 when its centre
    lies inside a segment of class k (see ``Frames.index_ceil``). Overlapping segments merge.
    """
    chunk = np.zeros(len(starts), dtype=np.int64)
    return frame_targets_batch(
        chunk, starts, ends, classes, frames=frames, num_chunks=1, num_frames=num_frames, num_classes=num_classes
    )[0]


def chunk_targets(starts: np.ndarray, ends: np.ndarray, classes: np.ndarray, *, num_classes: int) -> np.ndarray:
    """(num_classes,) {0, 1} uint8 array: 1 for every class with a segment overlapping the chunk."""
    chunk = np.zeros(len(starts), dtype=np.int64)
    return chunk_targets_batch(chunk, starts, ends, classes, num_chunks=1, num_classes=num_classes)[0]


def track_counts_batch(
    chunk: np.ndarray, starts: np.ndarray, ends: np.ndarray, tracks: np.ndarray, *, frames: Frames, num_chunks: int,
    num_frames: int,
) -> np.ndarray:
    """(num_chunks, num_frames) int64 number of DISTINCT tracks active in each frame.

    A track (a speaker, a source) counts once in a frame however many of its segments
    cover it: two overlapping turns of one speaker are not overlapped speech. Arguments as
    in :func:`frame_targets_batch`, with ``tracks`` (segments,) in place of classes.
    """
    chunk, tracks = np.asarray(chunk, dtype=np.int64), np.asarray(tracks, dtype=np.int64)
    # number the (chunk, track) pairs of the batch: each pair is one column of activity
    pairs, column = np.unique(chunk * (int(tracks.max(initial=0)) + 1) + tracks, return_inverse=True)
    active = frame_targets_batch(
        np.zeros(len(column), dtype=np.int64), starts, ends, column, frames=frames, num_chunks=1,
        num_frames=num_frames, num_classes=len(pairs),
    )[0]
    owner = pairs // (int(tracks.max(initial=0)) + 1)
    counts = np.zeros((num_chunks, num_frames), dtype=np.int64)
    if len(pairs):
        np.add.at(counts, owner, active.T.astype(np.int64))
    return counts
