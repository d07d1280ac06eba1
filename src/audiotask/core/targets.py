"""Target builders: annotation segments of a chunk -> label arrays.

Pure functions over arrays; segment times are in seconds relative to the chunk start.
"""

from __future__ import annotations

import numpy as np

from audiotask.core.frames import Frames


def frame_targets(
    starts: np.ndarray, ends: np.ndarray, classes: np.ndarray, *, frames: Frames, num_frames: int, num_classes: int
) -> np.ndarray:
    """(num_frames, num_classes) {0, 1} uint8 array: frame i of class k is 1 when its centre
    lies inside a segment of class k (see ``Frames.index_ceil``). Overlapping segments merge.
    """
    onsets = np.clip(frames.index_ceil(starts), 0, num_frames)
    offsets = np.clip(frames.index_ceil(ends), 0, num_frames)
    # difference array: +1 where a segment starts, -1 where it stops, then count
    change = np.zeros((num_frames + 1, num_classes), dtype=np.int32)
    classes = np.asarray(classes, dtype=np.int64)
    np.add.at(change, (onsets, classes), 1)
    np.add.at(change, (offsets, classes), -1)
    return (np.cumsum(change[:-1], axis=0) > 0).astype(np.uint8)


def chunk_targets(starts: np.ndarray, ends: np.ndarray, classes: np.ndarray, *, num_classes: int) -> np.ndarray:
    """(num_classes,) {0, 1} uint8 array: 1 for every class with a segment overlapping the chunk."""
    y = np.zeros(num_classes, dtype=np.uint8)
    y[np.asarray(classes, dtype=np.int64)[np.asarray(ends) > np.asarray(starts)]] = 1
    return y
