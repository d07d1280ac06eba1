"""Chunks into a whole training or validation batch: the waveforms and the targets.

A :class:`BatchBuilder` takes chunks of one duration (file indices and start times in one
subset of the prepared metadata) and gives the batch in a few vectorised calls: "X", each
chunk's samples decoded straight into its row of one buffer (no per-chunk array, no
stacking), and the target arrays of the task's builders from the segments found in every
chunk in one pass (see ``engine.builders``). What lies past the end of the annotated
region a chunk starts in is neither heard nor taught: its samples are zeroed and its
segments cut there (what nobody annotated is not "no event").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from audiotask.core.frames import Frames, seconds_to_samples
from audiotask.engine.batches import new_batch_buffer
from audiotask.engine.builders import ChunkSegments, TargetBuilder, build_targets
from audiotask.engine.metadata import SubsetMetadata


@dataclass(frozen=True)
class BatchBuilder:
    """Batches of one task's chunks.

    Parameters
    ----------
    builders : list of TargetBuilder
        The task's target builders.
    label_class : (labels,) int64
        Class index of each label of the prepared metadata, -1 for no class.
    classes : list of str
        The task's classes.
    sample_rate : int
        The model's sample rate.
    frames : Frames, optional
        The model's output frames, for FRAME targets (None: one target per chunk).
    """

    builders: list[TargetBuilder]
    label_class: np.ndarray
    classes: list[str]
    sample_rate: int
    frames: Optional[Frames] = None

    def segments(self, subset: SubsetMetadata, files: np.ndarray, starts: np.ndarray, duration: float,
                 limits: Optional[np.ndarray] = None, labels: Optional[np.ndarray] = None) -> ChunkSegments:
        """The segments of the chunks (see :class:`ChunkSegments`), cut at each chunk's end and
        at ``limits`` (default: the end of the annotated region each chunk starts in)."""
        files, starts = np.asarray(files, dtype=np.int64), np.asarray(starts, dtype=np.float64)
        limits = subset.region_ends(files, starts) if limits is None else limits
        view_ends = np.minimum(starts + duration, limits)
        found = [subset.segments_in(int(f), float(s), float(e)) for f, s, e in zip(files, starts, view_ends)]
        chunk = np.repeat(np.arange(len(found)), [len(segment_starts) for segment_starts, _, _ in found])
        segment_starts, segment_ends, segment_labels = (np.concatenate(column) for column in zip(*found))
        # times relative to the start of their chunk, cut at the chunk's (or region's) end
        offset = starts[chunk]
        return ChunkSegments(
            subset=subset, files=files, starts=starts, duration=float(duration), chunk=chunk,
            segment_start=segment_starts - offset, segment_end=np.minimum(segment_ends, view_ends[chunk]) - offset,
            segment_label=segment_labels.astype(np.int64), label_class=self.label_class, classes=self.classes,
            frames=self.frames,
            num_frames=0 if self.frames is None else self.frames.num_frames_for_duration(duration, self.sample_rate),
            sampled_labels=labels, annotated=view_ends - starts,
        )

    def targets(self, subset: SubsetMetadata, files: np.ndarray, starts: np.ndarray, duration: float,
                limits: Optional[np.ndarray] = None, labels: Optional[np.ndarray] = None) -> dict[str, np.ndarray]:
        """The builders' target arrays of the chunks (e.g. "y": (chunks, frames, classes))."""
        return build_targets(self.builders, self.segments(subset, files, starts, duration, limits, labels))

    def waveforms(self, reader, files: np.ndarray, starts: np.ndarray, duration: float,
                  limits: np.ndarray) -> np.ndarray:
        """(chunks, 1, samples) float32: each chunk read by ``reader`` into its row, zeroed
        past its ``limits`` (the end of its annotated region)."""
        X = new_batch_buffer((len(files), 1, seconds_to_samples(duration, self.sample_rate)))
        for row, (file, start, limit) in enumerate(zip(np.asarray(files).tolist(), np.asarray(starts).tolist(),
                                                       np.asarray(limits).tolist())):
            reader.crop(file, start, duration, out=X[row, 0])
            if limit < start + duration:
                X[row, 0, max(0, seconds_to_samples(limit - start, self.sample_rate)) :] = 0.0
        return X


def as_batch(X: np.ndarray, arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """The batch of waveforms ``X`` and target ``arrays``, as tensors sharing their memory."""
    return {"X": torch.from_numpy(X), **{key: torch.from_numpy(np.ascontiguousarray(value)) for key, value in arrays.items()}}
