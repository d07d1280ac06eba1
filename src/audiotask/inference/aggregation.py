"""Sliding-window aggregation: where chunks start, how their frames are weighted, overlap-add.

Pure, vectorised numpy functions. Times are in seconds; the frame grid is a model's
:class:`~audiotask.core.frames.Frames`. Frame ``f`` of the chunk starting at ``start``
seconds is frame ``round(start / frames.step) + f`` of the file, so chunk starts must lie
on the frame grid (multiples of ``frames.step``); :func:`overlap_add` checks it.

CHUNK models score whole windows, which overlap (a 2 s window every 0.2 s);
:func:`windows_to_cells` / :func:`windows_to_timeline` spread those per-window scores onto
a timeline of non-overlapping cells one step wide, the form events and score files need.
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
from pyannote.core import SlidingWindow, SlidingWindowFeature

# chunk_starts and frame_offsets live with the other conversions; imported here, where
# they were first defined, for the code that imports them from this module
from audiotask.core.frames import Frames, chunk_starts, frame_offsets, num_cells_before, warm_up_mask, whole_steps

__all__ = [
    "WARM_UP_EPSILON", "WINDOWS", "chunk_starts", "frame_weights", "frame_offsets", "coverage", "overlap_add",
    "is_per_window", "windows_to_cells", "windows_to_timeline",
]

#: weight of a frame inside a warm-up region: it only counts where no other chunk's
#: non-warm-up frame covers the same time (file edges), as in pyannote.audio
WARM_UP_EPSILON = 1e-12

WINDOWS = ("hamming", "uniform")

# relative margin by which a window must exceed its step to hold per-window scores: frames
# of FRAME models have duration == step up to float error (0.02 vs 320 / 16000)
_WINDOW_TOLERANCE = 1e-6


def frame_weights(
    num_frames: int,
    *,
    frames: Frames,
    duration: float,
    warm_up: Tuple[float, float] = (0.0, 0.0),
    window: str = "hamming",
) -> np.ndarray:
    """Weight of each frame of a chunk in the overlap-add average.

    Parameters
    ----------
    num_frames : int
        Frames per chunk (model output).
    frames : Frames
        The model's frame grid (frame centres decide warm-up membership).
    duration : float
        Chunk duration, in seconds.
    warm_up : (float, float)
        Seconds at the left and right of the chunk where the model lacks context. A frame
        outside :func:`~audiotask.core.frames.warm_up_mask` (the rule the training loss uses
        to mask it) is multiplied by :data:`WARM_UP_EPSILON`.
    window : "hamming" or "uniform"
        Hamming favours chunk centres over chunk edges; uniform gives every frame weight 1.

    Returns
    -------
    weights : (num_frames,) float64 array, all strictly positive
    """
    if window == "hamming":
        # np.hamming never reaches 0 (ends at 0.08), so every frame keeps some weight
        weights = np.hamming(num_frames)
    elif window == "uniform":
        weights = np.ones(num_frames)
    else:
        raise ValueError(f"frame_weights: window must be one of {WINDOWS}, got {window!r}.")
    trusted = warm_up_mask(frames, num_frames, duration=duration, warm_up=warm_up)
    return np.where(trusted, weights, weights * WARM_UP_EPSILON)


def _flat_indices(offsets: np.ndarray, num_frames: int, num_output_frames: int) -> Tuple[np.ndarray, np.ndarray]:
    """Global frame index of every (chunk, frame) pair, flattened, and which are in range."""
    indices = (offsets[:, None] + np.arange(num_frames)[None, :]).reshape(-1)
    return indices, (indices >= 0) & (indices < num_output_frames)


def coverage(
    starts: np.ndarray, *, num_frames: int, frames: Frames, weights: np.ndarray, num_output_frames: int
) -> np.ndarray:
    """Total weight that chunks put on each file frame, ``(num_output_frames,)``.

    Zero where no chunk covers a frame; :func:`overlap_add` returns 0 there.
    ``weights`` is ``(num_frames,)``, as from :func:`frame_weights`.
    """
    offsets = frame_offsets(starts, frames=frames)
    indices, keep = _flat_indices(offsets, num_frames, num_output_frames)
    flat_weights = np.broadcast_to(np.asarray(weights, dtype=np.float64), (len(offsets), num_frames)).reshape(-1)
    return np.bincount(indices[keep], weights=flat_weights[keep], minlength=num_output_frames)


def overlap_add(
    chunk_scores: np.ndarray,
    starts: np.ndarray,
    *,
    frames: Frames,
    weights: np.ndarray,
    num_output_frames: int,
) -> np.ndarray:
    """Weighted average of overlapping chunk frames on the file's frame grid.

    Parameters
    ----------
    chunk_scores : (chunks, frames, classes) array
        Scores of each chunk, frame by frame.
    starts : (chunks,) array, seconds
        Chunk start times; multiples of ``frames.step`` (checked).
    frames : Frames
        Frame grid shared by the chunks and the file.
    weights : (frames,) array
        Weight of each chunk frame (:func:`frame_weights`); must be non-negative.
    num_output_frames : int
        Frames of the file; chunk frames past it (padding) are dropped.

    Returns
    -------
    scores : (num_output_frames, classes) float64 array
        ``sum_c w[f_c] * chunk_scores[c, f_c] / sum_c w[f_c]`` over the chunks ``c`` covering
        each file frame; 0 where no chunk covers it (see :func:`coverage` for the mask).
    """
    chunk_scores = np.asarray(chunk_scores, dtype=np.float64)
    if chunk_scores.ndim != 3:
        raise ValueError(f"overlap_add: chunk_scores must be (chunks, frames, classes), got {chunk_scores.shape}.")
    num_chunks_, num_frames, num_classes = chunk_scores.shape
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape != (num_frames,):
        raise ValueError(f"overlap_add: weights must be ({num_frames},), got {weights.shape}.")
    if np.shape(starts) != (num_chunks_,):
        raise ValueError(f"overlap_add: starts must be ({num_chunks_},), got {np.shape(starts)}.")

    offsets = frame_offsets(starts, frames=frames)
    indices, keep = _flat_indices(offsets, num_frames, num_output_frames)
    weighted = (chunk_scores * weights[None, :, None]).reshape(-1, num_classes)
    total = np.zeros((num_output_frames, num_classes))
    # unbuffered scatter-add: several chunks add into the same file frame
    np.add.at(total, indices[keep], weighted[keep])
    weight_sum = coverage(
        starts, num_frames=num_frames, frames=frames, weights=weights, num_output_frames=num_output_frames
    )
    covered = weight_sum > 0
    total[covered] /= weight_sum[covered, None]
    return total


def is_per_window(window: SlidingWindow) -> bool:
    """Whether rows on ``window`` are per-window scores (windows longer than their step).

    A CHUNK model's rows score overlapping windows (``duration > step``); a FRAME model's
    rows are frames, one step long, that tile the file.
    """
    return window.duration > window.step * (1 + _WINDOW_TOLERANCE)


def windows_to_cells(
    window_scores: np.ndarray,
    *,
    duration: float,
    step: float,
    start: float = 0.0,
    end: Optional[float] = None,
) -> np.ndarray:
    """Per-window scores spread onto cells one step wide: each cell is the mean of the windows covering its centre.

    Parameters
    ----------
    window_scores : (windows, classes) array
        Row ``c`` scores the window ``[start + c * step, start + c * step + duration)``.
    duration, step : float
        Window duration and hop, in seconds (``duration >= step > 0``).
    start : float
        Start of window 0, in seconds.
    end : float, optional
        End of the file, in seconds: cells starting at or after it are dropped (the last
        window usually runs past the file's end, over zero padding); ``end > start``.

    Returns
    -------
    cells : (cells, classes) float64 array
        Cell ``k`` is ``[start + k * step, start + (k + 1) * step)``; its score is the mean
        of the rows ``c`` whose window contains the cell's centre ``start + (k + 0.5) * step``.
        Cells reach the end of the last window: ``windows - 1 + ceil(duration / step)`` of
        them (fewer with ``end``). When ``duration`` is not a whole number of steps, the
        last cell's centre may lie past every window: it takes the previous cell's score.
    """
    scores = np.asarray(window_scores, dtype=np.float64)
    if scores.ndim != 2 or len(scores) == 0:
        raise ValueError(
            f"windows_to_cells: window_scores must be (windows, classes), windows >= 1, got {scores.shape}."
        )
    if not step > 0 or duration < step * (1 - _WINDOW_TOLERANCE):
        # shorter windows leave gaps between them that no score covers
        raise ValueError(f"windows_to_cells: need duration >= step > 0, got duration={duration}, step={step}.")
    num_windows, num_classes = scores.shape
    ratio = duration / step
    # window c covers the centres of cells c .. c + per_window - 1: those j >= 0 with (j + 0.5) < ratio
    per_window = whole_steps(ratio - 0.5, 1.0, up=True)
    num_cells = num_windows - 1 + whole_steps(duration, step, up=True)
    if end is not None:
        if not end > start:
            raise ValueError(f"windows_to_cells: end ({end} s) must come after the first window's start ({start} s).")
        num_cells = min(num_cells, num_cells_before(end, first_start=start, step=step))
    # the last covered cell is num_windows + per_window - 2; a cell past it borrows its windows
    cell = np.minimum(np.arange(num_cells), num_windows + per_window - 2)
    first = np.maximum(cell - per_window + 1, 0)  # windows first .. last - 1 cover the cell's centre
    last = np.minimum(cell, num_windows - 1) + 1
    # a prefix sum turns every cell's window sum into one subtraction, with no loop over cells
    cumulative = np.concatenate([np.zeros((1, num_classes)), np.cumsum(scores, axis=0)])
    return (cumulative[last] - cumulative[first]) / (last - first)[:, None]


def windows_to_timeline(scores: SlidingWindowFeature, end: Optional[float] = None) -> SlidingWindowFeature:
    """:func:`windows_to_cells` of per-window scores, on a sliding window whose duration is its step.

    Parameters
    ----------
    scores : SlidingWindowFeature, data of shape (windows, classes)
        Per-window scores, as :class:`~audiotask.inference.inference.Inference` returns
        them for CHUNK models (row ``c``: the window ``[start + c * step, ... + duration)``).
        Frames one step long (FRAME models) come back unchanged, less cells past ``end``.
    end : float, optional
        End of the file, in seconds (see :func:`windows_to_cells`).

    Returns
    -------
    SlidingWindowFeature, data of shape (cells, classes)
        Cell ``k`` is ``[start + k * step, start + (k + 1) * step)``; same labels, and the
        input's float dtype (float32 stays float32).
    """
    window = scores.sliding_window
    data = windows_to_cells(scores.data, duration=window.duration, step=window.step, start=window.start, end=end)
    dtype = scores.data.dtype if np.issubdtype(scores.data.dtype, np.floating) else np.float64
    cells = SlidingWindow(start=window.start, duration=window.step, step=window.step)
    return SlidingWindowFeature(data.astype(dtype), cells, labels=scores.labels)
