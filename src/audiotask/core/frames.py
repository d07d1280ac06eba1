"""Time in seconds, converted in one place.

Every conversion from seconds to samples or to model frames goes through this module, so
that targets, models and inference agree on where a frame starts and ends.

Convention: frame ``i`` of a model's output covers ``[start + i * step, start + i * step +
duration)`` seconds of its input chunk; it is *active* for an event ``[onset, offset)`` when
its centre lies inside the event.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def seconds_to_samples(seconds: float, sample_rate: int) -> int:
    """Number of samples closest to ``seconds`` at ``sample_rate`` (rounded, never floored)."""
    return int(round(seconds * sample_rate))


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
