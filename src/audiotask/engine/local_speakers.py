"""Local speakers of a chunk: the speakers active in it, one target column each.

A speaker diarization model segments a chunk into its *local* speakers: who they are
across the file is the pipeline's business, not the model's. A chunk's local speakers are
the annotation labels (tracks: speakers of an RTTM) active in at least one of its frames;
at most ``max_speakers`` are kept (the most active, the least active dropped, as
pyannote.audio's ``SpeakerDiarization.collate_y`` keeps "the max_speakers_per_chunk most
talkative ones"), in the order of their first active frame (pyannote.audio keeps its label
index order; training is permutation-invariant, so any fixed order will do, and this one
does not depend on label names). Speakers that are absent are columns of zeros.

Vectorised over a batch like the builders of ``engine.builders`` (whose
:class:`~audiotask.engine.builders.TargetBuilder` it is).
"""

from __future__ import annotations

import numpy as np

from audiotask.core.frames import Frames
from audiotask.engine.builders import ChunkSegments, TargetBuilder
from audiotask.engine.targets import frame_targets_batch


def rank_in_groups(groups: np.ndarray) -> np.ndarray:
    """(n,) position of each entry among the entries of its group, for ``groups`` sorted."""
    groups = np.asarray(groups)
    return np.arange(len(groups)) - np.searchsorted(groups, groups, side="left")


def local_speaker_targets(
    chunk: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    tracks: np.ndarray,
    *,
    frames: Frames,
    num_chunks: int,
    num_frames: int,
    max_speakers: int,
) -> np.ndarray:
    """(num_chunks, num_frames, max_speakers) {0, 1} uint8 activity of each chunk's local speakers.

    Parameters
    ----------
    chunk : (segments,) int
        Chunk of each segment, in ``[0, num_chunks)``.
    starts, ends : (segments,) float
        Segment bounds in seconds from their chunk's start (a frame is active when its
        centre lies inside, see ``engine.targets.frame_targets_batch``).
    tracks : (segments,) int
        Speaker (label index) of each segment; a speaker's segments of one chunk merge.

    Column k of a chunk is its k-th local speaker by first active frame (ties: the lower
    label index); speakers beyond ``max_speakers`` are dropped, fewest active frames first
    (ties: the later first frame).
    """
    chunk, tracks = np.asarray(chunk, dtype=np.int64), np.asarray(tracks, dtype=np.int64)
    y = np.zeros((num_chunks, num_frames, max_speakers), dtype=np.uint8)
    if len(chunk) == 0 or num_frames == 0:
        return y
    # one activity column per (chunk, speaker) pair of the batch
    stride = int(tracks.max()) + 1
    pairs, column = np.unique(chunk * stride + tracks, return_inverse=True)
    owner, speaker = pairs // stride, pairs % stride
    active = frame_targets_batch(
        np.zeros(len(column), dtype=np.int64), starts, ends, column, frames=frames, num_chunks=1,
        num_frames=num_frames, num_classes=len(pairs),
    )[0]  # (frames, pairs)
    speech = active.sum(axis=0, dtype=np.int64)
    first = np.where(speech > 0, active.argmax(axis=0), num_frames)
    # keep the most active speakers of each chunk (lexsort: the last key sorts first)
    by_activity = np.lexsort((speaker, first, -speech, owner))
    kept = by_activity[(rank_in_groups(owner[by_activity]) < max_speakers) & (speech[by_activity] > 0)]
    # ...and give them their columns by first activity
    kept = kept[np.lexsort((speaker[kept], first[kept], owner[kept]))]
    slot = rank_in_groups(owner[kept])
    y[owner[kept][:, None], np.arange(num_frames)[None, :], slot[:, None]] = active[:, kept].T
    return y


class LocalSpeakers(TargetBuilder):
    """``y`` (chunks, frames, max_speakers) uint8: the activity of each chunk's local speakers
    (see :func:`local_speaker_targets`). Every labelled segment is a speaker's turn, whether
    or not its label is one of the task's classes."""

    def __init__(self, max_speakers: int, key: str = "y"):
        self.max_speakers, self.key, self.outputs = int(max_speakers), key, {key: np.dtype(np.uint8)}

    def __call__(self, segments: ChunkSegments) -> dict[str, np.ndarray]:
        return {self.key: local_speaker_targets(
            segments.chunk, segments.segment_start, segments.segment_end, segments.segment_label,
            frames=segments.frames, num_chunks=segments.num_chunks, num_frames=segments.num_frames,
            max_speakers=self.max_speakers,
        )}
