"""Time in seconds, converted in one place.

Every conversion from seconds to samples or to model frames goes through this module, so
that targets, models and inference agree on where a frame starts and ends.

Convention: frame ``i`` of a model's output covers ``[start + i * step, start + i * step +
duration)`` seconds of its input chunk; it is *active* for an event ``[onset, offset)`` when
its centre lies inside the event.

Scores on a frame grid are read as *cells*: cell ``i`` is ``[centre(i) - step/2, centre(i)
+ step/2)``, the frame itself for non-overlapping frames. Events, score files and the end
of a file are all placed on these cells (:func:`cell_edges`, :func:`num_cells_before`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, Sequence, Tuple, Union

import numpy as np

#: the one tolerance of time arithmetic: absorbs float error when a duration in seconds is
#: divided into steps (2.0 / 0.2) or compared with another (a 0.3-s event against a 0.3-s minimum)
EPSILON = 1e-9
# how far (in frames) a chunk start may sit from the frame grid before it is an error
_GRID_TOLERANCE = 1e-6


class FrameGrid(Protocol):
    """Any regular grid of frames in seconds: :class:`Frames`, ``pyannote.core.SlidingWindow``."""

    @property
    def start(self) -> float: ...

    @property
    def duration(self) -> float: ...

    @property
    def step(self) -> float: ...


def seconds_to_samples(seconds, sample_rate: int):
    """Number of samples closest to ``seconds`` at ``sample_rate`` (rounded half to even, never
    floored): an ``int`` for a number, an int64 array for an array of times."""
    if np.ndim(seconds) == 0:
        return int(round(float(seconds) * sample_rate))
    return np.rint(np.asarray(seconds, dtype=np.float64) * sample_rate).astype(np.int64)


def whole_steps(length, step: float, *, up: bool = False):
    """How many ``step``-long steps fit in ``length`` (floor), or cover it (``up``: ceil),
    float error absorbed (``whole_steps(2.0, 0.2) == 10``): an ``int`` for a number, an int64
    array for an array of lengths."""
    ratio = np.asarray(length, dtype=np.float64) / step
    steps = (np.ceil(ratio - EPSILON) if up else np.floor(ratio + EPSILON)).astype(np.int64)
    return int(steps) if steps.ndim == 0 else steps


@dataclass(frozen=True)
class Frames:
    """Output frame grid of a model: frame ``i`` spans ``[start + i*step, start + i*step + duration)``.

    Parameters
    ----------
    step, duration : float
        Frame hop and frame length, in seconds.
    hop_samples : int
        Frame hop in input samples; the number of frames of a chunk is ``num_samples // hop_samples``.
    start : float
        Start of frame 0 relative to the chunk start, in seconds.
    """

    step: float
    duration: float
    hop_samples: int
    start: float = 0.0

    @classmethod
    def from_hop(cls, hop_samples: int, sample_rate: int) -> "Frames":
        """Non-overlapping frames of ``hop_samples`` input samples each."""
        step = hop_samples / sample_rate
        return cls(step=step, duration=step, hop_samples=hop_samples)

    def num_frames(self, num_samples: int) -> int:
        """Number of output frames for an input of ``num_samples`` samples."""
        return num_samples // self.hop_samples

    def num_frames_for_duration(self, duration: float, sample_rate: int) -> int:
        """Number of output frames for an input chunk of ``duration`` seconds."""
        return self.num_frames(seconds_to_samples(duration, sample_rate))

    def centers(self, num_frames: int) -> np.ndarray:
        """Centre of each frame, in seconds from the chunk start, shape (num_frames,)."""
        return self.start + np.arange(num_frames) * self.step + 0.5 * self.duration

    def index_ceil(self, seconds: np.ndarray | float) -> np.ndarray:
        """Index of the first frame whose centre is at or after ``seconds`` (unclipped).

        Frames ``index_ceil(onset) <= i < index_ceil(offset)`` are the active frames of
        the event ``[onset, offset)``. A tiny tolerance absorbs float error at exact frame
        centres so that an onset typed as a round number lands where a human expects.
        """
        position = (np.asarray(seconds, dtype=np.float64) - self.start - 0.5 * self.duration) / self.step
        return np.ceil(position - 1e-9).astype(np.int64)

    def sliding_window(self, offset: float = 0.0):
        """The frames as a ``pyannote.core.SlidingWindow`` whose frame 0 starts at ``offset`` s."""
        from pyannote.core import SlidingWindow

        return SlidingWindow(start=offset + self.start, duration=self.duration, step=self.step)


def num_chunks(total: float, duration: float, step: float) -> int:
    """Number of ``duration``-long windows, hopped by ``step``, needed to cover ``total`` seconds."""
    if total <= duration:
        return 1
    return 1 + int(math.ceil((total - duration) / step - 1e-9))


def chunk_starts(total_duration: float, *, duration: float, step: float) -> np.ndarray:
    """Start times of the ``duration``-long windows, hopped by ``step``, that cover a file.

    Parameters
    ----------
    total_duration : float
        Duration of the file, in seconds.
    duration, step : float
        Window duration and hop, in seconds (``0 < step``).

    Returns
    -------
    starts : (num_chunks,) float64 array, in seconds
        ``0, step, 2 * step, ...``; the last window ends at or after ``total_duration``.
        A file no longer than one window gets a single window starting at 0.
    """
    if not step > 0:
        raise ValueError(f"chunk_starts: step must be positive, got {step}.")
    if not duration > 0:
        raise ValueError(f"chunk_starts: duration must be positive, got {duration}.")
    return np.arange(num_chunks(total_duration, duration, step), dtype=np.float64) * step


def frame_offsets(starts: Union[np.ndarray, Sequence[float]], *, frames: FrameGrid) -> np.ndarray:
    """Global index of frame 0 of each chunk, ``(chunks,)`` int64, from chunk starts in seconds.

    Frame ``f`` of the chunk starting at ``start`` is frame ``round(start / step) + f`` of
    the file. Raises ValueError when a start is not on the frame grid (a multiple of
    ``frames.step``), because chunk frames would then straddle two file frames.
    """
    position = np.asarray(starts, dtype=np.float64) / frames.step
    offsets = np.round(position)
    misaligned = np.abs(position - offsets) > _GRID_TOLERANCE
    if np.any(misaligned):
        bad = np.asarray(starts)[misaligned][:3]
        raise ValueError(
            f"Chunk starts {bad.tolist()} s are not multiples of the frame step {frames.step} s: "
            "choose a step that is a whole number of frames."
        )
    return offsets.astype(np.int64)


def warm_up_mask(frames: Frames, num_frames: int, *, duration: float, warm_up: Tuple[float, float]) -> np.ndarray:
    """Frames of a chunk outside its warm-up regions, where the model has context on both sides.

    Parameters
    ----------
    frames : Frames
        The model's frame grid; a frame belongs where its centre lies.
    num_frames : int
        Frames per chunk.
    duration : float
        Chunk duration, in seconds.
    warm_up : (float, float)
        Seconds at the left and right of the chunk where the model lacks context (>= 0).

    Returns
    -------
    mask : (num_frames,) bool array
        True for the frames whose centre lies in ``[warm_up[0], duration - warm_up[1])``:
        those the training loss counts and inference trusts.
    """
    left, right = warm_up
    if left < 0 or right < 0:
        raise ValueError(f"warm_up must be non-negative, got {warm_up}.")
    centres = frames.centers(num_frames)
    return (centres >= left) & (centres < duration - right)


def first_cell_start(frames: FrameGrid) -> float:
    """Start of cell 0, in seconds: cell ``i`` is ``[centre(i) - step/2, centre(i) + step/2)``."""
    return frames.start + 0.5 * frames.duration - 0.5 * frames.step


def cell_edges(frames: FrameGrid, indices: Union[np.ndarray, Sequence[int]]) -> np.ndarray:
    """Start of cell ``i`` (the end of cell ``i - 1``) for each of ``indices``, in seconds, same shape."""
    return first_cell_start(frames) + np.asarray(indices) * frames.step


def cell_boundaries(frames: FrameGrid, num_cells: int) -> np.ndarray:
    """Boundaries of cells ``0 .. num_cells - 1``, in seconds, shape (num_cells + 1,)."""
    return cell_edges(frames, np.arange(num_cells + 1))


def num_cells_before(end: float, *, first_start: float, step: float) -> int:
    """Number of ``step``-long cells, the first starting at ``first_start`` s, that start before ``end`` s.

    At least 1: a file ending inside cell 0 still has that cell. ``end`` must come after
    ``first_start``.
    """
    if not end > first_start:
        raise ValueError(f"end ({end} s) must come after the first cell's start ({first_start} s)")
    return max(1, whole_steps(end - first_start, step, up=True))
